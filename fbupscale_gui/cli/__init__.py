"""The ``fbupscale`` command line: :mod:`.entry` builds the parser from every subcommand's
module (``upscale``, ``reproduce``, ``doctor``, ``models``, ``fidelity`` (score, degrade),
``video``, ``serve``, ``lora``) and runs it; :mod:`.common` holds what they share (the cancel
flag, the progress bar, output naming, error lines) and :mod:`.render` runs requests."""

from fbupscale_gui.cli.entry import main

__all__ = ["main"]
