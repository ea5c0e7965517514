"""One long-lived QThread that owns the engine and runs one job at a time.

The GUI side (:class:`fbupscale_gui.models.jobs.JobQueue`) posts :class:`WorkItem`s through
:class:`EngineThread`; the :class:`EngineWorker` (living in the thread) runs them and reports
with signals, which Qt delivers queued to the GUI thread. Cancellation is a
:class:`threading.Event` per job, read by the engine's ``is_cancelled`` between diffusion steps.

All torch work happens here: the engine is created by the runner factory on the first job, in
this thread, and released here at shutdown (:meth:`EngineThread.shutdown`).

Each candidate is scored here too (LR-consistency against the job's cutout, a few tens of ms),
so the GUI thread receives it ready to show and never computes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

from fbupscale_gui.core.errors import Cancelled
from fbupscale_gui.core.job import Candidate, IsCancelled, OnProgress, Progress
from fbupscale_gui.core.request import ReconstructionRequest

from .qimage import pil_to_qimage, thumbnail

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "EngineThread",
    "EngineWorker",
    "JobRunner",
    "ReadyCandidate",
    "RunnerFactory",
    "Task",
    "WorkItem",
    "default_runner_factory",
]

log = logging.getLogger(__name__)

#: Side of the candidate thumbnails made in the worker thread (the grid shows them as-is).
THUMB_SIDE = 240
#: At most one progress signal per this many seconds, except stage changes and the last step.
_PROGRESS_INTERVAL_S = 0.05


class JobRunner(Protocol):
    """What the worker drives: :class:`fbupscale_gui.engine.Engine` or a test double."""

    def run(
        self, request: ReconstructionRequest, on_progress: OnProgress, is_cancelled: IsCancelled
    ) -> Iterator[Candidate]: ...

    def release(self) -> None: ...


RunnerFactory = Callable[[], JobRunner]
#: A job that is not a reconstruction (e.g. a video batch): called in this thread with the
#: progress and cancel callbacks; what it returns is sent as ``EngineWorker.taskDone``.
Task = Callable[[OnProgress, IsCancelled], object]


def default_runner_factory() -> JobRunner:
    """The real engine. Imported here, in the worker thread, so the GUI never loads torch."""
    from fbupscale_gui.engine import Engine

    return Engine()


@dataclass(frozen=True, eq=False)
class WorkItem:
    """One job for the worker: the request and its cancel flag (set from the GUI thread)."""

    job_id: int
    request: ReconstructionRequest
    cancel: threading.Event
    #: The cutout's pixels (a private copy) to score candidates against; None: no score.
    cutout: Image.Image | None = None
    #: Run this instead of the request (the request then only names the engine).
    task: Task | None = None


@dataclass(frozen=True, eq=False)
class ReadyCandidate:
    """A finished candidate with its QImage and tile thumbnail, both made in the worker."""

    candidate: Candidate
    image: QImage
    thumb: QImage
    #: LR-consistency in dB against the cutout, computed in the worker (None: not scored).
    lr_consistency: float | None = None
    #: Models the request does not name (e.g. Real-ESRGAN's weights): {name: {ref, sha256}}.
    models: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


class EngineWorker(QObject):
    """Lives in the engine thread. Slots run there; signals are queued to the GUI thread."""

    started = Signal(int)
    progressed = Signal(int, object)  # job id, Progress
    candidateReady = Signal(int, object)  # job id, ReadyCandidate
    finished = Signal(int)
    failed = Signal(int, object)  # job id, the exception
    cancelled = Signal(int)
    checked = Signal(object)  # result of check(), or the exception it raised
    taskDone = Signal(int, object)  # job id, what a WorkItem's task returned (before finished)

    def __init__(self, factory: RunnerFactory | None = None) -> None:
        super().__init__()
        self._factory = factory or default_runner_factory
        self._runner: JobRunner | None = None
        self._last_emit = 0.0
        self._last_stage = ""
        self._fast_models: dict[str, dict[str, str]] | None = None

    def _on_progress(self, job_id: int) -> OnProgress:
        def report(progress: Progress) -> None:
            now = time.monotonic()
            final = progress.job_total > 0 and progress.job_step >= progress.job_total
            if (
                progress.stage != self._last_stage
                or final
                or progress.note is not None  # a note must reach the window
                or now - self._last_emit >= _PROGRESS_INTERVAL_S
            ):
                self._last_emit = now
                self._last_stage = progress.stage
                self.progressed.emit(job_id, progress)

        return report

    @Slot(object)
    def run(self, item: WorkItem) -> None:
        """Run one job to the end, reporting each candidate as it is ready."""
        self._last_stage = ""
        self.started.emit(item.job_id)
        try:
            if item.cancel.is_set():
                raise Cancelled()
            if item.task is not None:
                result = item.task(self._on_progress(item.job_id), item.cancel.is_set)
                self.taskDone.emit(item.job_id, result)
                self.finished.emit(item.job_id)
                return
            if self._runner is None:
                self._runner = self._factory()
            for candidate in self._runner.run(
                item.request, self._on_progress(item.job_id), item.cancel.is_set
            ):
                image = pil_to_qimage(candidate.image)
                ready = ReadyCandidate(
                    candidate,
                    image,
                    thumbnail(image, THUMB_SIDE),
                    _score(item.cutout, candidate),
                    self._models_for(candidate),
                )
                self.candidateReady.emit(item.job_id, ready)
        except Cancelled:
            self.cancelled.emit(item.job_id)
        except Exception as exc:  # a failing job must never take the window down
            if not _is_expected(exc):
                log.exception("job %d failed unexpectedly", item.job_id)
            self.failed.emit(item.job_id, exc)
        else:
            self.finished.emit(item.job_id)

    def _models_for(self, candidate: Candidate) -> dict[str, dict[str, str]]:
        """Real-ESRGAN's weights and their hash (once per thread); FLUX requests carry theirs."""
        if candidate.request.engine != "realesrgan":
            return {}
        if self._fast_models is None:
            try:
                from fbupscale_gui.core.models import fingerprint
                from fbupscale_gui.engine.fast import realesrgan_model_files

                _param, weights = realesrgan_model_files()
                self._fast_models = {
                    "realesrgan": {"ref": str(weights), "sha256": fingerprint(weights)}
                }
            except Exception:  # provenance must never fail a job
                log.exception("could not fingerprint the Real-ESRGAN weights")
                self._fast_models = {}
        return self._fast_models

    @Slot(object)
    def check(self, fn: Callable[[], object]) -> None:
        """Run a slow check (e.g. locating FLUX weights) off the GUI thread."""
        try:
            result: object = fn()
        except Exception as exc:
            result = exc
        self.checked.emit(result)

    @Slot()
    def release(self) -> None:
        """Free the engine (GPU memory) in this thread, then end the thread's event loop."""
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                runner.release()
        except Exception:
            log.exception("releasing the engine failed")
        finally:
            thread = QThread.currentThread()
            if thread is not None:
                thread.quit()


