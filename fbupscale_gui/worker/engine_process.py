"""The engine in its own process, for the window: a Qt face on :class:`EngineProcess`.

:class:`ProcessLink` has the same face as :class:`~.engine_thread.EngineThread` (``submit``,
``cancel``, ``shutdown`` and one ``delivered`` signal carrying a :class:`~.bridge.Delivery`),
so the job queue does not care where the engine runs. The messages come from the process's
reader thread; candidates are turned into QImages there, and the signal is queued into the
GUI thread. Neither this module nor anything it imports loads torch, diffusers or ncnn.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QObject, Signal

from fbupscale_gui.core.messages import JobKind, Message
from fbupscale_gui.host.client import DEFAULT_FACTORY, DEFAULT_GRACE_S, EngineProcess

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
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.process = EngineProcess(
            self._on_message, factory=factory, kwargs=kwargs, grace_s=grace_s
        )

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
        """Start the engine process now (it imports the engine on its first job)."""
        self.process.start()

    def is_running(self) -> bool:
        return self.process.is_alive()

    def submit(self, job_id: int, job: JobKind) -> None:
        self.process.submit(job_id, job)

    def cancel(self, job_id: int) -> None:
        self.process.cancel(job_id)

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        return self.process.shutdown(timeout_ms / 1000)
