"""The engine in its own process, for the window: a Qt face on :class:`EngineProcess`.

:class:`ProcessLink` has the same face as :class:`~.engine_thread.EngineThread` (``submit``,
``cancel``, ``shutdown`` and one ``delivered`` signal carrying a :class:`~.bridge.Delivery`),
so the job queue does not care where the engine runs. With ``server`` (URL, token), the
reconstructions run on an ``fbupscale serve`` server (:class:`~fbupscale_gui.host.remote.RemoteEngine`:
same jobs, same messages) and the other jobs (scores, model checks, video batches, which read
this desk's files) in the local engine process. The messages come from the reader threads; candidates are turned into QImages there, and the signal is queued into the
GUI thread. Neither this module nor anything it imports loads torch, diffusers or ncnn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal

from fbupscale_gui.core.messages import JobKind, Message, ReconstructJob, failed_from
from fbupscale_gui.host.client import DEFAULT_FACTORY, DEFAULT_GRACE_S, EngineProcess
from fbupscale_gui.host.remote import RemoteEngine
from fbupscale_gui.worker.bridge import deliver

__all__ = ["ProcessLink"]

log = logging.getLogger(__name__)


class ProcessLink(QObject):
    """Runs jobs in the engine process; restarts it after a crash or a hard stop."""

    delivered = Signal(object)  # Delivery

    def __init__(
        self,
        *,
        factory: str = DEFAULT_FACTORY,
        kwargs: Mapping[str, Any] | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        server: tuple[str, str] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.process = EngineProcess(
            self._on_message, factory=factory, kwargs=kwargs, grace_s=grace_s
        )
        self.remote = RemoteEngine(self._on_message, *server) if server else None
        self._remote_jobs: set[int] = set()
        # starting a process (fork + exec of a big one) takes tens of ms: never in the GUI
        # thread; one thread keeps the calls in order
        self._calls = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fbupscale-engine-io")

    def _on_message(self, message: Message) -> None:
        # the reader thread: decode here, the signal is queued to the GUI thread
        self.delivered.emit(deliver(message))

    @property
    def grace_s(self) -> float:
        return self.process.grace_s

    @grace_s.setter
    def grace_s(self, seconds: float) -> None:
        self.process.grace_s = seconds

    def prewarm(self) -> None:
        """Start the engine process now, off the GUI thread; with a server it starts on the
        first local job."""
        if self.remote is None:
            self._calls.submit(self._logged, self.process.start)

    def is_running(self) -> bool:
        return self.remote is not None or self.process.is_alive()

    def submit(self, job_id: int, job: JobKind) -> None:
        """Send ``job`` (starting the process if needed, off the GUI thread); with a server,
        reconstructions go there."""
        if self.remote is not None and isinstance(job, ReconstructJob):
            self._remote_jobs.add(job_id)
            self.remote.submit(job_id, job)
        else:
            self._calls.submit(self._logged, self.process.submit, job_id, job)

    def cancel(self, job_id: int) -> None:
        if self.remote is not None and job_id in self._remote_jobs:
            self.remote.cancel(job_id)
        else:
            self._calls.submit(self._logged, self.process.cancel, job_id)

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        remote = self.remote.shutdown(min(5.0, timeout_ms / 1000)) if self.remote else True
        self._calls.shutdown(wait=True)
        return self.process.shutdown(timeout_ms / 1000) and remote

    def _logged(self, call: Callable[..., object], *args: object) -> None:
        try:
            call(*args)
        except Exception as exc:  # e.g. the interpreter cannot be started
            log.exception("the engine process could not be reached")
            job_id = args[0] if args and isinstance(args[0], int) else None
            if job_id is not None:
                self.delivered.emit(deliver(failed_from(job_id, exc)))
