"""One viewport: the zoom and pan of an image (the *frame*) inside a pane of a widget.

Zoom is measured in *device* pixels per frame pixel (with ``dpr`` 1 a widget may count logical
pixels instead). :class:`Viewport` is a plain object, so tests can check the geometry without
painting.
"""

from __future__ import annotations

import math
from typing import Final

from PySide6.QtCore import QPointF, QRectF, QSize, QSizeF

__all__ = ["MAX_ZOOM", "MIN_ZOOM", "Viewport", "clamp_zoom", "format_zoom"]

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
