"""The ``models`` subcommand of ``fbupscale``: ``models add FILE | list | remove NAME``.

Register it on the main parser's subparsers with :func:`add_models_parser`; it sets ``func`` to
:func:`cmd_models`, which takes the parsed arguments (and ignores an optional second argument,
so it fits either dispatch style) and returns the exit status: 0 ok, 1 error with one line on
stderr. Runs on its own too: ``python -m fbupscale_gui.cli.models list``.

``list`` and ``remove`` never import torch; ``add`` and ``add-realesrgan`` load the engine
lazily to validate the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fbupscale_gui.cli.common import PROG, error
from fbupscale_gui.core.errors import FbError
from fbupscale_gui.storage.weights_library import ModelLibrary

__all__ = ["add_models_parser", "cmd_models", "main"]


def add_models_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``models {add,list,remove,add-realesrgan}`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "models",
        help="manage user super-resolution models (SPAN, ESRGAN, Compact, SwinIR, ...)",
        description=(
            "The models folder holds the super-resolution models usable as "
            "--engine model:NAME. It is FBUPSCALE_MODELS_DIR when set, else 'fbupscale/models' "
            "in the user data folder. .safetensors files are always accepted; .pth/.pt/.ckpt "
            "only when they hold plain weights (pickled code is refused without running it)."
        ),
    )
    p.add_argument("--dir", type=Path, default=None, help="use this models folder instead")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    add = sub.add_parser("add", help="validate a model file and copy it into the folder")
    add.add_argument("file", type=Path, help="a .safetensors, .pth, .pt or .ckpt model file")
    add.add_argument("--name", default=None, help="library name (default: the file name)")
    add.add_argument("--licence", default="", help="licence note shown with the model")
    add.add_argument("--replace", action="store_true", help="replace a model of the same name")

    lst = sub.add_parser("list", help="list the models in the folder")
    lst.add_argument("--json", action="store_true", help="print JSON instead of a table")

    rm = sub.add_parser("remove", help="remove a model and delete its file")
    rm.add_argument("name", help="the library name")

    sub.add_parser(
        "add-realesrgan",
        help="convert the bundled Real-ESRGAN x4plus (ncnn) into the folder for torch/CUDA",
    )
    p.set_defaults(func=cmd_models)
    return p


def _add(library: ModelLibrary, args: argparse.Namespace) -> int:
    from fbupscale_gui.engine.sr.detect import inspect_model

    entry = library.add(
        args.file, inspect_model, name=args.name, licence=args.licence, replace=args.replace
    )
    print(f"added {entry.name}: {entry.summary} (sha256 {entry.sha256[:12]})")
    print(f"use it with: {PROG} upscale --engine model:{entry.name} ...")
    return 0


def _list(library: ModelLibrary, args: argparse.Namespace) -> int:
    entries = library.entries()
    if args.json:
        data = {"dir": str(library.root), "models": {e.name: e.to_json() for e in entries}}
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    if not entries:
        print(f"no models in {library.root} (add one with: {PROG} models add FILE)")
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(f"{e.name:<{width}}  {e.summary}")
    print(f"({len(entries)} in {library.root})")
    return 0


def _remove(library: ModelLibrary, args: argparse.Namespace) -> int:
    entry = library.remove(args.name)
    print(f"removed {entry.name} ({entry.file})")
    return 0


def _add_realesrgan(library: ModelLibrary, args: argparse.Namespace) -> int:
    from fbupscale_gui.engine.sr.convert_ncnn import ensure_realesrgan_in_library

    entry = ensure_realesrgan_in_library(library)
    print(f"{entry.name}: {entry.summary}")
    return 0


_ACTIONS = {
    "add": _add,
    "list": _list,
    "remove": _remove,
    "add-realesrgan": _add_realesrgan,
}


def cmd_models(args: argparse.Namespace, _cancel: object = None) -> int:
    """Run a ``models`` action; returns 0, or 1 after printing one error line to stderr."""
    library = ModelLibrary(args.dir)
    try:
        return _ACTIONS[args.models_command](library, args)
    except (FbError, OSError) as exc:
        return error(exc, f"{PROG} models")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fbupscale_gui.cli.models ACTION ...``"""
    parser = argparse.ArgumentParser(prog=PROG)
    sub = parser.add_subparsers(dest="command", required=True)
    add_models_parser(sub)
    args = parser.parse_args(["models", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
