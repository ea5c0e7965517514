"""PIL <-> QImage conversion and the candidate tile thumbnail. QImage (unlike QPixmap) is safe
to build in any thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["THUMB_SIDE", "pil_to_qimage", "qimage_to_pil", "tile_thumbnail"]

#: Side of the candidate thumbnails (the grid shows them as-is).
THUMB_SIDE: Final = 240


def pil_to_qimage(image: Image.Image) -> QImage:
    """A deep-copied RGB888 QImage of a PIL image (any mode)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    data = rgb.tobytes("raw", "RGB")
    qimg = QImage(data, rgb.width, rgb.height, rgb.width * 3, QImage.Format.Format_RGB888)
    return qimg.copy()  # own the pixels: `data` dies with this frame


def qimage_to_pil(qimage: QImage) -> Image.Image:
    """A PIL RGB image from a QImage (used for pasted clipboard images); alpha is dropped."""
    from PIL import Image

    rgb = qimage.convertToFormat(QImage.Format.Format_RGB888)
    data = bytes(rgb.constBits())[: rgb.sizeInBytes()]
    size = (rgb.width(), rgb.height())
    return Image.frombuffer("RGB", size, data, "raw", "RGB", rgb.bytesPerLine(), 1).copy()


def tile_thumbnail(image: Image.Image | QImage) -> QImage:
    """A candidate's tile image: fitted to ``THUMB_SIDE`` and smooth-scaled by Qt.

    The one thumbnail path, for a candidate fresh from the engine and for one restored from a
    session alike, so a tile looks the same either way."""
    from PIL import Image

    qimage = pil_to_qimage(image) if isinstance(image, Image.Image) else image
    return qimage.scaled(
        THUMB_SIDE,
        THUMB_SIDE,
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )
