"""Fidelity to the cutout: how far a candidate departs from what the camera recorded.

A reconstruction invents detail, but shrunk back to the cutout's size it must still look like the
cutout. **LR-consistency** measures exactly that, with no ground truth:

1. undo any padding (a candidate that is the padded square of
   :func:`fbupscale_gui.core.images.standardise` is cropped with its :class:`Placement`;
   engine candidates are usually already cropped to the content box);
2. downscale the candidate to the cutout's exact pixel size with Pillow's ``BOX`` filter (an
   area average, the way a camera pixel integrates light);
3. PSNR in dB on BT.601 luma (Y = 0.299 R + 0.587 G + 0.114 B) against the cutout, capped at
   :data:`PSNR_CAP_DB` so identical images give a finite number.

:func:`deviation_map` gives the same comparison per cutout pixel (absolute luma error, box
smoothed) and :func:`deviation_heatmap` turns it into an RGBA overlay at the candidate's size:
transparent where the candidate agrees, yellow to red with rising opacity where it does not
(a changed shirt number, an extra leg, a different logo).

:func:`psnr_y` and :func:`ssim_y` (Wang et al. 2004, Gaussian window sigma 1.5, K1 0.01, K2 0.03,
matching ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255)``) compare same-sized images, for benchmarks with
ground truth. numpy and Pillow only.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

from fbupscale_gui.core.images import Placement, crop_to_content

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "DEFAULT_HEATMAP_MAX",
    "LUMA_WEIGHTS",
    "PSNR_CAP_DB",
    "content_box",
    "deviation_heatmap",
    "deviation_map",
    "downscale_to_cutout",
    "lr_consistency",
    "luma",
    "psnr_y",
    "rank_candidates",
    "ssim_y",
]

#: BT.601 luma weights for R, G, B.
LUMA_WEIGHTS: Final = (0.299, 0.587, 0.114)
#: PSNR of identical images (and the ceiling of every score), in dB.
PSNR_CAP_DB: Final = 99.0
#: Luma error (0..255 levels) at which the heatmap is fully red and opaque.
DEFAULT_HEATMAP_MAX: Final = 32.0

_SSIM_SIGMA: Final = 1.5
_SSIM_TRUNCATE: Final = 3.5
_SSIM_K1: Final = 0.01
_SSIM_K2: Final = 0.03
_DATA_RANGE: Final = 255.0
#: Heatmap colours from small to large error (RGB): yellow, orange, red.
_RAMP: Final = ((255.0, 235.0, 59.0), (255.0, 152.0, 0.0), (229.0, 28.0, 35.0))


class _HasImage(Protocol):
    @property
    def image(self) -> Image.Image: ...


# -- basic measures -------------------------------------------------------------------------


def luma(image: Image.Image) -> np.ndarray:
    """BT.601 luma of an image as a float64 H x W array in 0..255 (RGB 8-bit scale)."""
    import numpy as np

    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    return typing.cast("np.ndarray", rgb @ np.asarray(LUMA_WEIGHTS, dtype=np.float64))


def _same_size(a: Image.Image, b: Image.Image) -> None:
    if a.size != b.size:
        raise ValueError(
            f"images differ in size: {a.width}x{a.height} px and {b.width}x{b.height} px"
        )


def _psnr(mse: float, cap: float) -> float:
    if mse <= 0.0:
        return cap
    return min(cap, 10.0 * math.log10(_DATA_RANGE * _DATA_RANGE / mse))


def psnr_y(a: Image.Image, b: Image.Image, *, cap: float = PSNR_CAP_DB) -> float:
    """PSNR in dB of the BT.601 luma of two same-sized images, at most ``cap``.

    Raises ValueError if the sizes differ.
    """
    import numpy as np

    _same_size(a, b)
    return _psnr(float(np.mean((luma(a) - luma(b)) ** 2)), cap)


def _gaussian_kernel(sigma: float, truncate: float) -> np.ndarray:
    import numpy as np

    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return typing.cast("np.ndarray", k / k.sum())


def _filter_separable(arr: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate a 2-D array with ``kernel`` along both axes, mirroring the edges (d c b a | a b c d)."""
    import numpy as np

    r = kernel.shape[0] // 2
    h, w = arr.shape
    padded = np.pad(arr, ((r, r), (0, 0)), mode="symmetric")
    rows = np.zeros((h, w), dtype=np.float64)
    for i, weight in enumerate(kernel):
        rows += weight * padded[i : i + h]
    padded = np.pad(rows, ((0, 0), (r, r)), mode="symmetric")
    out = np.zeros((h, w), dtype=np.float64)
    for i, weight in enumerate(kernel):
        out += weight * padded[:, i : i + w]
    return out


