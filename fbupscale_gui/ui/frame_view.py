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
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from fbupscale_gui.storage.video import Rect
from fbupscale_gui.ui.theme import ACCENT, ACCENT_TEXT
from fbupscale_gui.ui.viewport import ViewportWidget, draw_frame_image

__all__ = ["ZOOM_STEPS", "FrameView"]

#: Zoom levels the wheel steps through (fit is in between wherever it falls).
ZOOM_STEPS: Final = (0.125, 0.25, 1 / 3, 0.5, 2 / 3, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0)
_BACKGROUND: Final = QColor("#0c0d0e")
_SHADE: Final = QColor(0, 0, 0, 130)


class FrameView(ViewportWidget):
    """Emits ``rectChanged(rect | None)`` (x, y, w, h in source pixels) while it is drawn.

    Zoom is in logical pixels per source pixel (the steps mean the same size on every display).
    """

    rectChanged = Signal(object)
    device_zoom = False

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image = QImage()
        self._rect: Rect | None = None
        self._drag: str = ""  # "draw", "move", "pan"
        self._anchor = QPointF()  # source point (draw, move)
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
        resized = image.size() != self._image.size()
        if resized and self._rect is not None:
            self._rect = None
            self.rectChanged.emit(None)
        self._image = image
        self.viewport.frame = QSize(image.size())
        if resized:
            self.refit()
        self.update()

    def image(self) -> QImage:
        return self._image

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

    def zoom(self) -> float:
        """Logical pixels per source pixel (the fitted zoom while fitted)."""
        return self.viewport.zoom

    def to_source(self, point: QPointF | QPoint) -> QPointF:
        """Widget point -> source pixel coordinates (fractional)."""
        return self.viewport.to_frame(QPointF(point), QRectF(self.rect()))

    def to_widget(self, x: float, y: float) -> QPointF:
        return self.viewport.to_pane(QPointF(x, y), QRectF(self.rect()))

    def image_rect(self) -> QRectF:
        """Where the image is drawn, in widget coordinates."""
        return self.viewport.frame_rect(QRectF(self.rect()))

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
            self.refit()
        else:
            self.zoom_at(zoom, about)

    def _step_zoom(self, bigger: bool) -> float:
        """The next zoom step up or down from the current zoom."""
        current = self.zoom()
        if bigger:
            steps = [z for z in ZOOM_STEPS if z > current + 1e-6]
            return steps[0] if steps else ZOOM_STEPS[-1]
        steps = [z for z in ZOOM_STEPS if z < current - 1e-6]
        return steps[-1] if steps else ZOOM_STEPS[0]

    def sizeHint(self) -> QSize:
        return QSize(960, 540)

    # -- input ----------------------------------------------------------------------------

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self._image.isNull():
            return
        self._set_zoom(self._step_zoom(event.angleDelta().y() > 0), event.position())
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
            self._drag = "pan"
            self.begin_pan(pos)
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
            self.pan_to(pos)
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
        self.end_pan()
        self._drew = False
        self._rect_at_press = None
        self.setCursor(Qt.CursorShape.CrossCursor)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.set_rect(None)
            return
        if event.key() in (Qt.Key.Key_Plus, Qt.Key.Key_Equal, Qt.Key.Key_Minus):
            self._set_zoom(self._step_zoom(event.key() != Qt.Key.Key_Minus), self._rect_centre())
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
        pane = QRectF(self.rect())
        draw_frame_image(painter, self._image, self.viewport, pane, pane)
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
            + (" · fit" if self.fit_mode else "")
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
