"""The FLUX transformer from the single files operators have: BFL, ComfyUI, fp8, GGUF.

diffusers' single-file converter hard-codes FLUX.1-dev's width (3072) and, without a local
``config=``, asks the Hub for the gated repo's config. Here the key conversion is table
driven and width-agnostic (widths and depths are read from the weights), the architecture
config comes from a local folder (the ``--flux-base`` folder, else the FLUX.1-dev configs
shipped in ``resources/flux``), and the converted, diffusers-layout state dict is handed to
``from_single_file``, which then loads it without converting again. One table serves both
directions, so tests can write a BFL file from a diffusers model and read it back.

Formats: BFL keys (``double_blocks.N``), the same under ComfyUI's ``model.diffusion_model.``
prefix, diffusers keys in one file, fp8 (e4m3fn / e5m2, upcast at load), ComfyUI
"fp8_scaled" (each ``X.weight`` multiplied by its ``X.scale_weight``; ignoring them gives
white images), and GGUF (city96's quantisations, kept quantised and dequantised per forward
pass by diffusers' GGUF linear layers).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import ModelFileError
from fbupscale_gui.engine.lora.convert import BFL_DOUBLE_BLOCK, BFL_GLOBAL, BFL_SINGLE_BLOCK
from fbupscale_gui.storage.kits import resources_dir
from fbupscale_gui.storage.weight_files import FileDescription, describe_file

if TYPE_CHECKING:
    import torch

__all__ = [
    "COMFY_PREFIX",
    "bfl_to_diffusers",
    "dequantise_scaled_fp8",
    "diffusers_to_bfl",
    "infer_transformer_config",
    "load_controlnet_file",
    "load_transformer_file",
    "shipped_flux_config_dir",
]

COMFY_PREFIX: Final = "model.diffusion_model."

#: Dotted BFL names of the layers outside the blocks (lora.py keys them underscored).
_GLOBAL_DOTTED: Final[dict[str, str]] = {
    "img_in": "img_in",
    "txt_in": "txt_in",
    "time_in_in_layer": "time_in.in_layer",
    "time_in_out_layer": "time_in.out_layer",
    "vector_in_in_layer": "vector_in.in_layer",
    "vector_in_out_layer": "vector_in.out_layer",
    "guidance_in_in_layer": "guidance_in.in_layer",
    "guidance_in_out_layer": "guidance_in.out_layer",
    "final_layer_linear": "final_layer.linear",
    "final_layer_adaLN_modulation_1": "final_layer.adaLN_modulation.1",
}
_DOUBLE_NORMS: Final[dict[str, str]] = {
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
}
_SINGLE_NORMS: Final[dict[str, str]] = {
    "norm.query_norm.scale": "attn.norm_q.weight",
    "norm.key_norm.scale": "attn.norm_k.weight",
}
_SWAPPED: Final = "final_layer.adaLN_modulation.1"


def _dotted(underscored: str) -> str:
    """``img_attn_qkv`` -> ``img_attn.qkv``: block layers end in one ``.name`` component."""
    head, _, tail = underscored.rpartition("_")
    return f"{head}.{tail}" if head else underscored


def _table(n_double: int, n_single: int, guidance: bool) -> list[tuple[str, tuple[str, ...]]]:
    """(BFL key, diffusers keys it is fused from), for every tensor of the transformer."""
    rows: list[tuple[str, tuple[str, ...]]] = []

    def linear(bfl: str, targets: tuple[str, ...]) -> None:
        for p in ("weight", "bias"):
            rows.append((f"{bfl}.{p}", tuple(f"{t}.{p}" for t in targets)))

    for name, target in BFL_GLOBAL.items():
        if name.startswith("guidance_in") and not guidance:
            continue
        linear(_GLOBAL_DOTTED[name], (target,))
    for i in range(n_double):
        for name, targets in BFL_DOUBLE_BLOCK.items():
            linear(
                f"double_blocks.{i}.{_dotted(name)}",
                tuple(f"transformer_blocks.{i}.{t}" for t in targets),
            )
        for bfl, target in _DOUBLE_NORMS.items():
            rows.append((f"double_blocks.{i}.{bfl}", (f"transformer_blocks.{i}.{target}",)))
    for i in range(n_single):
        for name, targets in BFL_SINGLE_BLOCK.items():
            linear(
                f"single_blocks.{i}.{_dotted(name)}",
                tuple(f"single_transformer_blocks.{i}.{t}" for t in targets),
            )
        for bfl, target in _SINGLE_NORMS.items():
            rows.append((f"single_blocks.{i}.{bfl}", (f"single_transformer_blocks.{i}.{target}",)))
    return rows


def _count(keys: Any, prefix: str) -> int:
    found = {int(k.split(".", 2)[1]) for k in keys if k.startswith(prefix)}
    return max(found) + 1 if found else 0


def _swap_halves(t: torch.Tensor) -> torch.Tensor:
    import torch

    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def _logical_shape(t: Any) -> tuple[int, ...]:
    """A tensor's shape; for a GGUF-quantised one, the shape it dequantises to."""
    return tuple(int(s) for s in getattr(t, "quant_shape", t.shape))


