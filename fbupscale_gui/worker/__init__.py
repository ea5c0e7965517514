"""The one long-lived worker thread that owns the engine.

:mod:`fbupscale_gui.engine` (torch, diffusers) is imported lazily, inside the worker thread,
on the first job: importing this package never loads torch.
"""

from __future__ import annotations

from .engine_thread import (
    EngineThread,
    EngineWorker,
    JobRunner,
    ReadyCandidate,
    RunnerFactory,
    WorkItem,
    default_runner_factory,
)
from .qimage import pil_to_qimage, qimage_to_pil

__all__ = [
    "EngineThread",
    "EngineWorker",
    "JobRunner",
    "ReadyCandidate",
    "RunnerFactory",
    "WorkItem",
    "default_runner_factory",
    "pil_to_qimage",
    "qimage_to_pil",
]
