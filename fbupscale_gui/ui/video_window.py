"""The video window: scrub a match clip, cut a region to the cutouts list, batch-upscale a range.

Opened by File → Open clip… (Ctrl+Shift+O) or by dropping a clip on the main window. Frames
are decoded off the GUI thread (:class:`~fbupscale_gui.state.clip_model.ClipModel`); the slider
never waits for them. Keys: Left/Right one frame, Shift+Left/Right one second, Home/End,
Ctrl+Return sends the region to the cutouts list.

The window composes the frame (:class:`~fbupscale_gui.ui.frame_view.FrameView`), the transport
bar (:mod:`~fbupscale_gui.ui.video_transport`), the cut box (:mod:`~fbupscale_gui.ui.video_cut_box`)
and the batch box (:mod:`~fbupscale_gui.ui.video_batch_box`), and ties them to the clip and the
session. A cut is made from the frame on show, exactly as
:func:`fbupscale_gui.storage.video.cut_frame` makes it (one field of interlaced material when
"Single field" is on, the aspect restored), stored like a pasted cutout and added to the list
as ``<clip>_<timecode>.png``. A batch runs as a job in the engine thread's queue, one at a time
with reconstruction jobs, with its own progress bar and cancel. A clip that cannot be opened
gives one message naming the file and changes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Final

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.core.errors import FbError, error_line
from fbupscale_gui.state.clip_model import ClipModel
from fbupscale_gui.state.job_queue import Job, JobState, ProgressInfo, format_eta
from fbupscale_gui.state.video import (
    OUTPUT_SUFFIXES,
    VIDEO_SUFFIXES,
    BatchSpec,
    VideoBatch,
    add_cut,
    batch_name,
    default_output,
    describe_clip,
    is_clip_path,
    parse_range,
    range_summary,
    resolve_output,
    result_text,
)
from fbupscale_gui.storage.video import ClipInfo, Field, Rect, UpscaleResult, parse_position
from fbupscale_gui.ui.frame_view import FrameView
from fbupscale_gui.ui.theme import set_style_property
from fbupscale_gui.ui.video_batch_box import BatchBox
from fbupscale_gui.ui.video_cut_box import CutBox
from fbupscale_gui.ui.video_transport import TransportBar
from fbupscale_gui.ui.widgets import resize_within_screen

if TYPE_CHECKING:
    from fbupscale_gui.state.cutouts import Cutout
    from fbupscale_gui.state.session import Session

__all__ = ["VideoWindow"]

log = logging.getLogger(__name__)

TITLE: Final = "fbupscale — clip"
#: The width of the cut and batch column beside the frame (its texts wrap inside it).
_COLUMN_MIN_WIDTH: Final = 400


class VideoWindow(QWidget):
    """A top-level window bound to a session. Emits ``cutoutSent(cutout_id)``."""

    cutoutSent = Signal(int)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.session = session
        self.setWindowTitle(TITLE)
        self.setAcceptDrops(True)
        resize_within_screen(self, 1440, 900)
        self.clip = ClipModel(self)
        self.batch = VideoBatch(session.jobs, self)
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
        self.transport = TransportBar()
        self.cut_box = CutBox()
        self.batch_box = BatchBox()

        header = QHBoxLayout()
        header.addWidget(self.info_label, 1)
        header.addWidget(self.open_button)

        # the frame takes the height; cutting and the batch sit in a column beside it
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.view, 1)
        left_layout.addWidget(self.transport)
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

    def _build_actions(self) -> None:
        def action(text: str, keys: list[str], slot: object) -> QAction:
            a = QAction(text, self)
            a.setShortcuts([QKeySequence(k) for k in keys])
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            a.triggered.connect(slot)
            self.addAction(a)
            return a

        t = self.transport
        self.prev_action = action("Previous frame", ["Left"], t.step_back)
        self.next_action = action("Next frame", ["Right"], t.step_forward)
        action("Back one second", ["Shift+Left"], t.second_back)
        action("Forward one second", ["Shift+Right"], t.second_forward)
        action("First frame", ["Home"], t.go_first)
        action("Last frame", ["End"], t.go_last)
        self.send_action = action("Send to queue", ["Ctrl+Return", "Ctrl+Enter"], self.send)
        self.open_action = action("Open clip…", ["Ctrl+Shift+O"], self.choose_clip)

    def _bind(self) -> None:
        self.open_button.clicked.connect(self.choose_clip)
        self.clip.opened.connect(self._on_opened)
        self.clip.openFailed.connect(self._on_open_failed)
        self.clip.frameChanged.connect(self._on_frame)
        self.clip.frameFailed.connect(self._on_frame_failed)
        self.transport.slider.valueChanged.connect(self._on_slider)
        self.transport.positionEntered.connect(self._on_timecode_entered)
        self.view.rectChanged.connect(self._on_rect)
        cut = self.cut_box
        cut.field_check.toggled.connect(self._refresh_rect)
        cut.field_combo.currentIndexChanged.connect(self._refresh_rect)
        cut.clear_button.clicked.connect(self.clear_rect)
        cut.send_button.clicked.connect(self.send)
        batch = self.batch_box
        batch.set_start_button.clicked.connect(self.set_start_here)
        batch.set_end_button.clicked.connect(self.set_end_here)
        batch.start_edit.editingFinished.connect(self._update_range)
        batch.end_edit.editingFinished.connect(self._update_range)
        batch.engine_combo.currentIndexChanged.connect(self._update_range)
        batch.region_check.toggled.connect(self._update_range)
        batch.browse_button.clicked.connect(self.choose_output)
        batch.run_button.clicked.connect(self.start_batch)
        batch.cancel_button.clicked.connect(self.cancel_batch)
        self.batch.started.connect(self._on_batch_started)
        self.batch.progressed.connect(self._on_batch_progress)
        self.batch.ended.connect(self._on_batch_ended)

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
        self.transport.set_clip(info)
        self.view.set_rect(None)
        self.cut_box.set_clip(info)
        self.batch_box.start_edit.setText(info.timecode(0))
        self.batch_box.end_edit.setText(info.timecode(info.frame_count - 1))
        self.batch_box.output_edit.clear()
        self._set_clip_enabled(True)
        self._update_range()

    @Slot(str)
    def _on_open_failed(self, message: str) -> None:
        self.show_message("error", f"Could not open the clip: {message}")

    def _set_clip_enabled(self, enabled: bool) -> None:
        self.transport.set_active(enabled)
        self.cut_box.setEnabled(enabled)
        self.batch_box.setEnabled(enabled)
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

    def seek(self, index: int) -> None:
        """Move the slider (and so the frame on show) to ``index``."""
        self.transport.slider.setValue(index)

    @Slot(int)
    def _on_slider(self, value: int) -> None:
        if self.info is None:
            return
        self.clip.request_frame(value)
        self.transport.show_position(self.info, value)

    @Slot(str)
    def _on_timecode_entered(self, text: str) -> None:
        if self.info is None:
            return
        try:
            self.seek(self.info.index_of(parse_position(text, self.info.frame_rate)))
        except FbError as exc:
            self.show_message("warning", f"timecode: {exc}")
        self.transport.timecode.setText(self.info.timecode(self.transport.slider.value()))
        self.view.setFocus()

    @Slot(int)
    def _on_frame(self, index: int) -> None:
        self.view.set_image(self.clip.qimage)
        if self.clip.is_current() and self.info is not None:
            self.transport.show_position(self.info, index)
        self._schedule_preview()
        self._update_cut_actions()

    @Slot(str)
    def _on_frame_failed(self, message: str) -> None:
        self.show_message("warning", message)

    # -- the region -----------------------------------------------------------------------

    def field(self) -> Field | None:
        """The field a cut takes, or None for the whole frame."""
        return self.cut_box.field()

    def set_field(self, field: Field | None) -> None:
        self.cut_box.set_field(field)

    @Slot()
    def _refresh_rect(self, *_args: object) -> None:
        self._on_rect(self.view.rect_px())

    @Slot()
    def clear_rect(self) -> None:
        self.view.set_rect(None)

    @Slot(object)
    def _on_rect(self, rect: Rect | None) -> None:
        if rect is not None and not self._had_rect:
            self.batch_box.region_check.setChecked(True)  # a new region: the batch upscales it
        self._had_rect = rect is not None
        self.cut_box.show_rect(rect)
        self._update_cut_actions()
        self._update_range()
        self._schedule_preview()

    def _schedule_preview(self) -> None:
        self._preview_timer.start()

    @Slot()
    def _update_preview(self) -> None:
        rect = self.view.rect_px()
        preview = self.cut_box.preview
        if rect is None or self.clip.image is None:
            preview.set_image(None)
            return
        from fbupscale_gui.worker.qimage import pil_to_qimage

        try:
            cut = self.clip.cut(rect, self.field())
        except FbError:
            preview.set_image(None)
            return
        preview.set_image(pil_to_qimage(cut.image))

    def _update_cut_actions(self) -> None:
        has_rect = self.view.rect_px() is not None
        self.cut_box.set_can_cut(self.info is not None, has_rect)
        self.send_action.setEnabled(self.info is not None and has_rect)

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
        try:
            cut = self.clip.cut(rect, self.field())
        except FbError as exc:
            self.show_message("error", f"Could not cut the region: {exc}")
            return None
        cutout, level, text = add_cut(self.session.cutouts, cut)
        if text:
            self.show_message(level, text)
        if cutout is not None:
            self.cutoutSent.emit(cutout.id)
        return cutout

    # -- batch ----------------------------------------------------------------------------

    def set_range(self, first: int, last: int) -> None:
        """Frames ``first`` to ``last`` (both included)."""
        assert self.info is not None
        self.batch_box.start_edit.setText(self.info.timecode(first))
        self.batch_box.end_edit.setText(self.info.timecode(last))
        self._update_range()

    @Slot()
    def set_start_here(self) -> None:
        if self.info is not None:
            self.batch_box.start_edit.setText(self.info.timecode(self.transport.slider.value()))
            self._update_range()

    @Slot()
    def set_end_here(self) -> None:
        if self.info is not None:
            self.batch_box.end_edit.setText(self.info.timecode(self.transport.slider.value()))
            self._update_range()

    def _range(self, quiet: bool = False) -> tuple[int, int] | None:
        """``(first, last)`` (last included), or None (with a message unless ``quiet``)."""
        if self.info is None:
            return None
        box = self.batch_box
        try:
            return parse_range(self.info, box.start_edit.text(), box.end_edit.text())
        except FbError as exc:
            if not quiet:
                self.show_message("warning", f"Range: {exc}")
            return None

    def _batch_region(self) -> tuple[Rect | None, Field | None]:
        if self.batch_box.region_check.isChecked() and self.view.rect_px() is not None:
            return self.view.rect_px(), self.field()
        return None, None

    @Slot()
    def _update_range(self, *_args: object) -> None:
        info = self.info
        label = self.batch_box.range_label
        self.batch_box.region_check.setEnabled(
            self.view.rect_px() is not None and self.batch.job is None
        )
        if info is None:
            label.clear()
            return
        span = self._range(quiet=True)
        if span is None:
            label.setText("Not a valid range")
            return
        label.setText(range_summary(info, span[0], span[1], self._batch_region()[0]))

    def choose_output(self) -> None:
        span = self._range(quiet=True)
        if self.info is not None and span is not None:
            suggested = str(default_output(self.info, *span, self.batch_box.engine()))
        else:
            suggested = ""
        current = self.batch_box.output_edit.text().strip() or suggested
        pattern = " ".join(f"*{s}" for s in OUTPUT_SUFFIXES)
        path, _ = QFileDialog.getSaveFileName(
            self, "Write the upscaled clip to", current, f"Clips ({pattern})"
        )
        if path:
            self.batch_box.output_edit.setText(path)
            self._confirmed_output = str(Path(path).expanduser())  # the dialog asked

    def set_engine(self, engine: str) -> None:
        self.batch_box.set_engine(engine)

    def set_temporal(self, mode: str) -> None:
        self.batch_box.set_temporal(mode)

    @Slot()
    def start_batch(self) -> Job | None:
        """Queue the range as a job for the engine thread; None (with a message) if it can't."""
        info, box = self.info, self.batch_box
        if info is None:
            self.show_message("warning", "Open a clip first.")
            return None
        if self.batch.job is not None:
            self.show_message("warning", "A batch of this clip is already running.")
            return None
        span = self._range()
        if span is None:
            return None
        first, last = span
        engine = box.engine()
        try:
            out = resolve_output(
                info,
                box.output_edit.text(),
                default_output(info, first, last, engine),
                self._confirmed_output,
            )
        except FbError as exc:
            self.show_message("warning", f"Output: {exc}")
            return None
        rect, field = self._batch_region()
        spec = BatchSpec(
            clip=info.path,
            start=first,
            end=last + 1,
            engine=engine,
            output=str(out),
            rect=rect,
            field=field,
            temporal=box.temporal(),
        )
        self.hide_message()
        box.output_edit.setText(str(out))
        job = self.batch.start(spec, batch_name(info, first, last))
        box.eta_label.setText("queued" if job.state is JobState.QUEUED else "")
        box.show_outcome(f"Writing {out.name}…", "hint", 0)
        self._update_batch_buttons()
        return job

    @Slot()
    def cancel_batch(self) -> None:
        self.batch.cancel()

    def _update_batch_buttons(self) -> None:
        self.batch_box.set_running(
            self.batch.job is not None,
            has_clip=self.info is not None,
            has_rect=self.view.rect_px() is not None,
        )

    @Slot()
    def _on_batch_started(self) -> None:
        self.batch_box.eta_label.setText(format_eta(None))

    @Slot(object)
    def _on_batch_progress(self, info: ProgressInfo) -> None:
        p = info.progress
        self.batch_box.progress.setValue(round(p.fraction * 1000))
        self.batch_box.eta_label.setText(format_eta(info.eta_s))
        self.batch_box.batch_label.setText(p.message or info.text)

    @Slot(object)
    def _on_batch_ended(self, job: Job) -> None:
        box = self.batch_box
        box.eta_label.clear()
        if job.state is JobState.DONE and isinstance(job.result, UpscaleResult):
            text = result_text(job.result)
            box.show_outcome(text, "", 1000)
            box.output_edit.clear()  # the next run gets a new name, never this file
            if not self.isVisible():
                from fbupscale_gui.state.session import Message

                self.session.message.emit(Message("info", text))
        elif job.state is JobState.CANCELLED:
            box.show_outcome("Cancelled — nothing was written.", "warning", 0)
        else:
            why = error_line(job.error, unexpected=True) if job.error is not None else "no result"
            box.show_outcome(f"Failed — nothing was written: {why}", "error", 0)
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
