"""The two-stage FLUX reconstruction (paper 3.1-3.2), offline.

Stage 1: FLUX.1-dev image-to-image on the standardised square cutout. Stage 2: the FLUX
ControlNet upscaler, with the whole square stage-1 image as its control image. Both stages run
one candidate per pipeline call with that candidate's own ``torch.Generator("cpu")`` seeded
``request.seed_for(variant)``: every candidate is then reproducible on its own (``request.only``
renders it pixel-identically) and streams to the UI as soon as it is ready. (Batching would need
a list of per-candidate generators *and* ``image=[img] * n``; one generator for a batch makes
candidate k depend on candidates 0..k-1.) Both LoRA branches of stage 2 use the same seed, so
their difference is the LoRA alone. A stage-1 result is computed once per (variant, stage-1
LoRA state) and shared by the branches that need it.

Models. ``FluxControlNetPipeline(**stage1.components, controlnet=...)`` shares every module
with stage 1 (``from_pipe`` would silently cast shared modules to float32). Loaded pipelines
are cached across runs keyed by model identity, device, precision and memory mode; only one
set is kept, since two FLUX models never fit in memory at once.

Memory modes and shared modules (CUDA only):

* ``none``: every module on the GPU; both pipelines simply use them.
* ``model``: accelerate's model offload chains one hook per module, and a module holds one
  hook at a time, so the two pipelines cannot both own hooks on the shared modules. Before a
  stage runs, the pipeline that last owned the hooks has them removed, and the stage's own
  pipeline calls ``enable_model_cpu_offload`` (cheap: everything is already on the CPU, as
  each pipeline call ends by offloading). The prompt is encoded once per run, so the text
  encoders are not moved again for every candidate.
* ``group`` / ``sequential``: hooks are per module and carry the target device, so they are
  applied once to the union of both pipelines' modules and serve either pipeline.

LoRAs are loaded with all accelerate hooks removed and the mode re-applied afterwards (diffusers
otherwise re-applies offload on the loading pipeline only, see diffusers #10914 / #11791).

Files (:mod:`.flux_files`): the transformer may be a single file (BFL/ComfyUI layout, fp8,
fp8_scaled, GGUF) whose other parts come from ``request.flux_base``, and the ControlNet a single
diffusers-layout file. The same weights render pixel-identically whichever way they were
stored: on the CPU that needs MKL's alignment-independent mode (``MKL_CBWR``, set in the
package's ``__init__``), as a folder's weights are memory-mapped at whatever offset the file
put them and a single file's are fresh allocations.

Memory plan (:mod:`.flux_plan`): ``storage`` "fp8" casts the transformer layerwise after its
LoRAs are loaded (a LoRA arriving later reloads the set, LoRA first); the prompt is encoded once
per prompt text per loaded set, and without offload on CUDA the text encoders visit the GPU only
for that. Speed modes (:mod:`.flux_speed`): First Block Cache around stage-1 calls only, or
regional compile of the repeated blocks.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import Cancelled, GpuOutOfMemoryError, RequestError
from fbupscale_gui.core.images import crop_to_content, standardise
from fbupscale_gui.core.job import Candidate, IsCancelled, Note, OnProgress, Progress
from fbupscale_gui.core.request import CandidateKey, ModelRef, ReconstructionRequest, Stage1Params
from fbupscale_gui.engine import devices
from fbupscale_gui.engine.devices import Runtime
from fbupscale_gui.engine.finite import require_finite
from fbupscale_gui.engine.flux_files import load_controlnet_file, load_transformer_file
from fbupscale_gui.engine.flux_plan import plan
from fbupscale_gui.engine.flux_speed import compile_blocks, stage1_cache
from fbupscale_gui.engine.lora import (
    adapter_name_for,
    ensure_lora_loaded,
    is_lora_loaded,
    lora_report,
    set_lora_state,
)
from fbupscale_gui.storage.weights import LocatedModel, check_flux_base, locate

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["FluxRunner", "PipelinePair", "load_pipelines", "plan_steps", "stage1_steps"]


def stage1_steps(params: Stage1Params) -> int:
    """Denoising steps diffusers' img2img really runs (its own rounding, not ``int(s*x)``)."""
    return params.effective_steps


