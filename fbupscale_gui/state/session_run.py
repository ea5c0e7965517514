"""Running reconstructions: the request for each cutout, the jobs queued, what their end says.

:class:`RunActions` is the run half of :class:`~fbupscale_gui.state.session.Session` (a mixin
that uses the session's models): it builds each cutout's request, queues the jobs, re-runs
interrupted ones, and turns a failed job or an engine note into a :class:`Message`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from PySide6.QtCore import SignalInstance, Slot

from fbupscale_gui.core.errors import FbError, ModelNotFoundError
from fbupscale_gui.core.request import (
    CONTROLNET_REPO_ID,
    FLUX_REPO_ID,
    LoraParams,
    ModelRef,
    ReconstructionRequest,
    is_model_engine,
)
from fbupscale_gui.state.job_queue import Job, JobState
from fbupscale_gui.state.session_message import FLUX_TOPIC, Message
from fbupscale_gui.storage.weight_files import flux_sources
from fbupscale_gui.storage.weights_library import ModelLibrary

if TYPE_CHECKING:
    from fbupscale_gui.core.job import Note
    from fbupscale_gui.core.settings import Settings
    from fbupscale_gui.state.cutouts import Cutout, CutoutsModel
    from fbupscale_gui.state.engine_choice import EngineChoice
    from fbupscale_gui.state.job_queue import JobQueue
    from fbupscale_gui.state.parameters import Parameters
    from fbupscale_gui.state.session_persist import SessionRecorder
    from fbupscale_gui.state.settings_model import SettingsModel
    from fbupscale_gui.state.weights_library import SrLibrary

__all__ = ["RunActions", "apply_environment", "base_request", "engine_server"]

_FLUX_WHATS: Final = ("FLUX", "ControlNet")


def engine_server(settings: Settings) -> tuple[str, str] | None:
    """Settings › Engine: (URL, token) of the server that runs reconstructions, or None for
    this computer's engine process. The token falls back to ``FBUPSCALE_TOKEN``."""
    if not settings.engine_server:
        return None
    return settings.engine_server, settings.engine_token or os.environ.get("FBUPSCALE_TOKEN", "")


def base_request(
    cutout: Cutout, engine: str, settings: Settings, library: ModelLibrary | None = None
) -> ReconstructionRequest:
    """The request for ``cutout`` before the Advanced parameters (the LoRA and memory mode
    included: see :mod:`~fbupscale_gui.state.parameters`) are applied.

    A user model ("model:NAME") is looked up in ``library`` (default: the models folder) and
    recorded with its file and SHA-256. Raises ModelNotFoundError when it is gone.
    """
    sr_model = None
    if is_model_engine(engine):
        lib = library if library is not None else ModelLibrary()
        sr_model = lib.ref(engine.split(":", 1)[1])
    flux_base, parts = flux_sources(settings.flux_dir, settings.flux_base_dir)
    return ReconstructionRequest(
        engine=engine,  # validated by the request
        sr_model=sr_model,
        prompt=cutout.prompt,
        scene_json=cutout.scene.to_json() if cutout.scene is not None else "",
        source=cutout.source,
        flux=ModelRef(path=settings.flux_dir, repo_id=FLUX_REPO_ID),
        flux_base=flux_base,
        parts=parts,
        controlnet=ModelRef(path=settings.controlnet_dir, repo_id=CONTROLNET_REPO_ID),
    )


def apply_environment(settings: Settings) -> None:
    """Settings the engine reads from the environment (the Hugging Face cache)."""
    if settings.hf_cache:
        os.environ["HF_HUB_CACHE"] = str(Path(settings.hf_cache).expanduser())