def bfl_to_diffusers(state: Mapping[str, Any]) -> dict[str, Any]:
    """Convert BFL/ComfyUI keys to diffusers keys, for any width and depth.

    Fused q/k/v are split in three; a single block's ``linear1`` is split into q, k, v (the
    model width each, read from ``img_in``) and the MLP (the rest). Raises ModelFileError
    naming the first missing key.
    """
    import torch

    sd = {
        (k[len(COMFY_PREFIX) :] if k.startswith(COMFY_PREFIX) else k): v for k, v in state.items()
    }
    if "img_in.bias" not in sd:
        raise ModelFileError("not a FLUX transformer in BFL layout: 'img_in.bias' is missing")
    inner = int(sd["img_in.bias"].shape[0])
    table = _table(
        _count(sd, "double_blocks."),
        _count(sd, "single_blocks."),
        "guidance_in.in_layer.weight" in sd,
    )
    out: dict[str, Any] = {}
    for bfl, targets in table:
        if bfl not in sd:
            raise ModelFileError(f"not a complete FLUX transformer: '{bfl}' is missing")
        t = sd[bfl]
        if bfl.startswith(_SWAPPED):
            t = _swap_halves(t)
        if len(targets) == 1:
            out[targets[0]] = t
            continue
        if len(targets) == 3:
            parts = torch.chunk(t, 3, dim=0)
        else:  # q, k, v, mlp
            rows = int(t.shape[0])
            parts = torch.split(t, [inner, inner, inner, rows - 3 * inner], dim=0)
        for target, part in zip(targets, parts, strict=True):
            out[target] = part
    return out