@dataclass
class PipelinePair:
    """Stage-1 and (once a ControlNet is needed) stage-2 pipelines sharing every module."""

    key: tuple[str, ...]
    runtime: Runtime
    stage1: Any
    stage2: Any = None
    controlnet_key: tuple[str, ...] = ()
    #: model offload: the pipeline whose accelerate hooks are installed now (None: none are)
    hooks_owner: Any = None
    #: group offload: ids of modules already group-offloaded
    grouped: set[int] = field(default_factory=set)
    sequential_applied: bool = False
    #: fp8 layerwise casting applied to the transformer (LoRAs must be loaded before it)
    fp8_cast: bool = False
    #: prompt text -> (prompt_embeds, pooled_prompt_embeds), encoded once per loaded set
    prompts: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def transformer(self) -> Any:
        return self.stage1.transformer

    def modules(self) -> dict[str, Any]:
        import torch

        pipe = self.stage2 if self.stage2 is not None else self.stage1
        return {k: v for k, v in pipe.components.items() if isinstance(v, torch.nn.Module)}


def load_pipelines(
    flux_dir: str | Path,
    controlnet_dir: str | Path | None,
    runtime: Runtime,
    *,
    key: tuple[str, ...] = (),
    base: str | Path | None = None,
) -> PipelinePair:
    """Load FLUX.1-dev (and the ControlNet) offline in ``runtime``'s precision, not yet placed.

    ``flux_dir`` is a diffusers folder, or a single-file transformer (BFL/ComfyUI
    .safetensors/.sft, fp8, GGUF) whose other parts come from the diffusers folder ``base``.
    Raises OSError/ValueError from diffusers when a folder is damaged, ModelFileError for a
    file that is not a FLUX transformer, ModelNotFoundError naming the parts ``base`` lacks.
    """
    from diffusers import FluxImg2ImgPipeline

    dtype = devices.torch_dtype(runtime.precision)
    if Path(flux_dir).is_file():
        check_flux_base(flux_dir, base)
        transformer, _desc = load_transformer_file(flux_dir, dtype, config_dir=base)
        stage1 = FluxImg2ImgPipeline.from_pretrained(
            str(base), transformer=transformer, dtype=dtype, local_files_only=True
        )
    else:
        stage1 = FluxImg2ImgPipeline.from_pretrained(
            str(flux_dir), dtype=dtype, local_files_only=True
        )
    stage1.set_progress_bar_config(disable=True)
    pair = PipelinePair(key=key, runtime=runtime, stage1=stage1)
    if controlnet_dir is not None:
        attach_controlnet(pair, controlnet_dir)
    return pair


def attach_controlnet(
    pair: PipelinePair, controlnet_dir: str | Path, key: tuple[str, ...] = ()
) -> None:
    """Load a ControlNet and build the stage-2 pipeline from stage 1's own modules."""
    from diffusers import FluxControlNetModel, FluxControlNetPipeline

    dtype = devices.torch_dtype(pair.runtime.precision)
    if Path(controlnet_dir).is_file():
        controlnet = load_controlnet_file(
            controlnet_dir, dtype, pair.transformer.config.axes_dims_rope
        )
    else:
        controlnet = FluxControlNetModel.from_pretrained(
            str(controlnet_dir), dtype=dtype, local_files_only=True
        )
    # Not from_pipe: it would cast the shared modules to float32.
    stage2: Any = FluxControlNetPipeline(**pair.stage1.components, controlnet=controlnet)
    stage2.set_progress_bar_config(disable=True)
    _strip_hooks(pair)  # place() re-applies the memory mode to the new set of modules
    pair.stage2 = stage2
    pair.controlnet_key = key


# -- memory modes -------------------------------------------------------------------------


def _strip_hooks(pair: PipelinePair) -> None:
    """Remove accelerate offload hooks from every module (group offload is left in place)."""
    mode = pair.runtime.memory_mode
    if mode == "model":
        for pipe in (pair.stage1, pair.stage2):
            if pipe is not None:
                pipe.remove_all_hooks()
        pair.hooks_owner = None
    elif mode == "sequential" and pair.sequential_applied:
        for pipe in (pair.stage1, pair.stage2):
            if pipe is not None:
                pipe.remove_all_hooks()
        pair.sequential_applied = False


