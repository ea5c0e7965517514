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
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NoReturn

from fbupscale_gui import __version__
from fbupscale_gui.cli.common import (
    EXIT_CANCELLED,
    EXIT_USAGE,
    PROG,
    SERVE_PACKAGES,
    CancelFlag,
    MissingExtraError,
    UsageError,
    error,
    missing_extra,
    note,
)
from fbupscale_gui.core.errors import Cancelled, FbError, error_line

__all__ = ["COMMANDS", "BrokenCommandError", "build_parser", "main"]


@dataclass(frozen=True)
class _Command:
    """A subcommand's module and the function that adds its parser (which sets
    ``func(args, cancel) -> exit status``); ``extra`` names the optional extra whose
    ``packages`` it needs, if any."""

    name: str
    module: str
    adder: str
    help: str = ""
    extra: str = ""
    packages: tuple[str, ...] = ()


#: Every subcommand, in the order ``--help`` lists them; the modules import only light packages.
COMMANDS: Final = (
    _Command("upscale", "fbupscale_gui.cli.upscale", "add_upscale_parser"),
    _Command("reproduce", "fbupscale_gui.cli.reproduce", "add_reproduce_parser"),
    _Command("doctor", "fbupscale_gui.cli.doctor", "add_doctor_parser"),
    _Command("models", "fbupscale_gui.cli.models", "add_models_parser"),
    _Command("score", "fbupscale_gui.cli.fidelity", "add_score_parser"),
    _Command("degrade", "fbupscale_gui.cli.fidelity", "add_degrade_parser"),
    _Command("video", "fbupscale_gui.cli.video", "add_video_parser"),
    _Command(
        "serve",
        "fbupscale_gui.cli.serve",
        "add_serve_parser",
        help="serve the engine to review desks over HTTP (Ray Serve)",
        extra="serve",
        packages=SERVE_PACKAGES,
    ),
    _Command("lora", "fbupscale_gui.cli.lora", "add_lora_parser"),
)


class BrokenCommandError(FbError):
    """A subcommand's module cannot be imported: a fault of this install, never hidden."""


def build_parser() -> argparse.ArgumentParser:
    """The ``fbupscale`` argument parser.

    Raises :class:`BrokenCommandError` naming the module when a subcommand's module cannot be
    imported, unless what is missing is an optional extra: that subcommand is still listed and
    says which extra to install when it runs."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Reconstruct tiny football broadcast cutouts into clean 1024 px frames.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        try:
            module = importlib.import_module(command.module)
        except ImportError as exc:
            missing = missing_extra(exc, command.name, command.extra, command.packages)
            if isinstance(missing, MissingExtraError):
                _add_unavailable(sub, command, missing)
                continue
            raise BrokenCommandError(
                f"the '{command.name}' command cannot be loaded: its module {command.module} "
                f"failed to import ({type(exc).__name__}: {error_line(exc)}); this install is "
                "broken: reinstall fbupscale, or report it"
            ) from exc
        getattr(module, command.adder)(sub)
    return parser


def _add_unavailable(sub: Any, command: _Command, missing: MissingExtraError) -> None:
    """A subcommand whose optional extra is missing: listed, and it says so when run."""
    p = sub.add_parser(
        command.name, help=f"{command.help} [needs the '{missing.extra}' extra]", add_help=False
    )

    def run(args: argparse.Namespace, cancel: CancelFlag) -> int:
        raise missing

    p.set_defaults(func=run, unavailable=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        parser = build_parser()
    except BrokenCommandError as exc:
        return error(exc)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "unavailable", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
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
        return error(exc)


def _usage_error(args: argparse.Namespace, message: str) -> NoReturn:
    print(f"{PROG} {args.command}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USAGE)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