def ssim_y(a: Image.Image, b: Image.Image) -> float:
    """Mean SSIM of the BT.601 luma of two same-sized images (1.0 = identical).

    Gaussian window (sigma 1.5, truncated at 3.5 sigma), population covariances, a data range of
    255, and the mean taken away from the window radius at the borders, as scikit-image does.
    Raises ValueError if the sizes differ or an image is smaller than the 11 x 11 window.
    """
    import numpy as np

    _same_size(a, b)
    kernel = _gaussian_kernel(_SSIM_SIGMA, _SSIM_TRUNCATE)
    pad = kernel.shape[0] // 2
    if min(a.size) < kernel.shape[0]:
        raise ValueError(
            f"SSIM needs images of at least {kernel.shape[0]} px per side, got {a.width}x{a.height}"
        )
    x, y = luma(a), luma(b)
    ux, uy = _filter_separable(x, kernel), _filter_separable(y, kernel)
    vx = _filter_separable(x * x, kernel) - ux * ux
    vy = _filter_separable(y * y, kernel) - uy * uy
    vxy = _filter_separable(x * y, kernel) - ux * uy
    c1 = (_SSIM_K1 * _DATA_RANGE) ** 2
    c2 = (_SSIM_K2 * _DATA_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(np.mean(s[pad:-pad, pad:-pad]))


# -- candidate against cutout ---------------------------------------------------------------


def content_box(
    size: tuple[int, int], placement: Placement | None
) -> tuple[int, int, int, int] | None:
    """The box of a ``size`` candidate that holds the cutout's content, or None for all of it.

    A placement applies only to a square candidate (the padded square, at any size); a
    candidate that is not square is taken as already cropped. Same rounding as
    :func:`fbupscale_gui.core.images.crop_to_content`.
    """
    w, h = size
    if placement is None or w != h:
        return None
    if placement.box == (0, 0, placement.size, placement.size):
        return None
    sx, sy = w / placement.size, h / placement.size
    return (
        round(placement.left * sx),
        round(placement.top * sy),
        round((placement.left + placement.width) * sx),
        round((placement.top + placement.height) * sy),
    )


def _content(
    cutout: Image.Image, candidate: Image.Image, placement: Placement | None
) -> tuple[Image.Image, tuple[int, int, int, int] | None]:
    """The candidate's content box as RGB, checked against the cutout's aspect ratio."""
    box = content_box(candidate.size, placement)
    content = crop_to_content(candidate, placement) if box is not None and placement else candidate
    content = content.convert("RGB")
    w, h = cutout.size
    cw, ch = content.size
    # Allow the rounding of one cutout pixel (and 2 px) between the two aspect ratios.
    if abs(cw - ch * w / h) > max(2.0, ch / h) or abs(ch - cw * h / w) > max(2.0, cw / w):
        raise ValueError(
            f"the candidate ({cw}x{ch} px) does not have the cutout's aspect ratio "
            f"({w}x{h} px); for a padded square candidate pass its Placement"
        )
    return content, box


def downscale_to_cutout(
    cutout: Image.Image, candidate: Image.Image, placement: Placement | None = None
) -> Image.Image:
    """The candidate's content, area-averaged (Pillow ``BOX``) to the cutout's exact size.

    Raises ValueError if its aspect ratio does not match the cutout's (see :func:`content_box`).
    """
    from PIL import Image as PILImage

    content, _box = _content(cutout, candidate, placement)
    if content.size == cutout.size:
        return content
    return content.resize(cutout.size, PILImage.Resampling.BOX)


def lr_consistency(
    cutout: Image.Image,
    candidate: Image.Image,
    placement: Placement | None = None,
    *,
    cap: float = PSNR_CAP_DB,
) -> float:
    """LR-consistency in dB: luma PSNR of the BOX-downscaled candidate against the cutout.

    Higher is more faithful; at most ``cap``. Raises ValueError if the candidate's content does
    not have the cutout's aspect ratio.
    """
    return psnr_y(cutout.convert("RGB"), downscale_to_cutout(cutout, candidate, placement), cap=cap)


def _box_smooth(arr: np.ndarray, size: int) -> np.ndarray:
    import numpy as np

    if size <= 1:
        return arr
    r = size // 2
    h, w = arr.shape
    padded = np.pad(arr, r, mode="edge")
    out = np.zeros((h, w), dtype=np.float64)
    for dy in range(size):
        for dx in range(size):
            out += padded[dy : dy + h, dx : dx + w]
    return typing.cast("np.ndarray", out / (size * size))


def deviation_map(
    cutout: Image.Image,
    candidate: Image.Image,
    placement: Placement | None = None,
    *,
    smooth: int = 3,
) -> np.ndarray:
    """Per cutout pixel: absolute luma error (0..255 levels) of the BOX-downscaled candidate.

    A float32 array of the cutout's height x width, smoothed by a ``smooth`` x ``smooth`` box
    mean (1 = raw). Raises ValueError for an even or non-positive ``smooth`` and for a candidate
    of another aspect ratio.
    """
    import numpy as np

    if smooth < 1 or smooth % 2 == 0:
        raise ValueError(f"smooth must be an odd number >= 1, got {smooth}")
    small = downscale_to_cutout(cutout, candidate, placement)
    err = np.abs(luma(small) - luma(cutout))
    return typing.cast("np.ndarray", _box_smooth(err, smooth).astype(np.float32))


def deviation_heatmap(
    cutout: Image.Image,
    candidate: Image.Image,
    placement: Placement | None = None,
    *,
    max_error: float = DEFAULT_HEATMAP_MAX,
    floor: float = 0.0,
    smooth: int = 3,
) -> Image.Image:
    """An RGBA overlay of :func:`deviation_map` at the candidate's size.

    Colour runs yellow -> orange -> red and alpha rises linearly with the error from ``floor``
    (transparent; raise it to hide the cutout's own compression noise, a few levels) to
    ``max_error`` luma levels (red, opaque); padding outside the content box is transparent. The
    fixed scale keeps heatmaps of different candidates comparable. Raises ValueError unless
    ``0 <= floor < max_error``, or as :func:`deviation_map` does.
    """
    import numpy as np
    from PIL import Image as PILImage

    if not 0 <= floor < max_error:
        raise ValueError(f"need 0 <= floor < max_error, got floor {floor}, max_error {max_error}")
    err = deviation_map(cutout, candidate, placement, smooth=smooth)
    box = content_box(candidate.size, placement)
    left, top, right, bottom = box if box is not None else (0, 0, *candidate.size)
    size = (max(1, right - left), max(1, bottom - top))
    up = PILImage.fromarray(err, "F").resize(size, PILImage.Resampling.BILINEAR)
    level = np.clip((np.asarray(up, dtype=np.float64) - floor) / (max_error - floor), 0.0, 1.0)
    ramp = np.asarray(_RAMP, dtype=np.float64)
    pos = level * (len(ramp) - 1)
    lo = np.minimum(np.floor(pos).astype(np.intp), len(ramp) - 2)
    t = (pos - lo)[..., None]
    rgb = (1 - t) * ramp[lo] + t * ramp[lo + 1]
    rgba = np.dstack([rgb, level * 255.0])
    heat = PILImage.fromarray(np.clip(np.rint(rgba), 0, 255).astype(np.uint8), "RGBA")
    if heat.size == candidate.size:
        return heat
    canvas = PILImage.new("RGBA", candidate.size, (0, 0, 0, 0))
    canvas.paste(heat, (left, top))
    return canvas


def rank_candidates(
    cutout: Image.Image,
    candidates: Sequence[Image.Image | _HasImage],
    placement: Placement | None = None,
) -> list[tuple[int, float]]:
    """``(index, LR-consistency dB)`` for each candidate, best first (ties keep input order).

    Accepts images or objects with an ``image`` attribute (engine candidates). Raises ValueError
    as :func:`lr_consistency` does.
    """
    from PIL import Image as PILImage

    scores: list[tuple[int, float]] = []
    for i, c in enumerate(candidates):
        image = c if isinstance(c, PILImage.Image) else c.image
        scores.append((i, lr_consistency(cutout, image, placement)))
    return sorted(scores, key=lambda item: (-item[1], item[0]))
