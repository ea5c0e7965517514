"""Progress of a FLUX job: the denoising steps its candidates need, and one tracker that turns
every pipeline step into a job-wide :class:`Progress` and checks for cancellation there (raising
in the step callback discards the half-denoised latents: nothing is decoded)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fbupscale_gui.core.errors import Cancelled
from fbupscale_gui.core.job import IsCancelled, Note, OnProgress, Progress
from fbupscale_gui.core.request import ReconstructionRequest, Stage1Params

__all__ = ["Tracker", "plan_steps", "stage1_steps"]


def stage1_steps(params: Stage1Params) -> int:
    """Denoising steps diffusers' img2img really runs (its own rounding, not ``int(s*x)``)."""
    return params.effective_steps


@dataclass
class Tracker:
    """Progress over the whole job."""

    on_progress: OnProgress | None
    is_cancelled: IsCancelled | None
    job_total: int
    candidates: int
    job_step: int = 0

    def check(self) -> None:
        if self.is_cancelled is not None and self.is_cancelled():
            raise Cancelled()

    def emit(
        self,
        stage: str,
        step: int,
        total: int,
        candidate: int,
        message: str = "",
        note: Note | None = None,
    ) -> None:
        if self.on_progress is not None:
            self.on_progress(
                Progress(
                    stage=stage,  # type: ignore[arg-type]
                    step=step,
                    total=total,
                    job_step=self.job_step,
                    job_total=self.job_total,
                    candidate=candidate,
                    candidates=self.candidates,
                    message=message,
                    note=note,
                )
            )

    def callback(self, stage: str, candidate: int) -> Callable[..., dict[str, Any]]:
        def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            self.job_step += 1
            total = int(getattr(pipe, "_num_timesteps", 0) or 0)
            self.emit(stage, i + 1, total, candidate)
            self.check()  # raising here discards the half-denoised latents: nothing is decoded
            return {}

        return on_step_end


def plan_steps(request: ReconstructionRequest) -> tuple[int, int, int]:
    """(stage-1 runs, stage-2 runs, denoising steps) the request's candidates need."""
    stage1_runs: set[tuple[int, bool]] = set()
    stage2_runs = 0
    for key in request.candidate_keys():
        if key.stage == 1:
            stage1_runs.add((key.variant, key.lora))
        else:
            stage1_runs.add((key.variant, request.stage1_lora(key.lora)))
            stage2_runs += 1
    total = len(stage1_runs) * stage1_steps(request.stage1) + stage2_runs * request.stage2.steps
    return len(stage1_runs), stage2_runs, total
