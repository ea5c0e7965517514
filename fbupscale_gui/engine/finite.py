"""The last check before a candidate's pixels become an image: every value is finite.

NaN and infinities (from a damaged LoRA, an fp16 overflow, a broken model file) turn into black
or arbitrary pixels when cast to 8 bits, and such a candidate would be saved and scored as if it
were a result. Every engine calls :func:`require_finite` on its float output, before the cast.
"""

from __future__ import annotations

from typing import Any

from fbupscale_gui.core.errors import RenderError

__all__ = ["require_finite"]


def require_finite(values: Any, what: str) -> None:
    """Raise :class:`RenderError` naming ``what`` if ``values`` (a numpy array or a torch
    tensor) holds NaN or an infinity."""
    import numpy as np

    if hasattr(values, "detach"):  # a torch tensor: no copy to the CPU for the check
        import torch

        finite = bool(torch.isfinite(values).all())
        count = 0 if finite else int((~torch.isfinite(values)).sum())
    else:
        mask = np.isfinite(values)
        finite = bool(mask.all())
        count = 0 if finite else int(mask.size - np.count_nonzero(mask))
    if not finite:
        raise RenderError(
            f"{what} produced {count} NaN or infinite value(s): the candidate is refused, "
            "nothing was saved (a damaged LoRA or model file, or a numeric overflow in this "
            "precision: try another LoRA, or fp32)"
        )
