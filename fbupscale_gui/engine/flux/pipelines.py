"""The FLUX pipelines: loading both stages from the files operators have, and holding them in memory.

Models. ``FluxControlNetPipeline(**stage1.components, controlnet=...)`` shares every module
with stage 1 (``from_pipe`` would silently cast shared modules to float32).

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

Files (:mod:`fbupscale_gui.engine.flux.files`, :mod:`fbupscale_gui.engine.flux.part_files`): the transformer may be a single file
(BFL/ComfyUI layout, fp8, fp8_scaled, GGUF) whose other parts come from files of their own
(``request.parts``: ``ae.safetensors``, ``clip_l``, ``t5xxl``, tokenizer folders) or from
``request.flux_base``, and the ControlNet a single diffusers-layout file. The same weights render pixel-identically whichever way they were
stored: on the CPU that needs MKL's alignment-independent mode (``MKL_CBWR``, set in the
package's ``__init__``), as a folder's weights are memory-mapped at whatever offset the file
put them and a single file's are fresh allocations.

Memory plan (:mod:`fbupscale_gui.engine.flux.plan`): ``storage`` "fp8" casts the transformer layerwise after its
LoRAs are loaded (a LoRA arriving later reloads the set, LoRA first); the prompt is encoded once
per prompt text per loaded set, and without offload on CUDA the text encoders visit the GPU only
for that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fbupscale_gui.engine import devices
from fbupscale_gui.engine.devices import Runtime
from fbupscale_gui.engine.flux.files import load_controlnet_file, load_transformer_file
from fbupscale_gui.engine.flux.part_files import load_parts
from fbupscale_gui.storage.weights import check_flux_base

__all__ = [
    "PipelinePair",
    "activate",
    "attach_controlnet",
    "cast_to_fp8",
    "encode_prompt",
    "load_pipelines",
    "place",
    "strip_hooks",
]


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
    parts: Mapping[str, Path] | None = None,
    nf4: bool = False,
) -> PipelinePair:
    """Load FLUX.1-dev (and the ControlNet) offline in ``runtime``'s precision, not yet placed.

    ``flux_dir`` is a diffusers folder, or a single-file transformer (BFL/ComfyUI
    .safetensors/.sft, fp8, GGUF) whose other parts come from ``parts`` (component name ->
    its own file or folder: ``ae.safetensors``, ``clip_l``, ``t5xxl``, tokenizer folders) or
    else from the diffusers folder ``base``. Raises OSError/ValueError from diffusers when a
    folder is damaged, ModelFileError for a file that is not what it should be,
    ModelNotFoundError naming each part still missing and where to get it. ``nf4``: the
    transformer quantised to NF4 at load (bitsandbytes, CUDA only; the caller checks).
    """
    from diffusers import FluxImg2ImgPipeline

    dtype = devices.torch_dtype(runtime.precision)
    quantization = _nf4_config(dtype) if nf4 else None
    stage1: Any
    if Path(flux_dir).is_file():
        given = dict(parts or {})
        check_flux_base(flux_dir, base, given)
        base_dir = Path(base) if base is not None else None
        transformer, _desc = load_transformer_file(
            flux_dir, dtype, config_dir=base_dir, quantization_config=quantization
        )
        components = load_parts(given, dtype, base_dir)
        if base_dir is None:
            stage1 = FluxImg2ImgPipeline(transformer=transformer, **components)
        else:
            stage1 = FluxImg2ImgPipeline.from_pretrained(
                str(base_dir),
                transformer=transformer,
                **components,
                dtype=dtype,
                local_files_only=True,
            )
    elif quantization is not None:
        from diffusers import FluxTransformer2DModel

        transformer = FluxTransformer2DModel.from_pretrained(
            str(flux_dir),
            subfolder="transformer",
            quantization_config=quantization,
            torch_dtype=dtype,
            local_files_only=True,
        )
        stage1 = FluxImg2ImgPipeline.from_pretrained(
            str(flux_dir), transformer=transformer, dtype=dtype, local_files_only=True
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


def _nf4_config(dtype: Any) -> Any:
    """bitsandbytes NF4 for the transformer, computed in ``dtype`` (the memory plan's ``nf4``)."""
    from diffusers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
    )


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
    strip_hooks(pair)  # place() re-applies the memory mode to the new set of modules
    pair.stage2 = stage2
    pair.controlnet_key = key


# -- memory modes -------------------------------------------------------------------------


def strip_hooks(pair: PipelinePair) -> None:
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
