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

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.ui.compare_canvas import DEFAULT_OVERLAY_PERCENT, CompareCanvas, CompareMode
from fbupscale_gui.ui.viewport import MAX_ZOOM, MIN_ZOOM, Viewport, format_zoom
from fbupscale_gui.ui.widgets import ElidedLabel

__all__ = ["MAX_ZOOM", "MIN_ZOOM", "CompareMode", "CompareView", "Viewport"]

_SPLIT_HINT: Final = "Drag: move split · Ctrl+drag or middle-drag: pan · Wheel: zoom"
_SIDE_HINT: Final = "Drag: pan · Wheel: zoom"
HEATMAP_TIP: Final = (
    "Deviation heatmap (H): where the candidate, shrunk back to the cutout's size, disagrees "
    "with the cutout. Clear = agrees (within 4 luma levels); yellow → red = up to 32 levels "
    "off. Look there for changed numbers, extra limbs, different logos."
)


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
        self._canvas = CompareCanvas(self)

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
        self._hint = ElidedLabel(_SPLIT_HINT)
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

    def has_pair(self) -> bool:
        return self._canvas.has_frame()

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
        self._hint.setText(hint)  # the elided label keeps the whole text as its tooltip
        if c.fit_mode and c.has_frame():
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
        has = self._canvas.has_frame()
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
