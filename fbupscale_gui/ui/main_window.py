"""The main window: assembles the three panes, the toolbar, menus and status bar.

It holds no state of its own: cutouts, candidates, picks, jobs and settings live in the
:class:`~fbupscale_gui.state.session.Session`; the panes are bound to it here.

Scene and prompt are per cutout, kept in step with the current cutout by
:class:`~fbupscale_gui.state.editor_sync.EditorSync`; the Advanced parameters and the engine
are shared by all cutouts. The actions, toolbar and menus are made by
:mod:`fbupscale_gui.ui.window_actions`; what is opened, dropped or pasted is taken in by the
base class (:mod:`fbupscale_gui.ui.window_inputs`); every message shown goes through the
error channel (:mod:`fbupscale_gui.ui.error_channel`), which logs it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Final

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtWidgets import QLabel, QWidget

from fbupscale_gui.state.editor_sync import EditorSync
from fbupscale_gui.state.settings_model import read_window_geometry
from fbupscale_gui.ui.theme import set_style_property
from fbupscale_gui.ui.widgets import resize_within_screen
from fbupscale_gui.ui.window_actions import (
    build_actions,
    build_menus,
    build_toolbar,
    update_actions,
)
from fbupscale_gui.ui.window_inputs import InputsWindow

if TYPE_CHECKING:
    from PySide6.QtCore import QSettings
    from PySide6.QtGui import QAction, QCloseEvent
    from PySide6.QtWidgets import QComboBox, QPushButton

    from fbupscale_gui.state.cutouts import Cutout
    from fbupscale_gui.state.gpu import GpuMonitor
    from fbupscale_gui.state.job_queue import Job
    from fbupscale_gui.state.session import Message, Session
    from fbupscale_gui.ui.candidates_panel import CandidatesPanel
    from fbupscale_gui.ui.cutout_panel import CutoutPanel
    from fbupscale_gui.ui.message_bar import MessageBar
    from fbupscale_gui.ui.params_panel import ParamsPanel
    from fbupscale_gui.ui.scene_editor import SceneEditor
    from fbupscale_gui.ui.status_widgets import GpuLabel, JobProgress
    from fbupscale_gui.ui.video_window import VideoWindow

__all__ = ["WINDOW_TITLE", "MainWindow"]

log = logging.getLogger(__name__)

WINDOW_TITLE: Final = "fbupscale — football cutout reconstruction"
#: How long passing news stays in the status bar.
_STATUS_MS: Final = 10_000
#: How the middle column is shared when Advanced is expanded: scene editor : parameters.
_SCENE_STRETCH: Final = 3
_PARAMS_STRETCH: Final = 2
#: Lines a title bar and a desktop panel take from the screen's height.
_SPLITTERS_KEY: Final = "window/splitters"
_SCENE_SPLITTER_KEY: Final = "window/sceneSplitter"
_SELECTED_KEY: Final = "window/selectedCutout"
#: Set once the operator has been shown where exports go.
_EXPORT_TOLD_KEY: Final = "ui/export_folder_told"


class MainWindow(InputsWindow):
    """Three panes: cutouts | scene + parameters | candidates and compare."""

    # made by ui/window_actions.py
    open_action: QAction
    open_folder_action: QAction
    open_clip_action: QAction
    paste_action: QAction
    run_action: QAction
    cancel_action: QAction
    export_action: QAction
    export_current_action: QAction
    settings_action: QAction
    sessions_action: QAction
    rerun_action: QAction
    models_action: QAction
    flux_models_action: QAction
    next_action: QAction
    prev_action: QAction
    quit_action: QAction
    pick_actions: list[QAction]
    engine_combo: QComboBox
    run_button: QPushButton

    def __init__(
        self,
        session: Session | None = None,
        gpu: GpuMonitor | None = None,
        parent: QWidget | None = None,
        *,
        store: QSettings | None = None,
    ) -> None:
        """A window for ``session``; with no session, a light shell that shows at once.

        The shell (title, remembered geometry, "Loading…") needs only Qt, so the application
        can show it before importing the rest; :meth:`build` then adds the panes.
        """
        super().__init__(parent)
        self.confirm_on_close = True
        self._video: VideoWindow | None = None
        self._built = False
        self._wanted_sha = ""
        self.gpu: GpuMonitor | None = None
        self.setWindowTitle(WINDOW_TITLE)
        self.setAcceptDrops(True)
        placeholder = QLabel("Loading…")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        set_style_property(placeholder, "role", "hint")
        self.setCentralWidget(placeholder)
        self._restore_geometry(
            store if store is not None else session.settings.store if session else None
        )
        if session is not None:
            self.build(session, gpu)

    def show_startup_error(self, text: str) -> None:
        """Replace the "Loading…" shell with ``text`` (start-up failed before :meth:`build`)."""
        label = QLabel(text)
        label.setWordWrap(True)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        set_style_property(label, "role", "error")
        self.setCentralWidget(label)

    def build(self, session: Session, gpu: GpuMonitor | None = None) -> None:
        """Add the three panes, toolbar, menus and status bar, bound to ``session``."""
        from PySide6.QtWidgets import QSplitter, QVBoxLayout

        from fbupscale_gui.ui.candidates_panel import CandidatesPanel
        from fbupscale_gui.ui.cutout_panel import CutoutPanel
        from fbupscale_gui.ui.error_channel import ErrorChannel
        from fbupscale_gui.ui.message_bar import MessageBar
        from fbupscale_gui.ui.params_panel import ParamsPanel
        from fbupscale_gui.ui.scene_editor import SceneEditor
        from fbupscale_gui.ui.status_widgets import GpuLabel, JobProgress

        self.session = session
        self.cutouts: CutoutPanel = CutoutPanel(session.cutouts)
        self.scene_editor: SceneEditor = SceneEditor()
        self.params: ParamsPanel = ParamsPanel(session.params)  # bound to the session's model
        self.candidates: CandidatesPanel = CandidatesPanel(session.candidates)

        middle = QWidget()  # the scene editor scrolls itself; the params panel folds away
        middle_layout = QVBoxLayout(middle)
        middle_layout.setContentsMargins(4, 4, 4, 4)
        middle_layout.addWidget(self.scene_editor, _SCENE_STRETCH)
        middle_layout.addWidget(self.params)
        self._middle_layout = middle_layout
        self.params.expandedChanged.connect(self._on_params_expanded)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.cutouts)
        self.splitter.addWidget(middle)
        self.splitter.addWidget(self.candidates)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 2)
        self.splitter.setSizes([260, 470, 870])
        self.splitter.setChildrenCollapsible(False)

        self.messages: MessageBar = MessageBar()
        self.errors = ErrorChannel(self)  # what is shown is logged too
        self.errors.display.connect(self._show)
        central = QWidget()
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(0, 0, 0, 0)
        central_layout.setSpacing(0)
        central_layout.addWidget(self.messages)
        central_layout.addWidget(self.splitter, 1)
        self.setCentralWidget(central)

        # -- status bar
        self.progress: JobProgress = JobProgress(session.jobs)
        self.gpu_label: GpuLabel = GpuLabel()
        self.statusBar().addWidget(self.progress, 1)
        self.statusBar().addPermanentWidget(self.gpu_label)
        self.gpu = gpu
        if gpu is not None:
            gpu.statusChanged.connect(self.gpu_label.set_status)
            if gpu.text:
                self.gpu_label.set_status(gpu.text)

        from PySide6.QtWidgets import QApplication

        from fbupscale_gui.ui.wheel_guard import WheelGuard

        self._wheel_guard = WheelGuard(self)  # the wheel scrolls forms, not their dropdowns
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self._wheel_guard)

        build_actions(self)
        build_toolbar(self)
        build_menus(self)
        self._bind()
        self._restore_layout()
        session.cutouts.rowsInserted.connect(self._select_wanted)
        session.restored.connect(self._select_wanted)
        self._built = True
        self._update_actions()
        # keyboard focus on the cutouts list (arrows, PgUp/PgDown, 1-9) once the window shows
        QTimer.singleShot(0, self.cutouts.list, self.cutouts.list.setFocus)

    # -- construction ---------------------------------------------------------------------

    def _bind(self) -> None:
        s = self.session
        self.cutouts.currentChanged.connect(self._on_current_cutout)
        self.cutouts.filesDropped.connect(self.load_paths)
        self.cutouts.openRequested.connect(self.open_files)
        self.editor_sync = EditorSync(s, self.scene_editor, self)
        self.scene_editor.promptChanged.connect(self.editor_sync.on_prompt_changed)
        self.scene_editor.numbersRequested.connect(self.editor_sync.on_numbers_requested)
        self.engine_combo.currentIndexChanged.connect(self._on_engine_combo)
        s.engine.engineChanged.connect(self._on_engine_changed)
        self._on_engine_changed(s.engine.engine)  # the summary says what the engine uses
        s.engine.modelsChanged.connect(self._on_models_changed)
        s.engine.fluxStatusChanged.connect(self._on_flux_status)
        s.jobs.busyChanged.connect(self._update_actions)
        s.candidates.pickChanged.connect(self._update_actions)
        s.cutouts.rowsInserted.connect(self._update_actions)
        s.message.connect(self.errors.report)
        s.exported.connect(self._on_exported)
        s.loraReported.connect(self.params.show_lora_report)
        s.sessionChanged.connect(self._on_session_changed)
        s.restored.connect(self._update_actions)
        s.cutouts.modelReset.connect(self._on_cutouts_reset)
        self._on_session_changed(s.session_path)
        s.settings.changed.connect(self.candidates.apply_settings)
        self.candidates.apply_settings(s.settings.settings)
        self._on_models_changed()
        self._on_engine_changed(s.engine.engine)

    @Slot(bool)
    def _on_params_expanded(self, expanded: bool) -> None:
        """Expanded, the parameters share the column with the scene (they scroll inside)."""
        self._middle_layout.setStretchFactor(self.params, _PARAMS_STRETCH if expanded else 0)

    # -- geometry -------------------------------------------------------------------------

    def _restore_geometry(self, store: QSettings | None) -> None:
        geometry, state = read_window_geometry(store) if store is not None else (None, None)
        if geometry is None or not self.restoreGeometry(geometry):
            # a first start: large, but never larger than the screen (1366x768 included)
            resize_within_screen(self, 1600, 960)
        if state is not None:
            self.restoreState(state)

    def save_geometry(self) -> None:
        """Window, splitters and the selected cutout, for the next start."""
        store = self.session.settings.store
        store.setValue(_SPLITTERS_KEY, self.splitter.saveState())
        store.setValue(_SCENE_SPLITTER_KEY, self.scene_editor.splitter().saveState())
        current = self.cutouts.current()
        store.setValue(_SELECTED_KEY, current.source.sha256 if current is not None else "")
        self.session.settings.save_window_geometry(self.saveGeometry(), self.saveState())

    def _restore_layout(self) -> None:
        """Splitter positions as they were left; the cutout selected then, once it is back."""
        from PySide6.QtCore import QByteArray

        store = self.session.settings.store
        for key, splitter in (
            (_SPLITTERS_KEY, self.splitter),
            (_SCENE_SPLITTER_KEY, self.scene_editor.splitter()),
        ):
            state = store.value(key)
            if isinstance(state, QByteArray):
                splitter.restoreState(state)
        wanted = store.value(_SELECTED_KEY, "")
        self._wanted_sha = wanted if isinstance(wanted, str) else ""

    @Slot()
    def _select_wanted(self, *_args: object) -> None:
        """Select the cutout that was selected at the last quit, when it comes back."""
        if not self._wanted_sha:
            return
        for row, cutout in enumerate(self.session.cutouts.cutouts()):
            if cutout.source.sha256 == self._wanted_sha:
                self._wanted_sha = ""
                self.cutouts.select_row(row)
                return

    def closeEvent(self, event: QCloseEvent) -> None:
        from fbupscale_gui.ui.export_guard import confirm_quit

        if not self._built:
            super().closeEvent(event)
            return
        if self.confirm_on_close and not confirm_quit(self, self.session):
            event.ignore()
            return
        self.save_geometry()
        if self.gpu is not None:
            self.gpu.stop()
        if self._video is not None:
            self._video.shutdown()
            self._video.close()
        if not self.session.shutdown(timeout_ms=30_000):
            log.warning("the engine thread did not stop within 30 s")
        self.errors.uninstall_hooks()
        super().closeEvent(event)

    # -- the train window -----------------------------------------------------------------

    def open_train_window(self) -> None:
        """The Train window (its own module; training runs in a child process)."""
        from fbupscale_gui.ui.train_window import TrainWindow

        if getattr(self, "_train", None) is None:
            s = self.session.settings.settings
            self._train = TrainWindow(self, flux=s.flux_dir, controlnet=s.controlnet_dir)
        self._train.show()
        self._train.raise_()

    # -- current cutout and its scene -----------------------------------------------------

    @Slot(object)
    def _on_current_cutout(self, cutout: Cutout | None) -> None:
        self.editor_sync.set_current(cutout)
        self.candidates.set_cutout(cutout)
        self._update_actions()

    @property
    def current_cutout(self) -> Cutout | None:
        """The cutout shown in the scene editor and the candidates pane."""
        return self.editor_sync.current

    def next_cutout(self) -> None:
        self.cutouts.step(+1)

    def previous_cutout(self) -> None:
        self.cutouts.step(-1)

    # -- engine ---------------------------------------------------------------------------

    @Slot(int)
    def _on_engine_combo(self, index: int) -> None:
        engine = self.engine_combo.itemData(index)
        if isinstance(engine, str) and engine != self.session.engine.engine:
            self.session.engine.set_engine(engine)
            self.session.settings.update(engine=engine)  # the operator's choice, kept

    @Slot(str)
    def _on_engine_changed(self, engine: str) -> None:
        index = self.engine_combo.findData(engine)
        if index >= 0 and index != self.engine_combo.currentIndex():
            self.engine_combo.setCurrentIndex(index)
        label = self.engine_combo.itemText(index) if index >= 0 else engine
        self.params.set_engine(engine, label)

    @Slot()
    def _on_models_changed(self) -> None:
        """Rebuild the user-model entries after the built-ins, keeping the selection."""
        from fbupscale_gui.state.engine_choice import ENGINES
        from fbupscale_gui.state.weights_library import model_engine, model_label

        combo = self.engine_combo
        blocked = combo.blockSignals(True)
        try:
            while combo.count() > len(ENGINES):
                combo.removeItem(combo.count() - 1)
            for entry in self.session.engine.models:
                combo.addItem(model_label(entry), model_engine(entry.name))
                tip = f"{entry.name}: {entry.summary}"
                combo.setItemData(combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            index = combo.findData(self.session.engine.engine)
            combo.setCurrentIndex(max(0, index))
        finally:
            combo.blockSignals(blocked)

    @Slot(str)
    def _on_flux_status(self, status: str) -> None:
        from fbupscale_gui.state.engine_choice import ENGINE_LABELS, FluxStatus
        from fbupscale_gui.state.session import FLUX_TOPIC

        index = self.engine_combo.findData("flux")
        label = ENGINE_LABELS["flux"]
        if status == FluxStatus.MISSING:
            label = "FLUX (weights missing)"
        elif status == FluxStatus.AVAILABLE:
            self.messages.dismiss(FLUX_TOPIC)  # found now: the banner would be stale
            self.messages.dismiss("flux-jobs")
        self.engine_combo.setItemText(index, label)

    # -- running --------------------------------------------------------------------------

    def run_selected(self) -> list[Job]:
        self.editor_sync.store()
        return self.session.run(self.cutouts.selected())

    def cancel(self) -> None:
        """Esc: the status reads "cancelling…" at once, then "cancelled" when the job stops."""
        if self.session.jobs.is_busy():
            self.progress.set_cancelling()
            self.session.jobs.cancel()

    def rerun_interrupted(self) -> list[Job]:
        return self.session.rerun_interrupted()

    @Slot()
    def _on_pick_action(self) -> None:
        from PySide6.QtGui import QAction

        action = self.sender()
        if isinstance(action, QAction) and self.current_cutout is not None:
            index = action.data()
            if isinstance(index, int):
                self.session.candidates.pick_index(self.current_cutout.id, index)

    # -- export ---------------------------------------------------------------------------

    def export_all(self) -> None:
        if self._fidelity_ok(None):
            self.session.export_in_background()

    def export_current(self) -> None:
        if self.current_cutout is not None and self._fidelity_ok([self.current_cutout.id]):
            self.session.export_in_background([self.current_cutout.id])

    @Slot(object)
    def _on_exported(self, paths: object) -> None:
        """The first export ever names the folder and offers to change it (once)."""
        store = self.session.settings.store
        if not isinstance(paths, list) or not paths or store.value(_EXPORT_TOLD_KEY, False):
            return
        store.setValue(_EXPORT_TOLD_KEY, True)
        folder = Path(paths[0]).parent
        self.messages.show_message(
            "info",
            f"Exports go to {folder}. Keep it, or choose another folder (also in Settings).",
            ("Change folder…", self.change_export_folder),
            "export-folder",
        )

    def change_export_folder(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        current = self.session.settings.settings.export_dir
        folder = QFileDialog.getExistingDirectory(self, "Export picks to", current)
        if folder:
            self.session.settings.update(export_dir=folder)
            self.statusBar().showMessage(f"Exports now go to {folder}", _STATUS_MS)

    def _fidelity_ok(self, cutout_ids: list[int] | None) -> bool:
        """Below the settings' LR-consistency threshold: ask, or refuse (ui/export_guard.py)."""
        from fbupscale_gui.ui.export_guard import confirm_fidelity

        return confirm_fidelity(self, self.session, cutout_ids)

    # -- settings -------------------------------------------------------------------------

    def open_models(self) -> None:
        """The Models dialog (non-modal: adding a model runs in the engine thread)."""
        from fbupscale_gui.ui.models_dialog import ModelsDialog

        dialog = getattr(self, "models_dialog", None)
        if dialog is None:
            dialog = self.models_dialog = ModelsDialog(self.session.sr_models, self)
        dialog.refresh()
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def open_flux_models(self) -> None:
        """The FLUX models page (non-modal: the survey and hashing run in the background)."""
        from fbupscale_gui.ui.flux_models_dialog import FluxModelsDialog

        dialog = getattr(self, "flux_models_dialog", None)
        if dialog is None:
            dialog = self.flux_models_dialog = FluxModelsDialog(self.session, self)
        else:
            dialog.refresh()
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def open_sessions(self) -> None:
        """The Sessions dialog (open, new, rename, archive, delete)."""
        from fbupscale_gui.ui.sessions_dialog import SessionsDialog

        self.editor_sync.store()  # the current cutout's edits belong to the session being left
        dialog = SessionsDialog(self.session, self)
        dialog.exec()

    @Slot()
    def _on_cutouts_reset(self) -> None:
        """Another session was opened: nothing is current any more."""
        self.editor_sync.current = None
        self.candidates.set_cutout(None)
        self._update_actions()

    @Slot(object)
    def _on_session_changed(self, path: object) -> None:
        from fbupscale_gui.storage.session_catalogue import read_info
        from fbupscale_gui.storage.session_index import SessionError

        name = ""
        if path is not None:
            try:
                name = read_info(str(path)).name
            except SessionError:
                name = ""
        self.setWindowTitle(f"{WINDOW_TITLE} — {name}" if name else WINDOW_TITLE)
        self._update_actions()

    def open_settings(self) -> None:
        from fbupscale_gui.ui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.session.settings.settings, self)
        if dialog.exec() and (result := dialog.result_settings()) is not None:
            old = self.session.settings.settings
            self.session.settings.set(result)  # its LoRA file and memory mode reach the params
            if (old.flux_dir, old.controlnet_dir, old.hf_cache) != (
                result.flux_dir,
                result.controlnet_dir,
                result.hf_cache,
            ):
                self.session.check_models()

    # -- messages and state ---------------------------------------------------------------

    @Slot(object)
    def show_message(self, message: Message) -> None:
        """Show ``message`` through the error channel (logged when it is a warning or error)."""
        self.errors.report(message)

    @Slot(object)
    def _show(self, message: Message) -> None:
        """Errors and warnings as banners (one per topic); passing news in the status bar."""
        from fbupscale_gui.state.session import FLUX_TOPIC

        action = None
        if message.retry is not None or message.rerun:
            action = (message.retry_label or "Retry", lambda: self.session.retry(message))
        elif message.topic == FLUX_TOPIC:
            action = ("Set up FLUX…", self.open_flux_models)
        topic = message.topic or f"text:{message.text}"
        if message.level == "info" and action is None:
            self.messages.dismiss(topic)  # an older error on the same topic no longer holds
            self.statusBar().showMessage(message.text, _STATUS_MS)
            return
        row = self.messages.show_message(message.level, message.text, action, topic)
        if message.details:
            row.setToolTip(message.details)

    def _update_actions(self, *_args: object) -> None:
        update_actions(self)
