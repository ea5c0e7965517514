"""What the engine hands back: progress events and candidates. Pure data, no torch, no Qt."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from fbupscale_gui.core.errors import Cancelled
from fbupscale_gui.core.number_check import NumberCheck
from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
from fbupscale_gui.core.runtime import ResolvedRuntime

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "Candidate",
    "IsCancelled",
    "Note",
    "OnProgress",
    "Progress",
    "ProgressStage",
    "raise_if_cancelled",
]

ProgressStage = Literal["load", "stage1", "stage2", "fast"]


@dataclass(frozen=True)
class Note:
    """Something the operator must read, not only see pass in a progress line: what a LoRA
    load applied and left out, say. ``topic`` lets a front end route it ("lora")."""

    level: Literal["info", "warning"]
    text: str
    topic: str = ""


@dataclass(frozen=True)
class Progress:
    """One progress event.

    ``step``/``total`` count within the current stage run; ``job_step``/``job_total`` count
    denoising (or tile) steps over the whole request, so a UI can draw one bar and an ETA.
    ``candidate`` is the 0-based index of the candidate being worked on.
    """

    stage: ProgressStage
    step: int
    total: int
    job_step: int
    job_total: int
    candidate: int = 0
    candidates: int = 1
    message: str = ""
    #: Shown once and kept (CLI: a line on stderr; window: a message), never throttled away.
    note: Note | None = None

    @classmethod
    def single(cls, stage: ProgressStage, done: int, total: int, message: str = "") -> Progress:
        """A job of one stage (tiles, frames): the stage's count is the job's count."""
        return cls(
            stage=stage, step=done, total=total, job_step=done, job_total=total, message=message
        )

    @property
    def fraction(self) -> float:
        return 0.0 if self.job_total <= 0 else min(1.0, self.job_step / self.job_total)


OnProgress = Callable[[Progress], None]
IsCancelled = Callable[[], bool]


def raise_if_cancelled(is_cancelled: IsCancelled | None) -> None:
    """Raise :class:`Cancelled` when ``is_cancelled`` (None: never cancelled) says so."""
    if is_cancelled is not None and is_cancelled():
        raise Cancelled()


@dataclass(frozen=True, eq=False)
class Candidate:
    """One finished reconstruction.

    ``image`` is the final RGB image (content box, long side = request size). ``seed`` is the
    candidate's own generator seed. ``timings`` are seconds per stage ("stage1", "stage2",
    "fast"); a stage-1 result shared by two LoRA branches is timed once, on the first.
    ``runtime`` says where it ran ("cuda:0 bf16 model-offload", "cpu fp32"), since the same
    request gives pixel-identical output only on the same device and precision. ``lora_report``
    (JSON-able) records the LoRA as applied to this candidate: file, layers left out, and the
    effective scaling per layer; None when the candidate used no LoRA.
    """

    key: CandidateKey
    seed: int
    image: Image.Image
    request: ReconstructionRequest
    timings: Mapping[str, float] = field(default_factory=dict)
    runtime: str = ""
    lora_report: Mapping[str, Any] | None = None
    #: The typed runtime (device, precision, memory mode, backend, versions), set by the
    #: engine's facade; None for candidates read back from an older session.
    resolved: ResolvedRuntime | None = None
    #: The number check (shirt numbers read against the scene), set by the engine's facade;
    #: None where it did not run (an older file, or the OCR is not installed).
    number_check: NumberCheck | None = None

    @property
    def lora(self) -> bool:
        return self.key.lora

    @property
    def stage(self) -> int:
        return self.key.stage
