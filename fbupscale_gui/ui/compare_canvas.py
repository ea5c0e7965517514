"""The compare view's painted area: the pair of images, the split line, labels and overlays.

It paints and handles the mouse and keys; :class:`~fbupscale_gui.ui.compare_view.CompareView`
reads and writes its state and owns the toolbar.
"""

from __future__ import annotations

import math
from typing import Final, Literal

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from fbupscale_gui.ui.viewport import ViewportWidget, draw_frame_image

__all__ = ["DEFAULT_OVERLAY_PERCENT", "CompareCanvas", "CompareMode"]

CompareMode = Literal["split", "side"]

#: One wheel notch zooms by this factor.
WHEEL_FACTOR: Final = 1.25
#: Gap between the two panes in side-by-side mode, logical pixels.
SIDE_GAP: Final = 6
#: How close (logical pixels) the cursor must be to the split line to show the resize cursor.
SPLIT_GRAB: Final = 8
#: Default heatmap opacity (slider percent).
DEFAULT_OVERLAY_PERCENT: Final = 60


class CompareCanvas(ViewportWidget):
    """Paints the pair and handles the mouse; state is read and written by CompareView."""

    splitChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 120)
        self.setAutoFillBackground(False)
        self.left = QImage()
        self.right = QImage()
        self.left_label = ""
        self.right_label = ""
        self.overlay: QImage | None = None
        #: The number check's readings on the right image: (corners in its pixels, text, ok).
        self.number_boxes: list[tuple[tuple[tuple[float, float], ...], str, bool]] = []
        self.overlay_opacity = DEFAULT_OVERLAY_PERCENT / 100.0
        self.split = 0.5
        self.mode: CompareMode = "split"
        self._drag: Literal["", "split", "pan"] = ""

    # -- geometry -----------------------------------------------------------------------

    def panes(self) -> tuple[QRectF, QRectF]:
        """The (left, right) pane rectangles; in split mode both are the whole canvas."""
        full = QRectF(self.rect())
        if self.mode == "split":
            return full, full
        w = max((full.width() - SIDE_GAP) / 2.0, 1.0)
        left = QRectF(0.0, 0.0, w, full.height())
        right = QRectF(full.width() - w, 0.0, w, full.height())
        return left, right

    def pane_at(self, pos: QPointF) -> QRectF:
        left, right = self.panes()
        return right if self.mode == "side" and pos.x() >= right.left() else left

    def split_x(self) -> float:
        return self.split * self.width()

    def set_split(self, fraction: float) -> None:
        f = min(max(float(fraction), 0.0), 1.0) if math.isfinite(fraction) else 0.5
        if f != self.split:
            self.split = f
            self.splitChanged.emit(f)
            self.update()

    # -- events -------------------------------------------------------------------------

    def wheelEvent(self, event: QWheelEvent) -> None:
        if not self.has_frame():
            event.ignore()
            return
        notches = event.angleDelta().y() / 120.0
        if notches == 0.0:
            notches = event.pixelDelta().y() / 60.0
        if notches == 0.0:
            event.ignore()
            return
        old = self.viewport.zoom
        new = old * WHEEL_FACTOR**notches
        # stop once at exactly 1:1 on the way through it, so "actual pixels" is easy to hit
        if (old < 1.0 < new) or (old > 1.0 > new):
            new = 1.0
        self.zoom_at(new, event.position())
        event.accept()

    def _wants_pan(self, event: QMouseEvent) -> bool:
        if event.button() == Qt.MouseButton.MiddleButton:
            return True
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        if self.mode == "side":
            return True
        mods = event.modifiers()
        return bool(
            mods
            & (
                Qt.KeyboardModifier.ControlModifier
                | Qt.KeyboardModifier.ShiftModifier
                | Qt.KeyboardModifier.AltModifier
            )
        )

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if not self.has_frame():
            return
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        if self._wants_pan(event):
            self._drag = "pan"
            self.begin_pan(event.position())
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif event.button() == Qt.MouseButton.LeftButton and self.mode == "split":
            self._drag = "split"
            self.set_split(event.position().x() / max(self.width(), 1))
            self.setCursor(Qt.CursorShape.SplitHCursor)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if self._drag == "pan":
            self.pan_to(pos)
        elif self._drag == "split":
            self.set_split(pos.x() / max(self.width(), 1))
        elif (
            self.has_frame()
            and self.mode == "split"
            and abs(pos.x() - self.split_x()) <= SPLIT_GRAB
        ):
            self.setCursor(Qt.CursorShape.SplitHCursor)
        else:
            self.unsetCursor()
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._drag = ""
        self.end_pan()
        self.unsetCursor()
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if not self.has_frame():
            super().keyPressEvent(event)
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom_at(self.viewport.zoom * WHEEL_FACTOR, None)
        elif key == Qt.Key.Key_Minus:
            self.zoom_at(self.viewport.zoom / WHEEL_FACTOR, None)
        elif key == Qt.Key.Key_Left and self.mode == "split":
            self.set_split(self.split - 0.05)
        elif key == Qt.Key.Key_Right and self.mode == "split":
            self.set_split(self.split + 0.05)
        else:
            super().keyPressEvent(event)

    # -- painting -----------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        self.sync_dpr()
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#0e0f10"))
        if not self.has_frame():
            p.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            p.drawText(
                self.rect(),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                "Click a candidate to compare it with the cutout",
            )
            p.end()
            return
        left_pane, right_pane = self.panes()
        if self.mode == "split":
            sx = self.split_x()
            full = QRectF(self.rect())
            left_clip = QRectF(0.0, 0.0, sx, full.height())
            right_clip = QRectF(sx, 0.0, full.width() - sx, full.height())
            draw_frame_image(p, self.left, self.viewport, left_pane, left_clip)
            draw_frame_image(p, self.right, self.viewport, right_pane, right_clip)
            self._draw_overlay(p, right_pane, right_clip)
            self._draw_frame_border(p, left_pane, full)
            self._draw_split_line(p, sx)
            self._draw_label(p, self.left_label, left_clip, Qt.AlignmentFlag.AlignLeft)
            self._draw_label(p, self.right_label, right_clip, Qt.AlignmentFlag.AlignRight)
        else:
            draw_frame_image(p, self.left, self.viewport, left_pane, left_pane)
            draw_frame_image(p, self.right, self.viewport, right_pane, right_pane)
            self._draw_overlay(p, right_pane, right_pane)
            self._draw_frame_border(p, left_pane, left_pane)
            self._draw_frame_border(p, right_pane, right_pane)
            self._draw_label(p, self.left_label, left_pane, Qt.AlignmentFlag.AlignLeft)
            self._draw_label(p, self.right_label, right_pane, Qt.AlignmentFlag.AlignLeft)
        if self.overlay is not None and self.overlay_opacity > 0:
            self._draw_legend(p)
        p.end()

    def _draw_legend(self, p: QPainter) -> None:
        """Bottom-left: the heatmap's scale, so the colours read without the tooltip."""
        from PySide6.QtGui import QLinearGradient

        p.save()
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 7.0))
        p.setFont(font)
        fm = p.fontMetrics()
        left_text, right_text = "agrees", "32+ levels off"
        bar_w, bar_h, pad, margin = 90.0, 8.0, 6.0, 8.0
        w = fm.horizontalAdvance(left_text) + bar_w + fm.horizontalAdvance(right_text) + 4 * pad
        h = max(float(fm.height()), bar_h) + 2 * pad
        box = QRectF(margin, self.height() - margin - h, w, h)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 190))
        p.drawRoundedRect(box, 4.0, 4.0)
        p.setPen(QColor("#ffffff"))
        x = box.left() + pad
        text_rect = QRectF(x, box.top(), fm.horizontalAdvance(left_text), box.height())
        p.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter, left_text)
        x = text_rect.right() + pad
        bar = QRectF(x, box.center().y() - bar_h / 2, bar_w, bar_h)
        grad = QLinearGradient(bar.topLeft(), bar.topRight())
        grad.setColorAt(0.0, QColor(255, 235, 59, 0))
        grad.setColorAt(0.5, QColor(255, 152, 0, 140))
        grad.setColorAt(1.0, QColor(229, 28, 35, 255))
        p.setPen(QPen(QColor(255, 255, 255, 90), 1.0))
        p.setBrush(grad)
        p.drawRect(bar)
        p.setPen(QColor("#ffffff"))
        right_rect = QRectF(bar.right() + pad, box.top(), box.right() - bar.right(), box.height())
        p.drawText(right_rect, Qt.AlignmentFlag.AlignVCenter, right_text)
        p.restore()

    def _draw_overlay(self, p: QPainter, pane: QRectF, clip: QRectF) -> None:
        if self.overlay is not None and not self.overlay.isNull() and self.overlay_opacity > 0:
            draw_frame_image(p, self.overlay, self.viewport, pane, clip, self.overlay_opacity)
        if self.number_boxes and not self.right.isNull():
            self._draw_number_boxes(p, pane, clip)

    def _draw_number_boxes(self, p: QPainter, pane: QRectF, clip: QRectF) -> None:
        """Outline what the number check read: green where the scene agrees, red where not."""
        from PySide6.QtCore import QPointF
        from PySide6.QtGui import QPolygonF

        frame = self.viewport.frame_rect(pane)
        kx = frame.width() / max(self.right.width(), 1)
        ky = frame.height() / max(self.right.height(), 1)
        p.save()
        p.setClipRect(clip)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for corners, text, ok in self.number_boxes:
            colour = QColor("#8fd694" if ok else "#ff5c4d")
            poly = QPolygonF(
                [QPointF(frame.left() + x * kx, frame.top() + y * ky) for x, y in corners]
            )
            p.setPen(QPen(colour, 2.0))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawPolygon(poly)
            top = poly.boundingRect()
            p.drawText(QPointF(top.left(), max(top.top() - 4, clip.top() + 12)), text)
        p.restore()

    def _draw_frame_border(self, p: QPainter, pane: QRectF, clip: QRectF) -> None:
        p.save()
        p.setClipRect(clip)
        p.setPen(QPen(QColor(255, 255, 255, 40), 1.0))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(self.viewport.frame_rect(pane).adjusted(-0.5, -0.5, 0.5, 0.5))
        p.restore()

    def _draw_split_line(self, p: QPainter, x: float) -> None:
        h = float(self.height())
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(QPen(QColor(0, 0, 0, 160), 4.0))
        p.drawLine(QPointF(x, 0.0), QPointF(x, h))
        p.setPen(QPen(QColor("#ffffff"), 2.0))
        p.drawLine(QPointF(x, 0.0), QPointF(x, h))
        # a round grip in the middle with two arrow heads, so it reads as "drag sideways"
        r = 14.0
        cy = h / 2.0
        p.setPen(QPen(QColor(0, 0, 0, 180), 1.5))
        p.setBrush(QColor("#ffffff"))
        p.drawEllipse(QPointF(x, cy), r, r)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor("#202226"))
        for sign in (-1.0, 1.0):
            arrow = QPainterPath()
            tip = x + sign * 9.0
            arrow.moveTo(tip, cy)
            arrow.lineTo(tip - sign * 6.0, cy - 5.0)
            arrow.lineTo(tip - sign * 6.0, cy + 5.0)
            arrow.closeSubpath()
            p.drawPath(arrow)
        p.restore()

    def _draw_label(self, p: QPainter, text: str, area: QRectF, align: Qt.AlignmentFlag) -> None:
        if not text or area.width() < 24:
            return
        p.save()
        font = QFont(self.font())
        font.setBold(True)
        p.setFont(font)
        fm = p.fontMetrics()
        pad_x, pad_y, margin = 8.0, 4.0, 8.0
        max_w = max(area.width() - 2 * margin - 2 * pad_x, 10.0)
        shown = fm.elidedText(text, Qt.TextElideMode.ElideRight, int(max_w))
        w = fm.horizontalAdvance(shown) + 2 * pad_x
        h = fm.height() + 2 * pad_y
        if align == Qt.AlignmentFlag.AlignRight:
            box = QRectF(area.right() - margin - w, area.top() + margin, w, h)
        else:
            box = QRectF(area.left() + margin, area.top() + margin, w, h)
        p.setClipRect(area)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(0, 0, 0, 190))
        p.drawRoundedRect(box, 4.0, 4.0)
        p.setPen(QColor("#ffffff"))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, shown)
        p.restore()
