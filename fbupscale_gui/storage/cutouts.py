"""Reading cutout files: the entry points that take a path (or a file's bytes) and give the
decoded cutout, and the :class:`SourceRef` a request records for one.

A cutout file is hostile input: it is read only if it is a regular file of at most
:data:`~fbupscale_gui.core.images.MAX_CUTOUT_BYTES`, then decoded by
:func:`~fbupscale_gui.core.images.decode_cutout` (formats, size limits, modes: see there).
Every failure is one :class:`InputImageError` naming the file. Pillow only.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from fbupscale_gui.core.errors import InputImageError
from fbupscale_gui.core.images import MAX_CUTOUT_BYTES, CutoutInfo, decode_cutout, image_sha256
from fbupscale_gui.core.request import SourceRef

__all__ = ["load_cutout", "load_cutout_with_notes", "load_source", "make_source"]


def load_cutout(source: str | Path | bytes) -> Image.Image:
    """Read a cutout as 8-bit RGB, honouring EXIF rotation and compositing alpha on grey.

    Raises :class:`InputImageError` naming the file for anything that is not a usable image.
    See :func:`~fbupscale_gui.core.images.decode_cutout` for what is accepted and refused.
    """
    return load_cutout_with_notes(source).image


def load_cutout_with_notes(source: str | Path | bytes) -> CutoutInfo:
    """Read a cutout (a path, or the file's bytes) and say what was done to it.

    Refused with one :class:`InputImageError` naming the file: a missing path, a folder or
    other non-regular file, a file over :data:`~fbupscale_gui.core.images.MAX_CUTOUT_BYTES`,
    and whatever :func:`~fbupscale_gui.core.images.decode_cutout` refuses.
    """
    if isinstance(source, bytes | bytearray):
        return decode_cutout(bytes(source))
    return decode_cutout(_read_file(source), str(source))


def _read_file(source: str | Path) -> bytes:
    name = str(source)
    try:
        path = Path(source)
        if not path.exists():
            raise InputImageError(name, "no such file")
        if path.is_dir():
            raise InputImageError(name, "is a folder, not an image")
        if not path.is_file():
            raise InputImageError(name, "not a regular file (device, pipe or socket)")
        size = path.stat().st_size
        if size > MAX_CUTOUT_BYTES:
            raise InputImageError(
                name, f"{size} bytes is too large for a cutout (limit {MAX_CUTOUT_BYTES} bytes)"
            )
        with path.open("rb") as fh:  # reads at most one byte past the limit
            return fh.read(MAX_CUTOUT_BYTES + 1)
    except InputImageError:
        raise
    except OSError as exc:
        raise InputImageError(name, f"cannot read the file ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. an embedded NUL byte in the path
        raise InputImageError(name, f"not a usable path ({exc})") from None


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
