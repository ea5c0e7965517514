"""A content-addressed store for cutouts that have no file of their own.

Pasted cutouts, and cutouts recovered from a candidate's embedded copy, are saved as
``<cache>/cutouts/<sha256>.png`` where the hash is :func:`~fbupscale_gui.core.images.image_sha256`
of the decoded pixels, so a :class:`SourceRef` can point at them like at any other file and the
same cutout is stored once. Pure Python (Pillow).

The cache folder follows platform conventions and ``FBUPSCALE_CACHE_DIR`` overrides it:
``$XDG_CACHE_HOME/fbupscale`` (default ``~/.cache/fbupscale``) on Linux,
``~/Library/Caches/fbupscale`` on macOS, ``%LOCALAPPDATA%\\fbupscale\\Cache`` on Windows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from PIL import Image

from fbupscale_gui.core.errors import InputImageError
from fbupscale_gui.core.images import image_sha256
from fbupscale_gui.core.request import SourceRef
from fbupscale_gui.storage.atomic import atomic_write
from fbupscale_gui.storage.cutouts import load_cutout
from fbupscale_gui.storage.weights import user_cache_dir

__all__ = ["CACHE_ENV", "cache_dir", "cutout_dir", "store_cutout"]

CACHE_ENV: Final = "FBUPSCALE_CACHE_DIR"


def cache_dir() -> Path:
    """The application's cache folder (not created here); shared with the model fingerprints."""
    return user_cache_dir()


def cutout_dir() -> Path:
    """Where stored cutouts live: ``<cache_dir>/cutouts``."""
    return cache_dir() / "cutouts"


def store_cutout(image: Image.Image, name: str = "") -> SourceRef:
    """Save ``image`` (as RGB) under its content hash, atomically, and return its SourceRef.

    An already stored identical cutout is reused (its pixels are checked). ``name`` is the
    display name kept in the SourceRef (e.g. the original file name). Raises
    :class:`InputImageError` naming the store file when it cannot be written.
    """
    rgb = image.convert("RGB")
    digest = image_sha256(rgb)
    folder = cutout_dir()
    target = folder / f"{digest}.png"
    ref = SourceRef(
        path=str(target),
        sha256=digest,
        width=rgb.width,
        height=rgb.height,
        name=name or target.name,
    )
    if target.is_file():
        try:
            if image_sha256(load_cutout(target)) == digest:
                return ref
        except InputImageError:
            pass  # damaged copy: write it again
    try:
        atomic_write(target, lambda fh: rgb.save(fh, format="PNG"))
    except OSError as exc:
        raise InputImageError(
            target, f"cannot store the cutout: {exc.strerror or exc} (set {CACHE_ENV} elsewhere)"
        ) from None
    return ref
