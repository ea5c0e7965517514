"""The job queue: one job at a time, run by the engine; its messages handled in one place.

State lives here, in the GUI thread. The engine link (its own process,
:class:`~fbupscale_gui.worker.ProcessLink`, or a thread for test doubles) only runs what it
is handed and answers with one stream of :mod:`~fbupscale_gui.core.messages`, which
:meth:`JobQueue._on_delivered` turns into this model's signals. Every outcome (done, failed,
cancelled, the engine process dying) ends the job and starts the next, so a failing job never
stops the queue. A GPU out-of-memory failure keeps the job's request so the window can offer
a retry with the error's ``next_mode``; a job whose engine process died can be re-run as it was.
"""

from __future__ import annotations

import enum
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from PySide6.QtCore import QObject, Signal, Slot

from fbupscale_gui.core.errors import FbError, GpuOutOfMemoryError
from fbupscale_gui.core.job import Progress
from fbupscale_gui.core.messages import (
    Cancelled,
    CandidateReady,
    Done,
    EngineCrashed,
    Failed,
    JobKind,
    JobProgress,
    ReconstructJob,
    Started,
    Warning,
    rebuild_error,
)
from fbupscale_gui.core.request import ReconstructionRequest
from fbupscale_gui.state.candidates import CandidateStore
from fbupscale_gui.worker.bridge import Delivery
from fbupscale_gui.worker.engine_process import ProcessLink
from fbupscale_gui.worker.engine_thread import EngineThread, Task

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Job", "JobQueue", "JobState", "ProgressInfo", "format_eta", "format_progress"]

log = logging.getLogger(__name__)

_STAGE_NAMES: Final = {
    "load": "loading models",
    "stage1": "stage 1",
    "stage2": "stage 2",
    "fast": "upscaling",
}


class JobState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: Queued or running when the application stopped (restored from the session); re-run it
    #: with :meth:`JobQueue.retry`.
    INTERRUPTED = "interrupted"


@dataclass(eq=False)
class Job:
    id: int
    cutout_id: int
    cutout_name: str
    request: ReconstructionRequest
    cancel: threading.Event = field(default_factory=threading.Event)
    state: JobState = JobState.QUEUED
    run: int = 0
    candidates: int = 0
    error: BaseException | None = None
    #: A job of another kind (a video batch, a model operation, or a task callable run in
    #: the window's engine thread): run instead of the request; no candidates, no cutout
    #: (``cutout_id`` 0). What it returned is in ``result`` once the job is DONE.
    task: JobKind | Task | None = None
    result: object = None
    #: More about a failure (the engine process's last stderr lines), or how a cancel ended.
    detail: str = ""
    #: Whether the session reports this job's failure in the window's message bar (False when
    #: the component that queued it shows the error itself, e.g. the Models dialog).
    report_errors: bool = True
    #: The cutout's pixels (a private copy), embedded in the session's candidate files; the
    #: engine reads the source file itself.
    cutout: Image.Image | None = None
    #: First progress event with job_step > 0: (monotonic time, job_step), for the ETA.
    _rate_origin: tuple[float, int] | None = None

    @property
    def error_message(self) -> str:
        if self.error is None:
            return ""
        if isinstance(self.error, FbError):
            return str(self.error)
        kind = getattr(self.error, "type_name", type(self.error).__name__)
        return f"unexpected engine error ({kind}: {self.error}); the details are in the log"

    @property
    def crashed(self) -> bool:
        """The engine process died running this job (re-run it as it was)."""
        return isinstance(self.error, EngineCrashed)

    @property
    def message_job(self) -> JobKind | Task:
        """What the engine runs: the job kind (a reconstruction by default) or a task."""
        return self.task if self.task is not None else ReconstructJob(self.request)

    @property
    def retry_mode(self) -> str | None:
        """The memory mode to retry with after a GPU out-of-memory failure."""
        return self.error.next_mode if isinstance(self.error, GpuOutOfMemoryError) else None


