"""The video window's "Upscale range" box: range, engine, temporal, region, output, progress.

A thin widget: it holds what the operator chose and shows a batch's progress and outcome; the
window checks the choices (:mod:`fbupscale_gui.state.video`) and queues the job.
"""

from __future__ import annotations

from typing import Final

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QWidget,
)

from fbupscale_gui.core.temporal import TEMPORAL_MODES, TemporalMode
from fbupscale_gui.state.video import BATCH_ENGINE_LABELS, BATCH_ENGINES, BatchEngine
from fbupscale_gui.ui.theme import set_style_property

__all__ = ["BatchBox"]

_TEMPORAL_LABELS: Final = {
    "none": "None (each frame alone)",
    "median": "Median on static areas",
    "blend": "Blend with the previous output",
}
_TEMPORAL_TIPS: Final = (
    "How the batch steadies per-frame flicker (core.temporal): none; a temporal median of "
    "the upscaled frames where the source does not move; or a motion-compensated blend of "
    "the previous output where it does not move."
)


class BatchBox(QGroupBox):
    """The batch's settings, its Run and Cancel buttons, its progress and outcome."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Upscale range ×4 into a new clip", parent)
        self.start_edit = QLineEdit()
        self.start_edit.setToolTip("First frame: timecode, seconds or a frame number like 312f")
        self.end_edit = QLineEdit()
        self.end_edit.setToolTip(
            "Last frame (included): timecode, seconds or a frame number like 312f"
        )
        self.set_start_button = QPushButton("⇤ Set start here")
        self.set_start_button.setToolTip("The frame on show becomes the first frame")
        self.set_end_button = QPushButton("Set end here ⇥")
        self.set_end_button.setToolTip("The frame on show becomes the last frame (included)")
        self.range_label = QLabel()
        self.range_label.setWordWrap(True)
        set_style_property(self.range_label, "role", "hint")
        self.engine_combo = QComboBox()
        for engine in BATCH_ENGINES:
            self.engine_combo.addItem(BATCH_ENGINE_LABELS[engine], engine)
        self.temporal_combo = QComboBox()
        for mode in TEMPORAL_MODES:
            self.temporal_combo.addItem(_TEMPORAL_LABELS.get(mode, mode), mode)
        self.temporal_combo.setToolTip(_TEMPORAL_TIPS)
        self.region_check = QCheckBox("Only the region (and field)")
        self.region_check.setToolTip(
            "Upscale the drawn region of every frame, cut as for Send (one field when "
            "'Single field' is on); off: the whole frame"
        )
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("next to the clip, named after the range")
        self.output_edit.setToolTip(
            "The new clip (.mp4, .mov or .mkv): H.264, the clip's frame rate, its audio"
        )
        self.browse_button = QPushButton("…")
        self.browse_button.setToolTip("Choose the output file")
        self.run_button = QPushButton("Upscale range")
        set_style_property(self.run_button, "primary", True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.eta_label = QLabel("")
        set_style_property(self.eta_label, "role", "hint")
        self.batch_label = QLabel("")
        self.batch_label.setWordWrap(True)
        self.batch_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        grid = QGridLayout(self)
        grid.addWidget(QLabel("Start"), 0, 0)
        grid.addWidget(self.start_edit, 0, 1)
        grid.addWidget(self.set_start_button, 0, 2)
        grid.addWidget(QLabel("End"), 1, 0)
        grid.addWidget(self.end_edit, 1, 1)
        grid.addWidget(self.set_end_button, 1, 2)
        grid.addWidget(self.range_label, 2, 1, 1, 2)
        grid.addWidget(QLabel("Engine"), 3, 0)
        grid.addWidget(self.engine_combo, 3, 1, 1, 2)
        grid.addWidget(QLabel("Temporal"), 4, 0)
        grid.addWidget(self.temporal_combo, 4, 1, 1, 2)
        grid.addWidget(self.region_check, 5, 1, 1, 2)
        grid.addWidget(QLabel("Output"), 6, 0)
        output = QHBoxLayout()
        output.addWidget(self.output_edit, 1)
        output.addWidget(self.browse_button)
        grid.addLayout(output, 6, 1, 1, 2)
        run = QHBoxLayout()
        run.addWidget(self.progress, 1)
        run.addWidget(self.eta_label)
        run.addWidget(self.cancel_button)
        run.addWidget(self.run_button)
        grid.addLayout(run, 7, 0, 1, 3)
        grid.addWidget(self.batch_label, 8, 0, 1, 3)
        grid.setColumnStretch(1, 1)

    def engine(self) -> BatchEngine:
        value = self.engine_combo.currentData()
        return "realesrgan" if value == "realesrgan" else "lanczos"

    def set_engine(self, engine: str) -> None:
        self.engine_combo.setCurrentIndex(max(0, self.engine_combo.findData(engine)))

    def temporal(self) -> TemporalMode:
        mode = self.temporal_combo.currentData()
        return mode if mode in TEMPORAL_MODES else "none"

    def set_temporal(self, mode: str) -> None:
        self.temporal_combo.setCurrentIndex(max(0, self.temporal_combo.findData(mode)))

    def set_running(self, running: bool, *, has_clip: bool, has_rect: bool) -> None:
        """Settings are locked while a batch runs; Cancel is live only then."""
        self.run_button.setEnabled(not running and has_clip)
        self.cancel_button.setEnabled(running)
        for w in (
            self.start_edit,
            self.end_edit,
            self.set_start_button,
            self.set_end_button,
            self.engine_combo,
            self.temporal_combo,
            self.output_edit,
            self.browse_button,
        ):
            w.setEnabled(not running)
        self.region_check.setEnabled(not running and has_rect)

    def show_outcome(self, text: str, role: str, progress: int) -> None:
        """A batch's last word: ``text`` in ``role`` ("", "hint", "warning", "error")."""
        self.progress.setValue(progress)
        self.batch_label.setText(text)
        set_style_property(self.batch_label, "role", role)
