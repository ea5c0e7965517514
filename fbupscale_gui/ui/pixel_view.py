"""The selected cutout, large, with nearest-neighbour zoom so the raw pixels stay visible."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPaintEvent, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

__all__ = ["PixelView"]

_MAX_ZOOM = 32


class PixelView(QWidget):
    """Integer zoom (fit by default; the wheel steps it), drawn without smoothing."""

    def __init__(
        self, parent: QWidget | None = None, placeholder: str = "Select a cutout to see its pixels"
    ) -> None:
        super().__init__(parent)
        self._image = QImage()
        self.placeholder = placeholder
        self._zoom: int | None = None  # None: fit
        self.setMinimumSize(160, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Cutout pixels, nearest-neighbour. Wheel: zoom; double-click: fit.")

    def set_image(self, image: QImage | None) -> None:
        self._image = image if image is not None else QImage()
        self._zoom = None
        self.update()

    def image(self) -> QImage:
        return self._image

    def fit_zoom(self) -> int:
        if self._image.isNull():
            return 1
        w, h = self._image.width(), self._image.height()
        avail_w, avail_h = max(1, self.width() - 8), max(1, self.height() - 28)
        return max(1, min(_MAX_ZOOM, avail_w // w, avail_h // h))

    def zoom(self) -> int:
        return self._zoom if self._zoom is not None else self.fit_zoom()

    def sizeHint(self) -> QSize:
        return QSize(280, 300)

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self._image.isNull():
            return
        step = 1 if event.angleDelta().y() > 0 else -1
        self._zoom = max(1, min(_MAX_ZOOM, self.zoom() + step))
        self.update()

    def mouseDoubleClickEvent(self, event: object) -> None:
        self._zoom = None
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#101113"))
        pal = self.palette()
        if self._image.isNull():
            painter.setPen(pal.placeholderText().color())
            painter.drawText(
                self.rect(),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                self.placeholder,
            )
            return
        z = self.zoom()
        w, h = self._image.width() * z, self._image.height() * z
        caption_h = 24
        x = (self.width() - w) // 2
        y = max(0, (self.height() - caption_h - h) // 2)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.drawImage(QRect(x, y, w, h), self._image)
        painter.setPen(pal.text().color())
        caption = self.caption()
        if painter.fontMetrics().horizontalAdvance(caption) > self.width() - 4:
            caption = caption.split(" · ", 1)[0]  # narrow: the size alone, never clipped
        painter.drawText(
            QRect(0, self.height() - caption_h, self.width(), caption_h),
            Qt.AlignmentFlag.AlignCenter,
            caption,
        )

    def caption(self) -> str:
        """``88×66 px · 2× nearest`` (shown under the pixels)."""
        return f"{self._image.width()}×{self._image.height()} px · {self.zoom()}× nearest"