def place(pair: PipelinePair) -> None:
    """Apply the memory mode to every module not yet covered (idempotent)."""
    rt = pair.runtime
    mode = rt.memory_mode
    if mode == "none":
        for name, module in pair.modules().items():
            # text encoders visit the GPU only to encode a new prompt (encode_prompt)
            module.to("cpu" if rt.is_cuda and name in _TEXT_ENCODERS else rt.device)
    elif mode == "sequential":
        if not pair.sequential_applied:
            superset = pair.stage2 if pair.stage2 is not None else pair.stage1
            superset.enable_sequential_cpu_offload(device=rt.device)
            pair.sequential_applied = True
    elif mode == "group":
        import torch

        for module in pair.modules().values():
            if id(module) in pair.grouped:
                continue
            kwargs: dict[str, Any] = {
                "onload_device": torch.device(rt.device),
                "offload_device": torch.device("cpu"),
                "offload_type": "block_level",
                "num_blocks_per_group": 1,
            }
            if hasattr(module, "enable_group_offload"):
                module.enable_group_offload(**kwargs)
            else:
                from diffusers.hooks import apply_group_offloading

                apply_group_offloading(module, **kwargs)
            pair.grouped.add(id(module))
    # "model" is applied per stage by activate()


def activate(pair: PipelinePair, pipe: Any) -> None:
    """Make ``pipe`` ready to run: for model offload, move the hooks over to it."""
    if pair.runtime.memory_mode != "model" or pair.hooks_owner is pipe:
        return
    other = pair.stage2 if pipe is pair.stage1 else pair.stage1
    if other is not None:
        other.remove_all_hooks()
    if pair.stage2 is not None and pipe is pair.stage1:
        pair.stage2.controlnet.to("cpu")  # a cancelled stage 2 can leave it on the GPU
    pipe.enable_model_cpu_offload(device=pair.runtime.device)
    pair.hooks_owner = pipe


_TEXT_ENCODERS: Final = ("text_encoder", "text_encoder_2")


def cast_to_fp8(pair: PipelinePair) -> None:
    """fp8 storage for the transformer: weights kept in float8, upcast per layer to compute.
    Call after loading LoRAs (diffusers' rule); norms and embeddings stay in full precision."""
    import torch

    if pair.fp8_cast:
        return
    pair.transformer.enable_layerwise_casting(
        storage_dtype=torch.float8_e4m3fn,
        compute_dtype=devices.torch_dtype(pair.runtime.precision),
    )
    pair.fp8_cast = True


def encode_prompt(pair: PipelinePair, prompt: str) -> tuple[Any, Any]:
    """(prompt_embeds, pooled) for ``prompt``, encoded once per prompt text and loaded set.

    Without offload on CUDA the text encoders live on the CPU and come to the GPU only here;
    when they do not fit next to the resident weights, those step off the GPU meanwhile.
    Encoding always runs on the pipeline's device, so embeddings do not depend on the card.
    """
    import torch

    cached = pair.prompts.get(prompt)
    if cached is not None:
        return cached
    pipe = pair.stage1
    rt = pair.runtime
    swap = rt.is_cuda and rt.memory_mode == "none"
    moved: list[Any] = []
    if swap:
        encoders = [pipe.components[n] for n in _TEXT_ENCODERS]
        need = sum(p.numel() * p.element_size() for e in encoders for p in e.parameters())
        free = devices.free_vram_bytes(rt.device)
        if free is not None and free < need * 1.2 + devices.GIB:
            moved = [m for n, m in pair.modules().items() if n not in _TEXT_ENCODERS]
            for module in moved:
                module.to("cpu")
        for encoder in encoders:
            encoder.to(rt.device)
    try:
        with torch.no_grad():
            embeds, pooled, _ = pipe.encode_prompt(
                prompt=prompt,
                prompt_2=None,
                device=pipe._execution_device if not swap else torch.device(rt.device),
                num_images_per_prompt=1,
            )
    finally:
        if swap:
            for name in _TEXT_ENCODERS:
                pipe.components[name].to("cpu")
            for module in moved:
                module.to(rt.device)
    pair.prompts[prompt] = (embeds, pooled)
    return embeds, pooled


# -- the runner ---------------------------------------------------------------------------


def _to_image(pipe: Any, images: Any, stage: str) -> Image.Image:
    """A pipeline's ``output_type="np"`` result as the PIL image ``"pil"`` would give, refused
    (RenderError) when it holds NaN or infinite values instead of becoming a black image."""
    require_finite(images, f"FLUX {stage}")
    image: Image.Image = pipe.image_processor.numpy_to_pil(images)[0]
    return image


@dataclass
class _Tracker:
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


