"""Cutting a region, and one field of interlaced material, out of a frame: pure numpy/Pillow.

Interlaced material (1080i) carries two fields per frame; a moving object is in a different
place in each, so a cutout of a fast player shows combing. :func:`cut_region` can take a single
field: the top field is the frame's even lines (0, 2, 4...), the bottom field its odd lines.
The field has half the height, so the aspect is restored to the rectangle the operator drew,
by one of two methods (:data:`~fbupscale_gui.core.clip.FieldRestore`):

* ``"interpolate"`` (default): the field's own lines are kept exactly where they are and the
  missing lines are interpolated with the 4-tap kernel (-1, 9, 9, -1)/16 between the field lines
  above and below (classic "bob" deinterlacing). No half-line shift between the two fields, and
  no stair-steps for the upscaler to sharpen.
* ``"double"``: line doubling; every field line is repeated on the line below (top field) or
  above (bottom field). Nothing is invented, but diagonal edges get stair-steps.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from fbupscale_gui.core.clip import FIELDS, Field, FieldRestore, Rect
from fbupscale_gui.core.errors import RequestError

__all__ = ["check_rect", "clamp_rect", "cut_region", "extract_field"]


def clamp_rect(rect: Rect, size: tuple[int, int]) -> Rect | None:
    """``rect`` clipped to a frame of ``size`` (width, height); None if nothing is left."""
    x, y, w, h = rect
    left, top = max(0, x), max(0, y)
    right, bottom = min(size[0], x + w), min(size[1], y + h)
    if right <= left or bottom <= top:
        return None
    return (left, top, right - left, bottom - top)


def check_rect(rect: Rect, size: tuple[int, int]) -> None:
    x, y, w, h = rect
    if w < 1 or h < 1:
        raise RequestError(f"rect: width and height must be at least 1 px, got {w}x{h}")
    if x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
        raise RequestError(
            f"rect: {w}x{h} at ({x}, {y}) is not inside the {size[0]}x{size[1]} frame"
        )


def extract_field(frame: Image.Image, field: Field) -> Image.Image:
    """The field's lines only (half height): top = lines 0, 2, 4...; bottom = lines 1, 3, 5...

    Raises RequestError for an unknown field name.
    """
    if field not in FIELDS:
        raise RequestError(f"field: must be one of {', '.join(FIELDS)}, got {field!r}")
    arr = np.asarray(frame)
    return Image.fromarray(np.ascontiguousarray(arr[(0 if field == "top" else 1) :: 2]))


def cut_region(
    frame: Image.Image,
    rect: Rect,
    field: Field | None = None,
    *,
    restore: FieldRestore = "interpolate",
) -> Image.Image:
    """Cut ``rect`` (x, y, width, height in frame pixels) out of ``frame``, as an RGB image.

    With ``field`` the cutout is made from that field only (see the module docstring): lines of
    the other field never reach the result; field parity is that of the frame's lines, not of
    the rectangle's. Works in stored pixels: for an anamorphic source
    (:attr:`ClipInfo.sample_aspect_ratio` not 1) the cutout keeps that pixel shape. The result
    always has the rectangle's size; ``restore`` says how the missing
    lines are made ("interpolate" or "double"). Raises RequestError for a rectangle that is not
    inside the frame, an unknown field or an unknown restore method.
    """
    rgb = frame if frame.mode == "RGB" else frame.convert("RGB")
    check_rect(rect, rgb.size)
    x, y, w, h = rect
    if field is None:
        return rgb.crop((x, y, x + w, y + h))
    if field not in FIELDS:
        raise RequestError(f"field: must be one of {', '.join(FIELDS)}, got {field!r}")
    if restore not in ("interpolate", "double"):
        raise RequestError(f"restore: must be interpolate or double, got {restore!r}")
    arr = np.asarray(rgb)[:, x : x + w]
    height = arr.shape[0]
    parity = 0 if field == "top" else 1
    # the field's lines of the whole frame (so lines just outside the rect are used as context)
    field_rows = np.arange(parity, height, 2)
    if field_rows.size == 0:  # a 1-line frame has no bottom field
        raise RequestError(f"field: a {height}-line frame has no {field} field")
    rows = np.arange(y, y + h)
    own = (rows % 2) == parity
    out = np.empty((h, w, 3), dtype=np.uint8)
    out[own] = arr[rows[own]]
    missing = rows[~own]
    if missing.size:
        if restore == "double":
            # top field: line 2k fills 2k+1; bottom field: line 2k+1 fills 2k
            src = missing - 1 if parity == 0 else missing + 1
            src = np.clip(src, field_rows[0], field_rows[-1])
            src = np.where((src % 2) == parity, src, src - 1 if parity else src + 1)
            out[~own] = arr[np.clip(src, 0, height - 1)]
        else:
            # field line k sits on frame line 2k + parity; a missing line m lies halfway
            # between field lines (m - 1 - parity) / 2 and that + 1
            k = (missing - 1 - parity) // 2
            n = field_rows.size
            taps = [np.clip(k + d, 0, n - 1) for d in (-1, 0, 1, 2)]
            lines = [arr[field_rows[t]].astype(np.int32) for t in taps]
            acc = -lines[0] + 9 * lines[1] + 9 * lines[2] - lines[3]
            out[~own] = np.clip((acc + 8) >> 4, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")
