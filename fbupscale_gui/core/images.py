"""Decoding cutouts and standardising them (paper 3.1), with Pillow only; no file I/O (reading
a cutout file is :mod:`fbupscale_gui.storage.cutouts`).

Decoding treats every file as hostile: :func:`decode_cutout` (which also returns notes for the
operator) takes at most :data:`MAX_CUTOUT_BYTES`, accepts only :data:`ACCEPTED_FORMATS`, checks the declared size against :data:`MIN_CUTOUT_SIDE` and
:data:`MAX_CUTOUT_SIDE` before decoding (decompression bombs never allocate; Pillow's own
``MAX_IMAGE_PIXELS`` limit stays on), and turns every decoder failure into one
:class:`InputImageError` naming the file. ``bench/hostile_images.py`` prints the table of cases.

Standardise: fit the cutout into a square with Lanczos, keeping the aspect ratio by padding
(never stretching); optionally pass through the paper's intermediate 256 px square first.
The :class:`Placement` remembers where the content sits so results can be cropped back.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageOps, UnidentifiedImageError

from fbupscale_gui.core.errors import InputImageError, error_line
from fbupscale_gui.core.request import PadMode, Preprocess

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_CUTOUT_BYTES",
    "MAX_CUTOUT_SIDE",
    "MIN_CUTOUT_SIDE",
    "NEUTRAL_GREY",
    "CutoutInfo",
    "Placement",
    "crop_to_content",
    "decode_cutout",
    "image_sha256",
    "standardise",
]

#: A cutout is a small crop of a broadcast frame. Anything larger (either side) is refused as
#: "not a cutout", checked on the declared size before any pixel is decoded.
MAX_CUTOUT_SIDE: Final = 2048
#: Below this (either side) there is nothing to reconstruct: a 1x1 or 5x7 px file is refused
#: with a clear message rather than turned into 1024 px of invention. Real cutouts are 60-100 px;
#: a distant ball is still about 8 px.
MIN_CUTOUT_SIDE: Final = 8
#: Files larger than this are refused unread (a 2048 px 16-bit RGBA TIFF is 32 MiB).
MAX_CUTOUT_BYTES: Final = 64 * 1024 * 1024
#: The Pillow formats a cutout may be in. Everything else Pillow could open (EPS, which runs
#: Ghostscript, PSD, ICO, dozens of rare formats) is refused: less attack surface. (Multi-picture
#: JPEGs from phones, "MPO", open through the JPEG plugin.)
ACCEPTED_FORMATS: Final = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "DIB", "TIFF")
#: Transparent pixels are composited on this colour (neither kit-like nor pitch-like).
NEUTRAL_GREY: Final = (128, 128, 128)

_PAD_FILL: dict[str, tuple[int, int, int]] = {"black": (0, 0, 0), "gray": (128, 128, 128)}
_FORMAT_NAMES: Final = "PNG, JPEG, WebP, GIF, BMP or TIFF"


def image_sha256(image: Image.Image) -> str:
    """Content hash of decoded pixels (mode, size and bytes), independent of the file format."""
    h = hashlib.sha256()
    h.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class CutoutInfo:
    """A decoded cutout and what the caller may want to tell the operator about it."""

    #: 8-bit RGB, rotation applied, transparency composited on :data:`NEUTRAL_GREY`.
    image: Image.Image
    #: Pillow's format name ("PNG", "JPEG", ...), or "" if unknown.
    format: str
    #: The file's own pixel mode before conversion ("I;16", "CMYK", "P", "RGBA", ...).
    original_mode: str
    #: One-line notes for the operator (animated file, rotation applied, alpha composited...).
    notes: tuple[str, ...] = ()


def decode_cutout(data: bytes, name: str = "<memory>") -> CutoutInfo:
    """Decode a cutout file's bytes and say what was done to it (``name`` names it in errors).

    Accepted: PNG, JPEG, WebP, GIF, BMP and TIFF in any Pillow mode (16-bit scaled to 8-bit,
    CMYK, grayscale, palette with or without transparency, alpha composited on
    :data:`NEUTRAL_GREY`), EXIF orientation applied, the first frame of an animation (with a
    note). Refused with one :class:`InputImageError` naming the file: an empty, truncated or
    non-image file, another format, over :data:`MAX_CUTOUT_BYTES`, a declared size over
    :data:`MAX_CUTOUT_SIDE` per side (before decoding, so decompression bombs never allocate)
    or under :data:`MIN_CUTOUT_SIDE`. Pillow's own ``MAX_IMAGE_PIXELS`` limit stays in force
    and is never changed here. Reading the file is :mod:`fbupscale_gui.storage.cutouts`' job.
    """
    if not data:
        raise InputImageError(name, "empty file (0 bytes)")
    if len(data) > MAX_CUTOUT_BYTES:
        raise InputImageError(
            name, f"{len(data)} bytes is too large for a cutout (limit {MAX_CUTOUT_BYTES} bytes)"
        )
    notes: list[str] = []
    try:
        with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as opened:
            fmt = opened.format or ""
            _check_declared_size(name, opened.size)  # before decoding a single pixel
            if getattr(opened, "is_animated", False):
                notes.append("animated or multi-frame image: only the first frame is used")
                opened.seek(0)
            opened.load()
            original_mode = opened.mode
            img = _exif_transposed(opened, notes)
            _check_declared_size(name, img.size)
            rgb = _to_rgb(img, notes)
    except InputImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # The warning is an exception only under ``-W error``; the size check refuses it anyway.
        raise InputImageError(
            name, f"refused as a possible decompression bomb: declared size too large ({exc})"
        ) from None
    except UnidentifiedImageError:
        raise InputImageError(
            name, f"not an image, or not in a supported format ({_FORMAT_NAMES})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputImageError(
            name, f"unreadable or truncated image ({error_line(exc, where=False, limit=161)})"
        ) from None
    except MemoryError:
        raise InputImageError(name, "not enough memory to decode this image") from None
    except Exception as exc:  # any other decoder failure on hostile bytes is still "unreadable"
        raise InputImageError(
            name,
            f"unreadable image ({type(exc).__name__}: {error_line(exc, where=False, limit=161)})",
        ) from None
    return CutoutInfo(image=rgb, format=fmt, original_mode=original_mode, notes=tuple(notes))


def _check_declared_size(name: str, size: tuple[int, int]) -> None:
    w, h = size
    if max(w, h) > MAX_CUTOUT_SIDE:
        raise InputImageError(
            name, f"{w}x{h} px is not a cutout (limit {MAX_CUTOUT_SIDE} px per side)"
        )
    if min(w, h) < MIN_CUTOUT_SIDE:
        raise InputImageError(
            name, f"{w}x{h} px is too small to reconstruct (minimum {MIN_CUTOUT_SIDE} px per side)"
        )


def _exif_transposed(img: Image.Image, notes: list[str]) -> Image.Image:
    """Apply the EXIF orientation; a damaged EXIF block is ignored with a note."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # malformed EXIF in an otherwise fine image
        notes.append("damaged EXIF data ignored (orientation not applied)")
        return img
    if orientation in (None, 1):
        return img
    try:
        turned = ImageOps.exif_transpose(img)
    except Exception:
        notes.append("damaged EXIF data ignored (orientation not applied)")
        return img
    if turned is None:  # pragma: no cover - only with in_place=True
        return img
    if isinstance(orientation, int) and 2 <= orientation <= 8:
        notes.append(f"EXIF orientation {orientation} applied")
    return turned