def diffusers_to_bfl(state: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`bfl_to_diffusers`: fuse diffusers tensors into BFL keys."""
    import torch

    table = _table(
        _count(state, "transformer_blocks."),
        _count(state, "single_transformer_blocks."),
        "time_text_embed.guidance_embedder.linear_1.weight" in state,
    )
    out: dict[str, Any] = {}
    for bfl, targets in table:
        t = torch.cat([state[k] for k in targets], dim=0) if len(targets) > 1 else state[targets[0]]
        out[bfl] = _swap_halves(t) if bfl.startswith(_SWAPPED) else t
    return out


def dequantise_scaled_fp8(state: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """Apply ComfyUI fp8_scaled ``scale_weight`` keys: weight = fp8 weight x scale."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key == "scaled_fp8" or key.endswith((".scale_weight", ".scale_input")):
            continue
        scale_key = key[: -len("weight")] + "scale_weight" if key.endswith(".weight") else ""
        if scale_key in state:
            value = (value.float() * state[scale_key].float()).to(dtype)
        out[key] = value
    return out


def shipped_flux_config_dir() -> Path:
    """The FLUX.1-dev architecture configs that ship with the app (no weights)."""
    return resources_dir() / "flux" / "FLUX.1-dev"


def infer_transformer_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """FluxTransformer2DModel arguments read from diffusers-layout weights."""
    keys = list(state)
    head_dim = _logical_shape(state["transformer_blocks.0.attn.norm_q.weight"])[0]
    inner = _logical_shape(state["x_embedder.bias"])[0]
    return {
        "in_channels": _logical_shape(state["x_embedder.weight"])[1],
        "num_layers": _count(keys, "transformer_blocks."),
        "num_single_layers": _count(keys, "single_transformer_blocks."),
        "attention_head_dim": head_dim,
        "num_attention_heads": inner // head_dim,
        "joint_attention_dim": _logical_shape(state["context_embedder.weight"])[1],
        "pooled_projection_dim": _logical_shape(
            state["time_text_embed.text_embedder.linear_1.weight"]
        )[1],
        "guidance_embeds": "time_text_embed.guidance_embedder.linear_1.weight" in state,
    }


def load_controlnet_file(path: str | Path, dtype: torch.dtype, axes_dims_rope: Any) -> Any:
    """A FluxControlNetModel from one diffusers-layout .safetensors file (diffusers' single-file
    loader does not know FLUX ControlNets). Depths and widths are read from the weights, the
    rope axes are the transformer's. Raises ModelFileError for another layout or bad weights."""
    from diffusers import FluxControlNetModel
    from safetensors.torch import load_file

    p = Path(path)
    desc = describe_file(p)
    if desc.container != "safetensors" or desc.layout != "controlnet":
        raise ModelFileError(
            f"{p}: not a FLUX ControlNet in diffusers layout (layout '{desc.layout}'); use the "
            "folder (config.json + weights) or its diffusion_pytorch_model.safetensors"
        )
    state = load_file(str(p))
    arch = infer_transformer_config(state)
    if "controlnet_mode_embedder.weight" in state:
        arch["num_mode"] = int(state["controlnet_mode_embedder.weight"].shape[0])
    if "input_hint_block.0.weight" in state:
        arch["conditioning_embedding_channels"] = int(state["input_hint_block.0.weight"].shape[0])
    model: Any = FluxControlNetModel(**arch, axes_dims_rope=list(axes_dims_rope))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{p}: weights do not fit a FLUX ControlNet ({exc})") from None
    return model.to(dtype).eval()


def _read_state(path: Path, desc: FileDescription) -> dict[str, Any]:
    if desc.container == "gguf":
        from diffusers.models.model_loading_utils import load_gguf_checkpoint

        return dict(load_gguf_checkpoint(str(path)))
    from safetensors.torch import load_file

    return dict(load_file(str(path)))


def load_transformer_file(
    path: str | Path,
    dtype: torch.dtype,
    *,
    config_dir: str | Path | None = None,
    quantization_config: Any = None,
) -> tuple[Any, FileDescription]:
    """Load a FluxTransformer2DModel from one file, offline; returns it and the file's description.

    ``config_dir`` is a diffusers FLUX folder whose ``transformer/config.json`` supplies what
    weights cannot say (the rope axes); default: the shipped FLUX.1-dev configs.
    ``quantization_config`` quantises 16-bit weights at load (NF4). Raises
    ModelFileError for an unknown layout, incomplete weights or a config that does not fit.
    """
    import json

    from diffusers import FluxTransformer2DModel

    p = Path(path)
    desc = describe_file(p)
    if desc.layout not in ("bfl", "comfy", "diffusers"):
        raise ModelFileError(
            f"{p}: not a FLUX transformer (key layout '{desc.layout}'); expected a FLUX.1 "
            "checkpoint such as flux1-dev.safetensors, an fp8 variant or a city96 .gguf"
        )
    state = _read_state(p, desc)
    if desc.quant == "fp8_scaled":
        state = dequantise_scaled_fp8(state, dtype)
    if desc.layout != "diffusers":
        state = bfl_to_diffusers(state)
    config_root = Path(config_dir) if config_dir is not None else shipped_flux_config_dir()
    config_file = config_root / "transformer" / "config.json"
    try:
        base_config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(
            f"{config_file}: the transformer config is missing or unreadable ({exc})"
        ) from None
    arch = infer_transformer_config(state)
    axes = tuple(base_config.get("axes_dims_rope", (16, 56, 56)))
    if sum(axes) != arch["attention_head_dim"]:
        raise ModelFileError(
            f"{p}: head width {arch['attention_head_dim']} does not match the rope axes "
            f"{list(axes)} of {config_file}; pass --flux-base with this model's diffusers folder"
        )
    kwargs: dict[str, Any] = {}
    if quantization_config is not None:  # NF4 (bitsandbytes), quantised at load
        kwargs["quantization_config"] = quantization_config
    if desc.container == "gguf":
        from diffusers import GGUFQuantizationConfig

        kwargs["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype)
    model = FluxTransformer2DModel.from_single_file(
        state,
        config=str(config_root),
        subfolder="transformer",
        torch_dtype=dtype,
        local_files_only=True,
        **arch,
        **kwargs,
    )
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    if missing:
        raise ModelFileError(f"{p}: incomplete FLUX transformer, missing {missing[:3]}")
    return model, desc
