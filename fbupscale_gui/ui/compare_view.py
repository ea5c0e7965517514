"""Compare two images: a before/after split line, or side by side, with one shared zoom and pan.

Both images are shown in the same *frame*: the right image's size (the candidate). A left
image of another size is stretched onto that frame, so callers should pass the cutout already
Lanczos-upscaled to the candidate's size; the view itself never resamples smoothly above 1:1.

Zoom is measured in *device* pixels per frame pixel, so ``zoom() == 1.0`` is exactly one image
pixel per physical screen pixel whatever the display scaling ("1:1"). At zoom 1 and above the
images are drawn nearest-neighbour so single pixels stay visible; below 1 they are smoothed.

Mouse, in split mode: left-drag moves the split line (a click jumps it there); Ctrl/Shift +
left-drag or middle-drag pans; the wheel zooms around the cursor. In side-by-side mode a plain
left-drag pans. Keyboard: +/- zoom, Left/Right move the split.

Heatmap: an RGBA overlay (the deviation heatmap of :mod:`fbupscale_gui.eval.fidelity`) is drawn
over the right image when the **Heatmap** toggle (key H) is on, at the opacity of the slider
next to it, with a small legend. The view only shows it: whoever owns the candidates listens
to ``heatmapToggled`` and hands the overlay in with :meth:`CompareView.set_overlay`.

The view state (zoom, pan, split, mode) is purely visual, so it lives here; the geometry is in
:class:`Viewport`, a plain object tests can check without painting.
"""

from __future__ import annotations

import math
from typing import Final, Literal

from PySide6.QtCore import QPointF, QRectF, QSize, QSizeF, Qt, Signal
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
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

__all__ = ["MAX_ZOOM", "MIN_ZOOM", "CompareMode", "CompareView", "Viewport"]

CompareMode = Literal["split", "side"]

#: Zoom limits, in device pixels per frame pixel.
MIN_ZOOM: Final = 0.02
MAX_ZOOM: Final = 64.0
#: One wheel notch zooms by this factor.
WHEEL_FACTOR: Final = 1.25
#: Gap between the two panes in side-by-side mode, logical pixels.
SIDE_GAP: Final = 6
#: How close (logical pixels) the cursor must be to the split line to show the resize cursor.
SPLIT_GRAB: Final = 8

_SPLIT_HINT: Final = "Drag: move split · Ctrl+drag or middle-drag: pan · Wheel: zoom"
_SIDE_HINT: Final = "Drag: pan · Wheel: zoom"
#: Default heatmap opacity (slider percent).
DEFAULT_OVERLAY_PERCENT: Final = 60
HEATMAP_TIP: Final = (
    "Deviation heatmap (H): where the candidate, shrunk back to the cutout's size, disagrees "
    "with the cutout. Clear = agrees (within 4 luma levels); yellow → red = up to 32 levels "
    "off. Look there for changed numbers, extra limbs, different logos."
)


