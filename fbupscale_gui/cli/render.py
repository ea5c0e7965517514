"""Running a request through the engine from the command line (``upscale``, ``reproduce``):
in this process, or on an ``fbupscale serve`` server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fbupscale_gui.cli.common import note
from fbupscale_gui.core.errors import Cancelled

if TYPE_CHECKING:
    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import ReconstructionRequest


def make_engine() -> Any:
    """The engine that runs requests (imported here: it pulls in torch lazily)."""
    from fbupscale_gui.engine import Engine

    return Engine()


def candidates(
    engine: Any, request: ReconstructionRequest, on_progress: Any, cancel: Any
) -> Iterator[Candidate]:
    """``request``'s candidates through the engine's one entry point (``Engine.handle``, as
    the window's engine process runs it), in this process, or on a server when ``engine`` is
    a :class:`~fbupscale_gui.host.remote.ServerClient`. Raises what the job failed with
    (:class:`Cancelled` when cancelled)."""
    from fbupscale_gui.core.messages import Cancelled as CancelledMessage
    from fbupscale_gui.core.messages import (
        CandidateReady,
        Failed,
        JobProgress,
        ReconstructJob,
        Warning,
        rebuild_error,
    )
    from fbupscale_gui.host.remote import ServerClient, remote_handle

    if isinstance(engine, ServerClient):
        messages = remote_handle(engine, 0, ReconstructJob(request), cancel)
    else:
        from fbupscale_gui.engine.facade import handle

        messages = handle(engine, 0, ReconstructJob(request), cancel)
    for message in messages:
        if isinstance(message, JobProgress):
            on_progress(message.progress)
        elif isinstance(message, CandidateReady):
            yield message.candidate()
        elif isinstance(message, Warning):
            note(f"warning: {message.text}")
        elif isinstance(message, Failed):
            raise rebuild_error(message)
        elif isinstance(message, CancelledMessage):
            raise Cancelled()
