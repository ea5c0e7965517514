"""The session: the models the window shows, and the actions on them (run, export).

This is the window's state and logic in one testable place, without widgets: cutouts,
candidates and picks, the job queue, the engine choice, the Advanced parameters
(:class:`~fbupscale_gui.state.parameters.Parameters`, saved with the session) and the settings.
The main window only binds widgets to it. This module holds the session's life on disk (open,
new, rebuild, rename, archive, delete, restore) and the loading of files; running is in
:mod:`~fbupscale_gui.state.session_run`, exporting in :mod:`~fbupscale_gui.state.session_export`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from fbupscale_gui.core.errors import FbError, InputImageError, error_line
from fbupscale_gui.core.settings import Settings
from fbupscale_gui.host.client import DEFAULT_FACTORY
from fbupscale_gui.state.candidates import CandidateEntry, CandidateStore
from fbupscale_gui.state.cutout_status import CutoutStatus
from fbupscale_gui.state.cutouts import Cutout, CutoutsModel, Decoded, LoadReport, decode_paths
from fbupscale_gui.state.engine_choice import EngineChoice
from fbupscale_gui.state.job_queue import JobQueue
from fbupscale_gui.state.parameters import Parameters
from fbupscale_gui.state.session_export import ExportActions
from fbupscale_gui.state.session_message import FLUX_TOPIC, Level, Message
from fbupscale_gui.state.session_persist import SessionRecorder
from fbupscale_gui.state.session_restore import ImageLoader, Restored, load_restored
from fbupscale_gui.state.session_run import (
    RunActions,
    apply_environment,
    base_request,
    engine_server,
)
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.state.weights_library import SrLibrary
from fbupscale_gui.worker.engine_process import ProcessLink
from fbupscale_gui.worker.engine_thread import EngineThread, RunnerFactory

if TYPE_CHECKING:
    from fbupscale_gui.storage.session_store import SessionStore

__all__ = ["FLUX_TOPIC", "Level", "Message", "Session", "base_request"]

log = logging.getLogger(__name__)


class Session(RunActions, ExportActions, QObject):
    """Everything the window shows, with the actions on it."""

    message = Signal(object)  # Message
    exported = Signal(object)  # list[Path]
    #: The session folder now shown (None: nothing is saved), after :meth:`open_session`.
    sessionChanged = Signal(object)
    #: A session finished restoring (its cutouts, candidates and picks are in the models;
    #: the candidates' images follow, see ``imagesRestored``).
    restored = Signal()
    #: Every restored candidate has its tile image and full-resolution pixels.
    imagesRestored = Signal()
    #: The engine loaded a LoRA: its path, "info" or "warning", and what it applied / left out.
    loraReported = Signal(str, str, str)

    def __init__(
        self,
        settings: SettingsModel,
        runner_factory: RunnerFactory | None = None,
        parent: QObject | None = None,
        *,
        engine_factory: str = DEFAULT_FACTORY,
        engine_kwargs: dict[str, object] | None = None,
    ) -> None:
        """Jobs run in the engine process (``engine_factory``, ``module:callable``, made with
        ``engine_kwargs`` there); with ``runner_factory`` (a test double sharing state with a
        test) they run in a thread of this process instead, through the same facade."""
        super().__init__(parent)
        self.settings = settings
        self.cutouts = CutoutsModel(self)
        self.candidates = CandidateStore(self)
        #: Checks and task callables; the jobs too when a runner factory is given.
        self.engine_thread = EngineThread(runner_factory, self)
        self.engine_link: EngineThread | ProcessLink = (
            self.engine_thread
            if runner_factory is not None
            else ProcessLink(
                factory=engine_factory,
                kwargs=engine_kwargs,
                grace_s=settings.settings.cancel_grace_s,
                server=engine_server(settings.settings),
                parent=self,
            )
        )
        self.jobs = JobQueue(self.engine_link, self.candidates, self, tasks=self.engine_thread)
        settings.changed.connect(self._on_settings_changed)
        self.engine = EngineChoice(self.engine_thread, settings.settings.engine, self)
        self.sr_models = SrLibrary(self.jobs, parent=self)
        self.sr_models.changed.connect(self._on_models_changed)
        self._on_models_changed()
        self.jobs.jobEnded.connect(self._on_job_ended)
        self.status = CutoutStatus(self.cutouts, self.jobs, self.candidates, self)
        self.restored.connect(self.status.refresh_all)
        self.jobs.noted.connect(self._on_job_note)
        self.cutouts.loaded.connect(self._on_loaded)
        self.engine.fluxMissing.connect(self._on_flux_missing)
        self._exported: set[int] = set()  # uid of each exported CandidateEntry
        #: The Advanced parameters every request is built with (saved with the session).
        self.params = Parameters(settings.settings, self)
        self.recorder = SessionRecorder(self.cutouts, self.candidates, self.jobs, self.params, self)
        self.recorder.failed.connect(self._on_save_failed)
        self.recorder.recovered.connect(self._on_save_recovered)
        self._generation = 0  # bumped by each open: a slow restore of an older one is dropped
        self._restoring = False
        self._loader: ImageLoader | None = None  # decodes the restored candidates' images
        self._wanted: int | None = None  # the cutout whose grid is shown
        self._image_problems: list[str] = []
        #: Files decoded while a session was being read, added when it is in.
        self._pending_loads: list[list[Decoded | InputImageError]] = []
        self.candidates.imagesWanted.connect(self._on_images_wanted)
        apply_environment(settings.settings)

    # -- the session on disk ---------------------------------------------------------------

    @property
    def session_path(self) -> Path | None:
        """The session folder being written (None: this window's work is not saved)."""
        return self.recorder.path

    @property
    def is_restoring(self) -> bool:
        return self._restoring

    @property
    def images_pending(self) -> bool:
        """Restored candidates whose images are still being decoded."""
        return self._loader is not None

    def open_session(self, path: str | Path | None = None, *, fallback: bool = True) -> bool:
        """Show the session in ``path`` (default: the last one, else a new one).

        Refused (False, with a message) while a job runs. The current session is written out
        and closed first; the index is read and the cutouts decoded off the GUI thread on a
        running asyncio loop (now, without one), then every cutout, candidate and pick, and the
        session's Advanced parameters (the defaults if it has none), are shown at once
        (``restored``); the candidates' full-resolution PNGs are decoded by an
        :class:`ImageLoader` thread, the shown cutout's first, and their tiles fill in
        (``imagesRestored`` when all are in). Jobs left queued or running show as interrupted.

        A damaged session is never written to: it stays on disk (listed as damaged, see
        :func:`~fbupscale_gui.storage.session_store.rebuild_index`), the operator is told why,
        and, with ``fallback``, a new session is started so the window's work is saved.
        """
        from fbupscale_gui.storage.session_catalogue import last_session
        from fbupscale_gui.storage.session_index import SessionError
        from fbupscale_gui.storage.session_store import create_session

        if self.jobs.is_busy():
            self.message.emit(
                Message("warning", "Cancel or wait for the running job before switching session.")
            )
            return False
        try:
            folder = Path(path) if path is not None else (last_session() or create_session())
        except SessionError as exc:
            self.message.emit(Message("error", f"{exc}. This window's work is not being saved."))
            return False
        self._clear()
        writer = self.recorder.start(folder)
        writer.submit(_RememberLast())  # "reopen this one next time", in the writer thread
        self._generation += 1
        self._restoring = True
        self.sessionChanged.emit(folder)
        generation = self._generation
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._apply_restored(generation, _call_restore(self.recorder, folder), fallback)
            return True

        # submitted now (not when the task first runs): the index is read while the window
        # lays out and paints
        future = loop.run_in_executor(None, _call_restore, self.recorder, folder)

        async def work() -> None:
            self._apply_restored(generation, await future, fallback)

        loop.create_task(work()).add_done_callback(self._report_task_error)
        return True

    def new_session(self, name: str = "", *, fallback: bool = True) -> bool:
        """Create an empty session and switch to it."""
        from fbupscale_gui.storage.session_index import SessionError
        from fbupscale_gui.storage.session_store import create_session

        if self.jobs.is_busy():
            self.message.emit(
                Message("warning", "Cancel or wait for the running job before switching session.")
            )
            return False
        try:
            folder = create_session(name)
        except SessionError as exc:
            self.message.emit(Message("error", str(exc)))
            return False
        return self.open_session(folder, fallback=fallback)

    def rebuild_session(self, path: str | Path) -> bool:
        """Recover a damaged session from its candidate files, then open it."""
        from fbupscale_gui.storage.session_index import SessionError
        from fbupscale_gui.storage.session_store import rebuild_index

        folder = Path(path)
        if folder == self.session_path:  # its writer holds the index
            self.message.emit(
                Message("warning", "Open another session before rebuilding this one.")
            )
            return False
        if self.jobs.is_busy():
            self.message.emit(
                Message("warning", "Cancel or wait for the running job before switching session.")
            )
            return False
        try:
            info, problems = rebuild_index(folder)
        except SessionError as exc:
            self.message.emit(Message("error", str(exc)))
            return False
        text = (
            f"Rebuilt the session “{info.name}” from its files: {info.cutouts} cutout(s), "
            f"{info.candidates} candidate(s). Picks and export records were only in the "
            "damaged index; the old index is kept beside it."
        )
        if problems:
            text += f" Not recovered: {_listed(problems)}."
        self.message.emit(Message("warning" if problems else "info", text))
        return self.open_session(folder)

    def rename_session(self, path: str | Path, name: str) -> bool:
        from fbupscale_gui.storage.session_catalogue import rename_session
        from fbupscale_gui.storage.session_index import SessionError

        try:
            rename_session(path, name)
        except SessionError as exc:
            self.message.emit(Message("error", str(exc)))
            return False
        if self.session_path is not None and Path(path) == self.session_path:
            self.sessionChanged.emit(self.session_path)
        return True

    def archive_session(self, path: str | Path, archived: bool = True) -> bool:
        from fbupscale_gui.storage.session_catalogue import set_archived
        from fbupscale_gui.storage.session_index import SessionError

        try:
            set_archived(path, archived)
        except SessionError as exc:
            self.message.emit(Message("error", str(exc)))
            return False
        return True

    def delete_session(self, path: str | Path) -> bool:
        """Delete a session folder. The current one only when no job runs; a new empty
        session replaces it."""
        from fbupscale_gui.storage.session_catalogue import delete_session
        from fbupscale_gui.storage.session_index import SessionError

        folder = Path(path)
        current = self.session_path is not None and folder == self.session_path
        if current and self.jobs.is_busy():
            self.message.emit(
                Message("warning", "The current session cannot be deleted while a job runs.")
            )
            return False
        if current:
            self._generation += 1  # drop a restore still under way
            self._clear()
        try:
            delete_session(folder)
        except SessionError as exc:
            self.message.emit(Message("error", str(exc)))
            if current:
                self.open_session(folder)
            return False
        if current:
            self.new_session()
        return True

    def _clear(self) -> None:
        self._stop_loader()
        self.recorder.close()
        self.jobs.forget()
        self.candidates.clear()
        self.cutouts.clear()
        self._exported.clear()

    def _apply_restored(
        self, generation: int, result: Restored | BaseException, fallback: bool = True
    ) -> None:
        from fbupscale_gui.storage.session_catalogue import session_name
        from fbupscale_gui.storage.session_index import SessionDamagedError

        if generation != self._generation:
            return  # another session was opened meanwhile
        self._restoring = False
        if isinstance(result, BaseException):
            damaged = isinstance(result, SessionDamagedError) or not isinstance(
                result, FbError | OSError
            )
            if not isinstance(result, FbError):
                log.error("session restore failed", exc_info=result)
            folder = self.session_path
            if damaged and fallback and folder is not None:
                started = self.new_session(fallback=False)
                then = "New work goes to a new session." if started else "Work is not saved."
                self.message.emit(
                    Message(
                        "error",
                        f"Session “{session_name(folder)}” is damaged ({_reason(result)}); it "
                        f"is kept, and File ▸ Sessions ▸ Rebuild recovers it. {then}",
                        details=str(folder),
                    )
                )
                if started:
                    return
            else:
                self.message.emit(Message("error", f"Could not reopen the session: {result}"))
            self.restored.emit()
            self._add_pending_loads()
            return
        interrupted, exported = self.recorder.apply(result)
        self._exported.update(exported)
        self._start_loader(generation)
        if result.problems:
            self.message.emit(
                Message(
                    "warning", f"Some of the session could not be read: {_listed(result.problems)}."
                )
            )
        if interrupted:
            names = ", ".join(sorted({j.cutout_name for j in interrupted})[:5])
            self.message.emit(
                Message(
                    "warning",
                    f"{len(interrupted)} job(s) were interrupted when fbupscale stopped ({names}).",
                    retry_label="Re-run interrupted",
                    rerun=tuple(interrupted),
                )
            )
        self.restored.emit()
        self._add_pending_loads()

    def _add_pending_loads(self) -> None:
        """Add the files decoded while the session was being read (after its cutouts, so a
        file already in the session is recognised and never added twice)."""
        pending, self._pending_loads = self._pending_loads, []
        for results in pending:
            self.cutouts.add_decoded(results)

    # -- restored candidates' images (decoded in the loader's thread) ----------------------

    def _start_loader(self, generation: int) -> None:
        entries = [
            e
            for c in self.cutouts.cutouts()
            for e in self.candidates.entries(c.id)
            if e.stored is not None and not e.has_thumb
        ]
        self._image_problems = []
        if not entries:
            self.imagesRestored.emit()
            return
        loader = ImageLoader(generation, entries, self)
        loader.decoded.connect(self._on_image_decoded)
        loader.failed.connect(self._on_image_failed)
        loader.finished.connect(self._on_images_finished)
        loader.want(self._wanted)
        self._loader = loader
        loader.start()

    def _stop_loader(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:
            loader.stop()
            loader.decoded.disconnect(self._on_image_decoded)
            loader.failed.disconnect(self._on_image_failed)
            loader.finished.disconnect(self._on_images_finished)
            loader.deleteLater()

    @Slot(int)
    def _on_images_wanted(self, cutout_id: int) -> None:
        self._wanted = cutout_id
        if self._loader is not None:
            self._loader.want(cutout_id)

    def _current_loader(self, generation: int) -> bool:
        return self._loader is not None and self._loader.generation == generation

    @Slot(int, object, object, object)
    def _on_image_decoded(
        self, generation: int, entry: CandidateEntry, image: object, thumb: object
    ) -> None:
        if self._current_loader(generation):
            self.candidates.provide_image(entry, image, thumb)  # type: ignore[arg-type]

    @Slot(int, object, str)
    def _on_image_failed(self, generation: int, entry: CandidateEntry, text: str) -> None:
        if self._current_loader(generation):
            self._image_problems.append(text)
            self.candidates.discard(entry)

    @Slot(int)
    def _on_images_finished(self, generation: int) -> None:
        if not self._current_loader(generation):
            return
        self._stop_loader()
        problems, self._image_problems = self._image_problems, []
        if problems:
            self.message.emit(
                Message("warning", f"Some candidates could not be read: {_listed(problems)}.")
            )
        self.imagesRestored.emit()

    def note_cutout_changed(self, cutout: Cutout) -> None:
        """The cutout's scene or prompt changed: record it."""
        self.recorder.record_cutout(cutout)

    @Slot(str)
    def _on_save_failed(self, text: str) -> None:
        self.message.emit(Message("error", text, topic="session-save"))

    @Slot()
    def _on_save_recovered(self) -> None:
        folder = self.session_path
        self.message.emit(  # replaces the failure's banner: it no longer holds
            Message("info", f"The session is being saved again to {folder}.", topic="session-save")
        )

    # -- loading --------------------------------------------------------------------------

    @Slot(object)
    def _on_loaded(self, report: LoadReport) -> None:
        text = report.message()
        if text:
            level: Level = "error" if report.errors else "warning" if report.warnings else "info"
            self.message.emit(Message(level, text))

    def load(self, paths: Iterable[str | Path]) -> None:
        """Load files/folders: off the GUI thread on a running asyncio (qasync) loop, else now.

        Files decoded while a session is being read are added once it is in (whatever
        finishes first), so content already in the session is recognised as such."""
        items = [str(p) for p in paths]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._add_loaded(decode_paths(items))
            return

        async def work() -> None:
            self._add_loaded(await asyncio.to_thread(decode_paths, items))

        loop.create_task(work()).add_done_callback(self._report_task_error)

    def _add_loaded(self, results: list[Decoded | InputImageError]) -> None:
        if self._restoring:
            self._pending_loads.append(results)
        else:
            self.cutouts.add_decoded(results)

    def _report_task_error(self, task: asyncio.Task[object]) -> None:
        """A background task (reopening a session, loading, exporting) failed: a bug, so it
        is logged with its traceback and shown, never only logged."""
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.error("background task failed", exc_info=exc)
            text = f"A background task failed: {error_line(exc, unexpected=True)}"
            self.message.emit(Message("error", text, topic="background"))

    # -- shutdown -------------------------------------------------------------------------

    @Slot(object)
    def _on_settings_changed(self, settings: Settings) -> None:
        self.params.apply_settings(settings)
        if isinstance(self.engine_link, ProcessLink):
            self.engine_link.grace_s = settings.cancel_grace_s

    def prewarm_engine(self) -> None:
        """Start the engine process now if the settings ask for it (after the first paint)."""
        if self.settings.settings.engine_prewarm and isinstance(self.engine_link, ProcessLink):
            self.engine_link.prewarm()

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Cancel jobs, stop the engine (process and thread) and wait for them to end;
        then write out what is queued for the session and close it."""
        ok = self.jobs.shutdown(timeout_ms)
        self._stop_loader()
        self.recorder.close()
        return ok


class _RememberLast:
    """A writer operation: remember the store's folder as the session to reopen."""

    def __call__(self, store: SessionStore) -> None:
        from fbupscale_gui.storage.session_catalogue import set_last_session

        set_last_session(store.path)


def _call_restore(recorder: SessionRecorder, folder: Path) -> Restored | BaseException:
    """Wait for the writer to open the session (it marks interrupted jobs), then read the
    snapshot and decode its cutouts (the candidates' pixels are left to the ImageLoader).
    Runs in a worker thread (in the calling one without an asyncio loop); returns the error
    instead of raising."""
    from fbupscale_gui.storage.session_reader import read_snapshot

    try:
        writer = recorder.writer
        problems: list[str] = []
        if writer is not None:
            writer.flush()
            error = writer.open_error
            if error is not None and not isinstance(error, OSError | sqlite3.Error):
                return error  # damaged: a disk problem (read-only) still shows what is there
            problems = writer.open_problems
        restored = load_restored(read_snapshot(folder))
        restored.problems[:0] = problems
        restored.params = recorder.read_params()
        return restored
    except Exception as exc:  # reported by _apply_restored
        return exc


def _reason(exc: BaseException) -> str:
    from fbupscale_gui.storage.session_index import SessionDamagedError

    if isinstance(exc, SessionDamagedError):
        return exc.reason
    if isinstance(exc, RecursionError):
        return "its index holds data nested too deeply to read"
    return error_line(exc)


def _listed(problems: list[str], shown: int = 5) -> str:
    """The first few problems in one line, and how many more there are."""
    more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
    return "; ".join(problems[:shown]) + more
