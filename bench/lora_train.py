"""LoRA training speed: steps/s of the in-app trainer, measured against its own estimate.

Default: the tiny random FLUX (engine/testing.py) on this machine's CPU, rank 8, at several
resolutions, with and without gradient checkpointing. The first step of each run is left out
(warm-up); model loading and caching are excluded. The trainer's up-front estimate (one timed
forward and backward pass) and its FLOPs-only figure are printed beside the measured figure.

With ``--flux DIR`` (a real FLUX.1-dev folder, CUDA): s/step at 512 and 1024 for rank 8, bf16
and, with ``--qlora``, the NF4 base, plus peak VRAM. Prints figures, never asserts.

    .venv/bin/python bench/lora_train.py [--steps 12] [--resolutions 32 64 128]
    .venv/bin/python bench/lora_train.py --flux /models/FLUX.1-dev --resolutions 512 1024 --qlora
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"


def _dataset(root: Path, size: tuple[int, int]) -> Path:
    from fbupscale_gui.core.lora_dataset import AugmentOptions
    from fbupscale_gui.engine.testing import tiny_cutout
    from fbupscale_gui.storage.lora_dataset_files import build_dataset

    frames = root / "frames"
    frames.mkdir(parents=True)
    for i, name in enumerate(("duel", "striker", "box", "corner")):
        tiny_cutout(*size, seed=i).save(frames / f"{name}.png")
        shutil.copy(SAMPLES / f"{name}.scene.json", frames / f"{name}.scene.json")
    build_dataset(frames, root / "ds", augment=AugmentOptions(crops=0, jitters=0))
    return root / "ds"


def run(flux: Path, dataset: Path, out: Path, steps: int, **kw: Any) -> dict[str, Any]:
    import torch

    from fbupscale_gui.engine.lora.train import train_lora
    from fbupscale_gui.engine.lora.train_config import TrainConfig

    events: list[dict[str, Any]] = []
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    train_lora(
        TrainConfig(flux=flux, dataset=dataset, output=out, steps=steps, resume=False, **kw),
        events.append,
    )
    times = [e["elapsed_s"] for e in events if e["event"] == "step"]
    per_step = [b - a for a, b in itertools.pairwise(times)]
    estimate = next(e for e in events if e["event"] == "estimate")
    return {
        "s_per_step": statistics.median(per_step),
        "estimate_s": estimate["seconds_per_step"],
        "flops_s": estimate["flops_seconds_per_step"],
        "estimate_mem": estimate["peak_memory_bytes"],
        "peak_vram": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU")
    parser.add_argument("--flux", type=Path, help="a real FLUX.1-dev folder (CUDA)")
    parser.add_argument("--qlora", action="store_true", help="also the NF4 base")
    args = parser.parse_args()

    import torch

    from fbupscale_gui.engine.testing import save_tiny_flux

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="fbupscale-lora-bench-"))
    try:
        flux = args.flux or save_tiny_flux(root / "models")[0]
        dataset = _dataset(root, (192, 128) if args.flux is None else (1536, 1024))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"model: {'tiny FLUX' if args.flux is None else flux}; device: {device}; "
              f"torch threads: {torch.get_num_threads()}; rank {args.rank}; "
              f"{args.steps} steps per run (first left out)")  # fmt: skip
        print(f"{'res':>5} {'mode':>16} {'s/step':>8} {'steps/s':>8} {'estimate s/step':>16} "
              f"{'measured/estimate':>18} {'FLOPs est. s/step':>18} {'peak VRAM GiB':>14}")  # fmt: skip
        modes: list[tuple[str, dict[str, Any]]] = [
            ("checkpointing", {"gradient_checkpointing": True}),
            ("no checkpointing", {"gradient_checkpointing": False}),
        ]
        if args.qlora:
            modes.append(("nf4 (qlora)", {"gradient_checkpointing": True, "qlora": True}))
        short = {"max_sequence_length": 64} if args.flux is None else {}
        for res in args.resolutions:
            for label, kw in modes:
                r = run(
                    Path(flux), dataset, root / f"out_{res}_{label[:2]}.safetensors", args.steps,
                    resolution=res, rank=args.rank, alpha=float(args.rank), **kw, **short,
                )  # fmt: skip
                print(
                    f"{res:>5} {label:>16} {r['s_per_step']:>8.3f} {1 / r['s_per_step']:>8.2f} "
                    f"{r['estimate_s']:>16.4f} {r['s_per_step'] / r['estimate_s']:>18.2f} "
                    f"{r['flops_s']:>18.4f} "
                    f"{r['peak_vram'] / 2**30:>14.2f}",
                    flush=True,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
