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

Models (:mod:`fbupscale_gui.engine.flux.pipelines`): both stages share every module, loaded from a diffusers
folder or single files, held in the memory mode and weight storage the plan chose. Loaded
pipelines are cached across runs keyed by model identity, device, precision and memory mode;
only one set is kept, since two FLUX models never fit in memory at once. LoRAs are loaded with
all accelerate hooks removed and the mode re-applied afterwards (diffusers otherwise re-applies
offload on the loading pipeline only, see diffusers #10914 / #11791). Speed modes
(:mod:`fbupscale_gui.engine.flux.speed`): First Block Cache or MagCache around stage-1 calls only, or regional
compile of the repeated blocks.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbupscale_gui.core.errors import Cancelled, GpuOutOfMemoryError, RequestError
from fbupscale_gui.core.images import crop_to_content, standardise
from fbupscale_gui.core.job import Candidate, IsCancelled, Note, OnProgress
from fbupscale_gui.core.request import (
    CandidateKey,
    FluxParts,
    ModelRef,
    ReconstructionRequest,
)
from fbupscale_gui.engine import devices
from fbupscale_gui.engine.devices import Runtime
from fbupscale_gui.engine.finite import require_finite
from fbupscale_gui.engine.flux.pipelines import (
    PipelinePair,
    activate,
    attach_controlnet,
    cast_to_fp8,
    encode_prompt,
    load_pipelines,
    place,
    strip_hooks,
)
from fbupscale_gui.engine.flux.plan import plan
from fbupscale_gui.engine.flux.progress import Tracker, plan_steps
from fbupscale_gui.engine.flux.speed import compile_blocks, stage1_cache
from fbupscale_gui.engine.lora.apply import (
    adapter_name_for,
    ensure_lora_loaded,
    is_lora_loaded,
    lora_report,
    set_lora_state,
)
from fbupscale_gui.storage.weights import LocatedModel, check_flux_base, locate

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["FluxRunner"]


def _identified(asked: ModelRef, found: LocatedModel) -> ModelRef:
    """``asked`` with the located file's identity (sha256, format, quantisation)."""
    return dataclasses.replace(
        asked, sha256=found.ref.sha256, format=found.ref.format, quant=found.ref.quant
    )


# -- the runner ---------------------------------------------------------------------------


def _to_image(pipe: Any, images: Any, stage: str) -> Image.Image:
    """A pipeline's ``output_type="np"`` result as the PIL image ``"pil"`` would give, refused
    (RenderError) when it holds NaN or infinite values instead of becoming a black image."""
    require_finite(images, f"FLUX {stage}")
    image: Image.Image = pipe.image_processor.numpy_to_pil(images)[0]
    return image


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
        #: free VRAM (GiB) measured before the loaded set was loaded, for its memory plan
        self._free_gib: float | None = None

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
    ) -> tuple[Runtime, str, str]:
        """The runtime, weight storage and VAE tiling: ``auto`` ones follow the memory plan on
        CUDA. A loaded set keeps its runtime and storage (free VRAM now excludes what it
        holds); its tiling follows the plan for the free VRAM measured before it loaded."""
        gguf = flux.ref.format.startswith("gguf")
        if request.storage in ("fp8", "nf4") and gguf:
            raise RequestError(
                f"storage: {request.storage} storage applies to 16-bit weights; a GGUF file "
                "stays quantised (choose native or auto)"
            )
        nf4 = runtime.is_cuda and importlib.util.find_spec("bitsandbytes") is not None
        if request.storage == "nf4" and not nf4:
            raise RequestError(
                "storage: nf4 (bitsandbytes 4-bit) runs on NVIDIA GPUs with CUDA and the "
                "bitsandbytes package only"
                + ("" if runtime.is_cuda else f"; this run is on {runtime.device}")
                + " (choose auto, native or fp8)"
            )
        storage: str = request.storage
        tiling: str = request.vae_tiling
        held = self._pair is not None and self._pair.runtime == runtime
        if runtime.is_cuda and not held:
            free = devices.free_vram_bytes(runtime.device)
            self._free_gib = free / devices.GIB if free is not None else None
        free_gib = self._free_gib if runtime.is_cuda else None
        size = request.preprocess.size
        quant = flux.ref.quant or runtime.precision
        if held and self._pair is not None:
            if storage == "auto":
                storage = self._pair.key[-1]
            if tiling == "auto":
                chosen = (
                    plan(free_gib, quant, storage=storage, nf4=nf4, size=size) if free_gib else None
                )
                tiling = "on" if chosen is not None and chosen.vae_tiling else "off"
            return runtime, storage, tiling
        if free_gib is None:
            return (
                runtime,
                "native" if storage == "auto" else storage,
                "off" if tiling == "auto" else tiling,
            )
        chosen = plan(free_gib, quant, storage=storage, nf4=nf4, size=size)
        if request.memory_mode == "auto" and not runtime.note:
            runtime = dataclasses.replace(runtime, memory_mode=chosen.memory_mode)
        if tiling == "auto":
            tiling = "on" if chosen.vae_tiling else "off"
        return runtime, chosen.storage, tiling

    def _locate_parts(
        self, request: ReconstructionRequest, flux: LocatedModel
    ) -> tuple[LocatedModel | None, dict[str, LocatedModel]]:
        """The base folder and the parts' own files a single-file transformer needs; raises
        ModelNotFoundError naming every part still missing and where to get it."""
        if not flux.path.is_file():
            if request.parts.given():
                raise RequestError(
                    "parts: a VAE, text encoder or tokenizer of its own applies to a "
                    "single-file transformer; a FLUX folder brings its own"
                )
            return None, {}
        parts = {name: self._locate(ref, name) for name, ref in request.parts.given().items()}
        base = self._locate(request.flux_base, "flux_base") if request.flux_base else None
        check_flux_base(flux.path, base.path if base is not None else None, parts)
        return base, parts

    def _prepare(
        self, request: ReconstructionRequest, runtime: Runtime, tracker: Tracker
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
        base, parts = self._locate_parts(request, flux)
        cn = self._locate(request.controlnet, "controlnet") if needs_stage2 else None
        lora_model = request.lora.model
        lora = self._locate(lora_model, "lora") if (needs_lora and lora_model) else None
        tracker.check()
        runtime, storage, tiling = self._plan(request, runtime, flux)
        self._planned = runtime

        key = (
            flux.ref.sha256,
            str(flux.path),
            str(base.path) if base is not None else "",
            ";".join(f"{name}={part.path}" for name, part in sorted(parts.items())),
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
                flux.path,
                None,
                runtime,
                key=key,
                base=base.path if base is not None else None,
                parts={name: part.path for name, part in parts.items()},
                nf4=storage == "nf4",
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
                strip_hooks(pair)  # load with no accelerate hooks; place() re-applies them
                report = ensure_lora_loaded(pair.stage1, lora.path, lora.ref.sha256)
                if report is not None:  # every load is reported: what applied, what not
                    note = Note(report.level, report.summary(), "lora")
                    tracker.emit("load", 2, 3, 0, note=note)
            adapter = adapter_name_for(lora.ref.sha256)
        if storage == "fp8":
            cast_to_fp8(pair)
        place(pair)
        vae = pair.stage1.vae  # shared by both stages; tiling changes pixels: recorded
        if tiling == "on":
            vae.enable_tiling()
        else:
            vae.disable_tiling()
        if request.speed == "compiled":
            plain = not pair.fp8_cast and getattr(pair.transformer, "hf_quantizer", None) is None
            compile_blocks(pair.transformer, fullgraph=plain)
        tracker.emit("load", 3, 3, 0, "models ready")

        resolved = request.replace(
            storage=storage,
            vae_tiling=tiling,
            flux=_identified(request.flux, flux),
            flux_base=(
                dataclasses.replace(request.flux_base, sha256=base.ref.sha256)
                if base is not None and request.flux_base is not None
                else request.flux_base
            ),
            parts=FluxParts(
                **{
                    name: _identified(request_part, parts[name])
                    for name, request_part in request.parts.given().items()
                }
            ),
            controlnet=_identified(request.controlnet, cn) if cn else request.controlnet,
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
                *((name, request.parts.given()[name], part) for name, part in parts.items()),
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
        tracker = Tracker(on_progress, is_cancelled, job_total, len(keys))
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
        tracker: Tracker,
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
        if resolved.storage in ("fp8", "nf4"):
            label += f" {resolved.storage}-storage"
        if resolved.vae_tiling == "on":
            label += " vae-tiled"
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

        def render(
            pipe: Any, stage: str, index: int, seed: int, steps: int, guidance: float, **inputs: Any
        ) -> Image.Image:
            """One candidate's pipeline call, with its own generator; the ``np`` output is
            checked for NaN before it becomes 8-bit pixels."""
            images = pipe(
                prompt_embeds=prompt_embeds,
                pooled_prompt_embeds=pooled,
                num_inference_steps=steps,
                guidance_scale=guidance,
                height=pre.size,
                width=pre.size,
                generator=torch.Generator("cpu").manual_seed(seed),
                callback_on_step_end=tracker.callback(stage, index),
                output_type="np",
                **inputs,
            ).images
            return _to_image(pipe, images, stage.replace("stage", "stage "))

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
                with stage1_cache(pair.transformer, request.speed, s1.steps, s1.effective_steps):
                    image1 = render(
                        pair.stage1, "stage1", index, seed, s1.steps, s1.guidance,
                        image=square, strength=s1.strength,
                    )  # fmt: skip
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
            image2 = render(
                pair.stage2, "stage2", index, seed, s2.steps, s2.guidance,
                control_image=image1, controlnet_conditioning_scale=s2.conditioning_scale,
            )  # fmt: skip
            timings["stage2"] = time.perf_counter() - start
            yield Candidate(key, seed, finish(image2), resolved, timings, label, lora_record(key))
        set_lora(False, 1.0)