class FluxRunner:
    """Runs FLUX requests and keeps the loaded pipelines between them. Not thread-safe."""

    def __init__(
        self,
        *,
        search_dirs: tuple[str | Path, ...] = (),
        hf_cache: str | Path | None = None,
        fast: Callable[[], Any] | None = None,
    ) -> None:
        self.search_dirs = search_dirs
        self.hf_cache = hf_cache
        #: The fast engine (``FastEngine``) that makes a non-Lanczos stage-1 start image.
        self._fast = fast
        self._pair: PipelinePair | None = None
        #: the runtime the memory plan chose for the run in progress
        self._planned: Runtime | None = None

    @property
    def pipelines(self) -> PipelinePair | None:
        """The currently loaded pipelines (for inspection and tests), or None."""
        return self._pair

    def release(self) -> None:
        """Drop the loaded pipelines and return their memory."""
        pair, self._pair = self._pair, None
        if pair is not None:
            for pipe in (pair.stage1, pair.stage2):
                if pipe is not None and pair.runtime.memory_mode in ("model", "sequential"):
                    pipe.remove_all_hooks()
            del pair
        devices.free_memory()

    def _locate(self, ref: ModelRef, what: str) -> LocatedModel:
        return locate(ref, what, search_dirs=self.search_dirs, hf_cache=self.hf_cache)

    def _plan(
        self, request: ReconstructionRequest, runtime: Runtime, flux: LocatedModel
    ) -> tuple[Runtime, str]:
        """The runtime and weight storage: ``auto`` ones follow the memory plan on CUDA
        (the loaded set's runtime is kept: free VRAM now excludes what it holds)."""
        if request.storage == "fp8" and flux.ref.format.startswith("gguf"):
            raise RequestError(
                "storage: fp8 storage applies to 16-bit weights; a GGUF file stays quantised "
                "(choose native or auto)"
            )
        storage: str = request.storage
        held = self._pair is not None and self._pair.runtime == runtime
        free = devices.free_vram_bytes(runtime.device) if runtime.is_cuda and not held else None
        if free is None:
            if storage == "auto":
                storage = self._pair.key[-1] if held and self._pair is not None else "native"
            return runtime, storage
        chosen = plan(free / devices.GIB, flux.ref.quant or runtime.precision, storage=storage)
        if request.memory_mode == "auto" and not runtime.note:
            runtime = dataclasses.replace(runtime, memory_mode=chosen.memory_mode)
        return runtime, chosen.storage

    def _prepare(
        self, request: ReconstructionRequest, runtime: Runtime, tracker: _Tracker
    ) -> tuple[PipelinePair, ReconstructionRequest, str | None, list[str]]:
        """Locate and load what the request needs; returns pipelines, the request with model
        hashes filled in, the LoRA adapter name (None when no candidate uses the LoRA), and
        the models whose content differs from the hashes the request recorded."""
        keys = request.candidate_keys()
        needs_stage2 = any(k.stage == 2 for k in keys)
        # A stage-1 key's ``lora`` already is the stage-1 LoRA state.
        needs_lora = any(
            k.lora if k.stage == 1 else request.stage1_lora(k.lora) or request.stage2_lora(k.lora)
            for k in keys
        )
        tracker.emit("load", 0, 3, 0, "locating models")
        flux = self._locate(request.flux, "flux")
        base: LocatedModel | None = None
        if flux.path.is_file():
            if request.flux_base is None:
                check_flux_base(flux.path, None)  # raises, naming every missing part
            else:
                base = self._locate(request.flux_base, "flux_base")
        cn = self._locate(request.controlnet, "controlnet") if needs_stage2 else None
        lora_model = request.lora.model
        lora = self._locate(lora_model, "lora") if (needs_lora and lora_model) else None
        tracker.check()
        runtime, storage = self._plan(request, runtime, flux)
        self._planned = runtime

        key = (
            flux.ref.sha256,
            str(flux.path),
            str(base.path) if base is not None else "",
            runtime.device,
            runtime.precision,
            runtime.memory_mode,
            # compiled blocks stay compiled: exact/fast runs need an uncompiled transformer
            "compiled" if request.speed == "compiled" else "eager",
            storage,
        )
        pair = self._pair
        if (
            pair is not None
            and pair.fp8_cast
            and lora is not None
            and not is_lora_loaded(pair.transformer, lora.ref.sha256)
        ):
            self.release()  # a LoRA cannot be loaded into fp8 storage: reload, LoRA first
            pair = None
        if pair is None or pair.key != key:
            self.release()
            tracker.emit("load", 1, 3, 0, f"loading {request.flux.repo_id or flux.path.name}")
            pair = load_pipelines(
                flux.path, None, runtime, key=key, base=base.path if base is not None else None
            )
            self._pair = pair
            tracker.check()
        if cn is not None:
            cn_key = (cn.ref.sha256, str(cn.path))
            if pair.stage2 is None or pair.controlnet_key != cn_key:
                tracker.emit(
                    "load", 2, 3, 0, f"loading {request.controlnet.repo_id or cn.path.name}"
                )
                attach_controlnet(pair, cn.path, cn_key)
                tracker.check()
        adapter: str | None = None
        if lora is not None:
            if not is_lora_loaded(pair.transformer, lora.ref.sha256):
                _strip_hooks(pair)  # load with no accelerate hooks; place() re-applies them
                report = ensure_lora_loaded(pair.stage1, lora.path, lora.ref.sha256)
                if report is not None:  # every load is reported: what applied, what not
                    note = Note(report.level, report.summary(), "lora")
                    tracker.emit("load", 2, 3, 0, note=note)
            adapter = adapter_name_for(lora.ref.sha256)
        if storage == "fp8":
            cast_to_fp8(pair)
        place(pair)
        if request.speed == "compiled":
            plain = not pair.fp8_cast and getattr(pair.transformer, "hf_quantizer", None) is None
            compile_blocks(pair.transformer, fullgraph=plain)
        tracker.emit("load", 3, 3, 0, "models ready")

        resolved = request.replace(
            storage=storage,
            flux=dataclasses.replace(
                request.flux, sha256=flux.ref.sha256, format=flux.ref.format, quant=flux.ref.quant
            ),
            flux_base=(
                dataclasses.replace(request.flux_base, sha256=base.ref.sha256)
                if base is not None and request.flux_base is not None
                else request.flux_base
            ),
            controlnet=(
                dataclasses.replace(
                    request.controlnet,
                    sha256=cn.ref.sha256,
                    format=cn.ref.format,
                    quant=cn.ref.quant,
                )
                if cn is not None
                else request.controlnet
            ),
            lora=(
                dataclasses.replace(
                    request.lora, model=dataclasses.replace(lora_model, sha256=lora.ref.sha256)
                )
                if lora is not None and lora_model is not None
                else request.lora
            ),
        )
        # A reproduction with other model files cannot be pixel-identical: say so.
        changed = [
            name
            for name, asked, found in (
                ("FLUX", request.flux, flux),
                ("FLUX base", request.flux_base if base else None, base),
                ("ControlNet", request.controlnet if cn else None, cn),
                ("LoRA", lora_model if lora else None, lora),
            )
            if asked is not None
            and found is not None
            and asked.sha256
            and asked.sha256 != found.ref.sha256
        ]
        return pair, resolved, adapter, changed

    def run(
        self,
        request: ReconstructionRequest,
        cutout: Image.Image,
        on_progress: OnProgress | None = None,
        is_cancelled: IsCancelled | None = None,
    ) -> Iterator[Candidate]:
        """Yield the request's candidates in ``request.candidate_keys()`` order.

        Raises Cancelled (after the finished candidates), ModelNotFoundError, LoraError,
        RequestError (device not available) and GpuOutOfMemoryError (pipelines released,
        memory freed; ``next_mode`` says which memory mode to retry with).
        """
        runtime = devices.resolve_runtime(request.device, request.precision, request.memory_mode)
        held = self._pair.runtime if self._pair is not None else None
        if (
            request.memory_mode == "auto"
            and held is not None
            and (held.device, held.precision) == (runtime.device, runtime.precision)
        ):
            # Free VRAM now excludes what the loaded pipelines hold: keep their mode.
            runtime = held
        keys = request.candidate_keys()
        _, _, job_total = plan_steps(request)
        tracker = _Tracker(on_progress, is_cancelled, job_total, len(keys))
        self._planned = None
        tracker.check()
        out_of_memory = False
        try:
            yield from self._run(request, cutout, runtime, keys, tracker)
        except Cancelled:
            devices.free_memory()
            raise
        except Exception as exc:
            if not devices.is_out_of_memory(exc):
                raise
            out_of_memory = True
        if out_of_memory:
            # Outside the except block, so the traceback's frames (and tensors) are gone.
            runtime = self._planned or runtime  # the memory plan may have chosen the mode
            mode = runtime.memory_mode
            nxt = devices.next_lighter_mode(mode) if runtime.is_cuda else None
            self.release()  # frees the GPU; the retry loads in the lighter mode
            raise GpuOutOfMemoryError(mode, nxt, runtime.label)

    def _run(
        self,
        request: ReconstructionRequest,
        cutout: Image.Image,
        runtime: Runtime,
        keys: list[CandidateKey],
        tracker: _Tracker,
    ) -> Iterator[Candidate]:
        import torch

        pair, resolved, adapter, changed = self._prepare(request, runtime, tracker)
        pre = request.preprocess
        if request.stage1.start == "lanczos" or self._fast is None:
            square, placement = standardise(cutout, pre)
        else:  # the start image from a fast engine (request.stage1.start), same geometry
            square, placement = self._fast().start_square(
                request.stage1.start, cutout, pre, tracker.is_cancelled
            )
        label = pair.runtime.label
        if resolved.storage == "fp8":
            label += " fp8-storage"
        if request.speed != "exact":
            label += f" {request.speed}"
        if changed:
            label += f" [{', '.join(changed)} differs from the request's]"

        def finish(img: Image.Image) -> Image.Image:
            return crop_to_content(img, placement) if pre.crop_to_content else img

        def set_lora(on: bool, scale: float) -> None:
            set_lora_state(pair.transformer, adapter if on else None, scale)

        lora_model = resolved.lora.model
        report = (
            lora_report(pair.transformer, lora_model.sha256)
            if adapter is not None and lora_model is not None
            else None
        )

        def lora_record(key: CandidateKey) -> dict[str, Any] | None:
            """The candidate's LoRA record: where it applied, at which scaling per layer."""
            if key.stage == 1:
                stages = ["stage1"] if key.lora else []
            else:
                stages = [
                    name
                    for name, on in (
                        ("stage1", request.stage1_lora(key.lora)),
                        ("stage2", request.stage2_lora(key.lora)),
                    )
                    if on
                ]
            if report is None or not stages:
                return None
            return report.to_metadata(request.lora.scale, stages)

        # The prompt is encoded once per prompt text and shared by every call of both stages.
        activate(pair, pair.stage1)
        tracker.check()
        prompt_embeds, pooled = encode_prompt(pair, request.prompt)

        stage1_results: dict[tuple[int, bool], tuple[Image.Image, float]] = {}
        stage1_timed: set[tuple[int, bool]] = set()
        s1 = request.stage1
        s2 = request.stage2
        for index, key in enumerate(keys):
            seed = request.seed_for(key.variant)
            s1_lora = key.lora if key.stage == 1 else request.stage1_lora(key.lora)
            s1_key = (key.variant, s1_lora)
            if s1_key not in stage1_results:
                tracker.check()
                activate(pair, pair.stage1)
                set_lora(s1_lora, request.lora.scale)
                start = time.perf_counter()
                with stage1_cache(pair.transformer, request.speed):
                    image1 = pair.stage1(
                        prompt_embeds=prompt_embeds,
                        pooled_prompt_embeds=pooled,
                        image=square,
                        strength=s1.strength,
                        num_inference_steps=s1.steps,
                        guidance_scale=s1.guidance,
                        height=pre.size,
                        width=pre.size,
                        generator=torch.Generator("cpu").manual_seed(seed),
                        callback_on_step_end=tracker.callback("stage1", index),
                        output_type="np",  # checked for NaN before it becomes 8-bit pixels
                    ).images
                image1 = _to_image(pair.stage1, image1, "stage 1")
                stage1_results[s1_key] = (image1, time.perf_counter() - start)
            image1, t1 = stage1_results[s1_key]
            timings: dict[str, float] = {}
            if s1_key not in stage1_timed:
                timings["stage1"] = t1  # a shared stage-1 result is timed once, on the first
                stage1_timed.add(s1_key)
            if key.stage == 1:
                yield Candidate(
                    key, seed, finish(image1), resolved, timings, label, lora_record(key)
                )
                continue
            tracker.check()
            activate(pair, pair.stage2)
            set_lora(request.stage2_lora(key.lora), request.lora.scale)
            start = time.perf_counter()
            image2 = pair.stage2(
                prompt_embeds=prompt_embeds,
                pooled_prompt_embeds=pooled,
                control_image=image1,
                controlnet_conditioning_scale=s2.conditioning_scale,
                num_inference_steps=s2.steps,
                guidance_scale=s2.guidance,
                height=pre.size,
                width=pre.size,
                generator=torch.Generator("cpu").manual_seed(seed),
                callback_on_step_end=tracker.callback("stage2", index),
                output_type="np",
            ).images
            image2 = _to_image(pair.stage2, image2, "stage 2")
            timings["stage2"] = time.perf_counter() - start
            yield Candidate(key, seed, finish(image2), resolved, timings, label, lora_record(key))
        set_lora(False, 1.0)
