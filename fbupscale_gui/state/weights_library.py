"""The user's super-resolution models, for the window: list, add (validated off the GUI thread),
remove.

Listing and removing only read and write the models index (:mod:`fbupscale_gui.storage.weights_library`),
so they run here. Adding validates the file by loading it (torch and spandrel), so it is a task
job for the engine thread's queue (:meth:`~fbupscale_gui.state.job_queue.JobQueue.enqueue` with
``task=``), like a video batch: the GUI thread never imports torch, and the add waits for the
job that is running. A refused file changes nothing; its one-line reason comes back in
:attr:`SrLibrary.addFailed`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final

from PySide6.QtCore import QObject, Signal, Slot

from fbupscale_gui.core.errors import FbError, error_line
from fbupscale_gui.core.messages import ModelJob
from fbupscale_gui.core.request import MODEL_ENGINE_PREFIX, ReconstructionRequest
from fbupscale_gui.state.job_queue import Job, JobQueue, JobState
from fbupscale_gui.storage.weights_library import LibraryEntry, ModelLibrary

__all__ = ["SrLibrary", "add_model_task", "model_engine", "model_label"]

log = logging.getLogger(__name__)

#: The request a task job carries only names an engine; it never runs.
_TASK_REQUEST: Final = ReconstructionRequest(engine="lanczos")


def model_engine(name: str) -> str:
    """The engine string of a library model: ``model:NAME``."""
    return f"{MODEL_ENGINE_PREFIX}{name}"


def model_label(entry: LibraryEntry) -> str:
    """How a library model appears in the engine list, e.g. "SPAN 2x · 2x-LiveAction"."""
    return f"{entry.arch} {entry.scale}x · {entry.name}"


def add_model_task(library: ModelLibrary, path: str | Path, licence: str = "") -> ModelJob:
    """The engine job that validates ``path`` (loading it: torch, in the engine process) and
    copies it into ``library``."""
    return ModelJob("add", str(path), str(library.root), licence)


class SrLibrary(QObject):
    """The models folder as the window sees it. ``changed`` follows every add and remove."""

    changed = Signal()
    #: The entry that was added (after ``changed``).
    added = Signal(object)
    #: A refused or failed add: the file and one line saying why. Nothing changed.
    addFailed = Signal(str, str)
    #: Whether an add is queued or running.
    busyChanged = Signal(bool)

    def __init__(
        self, jobs: JobQueue, library: ModelLibrary | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._jobs = jobs
        self._library = library
        self._adding: dict[int, str] = {}  # job id -> file
        self._error = ""
        jobs.jobEnded.connect(self._on_job_ended)

    @property
    def library(self) -> ModelLibrary:
        """The models folder (re-read from ``FBUPSCALE_MODELS_DIR`` each time unless given)."""
        return self._library if self._library is not None else ModelLibrary()

    @property
    def error(self) -> str:
        """Why the folder could not be listed last time (e.g. a corrupt index), or ""."""
        return self._error

    def entries(self) -> list[LibraryEntry]:
        """The models, sorted by name; [] (and :attr:`error` set) when the index is unreadable."""
        try:
            found = self.library.entries()
        except (FbError, OSError) as exc:
            self._error = error_line(exc, unexpected=True)
            log.warning("cannot list the models folder: %s", self._error)
            return []
        self._error = ""
        return found

    def is_busy(self) -> bool:
        return bool(self._adding)

    def add(self, path: str | Path, *, licence: str = "") -> Job:
        """Validate and add ``path`` in the engine thread; the answer comes as a signal."""
        was_busy = self.is_busy()
        name = Path(path).name
        job = self._jobs.enqueue(
            0,
            f"adding model {name}",
            _TASK_REQUEST,
            task=add_model_task(self.library, path, licence),
            report_errors=False,
        )
        self._adding[job.id] = str(path)
        if not was_busy:
            self.busyChanged.emit(True)
        return job

    def remove(self, name: str) -> str | None:
        """Remove a model; returns why it failed (one line), or None."""
        try:
            self.library.remove(name)
        except (FbError, OSError) as exc:
            return error_line(exc, unexpected=True)
        self.changed.emit()
        return None

    def refresh(self) -> None:
        """Tell listeners to re-read the folder (e.g. after the CLI changed it)."""
        self.changed.emit()

    @Slot(object)
    def _on_job_ended(self, job: Job) -> None:
        path = self._adding.pop(job.id, None)
        if path is None:
            return
        if job.state is JobState.DONE and isinstance(job.result, LibraryEntry):
            self.changed.emit()
            self.added.emit(job.result)
        elif job.state is JobState.CANCELLED:
            self.addFailed.emit(path, "cancelled; nothing was added")
        else:
            reason = (
                error_line(job.error, unexpected=True) if job.error is not None else "no result"
            )
            self.addFailed.emit(path, reason)
        if not self.is_busy():
            self.busyChanged.emit(False)
