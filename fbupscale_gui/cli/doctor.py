"""``fbupscale doctor``: print what the application finds (Python packages, GPU, models)."""

from __future__ import annotations

import argparse
from typing import Any

from fbupscale_gui.cli.common import CancelFlag, UsageError
from fbupscale_gui.cli.upscale import add_model_args, flux_path
from fbupscale_gui.core.request import CONTROLNET_REPO_ID, FLUX_REPO_ID, ModelRef

__all__ = ["add_doctor_parser", "cmd_doctor"]


def add_doctor_parser(sub: Any) -> None:
    """Add ``doctor`` (with the model options of ``upscale``) to an argparse subparsers object."""
    doc = sub.add_parser("doctor", help="report packages, GPU and models found")
    add_model_args(doc)
    doc.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace, cancel: CancelFlag) -> int:
    from fbupscale_gui.engine.doctor import report

    lora = ModelRef(path=args.lora) if args.lora else None
    try:
        found = flux_path(args)
    except UsageError:  # the report says what the models root lacks
        found = None
    print(
        report(
            flux=ModelRef(path=found or "", repo_id=FLUX_REPO_ID),
            flux_base=ModelRef(path=args.flux_base) if args.flux_base else None,
            controlnet=ModelRef(path=args.controlnet or "", repo_id=CONTROLNET_REPO_ID),
            lora=lora,
            models_root=args.models_root,
            parts=_part_args(args),
        )
    )
    return 0


def _part_args(args: argparse.Namespace) -> dict[str, str]:
    """The part files given on their own (--vae, --clip-l, --t5, --tokenizers)."""
    from fbupscale_gui.storage.weight_files import find_tokenizers

    parts = {
        name: path
        for name, path in (
            ("vae", args.vae),
            ("text_encoder", args.clip_l),
            ("text_encoder_2", args.t5),
        )
        if path
    }
    if args.tokenizers:
        found = find_tokenizers(args.tokenizers)
        for name in ("tokenizer", "tokenizer_2"):
            parts[name] = str(found.get(name, args.tokenizers))
    return parts
