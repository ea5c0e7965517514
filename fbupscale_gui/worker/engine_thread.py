"""The engine in a QThread of the window's process: for tests and tools, not the window.

The window runs its engine in a child process (:mod:`.engine_process`). This link has the same
face (``submit``, ``cancel``, ``shutdown``, one ``delivered`` signal) and the same code path,
the engine's ``handle`` (:mod:`fbupscale_gui.engine.facade`), driving a runner made by a
factory in this thread: test doubles (:class:`~.testing.FakeRunner`) that share state with the
test. It also runs short checks off the GUI thread (:meth:`EngineThread.check`) and a task
callable (``submit(job_id, task)``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot

from fbupscale_gui.core.errors import Cancelled as CancelledError
from fbupscale_gui.core.errors import FbError
from fbupscale_gui.core.job import Candidate, IsCancelled, OnProgress, Progress
from fbupscale_gui.core.messages import (
    Cancelled,
    Done,
    JobKind,
    JobProgress,
    Message,
    Started,
    failed_from,
)
from fbupscale_gui.core.request import ReconstructionRequest
from fbupscale_gui.worker.bridge import THUMB_SIDE, ReadyCandidate, deliver

__all__ = [
    "THUMB_SIDE",
    "EngineThread",
    "EngineWorker",
    "JobRunner",
    "ReadyCandidate",
    "RunnerFactory",
    "Task",
    "default_runner_factory",
]

log = logging.getLogger(__name__)

#: At most one progress message per this many seconds from a task callable.
PROGRESS_INTERVAL_S = 0.05


class JobRunner(Protocol):
    """What the worker drives: :class:`fbupscale_gui.engine.Engine` or a test double."""

    def run(
        self, request: ReconstructionRequest, on_progress: OnProgress, is_cancelled: IsCancelled
    ) -> Iterator[Candidate]: ...

    def release(self) -> None: ...


RunnerFactory = Callable[[], JobRunner]
#: A job that is not one of the engine's kinds: called in this thread with the progress and
#: cancel callbacks; what it returns is the job's ``Done.result``.
Task = Callable[[OnProgress, IsCancelled], object]


def default_runner_factory() -> JobRunner:
    """The real engine, in this thread (tools and benches; the window uses the process)."""
    from fbupscale_gui.engine import Engine

    return Engine()


class EngineWorker(QObject):
    """Lives in the engine thread. Slots run there; ``delivered`` is queued to the GUI thread."""

    delivered = Signal(object)  # Delivery
    checked = Signal(object)  # result of check(), or the exception it raised

    def __init__(self, factory: RunnerFactory | None = None) -> None:
        super().__init__()
        self._factory = factory or default_runner_factory
        self._runner: JobRunner | None = None

    @Slot(int, object, object)
    def run(self, job_id: int, job: object, cancel: threading.Event) -> None:
        """Run one job to the end, delivering each message as it comes."""

        def send(message: Message) -> None:
            self.delivered.emit(deliver(message))

        if callable(job):
            _run_task(job_id, job, cancel.is_set, send)
            return
        for message in self._messages(job_id, job, cancel.is_set):
            send(message)

    def _messages(self, job_id: int, job: object, is_cancelled: IsCancelled) -> Iterator[Message]:
        try:
            if self._runner is None:
                self._runner = self._factory()
        except Exception as exc:
            log.exception("the engine could not start")
            yield Started(job_id)
            yield failed_from(job_id, exc)
            return
        from fbupscale_gui.engine.facade import handle

        yield from handle(self._runner, job_id, job, is_cancelled)  # type: ignore[arg-type]

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


def _run_task(
    job_id: int, task: Task, is_cancelled: IsCancelled, send: Callable[[Message], None]
) -> None:
    """Run a task callable, sending its messages (progress at most every 50 ms)."""
    send(Started(job_id, "task"))
    last = [0.0]

    def report(progress: Progress) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_INTERVAL_S or progress.job_step >= progress.job_total:
            last[0] = now
            send(JobProgress(job_id, progress))

    try:
        if is_cancelled():
            raise CancelledError()
        result = task(report, is_cancelled)
    except CancelledError:
        send(Cancelled(job_id))
    except Exception as exc:  # a failing job must never take the window down
        if not isinstance(exc, FbError):
            log.exception("job %d failed unexpectedly", job_id)
        send(failed_from(job_id, exc))
    else:
        send(Done(job_id, result))


class EngineThread(QObject):
    """Owns the QThread and its :class:`EngineWorker`. Lives in the GUI thread."""

    delivered = Signal(object)  # Delivery, relayed from the worker
    _submit = Signal(int, object, object)
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
        self.worker.delivered.connect(self.delivered)
        self._cancels: dict[int, threading.Event] = {}

    def start(self) -> None:
        if not self._thread.isRunning():
            self._thread.start()

    def is_running(self) -> bool:
        return self._thread.isRunning()

    def submit(self, job_id: int, job: JobKind | Task) -> None:
        """Run ``job`` (a job kind, or a task callable) in the engine thread."""
        self.start()
        cancel = self._cancels.setdefault(job_id, threading.Event())
        self._submit.emit(job_id, job, cancel)

    def cancel(self, job_id: int) -> None:
        """Ask the running (or queued) job to stop within one step."""
        self._cancels.setdefault(job_id, threading.Event()).set()

    def forget(self, job_id: int) -> None:
        self._cancels.pop(job_id, None)

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
