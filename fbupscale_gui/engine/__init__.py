"""The reconstruction engine: turns a :class:`ReconstructionRequest` into candidates.

:class:`Engine` owns the loaded models across jobs. It is **not thread-safe**: diffusers
pipelines are not, so give each worker thread its own Engine (the app has one long-lived worker
that owns one). Importing this package is cheap; torch and diffusers load on first use.

``Engine.run`` is a generator: each candidate is yielded as soon as it is ready, in
``request.candidate_keys()`` order. "flux" runs the two-stage FLUX reconstruction
(:mod:`fbupscale_gui.engine.flux.engine`; its stage-1 start image comes from ``request.stage1.start``, a fast engine);
"faithful", "realesrgan", "lanczos" and "ncnn:NAME" run the fast engine (:mod:`fbupscale_gui.engine.fast.engines`,
:mod:`fbupscale_gui.engine.fast.ncnn_sr`); "model:NAME" runs the user SR model recorded in ``request.sr_model``
(:mod:`fbupscale_gui.engine.sr.engine`).

On a CUDA device, "realesrgan" runs the same x4plus weights through torch instead of ncnn
(converted once into the models library, :func:`.convert_ncnn.ensure_realesrgan_in_library`):
ncnn has no CUDA path, and torch fp16/bf16 on the GPU is many times faster. The candidate's
``runtime`` says which path rendered it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.job import Candidate, IsCancelled, OnProgress, raise_if_cancelled
from fbupscale_gui.core.request import ReconstructionRequest, is_model_engine
from fbupscale_gui.storage.cutouts import load_source

if TYPE_CHECKING:
    from fbupscale_gui.core.messages import JobKind, Message
    from fbupscale_gui.engine.flux.engine import FluxRunner
    from fbupscale_gui.engine.lora.train_config import TrainConfig, TrainResult
    from fbupscale_gui.engine.sr.engine import SrModelEngine
    from fbupscale_gui.storage.weights_library import ModelLibrary

__all__ = ["Engine", "default_engine", "run"]


class Engine:
    """Runs requests and keeps models loaded between them. One per worker thread.

    ``search_dirs`` are extra folders to look for models in (``<dir>/<repo name>``), after
    the request's explicit paths and the Hugging Face cache; ``hf_cache`` overrides the cache
    folder (default: ``HF_HUB_CACHE`` / ``HF_HOME``). ``library`` is the models library user
    models and the converted Real-ESRGAN live in (default: the user's models folder).
    ``device_of`` maps a request's device ("auto", "cuda", ...) to the torch device it resolves
    to (default: :func:`.devices.resolve_runtime`); it decides where "realesrgan" runs.
    """

    def __init__(
        self,
        *,
        search_dirs: tuple[str | Path, ...] = (),
        hf_cache: str | Path | None = None,
        library: ModelLibrary | None = None,
        device_of: Callable[[str], str] | None = None,
    ) -> None:
        self.search_dirs = tuple(search_dirs)
        self.hf_cache = hf_cache
        self.library = library
        self._device_of = device_of or _torch_device
        self._flux: FluxRunner | None = None
        self._fast: Any = None
        self._sr: SrModelEngine | None = None

    @property
    def flux(self) -> FluxRunner:
        """The FLUX runner (created on first use)."""
        if self._flux is None:
            from fbupscale_gui.engine.flux.engine import FluxRunner

            self._flux = FluxRunner(
                search_dirs=self.search_dirs, hf_cache=self.hf_cache, fast=self._fast_engine
            )
        return self._flux

    def _fast_engine(self) -> Any:
        if self._fast is None:
            from fbupscale_gui.engine.fast.engines import FastEngine

            self._fast = FastEngine()
        return self._fast

    @property
    def user_models(self) -> SrModelEngine:
        """The user-model engine (created on first use)."""
        if self._sr is None:
            from fbupscale_gui.engine.sr.engine import SrModelEngine

            self._sr = SrModelEngine(library=self.library)
        return self._sr

    def realesrgan_on_torch(self, request: ReconstructionRequest) -> bool:
        """Whether a "realesrgan" request runs through torch (its device is CUDA), not ncnn.

        A request pinned to the CPU never imports torch for this question.
        """
        if request.engine != "realesrgan" or request.device in ("cpu", "mps"):
            return False
        return self._device_of(request.device).startswith("cuda")

    def run(
        self,
        request: ReconstructionRequest,
        on_progress: OnProgress | None = None,
        is_cancelled: IsCancelled | None = None,
    ) -> Iterator[Candidate]:
        """Yield the request's candidates as they finish.

        ``on_progress`` receives :class:`Progress` events; ``is_cancelled`` is polled between
        stages and after every denoising step. Nothing runs until the first ``next()``.

        Raises (from the iteration): RequestError (no source, or a device that is not there),
        InputImageError (the cutout is unreadable or changed), ModelNotFoundError, LoraError,
        GpuOutOfMemoryError, and Cancelled once the candidates finished before the cancel
        have been yielded. A half-denoised image is never yielded.
        """
        if request.source is None:
            raise RequestError("source: the request names no cutout to reconstruct")
        raise_if_cancelled(is_cancelled)
        cutout = load_source(request.source)
        if request.engine == "flux":
            yield from self.flux.run(request, cutout, on_progress, is_cancelled)
            return
        if is_model_engine(request.engine):
            yield self.user_models.run(request, cutout, on_progress, is_cancelled)
            return
        if self.realesrgan_on_torch(request):
            yield self._realesrgan_torch(request, cutout, on_progress, is_cancelled)
            return
        candidate = self._fast_engine().run(request, cutout, on_progress, is_cancelled)
        yield candidate

    def _realesrgan_torch(
        self,
        request: ReconstructionRequest,
        cutout: Any,
        on_progress: OnProgress | None,
        is_cancelled: IsCancelled | None,
    ) -> Candidate:
        """Real-ESRGAN x4plus through torch: the converted weights, same geometry as ncnn."""
        from fbupscale_gui.engine.sr.convert_ncnn import ensure_realesrgan_in_library

        engine = self.user_models
        entry = ensure_realesrgan_in_library(engine.library)
        model = engine.model(
            entry.name, device=self._device_of(request.device), precision=request.precision
        )
        return engine.run(request, cutout, on_progress, is_cancelled, model=model)

    def handle(self, job_id: int, job: JobKind, is_cancelled: IsCancelled) -> Iterator[Message]:
        """The one entry point: run ``job`` and yield its messages (see :mod:`.facade`)."""
        from fbupscale_gui.engine.facade import handle

        return handle(self, job_id, job, is_cancelled)

    def train_lora(
        self,
        config: TrainConfig,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        is_cancelled: IsCancelled | None = None,
        *,
        estimate_only: bool = False,
    ) -> TrainResult:
        """The LoRA training job (:func:`.lora_train.train_lora`): loaded pipelines are freed
        first, since training needs the memory."""
        from fbupscale_gui.engine.lora.train import train_lora

        self.release()
        return train_lora(config, on_event, is_cancelled, estimate_only=estimate_only)

    def release(self) -> None:
        """Free every loaded pipeline and the GPU memory it held."""
        if self._flux is not None:
            self._flux.release()
        if self._sr is not None:
            self._sr.release()
            self._sr = None
        fast, self._fast = self._fast, None
        for name in ("release", "unload"):
            free = getattr(fast, name, None)
            if callable(free):
                free()
                break


def _torch_device(device: str) -> str:
    """The torch device a request's ``device`` resolves to (imports torch)."""
    from fbupscale_gui.engine.devices import resolve_runtime

    return resolve_runtime(device, "fp32", "none").device  # type: ignore[arg-type]


_default: Engine | None = None


def default_engine() -> Engine:
    """The process-wide Engine used by :func:`run` (created on first use)."""
    global _default
    if _default is None:
        _default = Engine()
    return _default


def run(
    request: ReconstructionRequest,
    on_progress: OnProgress | None = None,
    is_cancelled: IsCancelled | None = None,
) -> Iterator[Candidate]:
    """Run ``request`` on the default Engine; see :meth:`Engine.run`."""
    return default_engine().run(request, on_progress, is_cancelled)
