"""User SR models on the CPU: SPAN 2x paths, and Real-ESRGAN x4plus converted to torch vs ncnn.

1. SPAN 2x, 48 channels, random weights, in frames per second for a 100x100 cutout and a
   480x270 frame: spandrel as shipped (fp32, re-fusing every call), fused once (fp32), fused
   bf16 (only on CPUs with native bf16), and the same with channels_last.
   Issue targets on the 2-core machine: >= 20 fps and >= 1.5 fps fp32, >= 2.5 fps bf16.
2. Real-ESRGAN x4plus 64 -> 256 in ms: the converted safetensors model through torch (fp32, and
   bf16 where native) against the ncnn CPU reference in the same run, as a ratio.
   ``--full`` adds 256 -> 1024 (tiled by the product's tiler vs ncnn's own tiling), which takes
   minutes on two cores.

Variants are timed round-robin (one call each per round, after a warm-up), so bursts of load
from other processes hit them alike, and reported as median and best (the best is the closest
estimate of an idle machine). Model loading is excluded. Prints figures, never asserts.

    .venv/bin/python bench/sr_models.py [--repeats 5] [--threads 2] [--full]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up."""
    return interleaved([fn], repeats)[0][0]


def interleaved(fns: list[Callable[[], Any]], rounds: int) -> list[tuple[float, float]]:
    """(median, best) seconds per function, timed round-robin after one warm-up each.

    Each round times every function once, so a burst of load from other processes hits all of
    them alike; the best time is the closest estimate of an idle machine.
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [(statistics.median(t), min(t)) for t in times]


def bench_span(repeats: int, bf16: bool) -> None:
    import torch

    from fbupscale_gui.engine.sr.network import load_model
    from fbupscale_gui.engine.sr.spandrel_import import import_spandrel

    spandrel = import_spandrel()
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=2).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "span48.safetensors"
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
        variants: list[tuple[str, Any]] = [
            (
                "spandrel fp32 (re-fuses per call)",
                load_model(path, precision="fp32", channels_last=False, fuse=False),
            ),
            ("fused fp32", load_model(path, precision="fp32", channels_last=False)),
            ("fused fp32 channels_last", load_model(path, precision="fp32", channels_last=True)),
        ]
        if bf16:
            variants += [
                ("fused bf16", load_model(path, precision="bf16", channels_last=False)),
                (
                    "fused bf16 channels_last",
                    load_model(path, precision="bf16", channels_last=True),
                ),
            ]
        ref = spandrel.MAIN_REGISTRY.load(dict(net.state_dict())).eval()
    print("\nSPAN 2x, 48 channels (random weights), frames per second")
    print(f"  {'path':<34}{'100x100 median / best':>26}{'480x270 median / best':>26}")
    columns = []
    for w, h in ((100, 100), (480, 270)):
        x = torch.rand(1, 3, h, w)
        rounds = repeats if w == 100 else max(2, repeats // 2)
        columns.append(interleaved([functools.partial(m, x) for _, m in variants], rounds))
    for i, (label, _model) in enumerate(variants):
        cells = []
        for col in columns:
            median, best = col[i]
            ratio = col[0][0] / median
            cells.append(f"{1 / median:7.2f} / {1 / best:6.2f} fps ({ratio:.2f}x)")
        print(f"  {label:<34}" + "  ".join(cells))
    x = torch.rand(1, 3, 64, 64)
    fused = variants[1][1](x)
    print(f"  fused fp32 == spandrel fp32 bit for bit: {bool(torch.equal(fused, ref(x)))}")
    if bf16:
        diff = float((variants[3][1](x) - fused).abs().max())
        print(f"  bf16 vs fp32 max abs difference (0..1 scale, random weights): {diff:.4f}")


def bench_realesrgan(repeats: int, bf16: bool, full: bool, threads: int) -> None:
    import numpy as np
    import torch

    from fbupscale_gui.engine.fast.engines import FastEngine, RealEsrganNet
    from fbupscale_gui.engine.fast.tiling import DEFAULT_CPU_TILE, DEFAULT_OVERLAP
    from fbupscale_gui.engine.sr.convert_ncnn import convert_realesrgan_x4plus
    from fbupscale_gui.engine.sr.network import load_model

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        path = convert_realesrgan_x4plus(Path(tmp) / "x4plus.safetensors")
        convert_s = time.perf_counter() - start
        start = time.perf_counter()
        fp32 = load_model(path, precision="fp32")
        load_s = time.perf_counter() - start
        low = load_model(path, precision="bf16") if bf16 else None
    print(f"\nReal-ESRGAN x4plus: conversion {convert_s:.2f} s, torch load {load_s:.2f} s")
    ncnn = RealEsrganNet(num_threads=threads)
    rng = np.random.default_rng(0)
    chw = rng.random((3, 64, 64), dtype=np.float32)
    x = torch.from_numpy(chw)[None]
    fns: list[tuple[str, Callable[[], Any]]] = [
        ("ncnn fp32 (reference)", lambda: ncnn.forward(chw)),
        ("torch fp32 (converted)", lambda: fp32(x)),
    ]
    if low is not None:
        fns.append(("torch bf16 channels_last", lambda: low(x)))
    results = interleaved([fn for _, fn in fns], repeats)
    t_ncnn = results[0][0]
    ref = np.clip(ncnn.forward(chw), 0, 1)
    mse = float(np.mean((fp32(x)[0].numpy().astype(np.float64) - ref) ** 2))
    psnr = 10 * np.log10(1 / mse) if mse else float("inf")
    print("  64 -> 256")
    for (label, _fn), (median, best) in zip(fns, results, strict=True):
        print(
            f"    {label:<28}{median * 1000:8.0f} ms (best {best * 1000:.0f})"
            f"   ratio to ncnn {median / t_ncnn:.2f} (best {best / results[0][1]:.2f})"
        )
    print(f"    torch fp32 vs ncnn: {psnr:.1f} dB PSNR")
    if low is not None:
        mse16 = float(np.mean((low(x)[0].numpy().astype(np.float64) - ref) ** 2))
        print(f"    torch bf16 vs ncnn: {10 * np.log10(1 / mse16):.1f} dB PSNR")
    if full:
        from PIL import Image

        img = Image.fromarray((rng.random((256, 256, 3)) * 255).astype(np.uint8), "RGB")
        engine = FastEngine(num_threads=threads)
        t_ref = timed(lambda: engine.upscale_x4(img), 1)
        print(f"  256 -> 1024 (tiles {DEFAULT_CPU_TILE} px, overlap {DEFAULT_OVERLAP} px)")
        print(f"    {'ncnn (fast engine tiling)':<28}{t_ref:8.1f} s")
        for label, model in (("torch fp32", fp32), ("torch bf16", low)):
            if model is None:
                continue
            seconds = timed(functools.partial(model.upscale, img), 1)
            print(f"    {label:<28}{seconds:8.1f} s   ratio to ncnn {seconds / t_ref:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--full", action="store_true", help="also 256 -> 1024 (minutes)")
    parser.add_argument("--skip-span", action="store_true")
    parser.add_argument("--skip-realesrgan", action="store_true")
    args = parser.parse_args()

    import torch

    from fbupscale_gui.engine.sr.network import cpu_bf16_supported

    torch.set_num_threads(args.threads)
    bf16 = cpu_bf16_supported()
    print(
        f"torch {torch.__version__}, {args.threads} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {bf16}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    if not args.skip_span:
        bench_span(args.repeats, bf16)
    if not args.skip_realesrgan:
        bench_realesrgan(args.repeats, bf16, args.full, args.threads)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
