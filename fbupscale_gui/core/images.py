"""Loading cutouts and standardising them (paper 3.1), with Pillow only.

Standardise: fit the cutout into a square with Lanczos, keeping the aspect ratio by padding
(never stretching); optionally pass through the paper's intermediate 256 px square first.
The :class:`Placement` remembers where the content sits so results can be cropped back.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputImageError
from .request import PadMode, Preprocess, SourceRef

__all__ = [
    "MAX_CUTOUT_SIDE",
    "Placement",
    "crop_to_content",
    "image_sha256",
    "load_cutout",
    "load_source",
    "make_source",
    "standardise",
]

#: A cutout is a small crop of a broadcast frame. Anything larger is refused as "not a cutout".
MAX_CUTOUT_SIDE = 2048

_PAD_FILL: dict[str, tuple[int, int, int]] = {"black": (0, 0, 0), "gray": (128, 128, 128)}


def image_sha256(image: Image.Image) -> str:
    """Content hash of decoded pixels (mode, size and bytes), independent of the file format."""
    h = hashlib.sha256()
    h.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def load_cutout(source: str | Path | bytes) -> Image.Image:
    """Read a cutout as 8-bit RGB, honouring EXIF rotation and compositing alpha on grey.

    Raises :class:`InputImageError` naming the file for anything that is not a usable image.
    """
    name = "<memory>" if isinstance(source, bytes) else str(source)
    try:
        if isinstance(source, bytes):
            if not source:
                raise InputImageError(name, "empty data")
            opened: Image.Image = Image.open(io.BytesIO(source))
        else:
            path = Path(source)
            if not path.exists():
                raise InputImageError(name, "no such file")
            if path.is_dir():
                raise InputImageError(name, "is a folder, not an image")
            if path.stat().st_size == 0:
                raise InputImageError(name, "empty file (0 bytes)")
            opened = Image.open(path)
        opened.seek(0)
        opened.load()
        img = ImageOps.exif_transpose(opened) or opened
    except InputImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputImageError(name, f"refused: declared size is too large ({exc})") from None
    except UnidentifiedImageError:
        raise InputImageError(name, "not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(name, f"unreadable or truncated image ({exc})") from None
    if max(img.size) > MAX_CUTOUT_SIDE:
        raise InputImageError(
            name,
            f"{img.width}x{img.height} px is not a cutout (limit {MAX_CUTOUT_SIDE} px per side)",
        )
    return _to_rgb(img)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 257).convert("L")  # 16-bit grey to 8-bit
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return img.convert("RGB")


@dataclass(frozen=True)
class Placement:
    """Where the cutout's content sits inside the standardised ``size`` x ``size`` square."""

    size: int
    left: int
    top: int
    width: int
    height: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.left, self.top, self.left + self.width, self.top + self.height)


def _fit(w: int, h: int, size: int) -> tuple[int, int]:
    if w >= h:
        return size, max(1, round(h * size / w))
    return max(1, round(w * size / h)), size


def _pad_square(content: Image.Image, size: int, pad: PadMode) -> tuple[Image.Image, Placement]:
    w, h = content.size
    left, top = (size - w) // 2, (size - h) // 2
    placement = Placement(size=size, left=left, top=top, width=w, height=h)
    if (w, h) == (size, size):
        return content, placement
    if pad in _PAD_FILL:
        canvas = Image.new("RGB", (size, size), _PAD_FILL[pad])
        canvas.paste(content, (left, top))
        return canvas, placement
    import numpy as np  # numpy is a Pillow-side dependency; keeps this module light to import

    arr = np.asarray(content)
    widths = ((top, size - h - top), (left, size - w - left), (0, 0))
    if pad == "reflect" and all(
        a < dim and b < dim for (a, b), dim in zip(widths[:2], (h, w), strict=True)
    ):
        out = np.pad(arr, widths, mode="reflect")
    else:  # edge replication always works, even for extreme aspect ratios
        out = np.pad(arr, widths, mode="edge")
    return Image.fromarray(out), placement


def standardise(image: Image.Image, pre: Preprocess) -> tuple[Image.Image, Placement]:
    """Lanczos to a padded ``pre.size`` square (via ``pre.intermediate`` if set)."""
    img = image.convert("RGB")
    placement: Placement | None = None
    for size in ([pre.intermediate] if pre.intermediate else []) + [pre.size]:
        if placement is not None:
            # Upscale the whole intermediate square; the content box scales with it.
            scale = size / placement.size
            img = img.resize((size, size), Image.Resampling.LANCZOS)
            placement = Placement(
                size=size,
                left=round(placement.left * scale),
                top=round(placement.top * scale),
                width=round(placement.width * scale),
                height=round(placement.height * scale),
            )
            continue
        fw, fh = _fit(img.width, img.height, size)
        resized = img if (fw, fh) == img.size else img.resize((fw, fh), Image.Resampling.LANCZOS)
        img, placement = _pad_square(resized, size, pre.pad)
    assert placement is not None
    return img, placement


def crop_to_content(image: Image.Image, placement: Placement) -> Image.Image:
    """Crop a square result back to the content box, scaling the box if the result differs in size."""
    if image.size == (placement.size, placement.size):
        return (
            image
            if placement.box == (0, 0, placement.size, placement.size)
            else image.crop(placement.box)
        )
    sx, sy = image.width / placement.size, image.height / placement.size
    box = (
        round(placement.left * sx),
        round(placement.top * sy),
        round((placement.left + placement.width) * sx),
        round((placement.top + placement.height) * sy),
    )
    return image.crop(box)


def load_source(source: SourceRef) -> Image.Image:
    """Read the cutout a request names, refusing it if its pixels changed since the request."""
    image = load_cutout(source.path)
    digest = image_sha256(image)
    if digest != source.sha256:
        raise InputImageError(
            source.path,
            f"pixels changed since the request was made (sha256 {digest[:12]}…, "
            f"request says {source.sha256[:12]}…)",
        )
    return image


def make_source(path: str | Path, image: Image.Image | None = None) -> SourceRef:
    """A :class:`SourceRef` for a cutout file (reads it unless the decoded image is given)."""
    img = load_cutout(path) if image is None else image
    p = Path(path)
    return SourceRef(
        path=str(p.resolve()),
        sha256=image_sha256(img),
        width=img.width,
        height=img.height,
        name=p.name,
    )