class Viewport:
    """Zoom and pan of a frame inside a pane: the mapping between frame and pane coordinates.

    ``zoom`` is device pixels per frame pixel; ``center`` is the frame point shown at the
    pane's centre; ``dpr`` is the device pixel ratio (device pixels per logical pixel).
    """

    def __init__(self) -> None:
        self.frame = QSize()
        self.zoom = 1.0
        self.center = QPointF()
        self.dpr = 1.0

    @property
    def scale(self) -> float:
        """Logical pixels per frame pixel."""
        return self.zoom / self.dpr

    def origin(self, pane: QRectF) -> QPointF:
        """Where the frame's top-left corner lands in the pane, snapped to a device pixel."""
        s = self.scale
        x = pane.center().x() - self.center.x() * s
        y = pane.center().y() - self.center.y() * s
        return QPointF(round(x * self.dpr) / self.dpr, round(y * self.dpr) / self.dpr)

    def frame_rect(self, pane: QRectF) -> QRectF:
        """The whole frame's rectangle in pane (widget) coordinates."""
        s = self.scale
        return QRectF(self.origin(pane), QSizeF(self.frame.width() * s, self.frame.height() * s))

    def to_frame(self, pos: QPointF, pane: QRectF) -> QPointF:
        o = self.origin(pane)
        s = self.scale
        return QPointF((pos.x() - o.x()) / s, (pos.y() - o.y()) / s)

    def to_pane(self, pt: QPointF, pane: QRectF) -> QPointF:
        o = self.origin(pane)
        s = self.scale
        return QPointF(o.x() + pt.x() * s, o.y() + pt.y() * s)

    def fit_zoom(self, pane: QRectF) -> float:
        """The zoom that shows the whole frame in the pane (a small frame is enlarged to fill it)."""
        if self.frame.isEmpty() or pane.isEmpty():
            return 1.0
        sx = pane.width() * self.dpr / self.frame.width()
        sy = pane.height() * self.dpr / self.frame.height()
        return clamp_zoom(min(sx, sy))

    def set_zoom_at(self, zoom: float, anchor: QPointF, pane: QRectF) -> None:
        """Change the zoom keeping the frame point under ``anchor`` (pane coords) in place."""
        # use the unsnapped origin so repeated zooming does not drift by rounding
        s_old = self.scale
        under = QPointF(
            self.center.x() + (anchor.x() - pane.center().x()) / s_old,
            self.center.y() + (anchor.y() - pane.center().y()) / s_old,
        )
        self.zoom = clamp_zoom(zoom)
        s_new = self.scale
        self.center = QPointF(
            under.x() - (anchor.x() - pane.center().x()) / s_new,
            under.y() - (anchor.y() - pane.center().y()) / s_new,
        )
        self.clamp_center()

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the image by (dx, dy) logical pixels."""
        s = self.scale
        self.center = QPointF(self.center.x() - dx / s, self.center.y() - dy / s)
        self.clamp_center()

    def clamp_center(self) -> None:
        """Keep the pane centre over the frame, so the image can never be panned out of view."""
        w, h = float(self.frame.width()), float(self.frame.height())
        self.center = QPointF(min(max(self.center.x(), 0.0), w), min(max(self.center.y(), 0.0), h))


def clamp_zoom(zoom: float) -> float:
    if not math.isfinite(zoom):
        return 1.0
    return min(max(zoom, MIN_ZOOM), MAX_ZOOM)


def format_zoom(zoom: float) -> str:
    """ "100 % (1:1)", "400 %", "37 %" for the toolbar."""
    pct = zoom * 100.0
    text = f"{pct:.0f} %" if pct >= 10 else f"{pct:.1f} %"
    if abs(zoom - 1.0) < 1e-9:
        text += " (1:1)"
    return text


class _ElidedLabel(QLabel):
    """A one-line label that shortens its text with an ellipsis instead of being cut off."""

    def minimumSizeHint(self) -> QSize:
        return QSize(0, super().minimumSizeHint().height())

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setPen(self.palette().color(self.foregroundRole()))
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, rect.width())
        p.drawText(rect, int(self.alignment()), text)
        p.end()


class _Canvas(QWidget):
    """Paints the pair and handles the mouse; state is read and written by CompareView."""

    zoomChanged = Signal(float)
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
        self.viewport = Viewport()
        self.split = 0.5
        self.mode: CompareMode = "split"
        self.fit_mode = True
        self._drag: Literal["", "split", "pan"] = ""
        self._last = QPointF()

    # -- geometry -----------------------------------------------------------------------

    def has_pair(self) -> bool:
        return not self.viewport.frame.isEmpty()

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

    def sync_dpr(self) -> None:
        self.viewport.dpr = float(self.devicePixelRatioF()) or 1.0

    def refit(self) -> None:
        self.sync_dpr()
        vp = self.viewport
        vp.zoom = vp.fit_zoom(self.panes()[0])
        vp.center = QPointF(vp.frame.width() / 2.0, vp.frame.height() / 2.0)
        self.fit_mode = True
        self.zoomChanged.emit(vp.zoom)
        self.update()

    def zoom_at(self, zoom: float, anchor: QPointF | None) -> None:
        self.sync_dpr()
        pane = self.pane_at(anchor) if anchor is not None else self.panes()[0]
        at = anchor if anchor is not None else pane.center()
        self.viewport.set_zoom_at(zoom, at, pane)
        self.fit_mode = False
        self.zoomChanged.emit(self.viewport.zoom)
        self.update()

    def set_split(self, fraction: float) -> None:
        f = min(max(float(fraction), 0.0), 1.0) if math.isfinite(fraction) else 0.5
        if f != self.split:
            self.split = f
            self.splitChanged.emit(f)
            self.update()

    # -- events -------------------------------------------------------------------------

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.fit_mode and self.has_pair():
            self.refit()

    def wheelEvent(self, event: QWheelEvent) -> None:
        if not self.has_pair():
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
        if not self.has_pair():
            return
        self.setFocus(Qt.FocusReason.MouseFocusReason)
        if self._wants_pan(event):
            self._drag = "pan"
            self._last = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif event.button() == Qt.MouseButton.LeftButton and self.mode == "split":
            self._drag = "split"
            self.set_split(event.position().x() / max(self.width(), 1))
            self.setCursor(Qt.CursorShape.SplitHCursor)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if self._drag == "pan":
            self.viewport.pan_by(pos.x() - self._last.x(), pos.y() - self._last.y())
            self._last = pos
            self.fit_mode = False
            self.update()
        elif self._drag == "split":
            self.set_split(pos.x() / max(self.width(), 1))
        elif (
            self.has_pair() and self.mode == "split" and abs(pos.x() - self.split_x()) <= SPLIT_GRAB
        ):
            self.setCursor(Qt.CursorShape.SplitHCursor)
        else:
            self.unsetCursor()
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._drag = ""
        self.unsetCursor()
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if not self.has_pair():
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
        if not self.has_pair():
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
            self._draw_image(p, self.left, left_pane, left_clip)
            self._draw_image(p, self.right, right_pane, right_clip)
            self._draw_overlay(p, right_pane, right_clip)
            self._draw_frame_border(p, left_pane, full)
            self._draw_split_line(p, sx)
            self._draw_label(p, self.left_label, left_clip, Qt.AlignmentFlag.AlignLeft)
            self._draw_label(p, self.right_label, right_clip, Qt.AlignmentFlag.AlignRight)
        else:
            self._draw_image(p, self.left, left_pane, left_pane)
            self._draw_image(p, self.right, right_pane, right_pane)
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

    def _draw_image(
        self, p: QPainter, image: QImage, pane: QRectF, clip: QRectF, opacity: float = 1.0
    ) -> None:
        if image.isNull() or clip.isEmpty():
            return
        vp = self.viewport
        frame = vp.frame_rect(pane)
        visible = frame.intersected(clip)
        if visible.isEmpty():
            return
        # map the visible part back to source pixels, widened to whole pixels, so only that
        # part is resampled (cheap at high zoom) and pixel edges stay where they belong
        kx = image.width() / frame.width()
        ky = image.height() / frame.height()
        sx0 = max(math.floor((visible.left() - frame.left()) * kx), 0)
        sy0 = max(math.floor((visible.top() - frame.top()) * ky), 0)
        sx1 = min(math.ceil((visible.right() - frame.left()) * kx), image.width())
        sy1 = min(math.ceil((visible.bottom() - frame.top()) * ky), image.height())
        if sx1 <= sx0 or sy1 <= sy0:
            return
        source = QRectF(sx0, sy0, sx1 - sx0, sy1 - sy0)
        target = QRectF(
            frame.left() + sx0 / kx,
            frame.top() + sy0 / ky,
            (sx1 - sx0) / kx,
            (sy1 - sy0) / ky,
        )
        # device pixels per *source* pixel decides the filter: blocky when magnified
        source_zoom = vp.zoom * vp.frame.width() / max(image.width(), 1)
        p.save()
        p.setClipRect(clip)
        p.setOpacity(opacity)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, source_zoom < 1.0)
        p.drawImage(target, image, source)
        p.restore()

    def _draw_overlay(self, p: QPainter, pane: QRectF, clip: QRectF) -> None:
        if self.overlay is not None and not self.overlay.isNull() and self.overlay_opacity > 0:
            self._draw_image(p, self.overlay, pane, clip, self.overlay_opacity)
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


class CompareView(QWidget):
    """Two images compared with a draggable split line or side by side; zoom and pan shared.

    Signals: ``zoomChanged(float)`` (device pixels per frame pixel), ``splitChanged(float)``
    (0 = all right image, 1 = all left image).
    """

    zoomChanged = Signal(float)
    splitChanged = Signal(float)
    heatmapToggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._canvas = _Canvas(self)

        self._split_btn = QPushButton("Split")
        self._split_btn.setToolTip("Before/after: drag the line across the image")
        self._side_btn = QPushButton("Side by side")
        self._side_btn.setToolTip("Both images next to each other, zoomed and panned together")
        self._mode_group = QButtonGroup(self)
        self._mode_group.setExclusive(True)
        for btn in (self._split_btn, self._side_btn):
            btn.setCheckable(True)
            self._mode_group.addButton(btn)
        self._split_btn.setChecked(True)

        self._fit_btn = QPushButton("Fit")
        self._fit_btn.setToolTip("Show the whole image")
        self._actual_btn = QPushButton("1:1")
        self._actual_btn.setToolTip("One image pixel per screen pixel")
        self._zoom_label = QLabel(format_zoom(1.0))
        self._zoom_label.setMinimumWidth(
            self._zoom_label.fontMetrics().horizontalAdvance("6400 % (1:1)") + 8
        )
        self._zoom_label.setToolTip("Zoom: 100 % is one image pixel per screen pixel")
        self._hint = _ElidedLabel(_SPLIT_HINT)
        self._hint.setProperty("role", "hint")
        self._hint.setToolTip(_SPLIT_HINT)
        self._hint.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.heatmap_button = QPushButton("Heatmap")
        self.heatmap_button.setCheckable(True)
        self.heatmap_button.setShortcut("H")
        self.heatmap_button.setToolTip(HEATMAP_TIP)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(DEFAULT_OVERLAY_PERCENT)
        self.opacity_slider.setFixedWidth(90)
        self.opacity_slider.setToolTip("Heatmap opacity")
        self.opacity_slider.setAccessibleName("Heatmap opacity")

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.setSpacing(6)
        bar.addWidget(self._split_btn)
        bar.addWidget(self._side_btn)
        bar.addSpacing(12)
        bar.addWidget(self._fit_btn)
        bar.addWidget(self._actual_btn)
        bar.addWidget(self._zoom_label)
        bar.addSpacing(12)
        bar.addWidget(self.heatmap_button)
        bar.addWidget(self.opacity_slider)
        bar.addWidget(self._hint, 1)

        bar.addSpacing(4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addLayout(bar)
        layout.addWidget(self._canvas, 1)

        self._split_btn.toggled.connect(self._on_split_toggled)
        self._fit_btn.clicked.connect(self.fit)
        self._actual_btn.clicked.connect(self.actual_size)
        self._canvas.zoomChanged.connect(self._on_zoom_changed)
        self._canvas.splitChanged.connect(self.splitChanged)
        self.heatmap_button.toggled.connect(self._on_heatmap_toggled)
        self.opacity_slider.valueChanged.connect(self._on_opacity_changed)
        self._update_enabled()

    # -- content ------------------------------------------------------------------------

    def set_pair(self, left: QImage, right: QImage, left_label: str, right_label: str) -> None:
        """Show ``left`` against ``right``. The frame is the right image's size.

        Switching to another pair of the same frame size keeps the zoom, pan and split, so
        candidates can be compared at the same spot one after the other.
        """
        c = self._canvas
        frame = right.size() if not right.isNull() else left.size()
        same_frame = frame == c.viewport.frame and not frame.isEmpty()
        c.left, c.right = QImage(left), QImage(right)
        c.left_label, c.right_label = left_label, right_label
        c.viewport.frame = QSize(frame)
        if not same_frame:
            c.refit()
        c.update()
        self._update_enabled()

    def clear(self) -> None:
        """Show nothing (the empty-state hint)."""
        c = self._canvas
        c.left, c.right, c.overlay = QImage(), QImage(), None
        c.left_label = c.right_label = ""
        c.viewport.frame = QSize()
        c.fit_mode = True
        c.update()
        self._update_enabled()

    def set_overlay(self, image: QImage | None, opacity: float | None = None) -> None:
        """Draw ``image`` (stretched to the frame) over the right image; ``None`` removes it.

        ``opacity`` (0..1) also moves the slider; None keeps the slider's value.
        """
        self._canvas.overlay = QImage(image) if image is not None and not image.isNull() else None
        if opacity is not None:
            self.set_overlay_opacity(opacity)
        self._canvas.update()

    def overlay(self) -> QImage | None:
        return self._canvas.overlay

    def set_number_boxes(
        self, boxes: list[tuple[tuple[tuple[float, float], ...], str, bool]]
    ) -> None:
        """Outline the number check's readings on the right image (corners in its pixels,
        the text read, whether the scene agrees with it); [] removes them."""
        self._canvas.number_boxes = list(boxes)
        self._canvas.update()

    def overlay_opacity(self) -> float:
        return self._canvas.overlay_opacity

    def set_overlay_opacity(self, opacity: float) -> None:
        value = min(max(float(opacity), 0.0), 1.0) if math.isfinite(opacity) else 0.5
        self.opacity_slider.setValue(round(value * 100))  # -> _on_opacity_changed
        self._canvas.overlay_opacity = value
        self._canvas.update()

    def heatmap_on(self) -> bool:
        """Whether the operator asked for the heatmap (the overlay may still be on its way)."""
        return self.heatmap_button.isChecked()

    def set_heatmap_on(self, on: bool) -> None:
        self.heatmap_button.setChecked(on)

    def has_pair(self) -> bool:
        return self._canvas.has_pair()

    def labels(self) -> tuple[str, str]:
        return self._canvas.left_label, self._canvas.right_label

    # -- view state ---------------------------------------------------------------------

    def zoom(self) -> float:
        """Device pixels per image (frame) pixel: 1.0 is 1:1."""
        return self._canvas.viewport.zoom

    def set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom to ``zoom``, keeping the image point under ``anchor`` (canvas coords) still."""
        self._canvas.zoom_at(zoom, anchor)

    def is_fit(self) -> bool:
        """Whether the view follows the widget size (after Fit, until the user zooms or pans)."""
        return self._canvas.fit_mode

    def fit(self) -> None:
        """Show the whole frame, centred; it stays fitted when the widget is resized."""
        if self.has_pair():
            self._canvas.refit()

    def actual_size(self) -> None:
        """Zoom to 1:1 (one image pixel per physical screen pixel) around the view centre."""
        if self.has_pair():
            self._canvas.zoom_at(1.0, None)

    def center(self) -> QPointF:
        """The frame point shown at the centre of the (each) pane."""
        return QPointF(self._canvas.viewport.center)

    def set_center(self, point: QPointF) -> None:
        self._canvas.viewport.center = QPointF(point)
        self._canvas.viewport.clamp_center()
        self._canvas.fit_mode = False
        self._canvas.update()

    def split(self) -> float:
        """Where the split line is, as a fraction of the view's width (0..1)."""
        return self._canvas.split

    def set_split(self, fraction: float) -> None:
        self._canvas.set_split(fraction)

    def mode(self) -> CompareMode:
        return self._canvas.mode

    def set_mode(self, mode: CompareMode) -> None:
        (self._split_btn if mode == "split" else self._side_btn).setChecked(True)
        self._apply_mode(mode)

    def canvas(self) -> QWidget:
        """The painted area (for event tests and for the window's own shortcuts)."""
        return self._canvas

    def image_rect(self, side: Literal["left", "right"]) -> QRectF:
        """Where the frame of one side lies in canvas coordinates (both sides equal in split)."""
        left, right = self._canvas.panes()
        self._canvas.sync_dpr()
        return self._canvas.viewport.frame_rect(left if side == "left" else right)

    def map_to_image(self, pos: QPointF) -> QPointF:
        """The frame point under a canvas point (in either pane)."""
        c = self._canvas
        c.sync_dpr()
        return c.viewport.to_frame(pos, c.pane_at(pos))

    # -- internals ----------------------------------------------------------------------

    def _on_split_toggled(self, checked: bool) -> None:
        self._apply_mode("split" if checked else "side")

    def _apply_mode(self, mode: CompareMode) -> None:
        c = self._canvas
        if c.mode == mode:
            return
        c.mode = mode
        hint = _SPLIT_HINT if mode == "split" else _SIDE_HINT
        self._hint.setText(hint)
        self._hint.setToolTip(hint)
        if c.fit_mode and c.has_pair():
            c.refit()
        c.update()

    def _on_heatmap_toggled(self, on: bool) -> None:
        if not on:
            self.set_overlay(None)
        self.heatmapToggled.emit(on)

    def _on_opacity_changed(self, percent: int) -> None:
        self._canvas.overlay_opacity = percent / 100.0
        self._canvas.update()

    def _on_zoom_changed(self, zoom: float) -> None:
        self._zoom_label.setText(format_zoom(zoom))
        self.zoomChanged.emit(zoom)

    def _update_enabled(self) -> None:
        has = self._canvas.has_pair()
        for w in (
            self._fit_btn,
            self._actual_btn,
            self._split_btn,
            self._side_btn,
            self.heatmap_button,
            self.opacity_slider,
        ):
            w.setEnabled(has)
        self._zoom_label.setText(format_zoom(self._canvas.viewport.zoom) if has else "")
        self._hint.setVisible(has)
