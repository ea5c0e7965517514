"""``python -m fbupscale_gui``: the ``fbupscale`` command line."""

from __future__ import annotations

from fbupscale_gui.cli import main

raise SystemExit(main())