def _score(cutout: Image.Image | None, candidate: Candidate) -> float | None:
    if cutout is None:
        return None
    from fbupscale_gui.core.scoring import score_candidate

    return score_candidate(cutout, candidate)


def _is_expected(exc: BaseException) -> bool:
    from fbupscale_gui.core.errors import FbError

    return isinstance(exc, FbError)


class EngineThread(QObject):
    """Owns the QThread and its :class:`EngineWorker`. Lives in the GUI thread."""

    _submit = Signal(object)
    _check = Signal(object)
    _release = Signal()

    def __init__(self, factory: RunnerFactory | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("fbupscale-engine")
        self.worker = EngineWorker(factory)
        self.worker.moveToThread(self._thread)
        self._submit.connect(self.worker.run)
        self._check.connect(self.worker.check)
        self._release.connect(self.worker.release)

    def start(self) -> None:
        if not self._thread.isRunning():
            self._thread.start()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def submit(self, item: WorkItem) -> None:
        self.start()
        self._submit.emit(item)

    def check(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` in the engine thread; the result arrives as ``worker.checked``."""
        self.start()
        self._check.emit(fn)

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Release the engine in its thread after the current job, and wait for the thread.

        Cancel the running job first for a prompt exit. Returns False if the thread did not
        end within ``timeout_ms``.
        """
        if not self._thread.isRunning():
            return True
        self._release.emit()
        return bool(self._thread.wait(timeout_ms))