def _to_rgb(img: Image.Image, notes: list[str] | None = None) -> Image.Image:
    """8-bit RGB: high-bit-depth scaled (not clipped), CMYK converted, alpha on grey."""
    import numpy as np  # numpy is a Pillow-side dependency; keeps this module light to import

    notes = [] if notes is None else notes
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey (PNG, TIFF): 0..65535 to 0..255 with rounding. "I" is 32-bit signed
        # in Pillow, used for 16-bit data: clip to the 16-bit range first.
        wide = np.clip(np.asarray(img).astype(np.int64), 0, 65535)
        grey = Image.fromarray(((wide + 128) // 257).astype(np.uint8))
        if "transparency" in img.info:  # a tRNS grey level: not representable, ignore
            notes.append("16-bit transparency ignored")
        return grey.convert("RGB")
    if mode == "F":  # float TIFF: 0..1 data is scaled, anything else clipped to 0..255
        flt = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=255, neginf=0)
        if flt.size and float(flt.max()) <= 1.0:
            flt = flt * 255.0
        return Image.fromarray(np.clip(np.rint(flt), 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    if mode in ("1", "L", "P", "RGB") and "transparency" in img.info:
        img = img.convert("RGBA")  # palette or colour-key transparency becomes alpha
    elif mode == "P":
        img = img.convert("RGB")
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        rgba = img.convert("RGBA")
        alpha_min = rgba.getchannel("A").getextrema()[0]
        if isinstance(alpha_min, int | float) and alpha_min < 255:
            notes.append("transparent pixels composited on neutral grey")
        base = Image.new("RGBA", rgba.size, (*NEUTRAL_GREY, 255))
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
