"""The ``lora`` subcommand of ``fbupscale``: build a football LoRA dataset and train the LoRA.

* ``fbupscale lora dataset FOLDER -o OUT``: frames (+ ``NAME.scene.json`` / ``NAME.txt`` /
  ``NAME.boxes.json``) to a Kohya dataset: ``imgs/`` with ``.txt`` captions,
  ``captions_kohya.json`` (Code 4), ``dataset.toml`` (Code 5), ``train_command.sh`` (Code 6)
  and ``dataset_report.json``. Prints each rule issue and the counts.
* ``fbupscale lora report --dataset OUT --lora L -o DIR``: the held-out frames degraded by the
  broadcast degradation model, reconstructed with and without the LoRA, scored (PSNR-Y,
  SSIM-Y, LR-consistency): ``report.json``, ``report.md`` and ``report.png``.
* ``fbupscale lora train --flux DIR --dataset OUT -o LORA.safetensors [--steps N] [--rank R]
  [--resolution PX] [--log FILE.jsonl]``: trains in this process; resumes from the last
  checkpoint of the same settings; one JSON object per line in ``--log`` (``step``, ``loss``,
  ``eta_s`` ... see :func:`fbupscale_gui.engine.lora.train.train_lora`). Ctrl-C or SIGTERM
  stops after the current step and saves a resume state (exit 130).

Register with :func:`add_lora_parser`. Exit status: 0 done, 1 error (one line), 130 cancelled.
torch is imported only by ``train``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from fbupscale_gui.cli.common import EXIT_CANCELLED, PROG, CancelFlag, error, note

__all__ = ["add_lora_parser", "cmd_lora"]


def add_lora_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``lora {dataset,train,report}`` to an argparse subparsers object."""
    from fbupscale_gui.core.lora_dataset import ModelFiles

    p = subparsers.add_parser(
        "lora",
        help="football LoRA: build a Kohya dataset from frames, train it",
        description="Build a football LoRA dataset (paper 3.3) and train the LoRA.",
    )
    sub = p.add_subparsers(dest="lora_command", metavar="LORA_COMMAND", required=True)

    ds = sub.add_parser(
        "dataset",
        help="frames + scene files -> Kohya dataset (JSON, TOML, command, .txt captions)",
        description="Turn a folder of high-resolution frames into a Kohya dataset.",
    )
    ds.add_argument("folder", type=Path, help="frames with optional NAME.scene.json")
    ds.add_argument("-o", "--output", required=True, type=Path, metavar="OUT")
    ds.add_argument("--crops", type=int, default=2, help="crops around people per frame (2)")
    ds.add_argument("--jitters", type=int, default=1, help="colour jitters per frame (1)")
    ds.add_argument("--flip", action="store_true", help="horizontal flips (mirror numbers!)")
    ds.add_argument("--holdout", type=int, default=0, help="frames kept out for the A/B report")
    ds.add_argument("--keep-flagged", action="store_true", help="keep frames breaking a rule")
    ds.add_argument("--repeats", type=int, default=5, help="num_repeats in the TOML (5)")
    ds.add_argument("--batch-size", type=int, default=4, help="batch size in the TOML (4)")
    ds.add_argument("--resolution", type=int, default=1024, help="TOML resolution (1024)")
    ds.add_argument("--remote-root", default="", metavar="DIR", help="OUT's path on the trainer")
    defaults = ModelFiles()
    for flag, dest in (
        ("--flux-file", "flux"),
        ("--clip-l", "clip_l"),
        ("--t5xxl", "t5xxl"),
        ("--ae", "ae"),
    ):
        default = getattr(defaults, dest)
        ds.add_argument(
            flag,
            dest=dest if dest != "flux" else "flux_file",
            default=default,
            metavar="FILE",
            help=f"model file for the sd-scripts command ({default})",
        )
    ds.add_argument(
        "--models-dir",
        type=Path,
        metavar="DIR",
        help="a ComfyUI-style models folder: fills the command's model files from it",
    )
    ds.add_argument("--json", action="store_true", help="print the report as JSON")

    tr = sub.add_parser(
        "train",
        help="train the LoRA on a built dataset (resumes after a crash)",
        description="Train a FLUX LoRA (diffusers + PEFT) on a dataset built by 'lora dataset'.",
    )
    tr.add_argument("--flux", metavar="DIR", help="FLUX.1-dev diffusers folder (default: HF cache)")
    tr.add_argument("--dataset", required=True, type=Path, metavar="OUT")
    tr.add_argument("-o", "--output", required=True, type=Path, metavar="LORA.safetensors")
    tr.add_argument("--steps", type=int, help="total steps (default: epochs x steps per epoch)")
    tr.add_argument("--epochs", type=int, default=10)
    tr.add_argument("--rank", type=int, default=8)
    tr.add_argument("--alpha", type=float, default=None, help="default: the rank")
    tr.add_argument("--lr", type=float, default=1e-4, help="learning rate (1e-4)")
    tr.add_argument("--resolution", type=int, default=512, help="bucket size in px (512)")
    tr.add_argument("--batch-size", type=int, default=1)
    tr.add_argument("--repeats", type=int, default=1)
    tr.add_argument("--save-every-n-epochs", type=int, default=2)
    tr.add_argument("--save-every-n-steps", type=int, default=0)
    tr.add_argument("--seed", type=int, default=42)
    tr.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    tr.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto")
    tr.add_argument("--qlora", action="store_true", help="NF4 base (CUDA + bitsandbytes)")
    tr.add_argument("--flip", action="store_true", help="train on mirrored copies too")
    tr.add_argument("--max-sequence-length", type=int, default=512, help="T5 tokens (512)")
    tr.add_argument("--no-resume", action="store_true", help="ignore a saved state")
    tr.add_argument("--estimate-only", action="store_true", help="print the estimate and stop")
    tr.add_argument("--log", type=Path, metavar="FILE.jsonl", help="one JSON line per event")

    rep = sub.add_parser(
        "report",
        help="measured A/B: held-out frames degraded, reconstructed with and without the LoRA",
        description=(
            "Degrade each held-out frame of a dataset with the broadcast degradation model, "
            "reconstruct it with and without the LoRA, and score PSNR-Y, SSIM-Y and "
            "LR-consistency: report.json, report.md (table) and report.png (plot)."
        ),
    )
    rep.add_argument("--dataset", required=True, type=Path, metavar="OUT")
    rep.add_argument("--lora", required=True, type=Path, metavar="LORA.safetensors")
    rep.add_argument("--flux", metavar="DIR", help="FLUX.1-dev folder (default: HF cache)")
    rep.add_argument("--controlnet", metavar="DIR", help="ControlNet upscaler folder")
    rep.add_argument("-o", "--output", required=True, type=Path, metavar="DIR")
    rep.add_argument("--severity", choices=["light", "medium", "heavy"], default="medium")
    rep.add_argument("--size", type=int, default=1024, help="output long side (1024)")
    rep.add_argument("--variants", type=int, default=1)
    rep.add_argument("--seed", type=int, default=5)
    rep.add_argument("--steps1", type=int, default=None, metavar="N")
    rep.add_argument("--steps2", type=int, default=None, metavar="N")
    rep.add_argument("--lora-scale", type=float, default=0.9)
    rep.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.set_defaults(func=cmd_lora)
    return p