class RunActions:
    """The session's run actions (mixed into :class:`~fbupscale_gui.state.session.Session`)."""

    if TYPE_CHECKING:
        message: SignalInstance
        loraReported: SignalInstance
        settings: SettingsModel
        cutouts: CutoutsModel
        jobs: JobQueue
        engine: EngineChoice
        sr_models: SrLibrary
        recorder: SessionRecorder
        params: Parameters

    def check_models(self) -> None:
        """Look for the FLUX weights in the background (result via ``engine`` signals)."""
        self.engine.check(self.settings.settings)

    def build_request(self, cutout: Cutout) -> ReconstructionRequest:
        """``cutout``'s request with the session's Advanced parameters. Raises FbError (a
        RequestError saying why) when they do not make a valid request."""
        request = self.params.apply_to(
            base_request(cutout, self.engine.engine, self.settings.settings, self.sr_models.library)
        )
        if request.engine != "flux":
            # one pass, one candidate, no LoRA: the request says what the engine will run,
            # not the FLUX panel's variants and LoRA file (they never touch its pixels)
            request = request.replace(variants=1, lora=LoraParams())
        return request

    def run(self, cutouts: Iterable[Cutout]) -> list[Job]:
        """Queue one job per cutout. A request the schema refuses becomes a message."""
        jobs: list[Job] = []
        targets = list(cutouts)
        if not targets:
            self.message.emit(Message("warning", "Nothing to run: load and select a cutout first."))
            return jobs
        promptless: list[str] = []
        for cutout in targets:
            self.cutouts.ensure_scene(cutout)
            try:
                request = self.build_request(cutout)
            except FbError as exc:
                self.message.emit(Message("error", f"{cutout.name}: cannot run: {exc}"))
                continue
            if request.engine == "flux" and not request.prompt.strip():
                promptless.append(cutout.name)
            # the engine reads the source file itself; this private copy is embedded in the
            # session's candidate files (a session can be rebuilt from them)
            jobs.append(
                self.jobs.enqueue(cutout.id, cutout.name, request, cutout=cutout.image.copy())
            )
        if promptless:  # once per run, however many cutouts
            shown = ", ".join(promptless[:3]) + ("…" if len(promptless) > 3 else "")
            self.message.emit(
                Message(
                    "warning",
                    f"FLUX runs without a prompt for {shown}: describe the players in the "
                    "Scene form (on the command line: --scene FILE.json). FLUX's results "
                    "depend on the prompt.",
                )
            )
        return jobs

    def retry(self, message: Message) -> Job | None:
        if message.rerun:
            jobs = self.rerun_interrupted(message.rerun)
            return jobs[0] if jobs else None
        if message.retry is None:
            return None
        return self.jobs.retry(message.retry, **(message.retry_changes or {}))

    @Slot()
    def _on_models_changed(self) -> None:
        self.engine.set_models(self.sr_models.entries())

    @Slot(object)
    def _on_job_ended(self, job: Job) -> None:
        if job.state is not JobState.FAILED or job.error is None or not job.report_errors:
            return
        err = job.error
        if (
            isinstance(err, ModelNotFoundError)
            and job.request.engine == "flux"
            and err.what.startswith(_FLUX_WHATS)
        ):
            self.engine.report_missing(err)
            self.message.emit(
                Message(
                    "error",
                    f"{job.cutout_name}: not run, the FLUX weights are missing.",
                    topic="flux-jobs",
                )
            )
            return
        if job.crashed:
            self.message.emit(
                Message(
                    "error",
                    f"{job.cutout_name}: {job.error_message}. Finished candidates are kept; "
                    "the engine restarts for the next job.",
                    retry=job,
                    retry_label="Re-run",
                    details=job.detail,
                )
            )
            return
        mode = job.retry_mode
        if mode is not None:
            self.message.emit(
                Message(
                    "error",
                    f"{job.cutout_name}: {job.error_message}",
                    retry=job,
                    retry_label=f"Retry with '{mode}'",
                    retry_changes={"memory_mode": mode},
                    topic=f"job:{job.cutout_name}",
                )
            )
            return
        self.message.emit(
            Message(
                "error", f"{job.cutout_name}: {job.error_message}", topic=f"job:{job.cutout_name}"
            )
        )

    @Slot(object, object)
    def _on_job_note(self, job: Job, note: Note) -> None:
        """What the engine reported during the run (a LoRA load): the run's message."""
        self.message.emit(Message(note.level, f"{job.cutout_name}: {note.text}"))
        lora = job.request.lora.model
        if note.topic == "lora" and lora is not None:
            self.loraReported.emit(lora.path, note.level, note.text)

    @Slot(str, str)
    def _on_flux_missing(self, text: str, details: str) -> None:
        self.message.emit(Message("warning", text, details=details, topic=FLUX_TOPIC))

    def rerun_interrupted(self, jobs: Iterable[Job] | None = None) -> list[Job]:
        """Queue interrupted jobs again (all of them by default)."""
        targets = list(jobs) if jobs is not None else self.jobs.interrupted()
        out: list[Job] = []
        for old in targets:
            if old.state is not JobState.INTERRUPTED:
                continue
            try:
                cutout = self.cutouts.by_id(old.cutout_id)
            except KeyError:
                continue
            new = self.jobs.retry(old, source=cutout.source)  # the original file may be gone
            old.state = JobState.CANCELLED  # replaced: no longer offered
            self.recorder.rerun(old, new)
            out.append(new)
        return out
