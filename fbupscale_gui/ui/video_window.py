"""The video window: scrub a match clip, cut a region to the cutouts list, batch-upscale a range.

Opened by File → Open clip… (Ctrl+Shift+O) or by dropping a clip on the main window. Frames
are decoded off the GUI thread (:class:`~fbupscale_gui.state.video.ClipModel`); the slider
never waits for them. Keys: Left/Right one frame, Shift+Left/Right one second, Home/End,
Ctrl+Return sends the region to the cutouts list.

A cut is made from the frame on show, exactly as core.video.cut_region makes it (one field of
interlaced material when "Single field" is on, the aspect restored), stored like a pasted
cutout and added to the list as ``<clip>_<timecode>.png``. A batch runs as a job in the engine
thread's queue, one at a time with reconstruction jobs, with its own progress bar and cancel.
A clip that cannot be opened gives one message naming the file and changes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Final

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.core.errors import FbError, error_line
from fbupscale_gui.core.images import image_sha256
from fbupscale_gui.core.request import ReconstructionRequest
from fbupscale_gui.core.temporal import TEMPORAL_MODES
from fbupscale_gui.state.job_queue import Job, JobState, ProgressInfo, format_eta
from fbupscale_gui.state.video import (
    BATCH_ENGINE_LABELS,
    BATCH_ENGINES,
    BATCH_SCALE,
    OUTPUT_SUFFIXES,
    VIDEO_SUFFIXES,
    BatchSpec,
    ClipModel,
    batch_task,
    check_output,
    cutout_name,
    default_output,
    describe_clip,
    is_clip_path,
)
from fbupscale_gui.storage.video import FIELDS, ClipInfo, Field, Rect, UpscaleResult, parse_position
from fbupscale_gui.ui.frame_view import FrameView
from fbupscale_gui.ui.pixel_view import PixelView
from fbupscale_gui.ui.theme import set_style_property

if TYPE_CHECKING:
    from fbupscale_gui.state.cutouts import Cutout
    from fbupscale_gui.state.session import Session

__all__ = ["VideoWindow"]

log = logging.getLogger(__name__)

TITLE: Final = "fbupscale — clip"
#: The width of the cut and batch column beside the frame (its texts wrap inside it).
_COLUMN_MIN_WIDTH: Final = 400
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


class VideoWindow(QWidget):
    """A top-level window bound to a session. Emits ``cutoutSent(cutout_id)``."""

    cutoutSent = Signal(int)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.session = session
        self.setWindowTitle(TITLE)
        self.setAcceptDrops(True)
        self.resize(1440, 900)
        self.clip = ClipModel(self)
        self._job: Job | None = None
        self._field_default: Field = "top"
        self._had_rect = False
        #: An existing output the operator chose to replace in the file dialog.
        self._confirmed_output = ""
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(30)
        self._preview_timer.timeout.connect(self._update_preview)

        self._build()
        self._build_actions()
        self._bind()
        self._set_clip_enabled(False)

    # -- construction ---------------------------------------------------------------------

    def _build(self) -> None:
        self.info_label = QLabel("No clip open")
        self.info_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        set_style_property(self.info_label, "role", "hint")
        self.open_button = QPushButton("Open clip…")
        self.open_button.setToolTip("Open a match clip (Ctrl+Shift+O)")
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setVisible(False)

        self.view = FrameView()

        # transport: |< -1s -1f [slider] +1f +1s >| timecode
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setSingleStep(1)
        self.slider.setAccessibleName("Frame")
        self.slider.setToolTip("Scrub: Left/Right one frame, Shift+Left/Right one second")
        self.first_button = self._small("⇤", "First frame (Home)")
        self.back_second_button = self._small("−1 s", "Back one second (Shift+Left)")
        self.back_button = self._small("−1", "Previous frame (Left)")
        self.forward_button = self._small("+1", "Next frame (Right)")
        self.forward_second_button = self._small("+1 s", "Forward one second (Shift+Right)")
        self.last_button = self._small("⇥", "Last frame (End)")
        self.timecode = QLineEdit("00:00:00:00")
        self.timecode.setToolTip(
            "Timecode HH:MM:SS:FF of the frame on show. Type a timecode, seconds or a frame "
            "number like 312f and press Enter to go there."
        )
        self.timecode.setAccessibleName("Timecode")
        font = self.timecode.font()
        font.setFamily("monospace")
        font.setStyleHint(font.StyleHint.Monospace)
        self.timecode.setFont(font)
        self.timecode.setFixedWidth(
            self.timecode.fontMetrics().horizontalAdvance("00:00:00:00") + 24
        )
        self.frame_label = QLabel("frame – / –")
        set_style_property(self.frame_label, "role", "hint")

        transport = QHBoxLayout()
        for b in (self.first_button, self.back_second_button, self.back_button):
            transport.addWidget(b)
        transport.addWidget(self.slider, 1)
        for b in (self.forward_button, self.forward_second_button, self.last_button):
            transport.addWidget(b)
        transport.addWidget(self.timecode)
        transport.addWidget(self.frame_label)

        self.cut_box = self._build_cut_box()
        self.batch_box = self._build_batch_box()

        header = QHBoxLayout()
        header.addWidget(self.info_label, 1)
        header.addWidget(self.open_button)

        # the frame takes the height; cutting and the batch sit in a column beside it
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.view, 1)
        left_layout.addLayout(transport)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.cut_box)
        right_layout.addWidget(self.batch_box)
        right_layout.addStretch(1)
        # The column's width is set here, never by its texts: a label that changes when a
        # region is drawn must not resize the frame under the operator's pointer.
        right.setMinimumWidth(_COLUMN_MIN_WIDTH)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setSizes([1000, 420])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(header)
        layout.addWidget(self.message)
        layout.addWidget(self.splitter, 1)

    def _small(self, text: str, tip: str) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the slider or frame
        button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        return button

    def _build_cut_box(self) -> QGroupBox:
        box = QGroupBox("Cut a region")
        self.rect_label = QLabel("Drag on the frame to draw the region")
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
        layout = QHBoxLayout(box)
        layout.addLayout(controls, 1)
        layout.addWidget(self.preview, 1)
        return box

    def _build_batch_box(self) -> QGroupBox:
        box = QGroupBox("Upscale range ×4 into a new clip")
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

        grid = QGridLayout(box)
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
        return box

    def _build_actions(self) -> None:
        def action(text: str, keys: list[str], slot: object) -> QAction:
            a = QAction(text, self)
            a.setShortcuts([QKeySequence(k) for k in keys])
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            a.triggered.connect(slot)
            self.addAction(a)
            return a

        self.prev_action = action("Previous frame", ["Left"], self.step_back)
        self.next_action = action("Next frame", ["Right"], self.step_forward)
        self.back_second_action = action("Back one second", ["Shift+Left"], self.second_back)
        self.forward_second_action = action(
            "Forward one second", ["Shift+Right"], self.second_forward
        )
        self.first_action = action("First frame", ["Home"], self.go_first)
        self.last_action = action("Last frame", ["End"], self.go_last)
        self.send_action = action("Send to queue", ["Ctrl+Return", "Ctrl+Enter"], self.send)
        self.open_action = action("Open clip…", ["Ctrl+Shift+O"], self.choose_clip)

    def _bind(self) -> None:
        self.open_button.clicked.connect(self.choose_clip)
        self.clip.opened.connect(self._on_opened)
        self.clip.openFailed.connect(self._on_open_failed)
        self.clip.frameChanged.connect(self._on_frame)
        self.clip.frameFailed.connect(self._on_frame_failed)
        self.slider.valueChanged.connect(self._on_slider)
        self.first_button.clicked.connect(self.go_first)
        self.back_second_button.clicked.connect(self.second_back)
        self.back_button.clicked.connect(self.step_back)
        self.forward_button.clicked.connect(self.step_forward)
        self.forward_second_button.clicked.connect(self.second_forward)
        self.last_button.clicked.connect(self.go_last)
        self.timecode.returnPressed.connect(self._on_timecode_entered)
        self.view.rectChanged.connect(self._on_rect)
        self.field_check.toggled.connect(self._on_field_toggled)
        self.field_combo.currentIndexChanged.connect(self._on_field_changed)
        self.clear_button.clicked.connect(self.clear_rect)
        self.send_button.clicked.connect(self.send)
        self.set_start_button.clicked.connect(self.set_start_here)
        self.set_end_button.clicked.connect(self.set_end_here)
        self.start_edit.editingFinished.connect(self._update_range)
        self.end_edit.editingFinished.connect(self._update_range)
        self.engine_combo.currentIndexChanged.connect(self._update_range)
        self.region_check.toggled.connect(self._update_range)
        self.browse_button.clicked.connect(self.choose_output)
        self.run_button.clicked.connect(self.start_batch)
        self.cancel_button.clicked.connect(self.cancel_batch)
        jobs = self.session.jobs
        jobs.jobStarted.connect(self._on_job_started)
        jobs.progressed.connect(self._on_job_progress)
        jobs.jobEnded.connect(self._on_job_ended)

    # -- opening --------------------------------------------------------------------------

    @property
    def info(self) -> ClipInfo | None:
        return self.clip.info

    def open_clip(self, path: str | Path) -> None:
        """Open ``path`` in the background; the window shows it, or one message naming it."""
        self.show_message("info", f"Opening {Path(path).name}…")
        self.clip.open(path)

    def choose_clip(self) -> None:
        start = str(Path(self.info.path).parent) if self.info else ""
        pattern = " ".join(f"*{s}" for s in VIDEO_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a clip", start, f"Clips ({pattern});;All files (*)"
        )
        if path:
            self.open_clip(path)

    @Slot(object)
    def _on_opened(self, info: ClipInfo) -> None:
        self.hide_message()
        self.setWindowTitle(f"{Path(info.path).name} — {TITLE}")
        self.info_label.setText(describe_clip(info))
        self.info_label.setToolTip(info.path)
        self.slider.blockSignals(True)
        self.slider.setRange(0, info.frame_count - 1)
        self.slider.setValue(0)
        self.slider.setPageStep(max(1, round(info.fps)))
        self.slider.blockSignals(False)
        self.view.set_rect(None)
        self._field_default = info.first_field
        self.field_check.setChecked(bool(info.interlaced))
        self.field_combo.setCurrentIndex(FIELDS.index(info.first_field))
        self.start_edit.setText(info.timecode(0))
        self.end_edit.setText(info.timecode(info.frame_count - 1))
        self.output_edit.clear()
        self._set_clip_enabled(True)
        self._update_range()

    @Slot(str)
    def _on_open_failed(self, message: str) -> None:
        self.show_message("error", f"Could not open the clip: {message}")

    def _set_clip_enabled(self, enabled: bool) -> None:
        for w in (
            self.slider,
            self.first_button,
            self.back_second_button,
            self.back_button,
            self.forward_button,
            self.forward_second_button,
            self.last_button,
            self.timecode,
            self.cut_box,
            self.batch_box,
        ):
            w.setEnabled(enabled)
        self._update_cut_actions()
        if enabled:
            self._update_batch_buttons()

    # -- messages -------------------------------------------------------------------------

    def show_message(self, level: str, text: str) -> None:
        """One line at the top of the window (the latest replaces the one before)."""
        self.message.setText(text)
        set_style_property(self.message, "role", level if level != "info" else "hint")
        self.message.setVisible(True)

    def hide_message(self) -> None:
        self.message.clear()
        self.message.setVisible(False)

    def message_text(self) -> str:
        return self.message.text() if self.message.isVisible() else ""

    # -- scrubbing ------------------------------------------------------------------------

    def current_index(self) -> int:
        """The frame on show (what a cut is made from)."""
        return self.clip.index

    def seek(self, index: int) -> None:
        """Move the slider (and so the frame on show) to ``index``."""
        self.slider.setValue(index)

    def _step(self, frames: int) -> None:
        if self.info is not None:
            self.slider.setValue(self.slider.value() + frames)

    def _second(self) -> int:
        return max(1, round(self.info.fps)) if self.info is not None else 1

    @Slot()
    def step_back(self) -> None:
        self._step(-1)

    @Slot()
    def step_forward(self) -> None:
        self._step(+1)

    @Slot()
    def second_back(self) -> None:
        self._step(-self._second())

    @Slot()
    def second_forward(self) -> None:
        self._step(+self._second())

    @Slot()
    def go_first(self) -> None:
        self.slider.setValue(self.slider.minimum())

    @Slot()
    def go_last(self) -> None:
        self.slider.setValue(self.slider.maximum())

    @Slot(int)
    def _on_slider(self, value: int) -> None:
        if self.info is None:
            return
        self.clip.request_frame(value)
        self._show_position(value)

    def _show_position(self, index: int) -> None:
        assert self.info is not None
        if not self.timecode.hasFocus():
            self.timecode.setText(self.info.timecode(index))
        self.frame_label.setText(f"frame {index} / {self.info.frame_count - 1}")

    @Slot()
    def _on_timecode_entered(self) -> None:
        if self.info is None:
            return
        index = self._parse(self.timecode.text(), "timecode")
        if index is not None:
            self.seek(index)
        self.timecode.setText(self.info.timecode(self.slider.value()))
        self.view.setFocus()

    def _parse(self, text: str, what: str) -> int | None:
        """A typed position as a frame index, or None after showing why not."""
        assert self.info is not None
        try:
            return self.info.index_of(parse_position(text, self.info.frame_rate))
        except FbError as exc:
            self.show_message("warning", f"{what}: {exc}")
            return None

    @Slot(int)
    def _on_frame(self, index: int) -> None:
        self.view.set_image(self.clip.qimage)
        if self.clip.is_current():
            self._show_position(index)
        self._schedule_preview()
        self._update_cut_actions()

    @Slot(str)
    def _on_frame_failed(self, message: str) -> None:
        self.show_message("warning", message)

    # -- the region -----------------------------------------------------------------------

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

    @Slot(bool)
    def _on_field_toggled(self, on: bool) -> None:
        self.field_combo.setEnabled(on)
        self._on_rect(self.view.rect_px())

    @Slot(int)
    def _on_field_changed(self, _index: int) -> None:
        self._on_rect(self.view.rect_px())

    @Slot()
    def clear_rect(self) -> None:
        self.view.set_rect(None)

    @Slot(object)
    def _on_rect(self, rect: Rect | None) -> None:
        if rect is not None and not self._had_rect:
            self.region_check.setChecked(True)  # a new region: the batch upscales it
        self._had_rect = rect is not None
        if rect is None:
            self.rect_label.setText("Drag on the frame to draw the region")
        else:
            x, y, w, h = rect
            field = self.field()
            how = f", {field} field" if field else ""
            self.rect_label.setText(f"<b>{w}×{h} px</b> at ({x}, {y}){how}")
        self._update_cut_actions()
        self._update_range()
        self._schedule_preview()

    def _schedule_preview(self) -> None:
        self._preview_timer.start()

    @Slot()
    def _update_preview(self) -> None:
        rect = self.view.rect_px()
        if rect is None or self.clip.image is None:
            self.preview.set_image(None)
            return
        from fbupscale_gui.worker.qimage import pil_to_qimage

        try:
            cut = self.clip.cut(rect, self.field())
        except FbError:
            self.preview.set_image(None)
            return
        self.preview.set_image(pil_to_qimage(cut))

    def _update_cut_actions(self) -> None:
        ok = self.info is not None and self.view.rect_px() is not None
        self.send_button.setEnabled(ok)
        self.send_action.setEnabled(ok)
        self.clear_button.setEnabled(self.view.rect_px() is not None)

    @Slot()
    def send(self) -> Cutout | None:
        """Add the region of the frame on show to the cutouts list (and select it there)."""
        info, rect = self.info, self.view.rect_px()
        if info is None or self.clip.image is None:
            self.show_message("warning", "Open a clip first.")
            return None
        if rect is None:
            self.show_message("warning", "Draw the region to cut on the frame first.")
            return None
        index = self.clip.index
        try:
            image = self.clip.cut(rect, self.field())
        except FbError as exc:
            self.show_message("error", f"Could not cut the region: {exc}")
            return None
        name = cutout_name(info, index)
        report = self.session.cutouts.add_image(image, name)
        if report.errors:
            self.show_message("error", "; ".join(report.errors))
            return None
        cutout = report.added[0] if report.added else self._find(image_sha256(image))
        if cutout is None:
            return None
        field = self.field()
        how = f", {field} field" if field else ""
        if report.added:
            self.show_message(
                "info", f"Sent {cutout.name} ({image.width}×{image.height} px{how}) to the cutouts."
            )
        else:
            self.show_message("info", f"Already in the cutouts as {cutout.name}; selected it.")
        self.cutoutSent.emit(cutout.id)
        return cutout

    def _find(self, sha256: str) -> Cutout | None:
        for cutout in self.session.cutouts.cutouts():
            if cutout.source.sha256 == sha256:
                return cutout
        return None

    # -- batch ----------------------------------------------------------------------------

    def set_range(self, first: int, last: int) -> None:
        """Frames ``first`` to ``last`` (both included)."""
        assert self.info is not None
        self.start_edit.setText(self.info.timecode(first))
        self.end_edit.setText(self.info.timecode(last))
        self._update_range()

    @Slot()
    def set_start_here(self) -> None:
        if self.info is not None:
            self.start_edit.setText(self.info.timecode(self.slider.value()))
            self._update_range()

    @Slot()
    def set_end_here(self) -> None:
        if self.info is not None:
            self.end_edit.setText(self.info.timecode(self.slider.value()))
            self._update_range()

    def _range(self, quiet: bool = False) -> tuple[int, int] | None:
        """``(first, last)`` (last included), or None (with a message unless ``quiet``)."""
        info = self.info
        if info is None:
            return None
        try:
            first = info.index_of(parse_position(self.start_edit.text(), info.frame_rate))
            last = info.index_of(parse_position(self.end_edit.text(), info.frame_rate))
        except FbError as exc:
            if not quiet:
                self.show_message("warning", f"Range: {exc}")
            return None
        why = ""
        if first >= info.frame_count:
            why = f"the start {info.timecode(first)} is past the clip's last frame"
        elif last < first:
            why = f"the end {info.timecode(last)} comes before the start {info.timecode(first)}"
        if why:
            if not quiet:
                self.show_message("warning", f"Range: {why}.")
            return None
        return first, min(last, info.frame_count - 1)

    def _batch_region(self) -> tuple[Rect | None, Field | None]:
        if self.region_check.isChecked() and self.view.rect_px() is not None:
            return self.view.rect_px(), self.field()
        return None, None

    @Slot()
    def _update_range(self, *_args: object) -> None:
        info = self.info
        self.region_check.setEnabled(self.view.rect_px() is not None and self._job is None)
        if info is None:
            self.range_label.clear()
            return
        span = self._range(quiet=True)
        if span is None:
            self.range_label.setText("Not a valid range")
            return
        first, last = span
        n = last - first + 1
        region, _field = self._batch_region()
        w, h = (region[2], region[3]) if region is not None else (info.width, info.height)
        self.range_label.setText(
            f"{n} frame(s), {n / info.fps:.2f} s · {w}×{h} → "
            f"{w * BATCH_SCALE}×{h * BATCH_SCALE} per frame"
        )

    def choose_output(self) -> None:
        span = self._range(quiet=True)
        if self.info is not None and span is not None:
            suggested = str(default_output(self.info, span[0], span[1], self._engine()))
        else:
            suggested = ""
        current = self.output_edit.text().strip() or suggested
        pattern = " ".join(f"*{s}" for s in OUTPUT_SUFFIXES)
        path, _ = QFileDialog.getSaveFileName(
            self, "Write the upscaled clip to", current, f"Clips ({pattern})"
        )
        if path:
            self.output_edit.setText(path)
            self._confirmed_output = str(Path(path).expanduser())  # the dialog asked

    def _engine(self) -> str:
        value = self.engine_combo.currentData()
        return value if isinstance(value, str) else "lanczos"

    def set_engine(self, engine: str) -> None:
        self.engine_combo.setCurrentIndex(max(0, self.engine_combo.findData(engine)))

    def set_temporal(self, mode: str) -> None:
        self.temporal_combo.setCurrentIndex(max(0, self.temporal_combo.findData(mode)))

    @Slot()
    def start_batch(self) -> Job | None:
        """Queue the range as a job for the engine thread; None (with a message) if it can't."""
        info = self.info
        if info is None:
            self.show_message("warning", "Open a clip first.")
            return None
        if self._job is not None:
            self.show_message("warning", "A batch of this clip is already running.")
            return None
        span = self._range()
        if span is None:
            return None
        first, last = span
        engine = self._engine()
        output = self.output_edit.text().strip()
        if not output:
            output = str(default_output(info, first, last, engine))
        why = check_output(output)
        if why is not None:
            self.show_message("warning", f"Output: {why}.")
            return None
        out = Path(output).expanduser()
        if out.exists() and out.resolve() == Path(info.path).resolve():
            self.show_message(
                "warning", "Output: that is the clip being read; choose another file."
            )
            return None
        if out.exists() and str(out) != self._confirmed_output:
            self.show_message(
                "warning",
                f"Output: {out} already exists; choose it with … to replace it, "
                "or clear the field for a new name.",
            )
            return None
        rect, field = self._batch_region()
        mode = self.temporal_combo.currentData()
        spec = BatchSpec(
            clip=info.path,
            start=first,
            end=last + 1,
            engine="realesrgan" if engine == "realesrgan" else "lanczos",
            output=str(out),
            rect=rect,
            field=field,
            temporal=mode if mode in TEMPORAL_MODES else "none",
        )
        name = f"{Path(info.path).name} {info.timecode(first)}–{info.timecode(last)}"
        self.hide_message()
        self.output_edit.setText(str(out))
        self._job = self.session.jobs.enqueue(
            0, name, ReconstructionRequest(engine=spec.engine), task=batch_task(spec)
        )
        self.progress.setValue(0)
        self.eta_label.setText("queued" if self._job.state is JobState.QUEUED else "")
        self.batch_label.setText(f"Writing {out.name}…")
        set_style_property(self.batch_label, "role", "hint")
        self._update_batch_buttons()
        return self._job

    @Slot()
    def cancel_batch(self) -> None:
        if self._job is not None:
            self.session.jobs.cancel_job(self._job)

    def batch_job(self) -> Job | None:
        return self._job

    def _update_batch_buttons(self) -> None:
        running = self._job is not None
        self.run_button.setEnabled(not running and self.info is not None)
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
        self.region_check.setEnabled(not running and self.view.rect_px() is not None)

    @Slot(object)
    def _on_job_started(self, job: Job) -> None:
        if job is self._job:
            self.eta_label.setText(format_eta(None))

    @Slot(object, object)
    def _on_job_progress(self, job: Job, info: ProgressInfo) -> None:
        if job is not self._job:
            return
        p = info.progress
        self.progress.setValue(round(p.fraction * 1000))
        self.eta_label.setText(format_eta(info.eta_s))
        self.batch_label.setText(p.message or info.text)

    @Slot(object)
    def _on_job_ended(self, job: Job) -> None:
        if job is not self._job:
            return
        self._job = None
        self.eta_label.clear()
        if job.state is JobState.DONE and isinstance(job.result, UpscaleResult):
            r = job.result
            self.progress.setValue(1000)
            audio = ", ".join(r.audio) if r.audio else "none"
            fps = f"{float(r.frame_rate):.3f}".rstrip("0").rstrip(".")
            text = (
                f"Wrote {r.path} — {r.frames} frames, {r.width}×{r.height}, {fps} fps, "
                f"audio: {audio} ({r.seconds:.1f} s)"
            )
            self.batch_label.setText(text)
            set_style_property(self.batch_label, "role", "")
            self.output_edit.clear()  # the next run gets a new name, never this file
            if not self.isVisible():
                from fbupscale_gui.state.session import Message

                self.session.message.emit(Message("info", text))
        elif job.state is JobState.CANCELLED:
            self.progress.setValue(0)
            self.batch_label.setText("Cancelled — nothing was written.")
            set_style_property(self.batch_label, "role", "warning")
        else:
            self.progress.setValue(0)
            why = error_line(job.error, unexpected=True) if job.error is not None else "no result"
            self.batch_label.setText(f"Failed — nothing was written: {why}")
            set_style_property(self.batch_label, "role", "error")
        self._update_batch_buttons()

    # -- window ---------------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        clips = [p for p in paths if is_clip_path(p)] or paths[:1]
        if clips:
            event.acceptProposedAction()
            self.open_clip(clips[0])

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing hides the window; the clip stays open and a batch goes on."""
        event.accept()
        self.hide()

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Stop the decoder thread (the main window calls this when it closes)."""
        return self.clip.shutdown(timeout_ms)
