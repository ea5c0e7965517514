"""One viewport for every zoomable image view: zoom, pan, fit, and nearest-neighbour drawing.

:class:`Viewport` is the geometry (a plain object tests can check without painting): the zoom
and pan of an image, the *frame*, inside a pane of a widget. Zoom is measured in *device* pixels
per frame pixel, so ``zoom == 1.0`` is one image pixel per physical screen pixel ("1:1").

:class:`ViewportWidget` is the widget behaviour both the compare view and the video frame view
share: the frame is fitted (and stays fitted while the widget is resized) until the user zooms
or pans; zoom keeps the frame point under the cursor in place; a drag pans. Each view keeps its
own mouse bindings and zoom steps. :func:`draw_frame_image` paints an image onto the frame:
nearest-neighbour from 1:1 up, so single pixels stay visible, smoothed only when shrunk.
"""

from __future__ import annotations

import math
from typing import ClassVar, Final

from PySide6.QtCore import QPointF, QRectF, QSize, QSizeF, Signal
from PySide6.QtGui import QImage, QPainter, QResizeEvent
from PySide6.QtWidgets import QWidget

__all__ = [
    "MAX_ZOOM",
    "MIN_ZOOM",
    "Viewport",
    "ViewportWidget",
    "clamp_zoom",
    "draw_frame_image",
    "format_zoom",
]

#: Zoom limits, in device pixels per frame pixel.
MIN_ZOOM: Final = 0.02
MAX_ZOOM: Final = 64.0


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


def draw_frame_image(
    p: QPainter,
    image: QImage,
    vp: Viewport,
    pane: QRectF,
    clip: QRectF,
    opacity: float = 1.0,
) -> None:
    """Draw ``image`` stretched onto the viewport's frame in ``pane``, clipped to ``clip``."""
    if image.isNull() or clip.isEmpty():
        return
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


class ViewportWidget(QWidget):
    """A widget that shows a frame through one :class:`Viewport` (see the module docstring).

    Subclasses set ``viewport.frame``, call :meth:`refit` for a new frame, map their panes
    (:meth:`panes`, :meth:`pane_at`; the whole widget by default) and bind the mouse to
    :meth:`zoom_at` and :meth:`begin_pan` / :meth:`pan_to` / :meth:`end_pan`.
    ``zoomChanged(float)`` follows every zoom change.
    """

    zoomChanged = Signal(float)
    #: Zoom in device pixels per frame pixel (True) or in logical pixels (False: the device
    #: pixel ratio is taken as 1, so a zoom step means the same size on every display).
    device_zoom: ClassVar[bool] = True

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewport = Viewport()
        #: Whether the view follows the widget size (after a fit, until the user zooms or pans).
        self.fit_mode = True
        self._pan_last: QPointF | None = None

    def has_frame(self) -> bool:
        return not self.viewport.frame.isEmpty()

    def panes(self) -> tuple[QRectF, ...]:
        """The panes the frame is shown in; the first one decides the fit."""
        return (QRectF(self.rect()),)

    def pane_at(self, pos: QPointF) -> QRectF:
        """The pane under a widget point (the one a zoom about that point applies to)."""
        return self.panes()[0]

    def sync_dpr(self) -> None:
        dpr = float(self.devicePixelRatioF()) if self.device_zoom else 1.0
        self.viewport.dpr = dpr or 1.0

    def refit(self) -> None:
        """Show the whole frame, centred, and keep it fitted when the widget is resized."""
        self.sync_dpr()
        vp = self.viewport
        vp.zoom = vp.fit_zoom(self.panes()[0])
        vp.center = QPointF(vp.frame.width() / 2.0, vp.frame.height() / 2.0)
        self.fit_mode = True
        self.zoomChanged.emit(vp.zoom)
        self.update()

    def zoom_at(self, zoom: float, anchor: QPointF | None) -> None:
        """Zoom to ``zoom`` keeping the frame point under ``anchor`` (the pane centre if None)."""
        self.sync_dpr()
        pane = self.pane_at(anchor) if anchor is not None else self.panes()[0]
        at = anchor if anchor is not None else pane.center()
        self.viewport.set_zoom_at(zoom, at, pane)
        self.fit_mode = False
        self.zoomChanged.emit(self.viewport.zoom)
        self.update()

    def begin_pan(self, pos: QPointF) -> None:
        self._pan_last = QPointF(pos)

    def pan_to(self, pos: QPointF) -> bool:
        """Move the frame with a pan drag; False when no pan is under way."""
        if self._pan_last is None:
            return False
        self.viewport.pan_by(pos.x() - self._pan_last.x(), pos.y() - self._pan_last.y())
        self._pan_last = QPointF(pos)
        self.fit_mode = False
        self.update()
        return True

    def end_pan(self) -> None:
        self._pan_last = None

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.fit_mode and self.has_frame():
            self.refit()
