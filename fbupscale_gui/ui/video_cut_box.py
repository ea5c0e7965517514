"""The video window's "Cut a region" box: the region drawn, single field, its pixels, Send.

A thin widget: it shows the rectangle the operator drew (:meth:`CutBox.show_rect`), says which
field a cut takes (:meth:`CutBox.field`) and previews the cut's pixels; the window does the cut
(:meth:`fbupscale_gui.state.clip_model.ClipModel.cut`) and sends it.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.core.clip import FIELDS, ClipInfo, Field, Rect
from fbupscale_gui.ui.pixel_view import PixelView
from fbupscale_gui.ui.theme import set_style_property

__all__ = ["CutBox"]

_NO_RECT = "Drag on the frame to draw the region"


class CutBox(QGroupBox):
    """Region label, field choice, Clear and Send buttons, and the cut's preview."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Cut a region", parent)
        self._field_default: Field = "top"
        self.rect_label = QLabel(_NO_RECT)
        self.rect_label.setWordWrap(True)
        self.field_check = QCheckBox("Single field")
        self.field_check.setToolTip(
            "Cut from one field of interlaced material (no combing on fast players): the "
            "field's own lines are kept and the missing ones interpolated to the region's size."
        )
        self.field_combo = QComboBox()
        for f in FIELDS:
            self.field_combo.addItem(f"{f.capitalize()} field", f)
        self.field_combo.setEnabled(False)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Clear the region (Delete on the frame)")
        self.send_button = QPushButton("Send to queue")
        self.send_button.setToolTip(
            "Add the region of the frame on show to the cutouts list as <clip>_<timecode>.png "
            "(Ctrl+Return)"
        )
        set_style_property(self.send_button, "primary", True)
        self.preview = PixelView(placeholder="Draw a region on the frame to see its pixels here")
        self.preview.setMinimumSize(150, 150)

        fields = QHBoxLayout()
        fields.addWidget(self.field_check)
        fields.addWidget(self.field_combo, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.clear_button)
        buttons.addStretch(1)
        buttons.addWidget(self.send_button)
        controls = QVBoxLayout()
        controls.addWidget(self.rect_label)
        controls.addLayout(fields)
        controls.addStretch(1)
        controls.addLayout(buttons)
        layout = QHBoxLayout(self)
        layout.addLayout(controls, 1)
        layout.addWidget(self.preview, 1)

        self.field_check.toggled.connect(self.field_combo.setEnabled)

    def set_clip(self, info: ClipInfo) -> None:
        """A new clip: one field by default for interlaced material, the first in time."""
        self._field_default = info.first_field
        self.field_check.setChecked(bool(info.interlaced))
        self.field_combo.setCurrentIndex(FIELDS.index(info.first_field))

    def field(self) -> Field | None:
        """The field a cut takes, or None for the whole frame."""
        if not self.field_check.isChecked():
            return None
        value = self.field_combo.currentData()
        return value if value in FIELDS else self._field_default

    def set_field(self, field: Field | None) -> None:
        self.field_check.setChecked(field is not None)
        if field is not None:
            self.field_combo.setCurrentIndex(FIELDS.index(field))

    def show_rect(self, rect: Rect | None) -> None:
        """The region's size and place (and field), or how to draw one."""
        if rect is None:
            self.rect_label.setText(_NO_RECT)
            return
        x, y, w, h = rect
        field = self.field()
        how = f", {field} field" if field else ""
        self.rect_label.setText(f"<b>{w}×{h} px</b> at ({x}, {y}){how}")

    def set_can_cut(self, has_clip: bool, has_rect: bool) -> None:
        self.send_button.setEnabled(has_clip and has_rect)
        self.clear_button.setEnabled(has_rect)
