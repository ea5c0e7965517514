"""Steadying per-frame super-resolution over time: less flicker, no smeared players.

A single-image upscaler invents fine detail (grass texture, crowd, shirt folds) independently on
every frame, so on a static background the detail changes from frame to frame: the picture
"boils" or flickers. Frame-recurrent networks (FRVSR: the previous output, warped by optical
flow, is an input of the next frame's network) learn to keep that detail consistent, but they
need training and a flow network. This module gets most of the benefit from the fast engines
as they are, with two cheap, documented filters applied to their outputs.

Where to steady is decided on the LOW-RES input, never on the upscaled output (whose own
flicker would look like motion): a pixel is *moving* when any of its R, G, B values changed by
more than ``threshold`` levels (0..255) between the previous input frame and this one, after a
3 x 3 box mean of the difference (compression noise averages out, a moving object of a few
pixels does not; colour counts, not only luma: a shirt can match the grass in luma, and a pan
shifts the phase of the subsampled chroma); the moving mask is
grown by ``dilate`` low-res pixels (the upscaler's receptive field spreads a change over a few
pixels, and a player's outline must stay whole) and upsampled to the output size (nearest).
Only *static* pixels are ever filtered; in moving pixels the output is the upscaler's output,
bit for bit, so a moving player is never smeared and leaves no ghost trail.

``"median"``: per pixel, the median of the upscaler's outputs over the frames since the pixel
last changed (at most ``window`` frames; 5 by default). The median rejects outliers (a sparkle
of invented detail on one frame) and adds no latency (it is causal). It assumes a locked-off
camera: while the camera pans nothing is static, and the output is the plain per-frame output.

``"blend"`` (FRVSR-style, without the network): the previous *steadied* output is warped by a
global camera translation and blended with the new output, ``out = (1 - alpha) * warped_prev +
alpha * new``, in static pixels (an exponential moving average along the motion, so detail
settles over about ``1/alpha`` frames). The translation is estimated on the low-res luma by
phase correlation (FFT, Hann window, sub-pixel peak) and rounded to whole OUTPUT pixels, so the
previous output is only shifted, never resampled: no blur accumulates. "Static" then means
"moved with the camera": the test is made against the previous input shifted by the same
amount, and pixels that scrolled in at the edge have no history and are taken as moving. The
shift is kept only if more low-res pixels follow it than stay still (the camera is what most of
the picture does; a large player close to the camera must not pass for a pan). A global
translation covers broadcast pans and tilts; zooms and players are caught by the mask and left
alone. ``motion="none"`` turns the compensation off (a plain static-region average).

Flicker is measured by :func:`flicker`: the mean absolute frame-to-frame change of the output
(levels, averaged over RGB) in the pixels the input says are static (zero-motion test, same
threshold and dilation), i.e. change that the input does not explain.

Pure numpy and Pillow; no torch.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

import numpy as np
from PIL import Image

from fbupscale_gui.core.errors import RequestError

__all__ = [
    "TEMPORAL_MODES",
    "MotionMode",
    "TemporalFilter",
    "TemporalMode",
    "TemporalOptions",
    "dilate_mask",
    "estimate_shift",
    "flicker",
    "luma",
    "moving_mask",
    "upsample_mask",
]

TemporalMode = Literal["none", "median", "blend"]
TEMPORAL_MODES: Final[tuple[TemporalMode, ...]] = get_args(TemporalMode)
MotionMode = Literal["global", "none"]

_LUMA: Final = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # BT.601 weights, for a test


@dataclass(frozen=True)
class TemporalOptions:
    """Settings of the temporal filters (see the module docstring).

    ``threshold``: change of any of R, G, B (levels 0..255) between consecutive low-res frames
    above which a pixel is moving. ``dilate``: low-res pixels the moving mask grows by. ``window``: frames of
    the median. ``alpha``: weight of the new frame in the blend. ``motion``: camera-motion
    compensation of the blend. ``max_shift``: largest believable camera shift between two
    frames, as a fraction of the frame's side (larger estimates count as no shift).
    Raises RequestError for values out of range.
    """

    threshold: float = 6.0
    dilate: int = 2
    window: int = 5
    alpha: float = 0.25
    motion: MotionMode = "global"
    max_shift: float = 0.25

    def __post_init__(self) -> None:
        if not (0.0 < self.threshold <= 255.0):
            raise RequestError(f"temporal.threshold: must be in (0, 255], got {self.threshold}")
        if not (0 <= self.dilate <= 32):
            raise RequestError(f"temporal.dilate: must be 0..32, got {self.dilate}")
        if not (2 <= self.window <= 15):
            raise RequestError(f"temporal.window: must be 2..15, got {self.window}")
        if not (0.0 < self.alpha <= 1.0):
            raise RequestError(f"temporal.alpha: must be in (0, 1], got {self.alpha}")
        if self.motion not in get_args(MotionMode):
            raise RequestError(f"temporal.motion: must be global or none, got {self.motion!r}")
        if not (0.0 <= self.max_shift <= 0.5):
            raise RequestError(f"temporal.max_shift: must be 0..0.5, got {self.max_shift}")


# -- building blocks -------------------------------------------------------------------------


def _rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {arr.shape}")
    return arr


def luma(image: Image.Image | np.ndarray) -> np.ndarray:
    """Luma (float32, levels 0..255) of an RGB image or H x W x 3 array."""
    arr = _rgb_array(image)
    return np.asarray(arr, dtype=np.float32) @ _LUMA


def dilate_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a boolean mask by ``radius`` pixels (a square structuring element)."""
    out = np.asarray(mask, dtype=bool)
    if radius <= 0:
        return out.copy()
    for axis in (0, 1):
        n = out.shape[axis]
        grown = out.copy()
        for d in range(1, min(radius, n - 1) + 1):
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(d, None), slice(None, n - d)
            grown[tuple(lo)] |= out[tuple(hi)]
            grown[tuple(hi)] |= out[tuple(lo)]
        out = grown
    return out


