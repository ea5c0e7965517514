"""Where each cutout stands, for the cutouts list: queued, running, failed, done or picked.

:class:`CutoutStatus` follows the job queue and the candidate store and tells the cutouts
model which rows to redraw; the model asks :meth:`CutoutStatus.status` what to show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from PySide6.QtCore import QObject, Slot

if TYPE_CHECKING:
    from fbupscale_gui.state.candidates import CandidateStore
    from fbupscale_gui.state.cutouts import CutoutsModel
    from fbupscale_gui.state.job_queue import Job, JobQueue

__all__ = ["MARKERS", "CutoutStatus"]

#: What the list shows after the size line, per status ("" shows nothing).
MARKERS: Final = {
    "running": "▶ running",
    "queued": "⧗ queued",
    "picked": "★ picked",
    "failed": "✗ failed",
    "done": "✓ done",
    "": "",
}


class CutoutStatus(QObject):
    """Follows ``jobs`` and ``candidates``; :meth:`status` answers for one cutout."""

    def __init__(
        self,
        cutouts: CutoutsModel,
        jobs: JobQueue,
        candidates: CandidateStore,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._cutouts = cutouts
        self._jobs = jobs
        self._candidates = candidates
        self._failed: set[int] = set()
        cutouts.status_of = self.status
        jobs.jobQueued.connect(self._on_job)
        jobs.jobStarted.connect(self._on_job)
        jobs.jobEnded.connect(self._on_job)
        candidates.pickChanged.connect(self._on_cutout)

    def status(self, cutout_id: int) -> str:
        """One of the keys of :data:`MARKERS`."""
        current = self._jobs.current
        if current is not None and current.cutout_id == cutout_id:
            return "running"
        if any(j.cutout_id == cutout_id for j in self._jobs.pending):
            return "queued"
        if self._candidates.picked(cutout_id) is not None:
            return "picked"
        if cutout_id in self._failed:
            return "failed"
        if self._candidates.entries(cutout_id):
            return "done"
        return ""

    @Slot(object)
    def _on_job(self, job: Job) -> None:
        if job.state.value == "failed":
            self._failed.add(job.cutout_id)
        elif job.state.value in ("running", "done"):
            self._failed.discard(job.cutout_id)
        self._on_cutout(job.cutout_id)

    @Slot(int)
    def _on_cutout(self, cutout_id: int) -> None:
        self._cutouts.refresh_row(cutout_id)

    def refresh_all(self) -> None:
        """Redraw every row (after a session is restored)."""
        for cutout in self._cutouts.cutouts():
            self._cutouts.refresh_row(cutout.id)
