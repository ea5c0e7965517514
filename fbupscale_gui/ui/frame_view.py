"""A video frame with zoom, pan and a rectangle drawn in source pixels.

Fit shows the whole frame as large as the view allows. The wheel (and +/-) zooms about the
cursor through fixed steps; above 1× the pixels are drawn nearest-neighbour, so what the
operator frames is the raw pixels, and only a frame shrunk below 1× is smoothed. Right- or middle-drag pans; double-click fits.

Left-drag draws the cut rectangle, snapped to whole source pixels and kept inside the frame;
dragging inside the rectangle moves it. Delete clears it. The size in source pixels is drawn on
the rectangle.
"""

from __future__ import annotations

import math
from typing import Final

from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFontMetrics,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from fbupscale_gui.storage.video import Rect
from fbupscale_gui.ui.theme import ACCENT, ACCENT_TEXT

__all__ = ["ZOOM_STEPS", "FrameView"]

#: Zoom levels the wheel steps through (fit is in between wherever it falls).
ZOOM_STEPS: Final = (0.125, 0.25, 1 / 3, 0.5, 2 / 3, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)
_BACKGROUND: Final = QColor("#0c0d0e")
_SHADE: Final = QColor(0, 0, 0, 130)


class FrameView(QWidget):
    """Emits ``rectChanged(rect | None)`` (x, y, w, h in source pixels) while it is drawn."""

    rectChanged = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image = QImage()
        self._rect: Rect | None = None
        self._zoom: float | None = None  # None: fit
        self._centre = QPointF(0, 0)  # source point at the middle of the view when zoomed
        self._drag: str = ""  # "draw", "move", "pan"
        self._anchor = QPointF()  # source point (draw, move) or widget point (pan)
        self._rect_at_press: Rect | None = None
        self._drew = False
        self._placeholder = "Open a clip (Ctrl+Shift+O) or drop one here"
        self.setMinimumSize(320, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(False)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setToolTip(
            "Drag: draw the region to cut (inside it: move it) · Wheel: zoom · "
            "Right-drag: pan · Double-click: fit · Delete: clear the region"
        )
        self.setAccessibleName("Frame")

    # -- content --------------------------------------------------------------------------

    def set_image(self, image: QImage) -> None:
        """Show ``image``; zoom, pan and rectangle stay (a new size resets them)."""
        if image.size() != self._image.size():
            self._zoom = None
            if self._rect is not None:
                self._rect = None
                self.rectChanged.emit(None)
        self._image = image
        self.update()

    def image(self) -> QImage:
        return self._image

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def rect_px(self) -> Rect | None:
        """The rectangle in source pixels (x, y, width, height), or None."""
        return self._rect

    def set_rect(self, rect: Rect | None) -> None:
        """Set the rectangle (clipped to the frame; nothing left means none)."""
        clipped = self._clip(rect) if rect is not None else None
        if clipped != self._rect:
            self._rect = clipped
            self.rectChanged.emit(clipped)
        self.update()

    # -- geometry -------------------------------------------------------------------------

    def fit_zoom(self) -> float:
        if self._image.isNull():
            return 1.0
        return min(self.width() / self._image.width(), self.height() / self._image.height())

    def zoom(self) -> float:
        return self._zoom if self._zoom is not None else self.fit_zoom()

    def _origin(self) -> QPointF:
        """Widget position of the image's top-left corner."""
        z = self.zoom()
        if self._zoom is None:
            return QPointF(
                (self.width() - self._image.width() * z) / 2,
                (self.height() - self._image.height() * z) / 2,
            )
        return QPointF(
            self.width() / 2 - self._centre.x() * z, self.height() / 2 - self._centre.y() * z
        )

    def to_source(self, point: QPointF | QPoint) -> QPointF:
        """Widget point -> source pixel coordinates (fractional)."""
        o, z = self._origin(), self.zoom()
        return QPointF((point.x() - o.x()) / z, (point.y() - o.y()) / z)

    def to_widget(self, x: float, y: float) -> QPointF:
        o, z = self._origin(), self.zoom()
        return QPointF(o.x() + x * z, o.y() + y * z)

    def image_rect(self) -> QRectF:
        """Where the image is drawn, in widget coordinates."""
        o, z = self._origin(), self.zoom()
        return QRectF(o.x(), o.y(), self._image.width() * z, self._image.height() * z)

    def _clip(self, rect: Rect) -> Rect | None:
        x, y, w, h = rect
        left, top = max(0, x), max(0, y)
        right = min(self._image.width(), x + w)
        bottom = min(self._image.height(), y + h)
        if right <= left or bottom <= top:
            return None
        return (left, top, right - left, bottom - top)

    def set_zoom(self, zoom: float | None) -> None:
        """Zoom to ``zoom`` about the middle of the view (None: fit)."""
        self._set_zoom(zoom)

    def _set_zoom(self, zoom: float | None, about: QPointF | None = None) -> None:
        if self._image.isNull():
            return
        if zoom is None:
            self._zoom = None
            self.update()
            return
        fixed = about if about is not None else QPointF(self.width() / 2, self.height() / 2)
        src = self.to_source(fixed)
        self._zoom = zoom
        # keep the source point under ``fixed`` where it is
        self._centre = QPointF(
            src.x() - (fixed.x() - self.width() / 2) / zoom,
            src.y() - (fixed.y() - self.height() / 2) / zoom,
        )
        self._clamp_centre()
        self.update()

    def _clamp_centre(self) -> None:
        w, h = self._image.width(), self._image.height()
        self._centre = QPointF(
            min(max(self._centre.x(), 0.0), float(w)), min(max(self._centre.y(), 0.0), float(h))
        )

    def sizeHint(self) -> QSize:
        return QSize(960, 540)

    # -- input ----------------------------------------------------------------------------

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self._image.isNull():
            return
        current = self.zoom()
        if event.angleDelta().y() > 0:
            bigger = [z for z in ZOOM_STEPS if z > current + 1e-6]
            zoom = bigger[0] if bigger else ZOOM_STEPS[-1]
        else:
            smaller = [z for z in ZOOM_STEPS if z < current - 1e-6]
            zoom = smaller[-1] if smaller else ZOOM_STEPS[0]
        self._set_zoom(zoom, event.position())
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self._set_zoom(None)

    def _pixel(self, pos: QPointF) -> tuple[int, int]:
        """The source pixel under ``pos``, clamped into the frame."""
        src = self.to_source(pos)
        x = min(max(math.floor(src.x()), 0), self._image.width() - 1)
        y = min(max(math.floor(src.y()), 0), self._image.height() - 1)
        return x, y

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self._image.isNull():
            return
        pos = event.position()
        if event.button() in (Qt.MouseButton.RightButton, Qt.MouseButton.MiddleButton):
            if self._zoom is None:
                self._zoom = self.fit_zoom()
                self._centre = self.to_source(QPointF(self.width() / 2, self.height() / 2))
            self._drag = "pan"
            self._anchor = pos
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if event.button() != Qt.MouseButton.LeftButton:
            return
        src = self.to_source(pos)
        r = self._rect
        if r is not None and r[0] <= src.x() < r[0] + r[2] and r[1] <= src.y() < r[1] + r[3]:
            self._drag = "move"
            self._anchor = src
            self._rect_at_press = r
            self.setCursor(Qt.CursorShape.SizeAllCursor)
            return
        self._drag = "draw"
        self._drew = False
        x, y = self._pixel(pos)
        self._anchor = QPointF(x, y)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if self._drag == "pan":
            z = self.zoom()
            delta = pos - self._anchor
            self._anchor = pos
            self._centre = QPointF(
                self._centre.x() - delta.x() / z, self._centre.y() - delta.y() / z
            )
            self._clamp_centre()
            self.update()
        elif self._drag == "draw":
            self._drew = True
            self._draw_to(pos)
        elif self._drag == "move" and self._rect_at_press is not None:
            src = self.to_source(pos)
            x, y, w, h = self._rect_at_press
            dx = round(src.x() - self._anchor.x())
            dy = round(src.y() - self._anchor.y())
            x = min(max(x + dx, 0), self._image.width() - w)
            y = min(max(y + dy, 0), self._image.height() - h)
            self.set_rect((x, y, w, h))

    def _draw_to(self, pos: QPointF) -> None:
        x1, y1 = self._pixel(pos)
        x0, y0 = int(self._anchor.x()), int(self._anchor.y())
        left, right = min(x0, x1), max(x0, x1)
        top, bottom = min(y0, y1), max(y0, y1)
        self.set_rect((left, top, right - left + 1, bottom - top + 1))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._drag == "draw":
            if self._pixel(event.position()) != (int(self._anchor.x()), int(self._anchor.y())):
                self._draw_to(event.position())
            elif not self._drew:
                self.set_rect(None)  # a click outside the region clears it
        self._drag = ""
        self._drew = False
        self._rect_at_press = None
        self.setCursor(Qt.CursorShape.CrossCursor)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.set_rect(None)
            return
        if event.key() in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            bigger = [z for z in ZOOM_STEPS if z > self.zoom() + 1e-6]
            self._set_zoom(bigger[0] if bigger else ZOOM_STEPS[-1], self._rect_centre())
            return
        if event.key() == Qt.Key.Key_Minus:
            smaller = [z for z in ZOOM_STEPS if z < self.zoom() - 1e-6]
            self._set_zoom(smaller[-1] if smaller else ZOOM_STEPS[0], self._rect_centre())
            return
        if event.key() == Qt.Key.Key_0:
            self._set_zoom(None)
            return
        super().keyPressEvent(event)

    def _rect_centre(self) -> QPointF | None:
        """Zoom about the rectangle when there is one (widget coordinates)."""
        if self._rect is None:
            return None
        x, y, w, h = self._rect
        return self.to_widget(x + w / 2, y + h / 2)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.update()

    # -- painting -------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), _BACKGROUND)
        if self._image.isNull():
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._placeholder)
            return
        z = self.zoom()
        target = self.image_rect()
        # nearest-neighbour from 1x up (the raw pixels); smooth only when shrinking
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, z < 1)
        painter.drawImage(target, self._image)
        if self._rect is not None:
            self._paint_rect(painter, target)
        self._paint_zoom(painter, z)

    def _paint_rect(self, painter: QPainter, frame: QRectF) -> None:
        assert self._rect is not None
        x, y, w, h = self._rect
        # whole device pixels, so the shaded parts meet without a visible seam
        tl, br = self.to_widget(x, y), self.to_widget(x + w, y + h)
        box = QRectF(QPointF(round(tl.x()), round(tl.y())), QPointF(round(br.x()), round(br.y())))
        frame = QRectF(
            QPointF(round(frame.left()), round(frame.top())),
            QPointF(round(frame.right()), round(frame.bottom())),
        )
        # shade the frame outside the region
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(_SHADE)
        for part in (
            QRectF(frame.left(), frame.top(), frame.width(), box.top() - frame.top()),
            QRectF(frame.left(), box.bottom(), frame.width(), frame.bottom() - box.bottom()),
            QRectF(frame.left(), box.top(), box.left() - frame.left(), box.height()),
            QRectF(box.right(), box.top(), frame.right() - box.right(), box.height()),
        ):
            if part.width() > 0 and part.height() > 0:
                painter.drawRect(part)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        pen = QPen(QColor(ACCENT))
        pen.setWidth(2)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.drawRect(box.adjusted(-1, -1, 1, 1))
        # the size tag, above the box (below it when there is no room)
        text = f"{w}×{h} px"
        metrics = QFontMetrics(painter.font())
        tag_w, tag_h = metrics.horizontalAdvance(text) + 10, metrics.height() + 4
        tag_x = min(max(box.left() - 1, 0.0), max(0.0, self.width() - tag_w))
        tag_y = box.top() - tag_h - 2 if box.top() - tag_h - 2 >= 0 else box.bottom() + 2
        tag = QRect(round(tag_x), round(tag_y), tag_w, tag_h)
        painter.fillRect(tag, QColor(ACCENT))
        painter.setPen(QColor(ACCENT_TEXT))
        painter.drawText(tag, Qt.AlignmentFlag.AlignCenter, text)

    def _paint_zoom(self, painter: QPainter, z: float) -> None:
        text = (
            f"{z * 100:.0f}%"
            + (" · nearest" if z > 1 else "")
            + (" · fit" if self._zoom is None else "")
        )
        metrics = QFontMetrics(painter.font())
        box = QRect(
            self.width() - metrics.horizontalAdvance(text) - 14,
            4,
            metrics.horizontalAdvance(text) + 10,
            metrics.height() + 4,
        )
        painter.fillRect(box, QColor(0, 0, 0, 160))
        painter.setPen(QColor("#d0d0d0"))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
