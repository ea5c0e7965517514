"""Suggest a cutout's shirt numbers for the scene form, read by the engine (never filled in).

The engine enlarges the cutout with the faithful preview and reads its digit strings
(:class:`~fbupscale_gui.core.messages.ReadNumbersJob`); the answer is one line of text with
the confidences, for the operator to act on. Qt state only: the OCR runs in the engine process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from fbupscale_gui.core.messages import ReadNumbersJob
from fbupscale_gui.core.number_check import NumberReading, suggestion_text
from fbupscale_gui.core.request import ReconstructionRequest
from fbupscale_gui.state.job_queue import Job, JobState

if TYPE_CHECKING:
    from fbupscale_gui.state.cutouts import Cutout
    from fbupscale_gui.state.job_queue import JobQueue

__all__ = ["NumberSuggester"]

_TASK_REQUEST = ReconstructionRequest(engine="faithful")


class NumberSuggester(QObject):
    """``read(cutout)`` queues the engine job; ``suggested(cutout_id, text)`` answers."""

    suggested = Signal(int, str)

    def __init__(self, jobs: JobQueue, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs = jobs
        self._reading: dict[int, int] = {}  # job id -> cutout id
        jobs.jobEnded.connect(self._on_job_ended)

    def read(self, cutout: Cutout) -> Job:
        job = self._jobs.enqueue(
            cutout.id,
            f"reading numbers in {cutout.name}",
            _TASK_REQUEST,
            task=ReadNumbersJob(cutout.source.path),
            report_errors=False,
        )
        self._reading[job.id] = cutout.id
        return job

    @Slot(object)
    def _on_job_ended(self, job: Job) -> None:
        cutout_id = self._reading.pop(job.id, None)
        if cutout_id is None:
            return
        if job.state is JobState.DONE and isinstance(job.result, tuple):
            readings = [r for r in job.result if isinstance(r, NumberReading)]
            self.suggested.emit(cutout_id, suggestion_text(readings))
        else:
            why = job.error_message if job.error is not None else job.state.name.lower()
            self.suggested.emit(cutout_id, f"Could not read the cutout's numbers: {why}")
