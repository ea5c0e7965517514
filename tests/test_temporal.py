"""Temporal steadying: less flicker on a static background, moving content untouched.

Per-frame SR jitter is simulated: each low-res frame is upscaled x4 with Lanczos and a fresh
random perturbation is added to the whole output (what a GAN upscaler's invented detail does
from frame to frame).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.temporal import (
    TemporalFilter,
    TemporalOptions,
    dilate_mask,
    estimate_shift,
    flicker,
    luma,
    moving_mask,
    upsample_mask,
)

SCALE = 4
LR_H, LR_W = 30, 40
BLOCK = 6


def texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A static, detailed background (RGB uint8), band-limited so Lanczos behaves."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 200, (h + 2, w + 2, 3)).astype(np.float32)
    smooth = sum(base[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)) / 9
    return np.clip(smooth, 0, 255).astype(np.uint8)


def block_at(t: int) -> tuple[int, int]:
    """Top-left (y, x) of the moving block (a player) in frame t: 3 px per frame to the right."""
    return 12, 2 + 3 * t


def scene(n: int = 12) -> list[np.ndarray]:
    bg = texture(LR_H, LR_W)
    frames = []
    for t in range(n):
        f = bg.copy()
        y, x = block_at(t)
        f[y : y + BLOCK, x : x + BLOCK] = (250, 240, 30)
        frames.append(f)
    return frames


def clean_sr(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    img = Image.fromarray(frame).resize((w * SCALE, h * SCALE), Image.Resampling.LANCZOS)
    return np.asarray(img)


def jittery_sr(frames: list[np.ndarray], sigma: float = 5.0, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for f in frames:
        sr = clean_sr(f).astype(np.float32) + rng.normal(
            0, sigma, (f.shape[0] * SCALE, f.shape[1] * SCALE, 3)
        )
        out.append(np.clip(np.rint(sr), 0, 255).astype(np.uint8))
    return out


def run(
    mode: str, lows: list[np.ndarray], highs: list[np.ndarray], **opts: object
) -> list[np.ndarray]:
    filt = TemporalFilter(mode, TemporalOptions(**opts))  # type: ignore[arg-type]
    return [filt.process(lo, hi) for lo, hi in zip(lows, highs, strict=True)]


CASES = [("median", {}), ("blend", {}), ("blend", {"motion": "none"})]


@pytest.mark.parametrize(("mode", "opts"), CASES)
def test_flicker_is_lower_than_plain_per_frame(mode: str, opts: dict[str, object]) -> None:
    lows = scene()
    highs = jittery_sr(lows)
    plain = flicker(highs, lows)
    steady = flicker(run(mode, lows, highs, **opts), lows)
    assert plain > 4.0  # sigma 5 jitter: about 5.6 levels frame to frame
    assert steady < 0.5 * plain, (plain, steady)


@pytest.mark.parametrize(("mode", "opts"), CASES)
def test_moving_block_is_not_smeared(mode: str, opts: dict[str, object]) -> None:
    lows = scene()
    highs = jittery_sr(lows)
    outs = run(mode, lows, highs, **opts)
    assert np.array_equal(outs[0], highs[0])  # no history yet: passed through
    for t in range(1, len(lows)):
        for y, x in (block_at(t), block_at(t - 1)):  # where the block is, and where it was
            box = np.s_[y * SCALE : (y + BLOCK) * SCALE, x * SCALE : (x + BLOCK) * SCALE]
            assert np.array_equal(outs[t][box], highs[t][box]), (t, y, x)
        # and exactly the pixels the low-res test calls moving are the upscaler's own
        moving = upsample_mask(moving_mask(lows[t - 1], lows[t]), (LR_W * SCALE, LR_H * SCALE))
        if opts.get("motion") == "none" or mode == "median":
            assert np.array_equal(outs[t][moving], highs[t][moving])


def test_static_background_converges_to_clean_output() -> None:
    lows = scene(16)
    highs = jittery_sr(lows)
    outs = run("median", lows, highs)
    corner = np.s_[: 10 * SCALE, : 40 * SCALE]  # the block never goes there
    err_plain = np.abs(highs[-1][corner].astype(int) - clean_sr(lows[-1])[corner]).mean()
    err_steady = np.abs(outs[-1][corner].astype(int) - clean_sr(lows[-1])[corner]).mean()
    assert err_steady < 0.7 * err_plain


def test_blend_follows_a_camera_pan() -> None:
    """A pan of 1 low-res px per frame: nothing is static, yet the blend steadies the detail."""
    wide = texture(LR_H, LR_W + 20, seed=3)
    lows = [np.ascontiguousarray(wide[:, t : t + LR_W]) for t in range(12)]
    highs = jittery_sr(lows, seed=4)
    filt = TemporalFilter("blend")
    outs = []
    for lo, hi in zip(lows, highs, strict=True):
        outs.append(filt.process(lo, hi))
        if len(outs) > 1:
            assert filt.last_shift == pytest.approx((0.0, -1.0))
    inner = np.s_[8:-8, 8 : -8 - 4 * SCALE]  # away from the edge that scrolls in
    err_plain = np.mean(
        [
            np.abs(h[inner].astype(int) - clean_sr(lo)[inner]).mean()
            for lo, h in zip(lows[4:], highs[4:], strict=True)
        ]
    )
    err_blend = np.mean(
        [
            np.abs(o[inner].astype(int) - clean_sr(lo)[inner]).mean()
            for lo, o in zip(lows[4:], outs[4:], strict=True)
        ]
    )
    assert err_blend < 0.6 * err_plain, (err_plain, err_blend)
    # without motion compensation nothing lines up, so nothing may be blended into a smear
    still = run("blend", lows, highs, motion="none")
    assert np.abs(still[-1][inner].astype(int) - clean_sr(lows[-1])[inner]).mean() < 1.2 * err_plain


def test_estimate_shift() -> None:
    img = luma(texture(48, 64, seed=5))
    assert estimate_shift(img, img) == pytest.approx((0.0, 0.0), abs=0.05)
    moved = np.roll(img, (2, -3), axis=(0, 1))
    assert estimate_shift(img, moved) == pytest.approx((2.0, -3.0), abs=0.15)
    half = (img + np.roll(img, 1, axis=1)) / 2  # half a pixel to the right
    assert estimate_shift(img, half)[1] == pytest.approx(0.5, abs=0.2)
    assert estimate_shift(img[:5, :5], img[:5, :5]) == (0.0, 0.0)
    flat = np.full((20, 20), 7.0, np.float32)
    assert estimate_shift(flat, flat) == (0.0, 0.0)


def test_masks() -> None:
    m = np.zeros((7, 9), bool)
    m[3, 4] = True
    assert dilate_mask(m, 1).sum() == 9
    assert dilate_mask(m, 2).sum() == 25
    assert dilate_mask(m, 0).sum() == 1
    up = upsample_mask(m, (36, 28))
    assert up.shape == (28, 36) and up.sum() == 16 and up[12:16, 16:20].all()
    a = np.zeros((5, 5), np.float32)
    b = a.copy()
    b[2, 2] = 90  # one changed pixel: 10 levels after the 3x3 box mean, around it
    assert moving_mask(a, b, threshold=6, dilate=0).sum() == 9
    assert moving_mask(a, b, threshold=12, dilate=0).sum() == 0
    noise = np.random.default_rng(2).normal(0, 4, (40, 40, 3)).astype(np.float32)
    assert moving_mask(noise, np.zeros_like(noise), threshold=6, dilate=0).mean() < 0.01
    rgb_a = np.zeros((5, 5, 3), np.float32)
    rgb_b = rgb_a.copy()
    rgb_b[1:4, 1:4, 2] = 30  # only blue changes: colour counts
    assert moving_mask(rgb_a, rgb_b, threshold=6, dilate=0)[2, 2]


def test_flicker_metric() -> None:
    lows = scene(4)
    highs = jittery_sr(lows)
    assert flicker([highs[0]] * 4, [lows[0]] * 4) == 0.0
    noisy = [np.random.default_rng(i).integers(0, 256, lows[0].shape, np.uint8) for i in range(3)]
    assert np.isnan(flicker(noisy, noisy))  # everything moves: no static area to measure
    with pytest.raises(ValueError):
        flicker(highs, lows[:2])


def test_none_mode_passes_through_and_settings_are_checked() -> None:
    lows = scene(3)
    highs = jittery_sr(lows)
    outs = run("none", lows, highs)
    assert all(np.array_equal(o, h) for o, h in zip(outs, highs, strict=True))
    with pytest.raises(RequestError, match="temporal"):
        TemporalFilter("sharpen")  # type: ignore[arg-type]
    for bad in ({"threshold": 0}, {"window": 1}, {"alpha": 0}, {"dilate": -1}, {"motion": "flow"}):
        with pytest.raises(RequestError, match="temporal"):
            TemporalOptions(**bad)


def test_size_change_and_reset_start_over() -> None:
    lows = scene(4)
    highs = jittery_sr(lows)
    for mode in ("median", "blend"):
        filt = TemporalFilter(mode)
        filt.process(lows[0], highs[0])
        small = np.ascontiguousarray(lows[1][:20, :20])
        small_hi = np.ascontiguousarray(highs[1][:80, :80])
        assert np.array_equal(filt.process(small, small_hi), small_hi)
        filt.reset()
        assert np.array_equal(filt.process(lows[2], highs[2]), highs[2])
        assert filt.static_fraction == 0.0