def moving_mask(
    previous: np.ndarray,
    current: np.ndarray,
    *,
    threshold: float = TemporalOptions.threshold,
    dilate: int = TemporalOptions.dilate,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Low-res pixels that changed by more than ``threshold`` levels, dilated by ``dilate``.

    The difference is box-averaged over 3 x 3 pixels first (compression noise cancels out).

    ``previous``/``current`` are H x W x 3 RGB (any channel counts) or H x W arrays (luma) of
    the same shape; pixels where ``valid`` is False (no history) count as moving. Raises
    ValueError for mismatched shapes.
    """
    if previous.shape != current.shape:
        raise ValueError(f"frames differ in size: {previous.shape} and {current.shape}")
    diff = np.abs(_box3(current.astype(np.float32) - previous.astype(np.float32)))
    changed = (diff.max(axis=2) if diff.ndim == 3 else diff) > threshold
    if valid is not None:
        changed |= ~valid
    return dilate_mask(changed, dilate)


def _box3(arr: np.ndarray) -> np.ndarray:
    """3 x 3 box mean over the first two axes (edges replicated)."""
    pad = [(1, 1), (1, 1)] + [(0, 0)] * (arr.ndim - 2)
    p = np.pad(arr, pad, mode="edge")
    rows = p[:-2] + p[1:-1] + p[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) * np.float32(1.0 / 9.0)


def upsample_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A low-res boolean mask at ``size`` (width, height), nearest neighbour."""
    h, w = mask.shape
    if (w, h) == size:
        return mask.copy()
    img = Image.fromarray(mask.astype(np.uint8) * 255, "L")
    return np.asarray(img.resize(size, Image.Resampling.NEAREST)) > 127


def _shift_int(arr: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """``out[y, x] = arr[y - dy, x - dx]``; also where that source pixel exists."""
    h, w = arr.shape[:2]
    out = np.zeros_like(arr)
    valid = np.zeros((h, w), dtype=bool)
    if abs(dy) >= h or abs(dx) >= w:
        return out, valid
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = arr[ys, xs]
    valid[yd, xd] = True
    return out, valid


def _shift_bilinear(arr: np.ndarray, dy: float, dx: float) -> tuple[np.ndarray, np.ndarray]:
    """An H x W (x C) float array shifted by a sub-pixel amount (bilinear); also where defined."""
    iy, ix = math.floor(dy), math.floor(dx)
    fy, fx = dy - iy, dx - ix
    out = np.zeros(arr.shape, dtype=np.float32)
    valid = np.ones(arr.shape[:2], dtype=bool)
    for oy, wy in ((iy, 1.0 - fy), (iy + 1, fy)):
        for ox, wx in ((ix, 1.0 - fx), (ix + 1, fx)):
            weight = wy * wx
            if weight <= 1e-6:
                continue
            part, ok = _shift_int(arr, oy, ox)
            out += np.float32(weight) * part
            valid &= ok
    return out, valid


def estimate_shift(
    previous: np.ndarray, current: np.ndarray, *, max_shift: float = TemporalOptions.max_shift
) -> tuple[float, float]:
    """Global translation (dy, dx) such that ``current[y, x] ~ previous[y - dy, x - dx]``.

    Phase correlation of the two luma arrays (Hann-windowed), with a parabolic sub-pixel peak.
    Returns (0.0, 0.0) for frames smaller than 8 px, a flat frame, or a shift larger than
    ``max_shift`` of the side (not believable between two frames). Raises ValueError for
    mismatched shapes.
    """
    if previous.shape != current.shape:
        raise ValueError(f"frames differ in size: {previous.shape} and {current.shape}")
    h, w = previous.shape
    if h < 8 or w < 8:
        return 0.0, 0.0
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    a = (previous - previous.mean()) * window
    b = (current - current.mean()) * window
    fa, fb = np.fft.rfft2(a), np.fft.rfft2(b)
    cross = fb * np.conj(fa)
    magnitude = np.abs(cross)
    if float(magnitude.max()) <= 1e-6:
        return 0.0, 0.0
    corr = np.fft.irfft2(cross / (magnitude + 1e-9), s=(h, w))
    py, px = np.unravel_index(int(np.argmax(corr)), corr.shape)

    def refine(c_minus: float, c0: float, c_plus: float) -> float:
        denom = c_minus - 2.0 * c0 + c_plus
        return (
            0.0
            if abs(denom) < 1e-12
            else float(np.clip(0.5 * (c_minus - c_plus) / denom, -0.5, 0.5))
        )

    dy = py + refine(corr[(py - 1) % h, px], corr[py, px], corr[(py + 1) % h, px])
    dx = px + refine(corr[py, (px - 1) % w], corr[py, px], corr[py, (px + 1) % w])
    dy = dy - h if dy > h / 2 else dy
    dx = dx - w if dx > w / 2 else dx
    if abs(dy) > max_shift * h or abs(dx) > max_shift * w:
        return 0.0, 0.0
    return float(dy), float(dx)


# -- the filter ------------------------------------------------------------------------------


class TemporalFilter:
    """Steadies a stream of upscaled frames; feed it frames in order with :meth:`process`.

    ``mode`` "none" passes outputs through. Call :meth:`reset` at a cut (a new shot, a jump in
    the clip). Raises RequestError for an unknown mode.
    """

    def __init__(self, mode: TemporalMode = "none", options: TemporalOptions | None = None) -> None:
        if mode not in TEMPORAL_MODES:
            raise RequestError(
                f"temporal: must be one of {', '.join(TEMPORAL_MODES)}, got {mode!r}"
            )
        self.mode: TemporalMode = mode
        self.options = options or TemporalOptions()
        #: Share of output pixels filtered on the last frame (0 on the first frame).
        self.static_fraction = 0.0
        #: The camera shift (dy, dx) in low-res pixels applied on the last frame ("blend").
        self.last_shift = (0.0, 0.0)
        self.reset()

    def reset(self) -> None:
        """Forget the history (the next frame passes through unchanged)."""
        self._prev_rgb: np.ndarray | None = None
        self._buffer: deque[np.ndarray] = deque(maxlen=self.options.window)
        self._age: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None
        self.static_fraction = 0.0
        self.last_shift = (0.0, 0.0)

    def process(
        self, lowres: Image.Image | np.ndarray, upscaled: Image.Image | np.ndarray
    ) -> np.ndarray:
        """The steadied output (H x W x 3 uint8) for this frame's input and upscaled output.

        Raises ValueError for arrays that are not H x W x 3 images.
        """
        out = _rgb_array(upscaled)
        if self.mode == "none":
            return np.array(out, dtype=np.uint8, copy=True)
        cur = _rgb_array(lowres).astype(np.float32)
        prev = self._prev_rgb
        history = prev is not None and prev.shape == cur.shape
        if self.mode == "median":
            history = history and bool(self._buffer) and self._buffer[-1].shape == out.shape
            result = self._median(prev if history else None, cur, out)
        else:
            history = history and self._prev_out is not None and self._prev_out.shape == out.shape
            result = self._blend(prev if history else None, cur, out)
        self._prev_rgb = cur
        return result

    def _median(self, prev: np.ndarray | None, cur: np.ndarray, out: np.ndarray) -> np.ndarray:
        opts = self.options
        if prev is None:
            self._buffer.clear()
            self._age = np.zeros(cur.shape[:2], dtype=np.uint8)
        else:
            moving = moving_mask(prev, cur, threshold=opts.threshold, dilate=opts.dilate)
            assert self._age is not None
            self._age = np.where(moving, 0, np.minimum(self._age + 1, opts.window - 1)).astype(
                np.uint8
            )
        frame = np.array(out, dtype=np.uint8, copy=True)
        self._buffer.append(frame)
        result = frame.copy()
        h, w = frame.shape[:2]
        if self._age is None or not self._age.any():
            self.static_fraction = 0.0
            return result
        age_img = Image.fromarray(self._age, "L").resize((w, h), Image.Resampling.NEAREST)
        count = np.minimum(np.asarray(age_img).astype(np.int32) + 1, len(self._buffer))
        history = list(self._buffer)
        full = count == len(history)
        if len(history) > 1 and full.any():
            # most static pixels have the whole window: one sort of whole frames, no gathering
            np.copyto(result, _median_frames(history), where=full[:, :, None])
        for k in range(2, len(history)):
            sel = count == k
            if sel.any():
                stack = np.stack([f[sel] for f in history[-k:]])
                result[sel] = _median_frames(list(stack))
        self.static_fraction = float((count > 1).mean())
        return result

    def _blend(self, prev: np.ndarray | None, cur: np.ndarray, out: np.ndarray) -> np.ndarray:
        opts = self.options
        new = out.astype(np.float32)
        if prev is None or self._prev_out is None:
            self._prev_out = new
            self.static_fraction = 0.0
            self.last_shift = (0.0, 0.0)
            return np.array(out, dtype=np.uint8, copy=True)
        h_in, w_in = cur.shape[:2]
        h_out, w_out = out.shape[:2]
        sy, sx = h_out / h_in, w_out / w_in
        oy = ox = 0
        ref, valid_lr = prev, None
        if opts.motion == "global":
            dy, dx = estimate_shift(prev @ _LUMA, cur @ _LUMA, max_shift=opts.max_shift)
            cy, cx = round(dy * sy), round(dx * sx)  # whole output pixels: shift, never resample
            if cy or cx:
                # The camera is what most of the picture follows: keep the shift only if it
                # explains more pixels than no shift (a big player must not pass for a pan).
                shifted, valid = _shift_bilinear(prev, cy / sy, cx / sx)
                still = np.abs(cur - prev).max(axis=2) <= opts.threshold
                follows = (np.abs(cur - shifted).max(axis=2) <= opts.threshold) & valid
                if int(follows.sum()) > int(still.sum()):
                    oy, ox, ref, valid_lr = cy, cx, shifted, valid
        self.last_shift = (oy / sy, ox / sx)
        if oy or ox:
            warped, valid_out = _shift_int(self._prev_out, oy, ox)
        else:
            warped, valid_out = self._prev_out, None
        moving = moving_mask(ref, cur, threshold=opts.threshold, dilate=opts.dilate, valid=valid_lr)
        moving_out = upsample_mask(moving, (w_out, h_out))
        if valid_out is not None:
            moving_out |= ~valid_out
        alpha = np.float32(opts.alpha)
        blended = warped * (np.float32(1.0) - alpha) + new * alpha
        result = np.where(moving_out[:, :, None], new, blended)
        self._prev_out = result
        self.static_fraction = float((~moving_out).mean())
        return np.clip(np.rint(result), 0, 255).astype(np.uint8)


def _median_frames(frames: list[np.ndarray]) -> np.ndarray:
    """Per-element median of equally shaped uint8 arrays (an even count averages the middle two).

    Odd-even transposition sort with element-wise min/max: exact, and far faster than
    ``np.median`` on whole frames.
    """
    a = list(frames)
    n = len(a)
    for p in range(n):
        for i in range(p % 2, n - 1, 2):
            a[i], a[i + 1] = np.minimum(a[i], a[i + 1]), np.maximum(a[i], a[i + 1])
    if n % 2:
        return a[n // 2]
    lo, hi = a[n // 2 - 1].astype(np.uint16), a[n // 2].astype(np.uint16)
    return ((lo + hi + 1) >> 1).astype(np.uint8)


# -- measuring -------------------------------------------------------------------------------


def flicker(
    outputs: Sequence[Image.Image | np.ndarray],
    inputs: Sequence[Image.Image | np.ndarray],
    *,
    threshold: float = TemporalOptions.threshold,
    dilate: int = TemporalOptions.dilate,
) -> float:
    """Mean absolute frame-to-frame change of ``outputs`` (levels, RGB-averaged) in static areas.

    Static areas are decided on ``inputs`` (the low-res RGB frames the outputs were made from)
    with the zero-motion test of :func:`moving_mask`. Returns NaN if no pixel is static anywhere.
    Raises ValueError if the sequences differ in length or a frame changes size.
    """
    if len(outputs) != len(inputs):
        raise ValueError(f"{len(outputs)} outputs for {len(inputs)} inputs")
    total = 0.0
    count = 0
    prev_out: np.ndarray | None = None
    prev_in: np.ndarray | None = None
    for out_img, in_img in zip(outputs, inputs, strict=True):
        out = _rgb_array(out_img).astype(np.int16)
        cur = _rgb_array(in_img)
        if prev_out is not None and prev_in is not None:
            if out.shape != prev_out.shape:
                raise ValueError(f"output frames differ in size: {prev_out.shape} and {out.shape}")
            moving = moving_mask(prev_in, cur, threshold=threshold, dilate=dilate)
            static = ~upsample_mask(moving, (out.shape[1], out.shape[0]))
            change = np.abs(out - prev_out).mean(axis=2)
            total += float(change[static].sum())
            count += int(static.sum())
        prev_out, prev_in = out, cur
    return total / count if count else float("nan")
