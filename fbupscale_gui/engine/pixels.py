"""Pixel conversions the super-resolution engines share: 8-bit RGB to floats and back.

Networks take RGB as float32 in 0..1 and give floats back; :func:`to_rgb8` refuses NaN and
infinities (:func:`.finite.require_finite`) before rounding to the nearest level (ties to even)
and clipping, so a numeric failure is an error, never black pixels. The ncnn wheel models round
ties up instead, as their reference programs do (:mod:`fbupscale_gui.engine.fast.ncnn_sr`).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from fbupscale_gui.engine.finite import require_finite

__all__ = ["to_rgb8", "unit_floats"]

_LEVELS: Final = np.float32(255.0)


def unit_floats(rgb8: Any) -> np.ndarray:
    """An 8-bit array (or an RGB PIL image's pixels) as float32 in 0..1, same layout."""
    return np.asarray(rgb8, dtype=np.float32) * np.float32(1.0 / 255.0)


def to_rgb8(values: Any, what: str) -> np.ndarray:
    """Float32 values in 0..1 (numpy, or a CPU torch tensor) as uint8 levels, same layout.

    Raises :class:`RenderError` naming ``what`` when a value is NaN or infinite.
    """
    require_finite(values, what)
    levels = np.rint(np.asarray(values, dtype=np.float32) * _LEVELS)
    return np.clip(levels, 0.0, 255.0).astype(np.uint8)
