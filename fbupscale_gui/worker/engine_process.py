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
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QObject, Signal

from fbupscale_gui.core.messages import JobKind, Message, ReconstructJob
from fbupscale_gui.host.client import DEFAULT_FACTORY, DEFAULT_GRACE_S, EngineProcess
from fbupscale_gui.host.remote import RemoteEngine

from .bridge import deliver

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
        """Start the engine process now (it imports the engine on its first job); with a
        server it starts on the first local job."""
        if self.remote is None:
            self.process.start()

    def is_running(self) -> bool:
        return self.remote is not None or self.process.is_alive()

    def submit(self, job_id: int, job: JobKind) -> None:
        if self.remote is not None and isinstance(job, ReconstructJob):
            self._remote_jobs.add(job_id)
            self.remote.submit(job_id, job)
        else:
            self.process.submit(job_id, job)

    def cancel(self, job_id: int) -> None:
        if self.remote is not None and job_id in self._remote_jobs:
            self.remote.cancel(job_id)
        else:
            self.process.cancel(job_id)

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        remote = self.remote.shutdown(min(5.0, timeout_ms / 1000)) if self.remote else True
        return self.process.shutdown(timeout_ms / 1000) and remote