@dataclass(frozen=True)
class ProgressInfo:
    progress: Progress
    eta_s: float | None
    text: str


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "ETA …"
    s = max(0, round(seconds))
    if s >= 3600:
        return f"ETA {s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"ETA {s // 60}:{s % 60:02d}"


def format_progress(name: str, p: Progress, eta_s: float | None) -> str:
    """``name — stage 1 · step 12/60 · candidate 1/3 · ETA 0:42``."""
    parts = [f"{name} — {_STAGE_NAMES.get(p.stage, p.stage)}"]
    if p.total > 0:
        parts.append(f"step {p.step}/{p.total}")
    if p.candidates > 1:
        parts.append(f"candidate {min(p.candidate + 1, p.candidates)}/{p.candidates}")
    if p.message:
        parts.append(p.message)
    parts.append(format_eta(eta_s))
    return " · ".join(parts)


class JobQueue(QObject):
    """Queues requests, hands them to the engine thread one at a time, tracks outcomes."""

    jobQueued = Signal(object)  # Job
    jobStarted = Signal(object)  # Job
    progressed = Signal(object, object)  # Job, ProgressInfo
    candidateReady = Signal(object, object)  # Job, CandidateEntry
    noted = Signal(object, object)  # Job, Note (the engine's report, e.g. of a LoRA load)
    jobEnded = Signal(object)  # Job (state DONE, FAILED or CANCELLED)
    busyChanged = Signal(bool)
    warned = Signal(object, str)  # Job, a warning from the engine

    def __init__(
        self,
        engine: EngineThread | ProcessLink,
        store: CandidateStore,
        parent: QObject | None = None,
        *,
        tasks: EngineThread | None = None,
    ) -> None:
        """``engine`` runs the jobs; ``tasks`` (default: ``engine`` if it is a thread) runs
        task callables, which cannot cross into the engine process."""
        super().__init__(parent)
        self._engine = engine
        self._tasks = tasks if tasks is not None else engine
        self._store = store
        self._pending: deque[Job] = deque()
        self._jobs: dict[int, Job] = {}
        self._current: Job | None = None
        self._current_link: EngineThread | ProcessLink | None = None
        self._ids = itertools.count(1)
        engine.delivered.connect(self._on_delivered)
        if self._tasks is not engine:
            self._tasks.delivered.connect(self._on_delivered)

    @property
    def engine_link(self) -> EngineThread | ProcessLink:
        return self._engine

    # -- queries --------------------------------------------------------------------------

    @property
    def current(self) -> Job | None:
        return self._current

    @property
    def pending(self) -> list[Job]:
        return list(self._pending)

    def is_busy(self) -> bool:
        return self._current is not None or bool(self._pending)

    def job(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    # -- commands -------------------------------------------------------------------------

    def enqueue(
        self,
        cutout_id: int,
        cutout_name: str,
        request: ReconstructionRequest,
        *,
        task: JobKind | Task | None = None,
        cutout: Image.Image | None = None,
        report_errors: bool = True,
    ) -> Job:
        """Queue ``request`` (or ``task``, a job of another kind); candidates arrive scored
        against the request's source file by the engine."""
        was_busy = self.is_busy()
        job = Job(
            next(self._ids),
            cutout_id,
            cutout_name,
            request,
            task=task,
            cutout=cutout,
            report_errors=report_errors,
        )
        self._jobs[job.id] = job
        self._pending.append(job)
        self.jobQueued.emit(job)
        if not was_busy:
            self.busyChanged.emit(True)
        self._dispatch()
        return job

    def retry(self, job: Job, **changes: object) -> Job:
        """Queue ``job``'s request again, e.g. ``memory_mode=job.retry_mode``."""
        return self.enqueue(
            job.cutout_id,
            job.cutout_name,
            job.request.replace(**changes) if changes else job.request,
            task=job.task,
            cutout=job.cutout,
            report_errors=job.report_errors,
        )

    def add_interrupted(
        self,
        cutout_id: int,
        cutout_name: str,
        request: ReconstructionRequest,
        *,
        cutout: Image.Image | None = None,
    ) -> Job:
        """A job restored from the session that never finished (state INTERRUPTED, not run)."""
        job = Job(
            next(self._ids),
            cutout_id,
            cutout_name,
            request,
            state=JobState.INTERRUPTED,
            cutout=cutout,
        )
        self._jobs[job.id] = job
        return job

    def interrupted(self) -> list[Job]:
        """Restored jobs that never finished and were not re-run yet."""
        return [j for j in self._jobs.values() if j.state is JobState.INTERRUPTED]

    def forget(self) -> None:
        """Drop every ended or interrupted job (a new session is opened; none may run)."""
        self._jobs = {
            k: j for k, j in self._jobs.items() if j is self._current or j in self._pending
        }

    def cancel(self) -> int:
        """Stop the running job (within one diffusion step) and drop the queued ones.

        Returns how many jobs were cancelled.
        """
        dropped = 0
        while self._pending:
            job = self._pending.popleft()
            job.state = JobState.CANCELLED
            job.cancel.set()
            dropped += 1
            self.jobEnded.emit(job)
        if self._current is not None:
            self._stop(self._current)
            dropped += 1
        if not self.is_busy():
            self.busyChanged.emit(False)
        return dropped

    def cancel_job(self, job: Job) -> None:
        """Cancel one job: stop it if it runs, drop it if it waits; the others go on."""
        if job in self._pending:
            self._pending.remove(job)
            job.state = JobState.CANCELLED
            job.cancel.set()
            self.jobEnded.emit(job)
            if not self.is_busy():
                self.busyChanged.emit(False)
        elif job is self._current:
            self._stop(job)

    def _stop(self, job: Job) -> None:
        """Ask the engine to stop the running ``job`` (within one step; the process link stops
        it hard after its grace period)."""
        job.cancel.set()
        if self._current_link is not None:
            self._current_link.cancel(job.id)

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Cancel everything, stop the engine (process or thread) and wait for it."""
        self.cancel()
        ok = self._engine.shutdown(timeout_ms)
        if self._tasks is not self._engine:
            ok = self._tasks.shutdown(timeout_ms) and ok
        return ok

    # -- dispatch -------------------------------------------------------------------------

    def _dispatch(self) -> None:
        if self._current is not None or not self._pending:
            return
        job = self._pending.popleft()
        job.state = JobState.RUNNING
        job.run = self._store.new_run(job.cutout_id) if job.task is None else 0
        self._current = job
        work = job.message_job
        link = self._tasks if callable(work) else self._engine
        self._current_link = link
        link.submit(job.id, work)  # type: ignore[arg-type]

    def _end(self, job_id: int, state: JobState, error: BaseException | None = None) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            return
        job.state = state
        job.error = error
        if self._current is job:
            self._current = None
            if isinstance(self._current_link, EngineThread):
                self._current_link.forget(job.id)
            self._current_link = None
        self.jobEnded.emit(job)
        self._dispatch()
        if not self.is_busy():
            self.busyChanged.emit(False)

    # -- the engine's messages (queued into the GUI thread), handled in one place ---------

    @Slot(object)
    def _on_delivered(self, delivery: Delivery) -> None:
        message = delivery.message
        job = self._jobs.get(message.job_id)
        if job is None or job.state is not JobState.RUNNING:
            return  # a job dropped or ended meanwhile
        if isinstance(message, Started):
            self.jobStarted.emit(job)
        elif isinstance(message, JobProgress):
            self._on_progress(job, message.progress)
        elif isinstance(message, CandidateReady):
            if delivery.ready is not None:
                job.candidates += 1
                entry = self._store.add(job.cutout_id, job.run, delivery.ready)
                self.candidateReady.emit(job, entry)
        elif isinstance(message, Warning):
            log.warning("%s: %s", job.cutout_name, message.text)
            self.warned.emit(job, message.text)
        elif isinstance(message, Done):
            job.result = message.result
            self._end(job.id, JobState.DONE)
        elif isinstance(message, Failed):
            job.detail = message.detail
            self._end(job.id, JobState.FAILED, rebuild_error(message))
        elif isinstance(message, Cancelled):
            job.detail = message.note
            self._end(job.id, JobState.CANCELLED)

    def _on_progress(self, job: Job, progress: Progress) -> None:
        if progress.note is not None:
            self.noted.emit(job, progress.note)
        now = time.monotonic()
        eta: float | None = None
        if progress.job_step > 0:
            if job._rate_origin is None or progress.job_step < job._rate_origin[1]:
                job._rate_origin = (now, progress.job_step)
            t0, s0 = job._rate_origin
            if progress.job_step > s0 and now > t0:
                rate = (progress.job_step - s0) / (now - t0)
                eta = max(0.0, (progress.job_total - progress.job_step) / rate)
        text = format_progress(job.cutout_name, progress, eta)
        self.progressed.emit(job, ProgressInfo(progress, eta, text))
