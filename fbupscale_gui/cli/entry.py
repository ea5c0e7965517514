"""The ``fbupscale`` command line: the parser and the entry point.

Each subcommand lives in its own module here (``upscale``, ``reproduce``, ``doctor``,
``models``, ``fidelity`` (score, degrade), ``video``, ``serve``, ``lora``) and adds its parser
with a ``func(args, cancel) -> exit status``; :mod:`.common` holds what they share.

Exit status: 0 done, 1 an error (one line, naming the file), 2 a usage error, 130 cancelled
with Ctrl-C (the first Ctrl-C stops after the current step, a second one at once).
Heavy packages (torch, diffusers, ncnn) are imported only by the commands that run models.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, Final, NoReturn

from fbupscale_gui import __version__
from fbupscale_gui.cli.common import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_USAGE,
    PROG,
    CancelFlag,
    UsageError,
    note,
    one_line,
)
from fbupscale_gui.core.errors import Cancelled, FbError
from fbupscale_gui.storage.paths import shown

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``fbupscale`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Reconstruct tiny football broadcast cutouts into clean 1024 px frames.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_plugin_commands(sub)
    return parser


#: Subcommands that live in their own modules: (module, function adding the parser). Each
#: parser sets ``func(args, cancel) -> exit status``; the modules import only light packages.
_PLUGINS: Final = (
    ("fbupscale_gui.cli.upscale", "add_upscale_parser"),
    ("fbupscale_gui.cli.reproduce", "add_reproduce_parser"),
    ("fbupscale_gui.cli.doctor", "add_doctor_parser"),
    ("fbupscale_gui.cli.models", "add_models_parser"),
    ("fbupscale_gui.cli.fidelity", "add_score_parser"),
    ("fbupscale_gui.cli.fidelity", "add_degrade_parser"),
    ("fbupscale_gui.cli.video", "add_video_parser"),
    ("fbupscale_gui.cli.serve", "add_serve_parser"),
    ("fbupscale_gui.cli.lora", "add_lora_parser"),
)


def _add_plugin_commands(sub: Any) -> None:
    import importlib

    for module_name, function in _PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an optional command whose module is not part of this install
            continue
        getattr(module, function)(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cancel = CancelFlag()
    try:
        with cancel.installed():
            return int(args.func(args, cancel))
    except UsageError as exc:
        _usage_error(args, str(exc))
    except KeyboardInterrupt:
        note("interrupted")
        return EXIT_CANCELLED
    except Cancelled:
        note("cancelled")
        return EXIT_CANCELLED
    except (FbError, OSError) as exc:
        print(f"{PROG}: error: {shown(one_line(exc))}", file=sys.stderr, flush=True)
        return EXIT_ERROR


def _usage_error(args: argparse.Namespace, message: str) -> NoReturn:
    print(f"{PROG} {args.command}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USAGE)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
