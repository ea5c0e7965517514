"""The ``fbupscale`` command line: :mod:`.entry` parses and runs ``upscale``/``reproduce``/
``doctor``; each other subcommand lives in its own module here (``models``, ``fidelity``,
``video``, ``serve``, ``lora``), imported by :mod:`.entry` at start-up."""

from fbupscale_gui.cli.entry import main

__all__ = ["main"]
