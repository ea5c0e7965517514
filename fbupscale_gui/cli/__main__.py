"""``python -m fbupscale_gui.cli``."""

import sys

from fbupscale_gui.cli.entry import main

sys.exit(main())
