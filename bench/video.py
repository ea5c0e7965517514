"""Video batch throughput and flicker, with and without the temporal filters.

Makes synthetic 480x270 H.264 clips (25 fps, AAC audio): a detailed static background with
two "players" moving across it ("static" camera), and the same with the camera panning
1 px per frame ("pan"). Then:

1. Throughput of ``upscale_range`` with Lanczos x4 (480x270 -> 1920x1080, libx264 veryfast,
   audio copied), end to end in frames per second, for each temporal mode; plus the parts on
   their own: decoding, Lanczos, each temporal filter.
2. Flicker. A Lanczos x4 upscaler with a fresh random perturbation on every frame (sigma 5
   levels, what a GAN upscaler's invented detail does) stands in for per-frame SR. Each output
   clip is decoded again and measured: flicker = mean absolute frame-to-frame change in static
   areas (:func:`fbupscale_gui.core.temporal.flicker`), and "error" = mean absolute difference
   to the clean (unperturbed) Lanczos output, which also counts in moving areas and under a pan.

Prints figures, never asserts.

    .venv/bin/python bench/video.py [--frames 25] [--width 480] [--height 270] [--keep]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PIL import Image


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    """Pitch-like detail: a green base whose brightness varies pixel to pixel (luma detail,
    little chroma detail, as on grass and crowds), with mowing stripes."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1, 1, (h + 2, w + 2)).astype(np.float32)
    detail = sum(base[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9
    stripes = np.where((np.arange(w) // 40) % 2 == 0, 1.0, 0.85)[None, :]
    green = np.array([70, 140, 55], np.float32)
    img = green * (stripes * (1 + 1.2 * detail))[:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def make_clip(path: Path, frames: int, w: int, h: int, *, pan: bool) -> Path:
    import av

    wide = _texture(h, w + frames + 8, seed=7)
    out = av.open(str(path), "w", format="mp4")
    vs = out.add_stream("libx264", rate=25)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.codec_context.options = {"crf": "16", "preset": "veryfast"}
    ast = out.add_stream("aac", rate=48000)
    ast.layout = "stereo"
    for t in range(frames):
        x0 = t if pan else 0
        img = np.ascontiguousarray(wide[:, x0 : x0 + w]).copy()
        for k, (y, speed) in enumerate(((h // 3, 5), (2 * h // 3, -4))):
            x = (w // 4 + speed * t) % (w - 24)
            img[y : y + 30, x : x + 12] = (240, 240, 40) if k == 0 else (30, 60, 230)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = t
        for p in vs.encode(frame):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    samples = int(48000 * frames / 25)
    t = 0
    while t < samples:
        k = min(1024, samples - t)
        wave = (np.sin(2 * np.pi * 440 * np.arange(t, t + k) / 48000) * 0.2).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
        af.sample_rate, af.pts = 48000, t
        for p in ast.encode(af):
            out.mux(p)
        t += k
    for p in ast.encode():
        out.mux(p)
    out.close()
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    from fbupscale_gui.storage.video import ClipReader

    with ClipReader(path) as reader:
        return [np.asarray(img) for _, img in reader.frames(0)]


def mc_flicker(outs: list[np.ndarray], lows: list[np.ndarray], dx: int) -> float:
    """Flicker along a known horizontal camera motion of ``dx`` low-res px per frame."""
    from fbupscale_gui.core.temporal import moving_mask, upsample_mask

    scale = outs[0].shape[1] // lows[0].shape[1]
    s = abs(dx)
    total = count = 0.0
    for t in range(1, len(outs)):
        if dx < 0:  # content moved left: cur[x] == prev[x + s]
            cur_lo, prev_lo = lows[t][:, : lows[t].shape[1] - s], lows[t - 1][:, s:]
            cur, prev = outs[t][:, : outs[t].shape[1] - s * scale], outs[t - 1][:, s * scale :]
        else:
            cur_lo, prev_lo, cur, prev = lows[t], lows[t - 1], outs[t], outs[t - 1]
        still = ~upsample_mask(moving_mask(prev_lo, cur_lo), (cur.shape[1], cur.shape[0]))
        change = np.abs(cur.astype(np.int16) - prev).mean(axis=2)
        total += float(change[still].sum())
        count += float(still.sum())
    return total / count if count else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=270)
    parser.add_argument("--sigma", type=float, default=5.0, help="per-frame SR jitter (levels)")
    parser.add_argument("--keep", action="store_true", help="keep the clips it writes")
    args = parser.parse_args()

    from fbupscale_gui.core.temporal import TEMPORAL_MODES, TemporalFilter, flicker, moving_mask
    from fbupscale_gui.storage.video import lanczos_upscaler, upscale_range

    tmp = Path(tempfile.mkdtemp(prefix="fb-video-bench-"))
    n, w, h = args.frames, args.width, args.height
    clips = {
        "static": make_clip(tmp / "static.mp4", n, w, h, pan=False),
        "pan": make_clip(tmp / "pan.mp4", n, w, h, pan=True),
    }
    lanczos = lanczos_upscaler(4)
    print(
        f"clips: {w}x{h} H.264 25 fps + AAC, {n} frames; output {4 * w}x{4 * h}, libx264 veryfast"
    )

    # -- throughput -----------------------------------------------------------------------
    print("\nthroughput (static clip)")
    t0 = time.perf_counter()
    lows = decode_all(clips["static"])
    t_decode = time.perf_counter() - t0
    print(f"  decode only          {len(lows) / t_decode:7.1f} fps")
    t0 = time.perf_counter()
    highs = [np.asarray(lanczos(Image.fromarray(lo))) for lo in lows]
    t_up = time.perf_counter() - t0
    print(f"  Lanczos x4 only      {len(lows) / t_up:7.1f} fps")
    for mode in TEMPORAL_MODES:
        if mode == "none":
            continue
        filt = TemporalFilter(mode)
        t0 = time.perf_counter()
        for lo, hi in zip(lows, highs, strict=True):
            filt.process(lo, hi)
        print(f"  temporal {mode:<6} only {len(lows) / (time.perf_counter() - t0):7.1f} fps")
    for mode in TEMPORAL_MODES:
        result = upscale_range(
            clips["static"], 0, None, lanczos, tmp / f"tp_{mode}.mp4", temporal=mode
        )
        print(
            f"  upscale_range Lanczos x4, temporal {mode:<6}: {result.frames / result.seconds:6.2f} "
            f"fps ({result.frames} frames in {result.seconds:.2f} s; audio {', '.join(result.audio)})"
        )

    # -- flicker --------------------------------------------------------------------------
    print(
        f"\nflicker and error with a jittery per-frame upscaler (Lanczos x4 + N(0, {args.sigma}))"
    )
    print("  flicker: zero-motion, static areas; mc-flicker: along the known camera motion")
    print(
        f"  {'clip':<7} {'temporal':<8} {'flicker':>8} {'mc-flicker':>10} {'error':>7} {'static %':>8}"
    )
    for name, clip in clips.items():
        pan = -1 if name == "pan" else 0  # low-res px per frame (the picture moves left)
        lows = decode_all(clip)
        clean = [np.asarray(lanczos(Image.fromarray(lo))).astype(np.int16) for lo in lows]
        static = np.mean([1 - moving_mask(a, b).mean() for a, b in itertools.pairwise(lows)])
        for mode in TEMPORAL_MODES:
            rng = np.random.default_rng(11)

            def jittery(image: Image.Image, rng: Any = rng) -> Image.Image:
                up = np.asarray(lanczos(image)).astype(np.float32)
                up += rng.normal(0, args.sigma, up.shape).astype(np.float32)
                return Image.fromarray(np.clip(np.rint(up), 0, 255).astype(np.uint8))

            out = tmp / f"fl_{name}_{mode}.mp4"
            upscale_range(clip, 0, None, jittery, out, temporal=mode, crf=12)
            outs = decode_all(out)
            fl = flicker(outs, lows)
            mc = mc_flicker(outs, lows, pan)
            err = float(
                np.mean(
                    [
                        np.abs(o.astype(np.int16) - c).mean()
                        for o, c in zip(outs, clean, strict=True)
                    ]
                )
            )
            fl_text = f"{fl:8.2f}" if static >= 0.01 else f"{'n/a':>8}"  # nothing static
            print(f"  {name:<7} {mode:<8} {fl_text} {mc:10.2f} {err:7.2f} {100 * static:7.1f}%")
    if args.keep:
        print(f"\n(files in {tmp})")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