def cmd_lora(args: argparse.Namespace, cancel: Callable[[], bool] | None = None) -> int:
    """Run ``lora dataset|train|report``; 0 ok, 1 error (one line on stderr), 130 cancelled."""
    from fbupscale_gui.core.errors import Cancelled, FbError

    prog = f"{PROG} lora {args.lora_command}"
    try:
        if args.lora_command == "dataset":
            return _cmd_dataset(args)
        if args.lora_command == "report":
            return _cmd_report(args, cancel)
        # SIGTERM (what a window's QProcess.terminate sends) stops after the current step
        with CancelFlag(cancel).on_sigterm() as is_cancelled:
            return _cmd_train(args, is_cancelled)
    except Cancelled:
        note("cancelled (progress saved)", prog)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        note("interrupted", prog)
        return EXIT_CANCELLED
    except (FbError, OSError) as exc:
        return error(exc, prog)


def _cmd_dataset(args: argparse.Namespace) -> int:
    from fbupscale_gui.core.lora_dataset import AugmentOptions, ModelFiles, TrainSettings
    from fbupscale_gui.storage.lora_dataset_files import build_dataset, find_model_files

    models = ModelFiles(flux=args.flux_file, clip_l=args.clip_l, t5xxl=args.t5xxl, ae=args.ae)
    if args.models_dir is not None:
        found, missing = find_model_files(args.models_dir)
        defaults = ModelFiles()
        models = ModelFiles(
            **{
                k: getattr(models, k) if getattr(models, k) != getattr(defaults, k) else v
                for k, v in vars(found).items()
            }
        )
        for line in missing:
            print(f"note: {line}", file=sys.stderr)
    report = build_dataset(
        args.folder,
        args.output,
        augment=AugmentOptions(crops=args.crops, jitters=args.jitters, flip=args.flip),
        settings=TrainSettings(
            resolution=args.resolution,
            max_bucket_reso=max(args.resolution, 256),
            batch_size=args.batch_size,
            num_repeats=args.repeats,
        ),
        models=models,
        holdout=args.holdout,
        keep_flagged=args.keep_flagged,
        remote_root=args.remote_root,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return 0
    for name, issues in report.excluded.items():
        for issue in issues:
            print(f"left out {name}: {issue}", file=sys.stderr)
    for name, issues in report.warnings.items():
        for issue in issues:
            print(f"warning {name}: {issue}", file=sys.stderr)
    aug = report.augmentations
    print(
        f"{report.training_frames} training frames ({len(report.held_out)} held out, "
        f"{len(report.excluded)} left out) -> {report.images} images "
        f"(crops {aug['crop']}, colour jitter {aug['jitter']}, flips "
        f"{'on' if aug['flip'] else 'off'}), x{aug['repeats']} repeats = "
        f"{aug['images_per_epoch']} per epoch"
    )
    for title, key in (("actions", "actions"), ("teams", "teams")):
        counts = report.counts.get(key, {})
        if counts:
            print(f"{title}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(str(report.out))
    return 0


class _JsonLog:
    """Events as JSON lines: appended to a file (flushed per line) and summarised on stderr."""

    def __init__(self, path: Path | None) -> None:
        self.fh: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def __call__(self, event: dict[str, Any]) -> None:
        if self.fh is not None:
            self.fh.write(json.dumps(event, ensure_ascii=False) + "\n")
            self.fh.flush()
        kind = event.get("event")
        if kind == "step":
            if event["step"] == 1 or event["step"] % 10 == 0 or event["step"] == event["total"]:
                print(
                    f"step {event['step']}/{event['total']} loss {event['loss']:.4f} "
                    f"eta {event['eta_s']:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
        elif kind == "estimate":
            gib = event["peak_memory_bytes"] / 2**30
            print(
                f"estimate: {event['steps']} steps, about {event['total_seconds']:.0f} s "
                f"({event['seconds_per_step']:.2f} s/step), peak memory about {gib:.2f} GiB "
                f"on {event['device']} ({event['precision']}, {event['optimizer']})",
                file=sys.stderr,
                flush=True,
            )
        elif kind in ("checkpoint", "resumed", "cancelled"):
            detail = event.get("path") or event.get("state") or ""
            print(f"{kind} at step {event['step']} {detail}".rstrip(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def _cmd_train(args: argparse.Namespace, is_cancelled: Callable[[], bool]) -> int:
    from fbupscale_gui.core.request import FLUX_REPO_ID, ModelRef
    from fbupscale_gui.engine import Engine
    from fbupscale_gui.engine.lora.train_config import TrainConfig
    from fbupscale_gui.storage.weights import locate

    flux = locate(
        ModelRef(path=args.flux or "", repo_id=FLUX_REPO_ID), "flux", compute_fingerprint=False
    ).path
    config = TrainConfig(
        flux=Path(flux),
        dataset=args.dataset,
        output=args.output,
        steps=args.steps,
        epochs=args.epochs,
        rank=args.rank,
        alpha=float(args.alpha if args.alpha is not None else args.rank),
        learning_rate=args.lr,
        resolution=args.resolution,
        batch_size=args.batch_size,
        num_repeats=args.repeats,
        save_every_n_epochs=args.save_every_n_epochs,
        save_every_n_steps=args.save_every_n_steps,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        qlora=args.qlora,
        flip=args.flip,
        max_sequence_length=args.max_sequence_length,
        resume=not args.no_resume,
    )
    log = _JsonLog(args.log)
    try:
        result = Engine().train_lora(config, log, is_cancelled, estimate_only=args.estimate_only)
    finally:
        log.close()
    if not args.estimate_only:
        print(os.fspath(result.output))
    return 0


def _cmd_report(args: argparse.Namespace, cancel: Callable[[], bool] | None) -> int:
    import dataclasses

    from fbupscale_gui.core.request import (
        CONTROLNET_REPO_ID,
        FLUX_REPO_ID,
        LoraParams,
        ModelRef,
        Preprocess,
        ReconstructionRequest,
        Stage1Params,
        Stage2Params,
    )
    from fbupscale_gui.engine.lora.report import ab_rows, write_report

    stage1, stage2 = Stage1Params(), Stage2Params()
    if args.steps1 is not None:
        stage1 = dataclasses.replace(stage1, steps=args.steps1)
    if args.steps2 is not None:
        stage2 = dataclasses.replace(stage2, steps=args.steps2)
    template = ReconstructionRequest(
        engine="flux",
        preprocess=Preprocess(size=args.size),
        stage1=stage1,
        stage2=stage2,
        variants=args.variants,
        seed=args.seed,
        device=args.device,
        flux=ModelRef(path=args.flux or "", repo_id=FLUX_REPO_ID),
        controlnet=ModelRef(path=args.controlnet or "", repo_id=CONTROLNET_REPO_ID),
        lora=LoraParams(model=ModelRef(path=str(args.lora)), scale=args.lora_scale),
    )

    def progress(index: int, total: int, name: str) -> None:
        print(f"frame {index + 1}/{total}: {name}", file=sys.stderr, flush=True)

    rows = ab_rows(
        args.dataset,
        template,
        args.output / "images",
        severity=args.severity,
        on_frame=progress,
        is_cancelled=cancel,
    )
    meta = {"severity": args.severity, "lora": str(args.lora), "size": args.size}
    report = write_report(rows, args.output, meta)
    print(report.read_text(encoding="utf-8"))
    return 0
