"""Status-bar widgets: job progress (stage, step/total, ETA) and the GPU reading."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QWidget

from fbupscale_gui.state.candidate_grid import engine_title
from fbupscale_gui.state.job_queue import Job, JobQueue, ProgressInfo
from fbupscale_gui.ui.theme import set_style_property

__all__ = ["GpuLabel", "JobProgress"]


class JobProgress(QWidget):
    """Bound to a :class:`JobQueue`: one bar for the running job, with a text line."""

    def __init__(self, queue: JobQueue, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._queue = queue
        self._cancelling: Job | None = None
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setFormat("%p%")
        self.bar.setFixedWidth(180)
        self.label = QLabel("Idle")
        set_style_property(self.label, "role", "hint")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.label, 1)
        queue.jobStarted.connect(self._on_started)
        queue.progressed.connect(self._on_progress)
        queue.jobEnded.connect(self._on_ended)
        queue.jobQueued.connect(self._on_queued)
        self.bar.setValue(0)

    def _queued_suffix(self) -> str:
        n = len(self._queue.pending)
        return f" · {n} queued" if n else ""

    def _on_queued(self, _job: Job) -> None:
        if self._queue.current is None:
            self.label.setText(f"Starting…{self._queued_suffix()}")

    def set_cancelling(self) -> None:
        """Cancel was asked: say so until the job ends (its late progress does not undo it)."""
        job = self._queue.current
        if job is None:
            return
        self._cancelling = job
        self.label.setText(f"{job.cutout_name} — cancelling…")
        set_style_property(self.label, "role", "warning")

    def _on_started(self, job: Job) -> None:
        self._cancelling = None
        set_style_property(self.label, "role", "hint")
        self.bar.setValue(0)
        self.label.setText(
            f"{job.cutout_name} — starting {engine_title(job.request.engine)}"
            f"{self._queued_suffix()}"
        )

    def _on_progress(self, job: Job, info: ProgressInfo) -> None:
        if job is self._cancelling:
            return
        self.bar.setValue(round(info.progress.fraction * 1000))
        self.label.setText(info.text + self._queued_suffix())

    def _on_ended(self, job: Job) -> None:
        if job is self._cancelling:
            self._cancelling = None
            set_style_property(self.label, "role", "hint")
        if self._queue.is_busy():
            return
        self.bar.setValue(1000 if job.state.value == "done" else 0)
        outcome = {
            "done": f"Done: {job.cutout_name} ({job.candidates} candidate(s))",
            "failed": f"Failed: {job.cutout_name}",
            "cancelled": f"{job.cutout_name} — cancelled",
        }.get(job.state.value, "Idle")
        self.label.setText(outcome)


class GpuLabel(QLabel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("GPU: …", parent)
        self.setToolTip("GPU device, VRAM used/total, temperature and power (NVML, 1 s)")

    def set_status(self, text: str) -> None:
        self.setText(text)
