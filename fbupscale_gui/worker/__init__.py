"""The window's links to the engine: its own process (:class:`ProcessLink`, the window's
default) or a QThread of this process (:class:`EngineThread`, for test doubles).

Both deliver the engine's message stream (:mod:`fbupscale_gui.core.messages`) as one Qt
signal. Importing this package never loads torch, diffusers or ncnn.
"""

from __future__ import annotations

from fbupscale_gui.worker.bridge import THUMB_SIDE, Delivery, ReadyCandidate, deliver
from fbupscale_gui.worker.engine_process import ProcessLink
from fbupscale_gui.worker.engine_thread import (
    EngineThread,
    EngineWorker,
    JobRunner,
    RunnerFactory,
    Task,
    default_runner_factory,
)
from fbupscale_gui.worker.qimage import pil_to_qimage, qimage_to_pil

__all__ = [
    "THUMB_SIDE",
    "Delivery",
    "EngineThread",
    "EngineWorker",
    "JobRunner",
    "ProcessLink",
    "ReadyCandidate",
    "RunnerFactory",
    "Task",
    "default_runner_factory",
    "deliver",
    "pil_to_qimage",
    "qimage_to_pil",
]
