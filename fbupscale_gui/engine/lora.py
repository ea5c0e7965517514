"""The football LoRA: reading, converting, loading once, and switching it on and off.

Accepted ``.safetensors`` layouts, all for the FLUX transformer:

* diffusers / PEFT: ``transformer.<module>.lora_A.weight`` / ``lora_B.weight`` (``.alpha``
  optional; a ``base_model.model.`` prefix or no prefix is accepted too);
* Kohya / sd-scripts: ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`` /
  ``lora_up.weight`` / ``.alpha``, with BFL module names (fused qkv, ``linear1`` ...);
* BFL / ComfyUI: ``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`` ...

diffusers ships a Kohya converter, but it hard-codes the real FLUX widths when it splits a fused
single-block ``linear1`` (``dims=[3072, 3072, 3072, 12288]``), stops at 19/38 blocks, leaves the
non-block layers (``img_in``, ``time_in`` ...) without the ``transformer.`` prefix so they are
silently not loaded, and only logs the keys it cannot place (text-encoder-2 adapters). So this
module converts every layout itself: fused layers are split by the widths of the model actually
loaded, alpha is folded into ``lora_A``, and every source layer is counted as matched or
unmatched. The converted state dict is then loaded with diffusers' ``load_lora_weights``.

A LoRA is loaded once per content hash (the adapter is named after it) and switched with
``enable_lora``/``disable_lora``/``set_adapters`` — never reloaded, never fused. With the
adapter disabled PEFT calls the untouched base layer, so "LoRA off" is bit-identical to a
pipeline that never had a LoRA. It applies to the FLUX transformer only, never the ControlNet
or the text encoders.

If fp8 layerwise casting (``transformer.enable_layerwise_casting``) is ever added, LoRAs must
be loaded before it is enabled: PEFT wraps the Linear layers the casting hooks are bound to.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import LoraError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BFL_DOUBLE_BLOCK",
    "BFL_GLOBAL",
    "BFL_SINGLE_BLOCK",
    "LoraConversion",
    "adapter_name_for",
    "bfl_targets",
    "convert_lora",
    "ensure_lora_loaded",
    "is_lora_loaded",
    "read_lora_file",
    "set_lora_state",
]

#: BFL layer (underscored, inside ``double_blocks.<i>``) -> diffusers modules it is fused from.
BFL_DOUBLE_BLOCK: Final[dict[str, tuple[str, ...]]] = {
    "img_attn_qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "img_attn_proj": ("attn.to_out.0",),
    "img_mlp_0": ("ff.net.0.proj",),
    "img_mlp_2": ("ff.net.2",),
    "img_mod_lin": ("norm1.linear",),
    "txt_attn_qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "txt_attn_proj": ("attn.to_add_out",),
    "txt_mlp_0": ("ff_context.net.0.proj",),
    "txt_mlp_2": ("ff_context.net.2",),
    "txt_mod_lin": ("norm1_context.linear",),
}
#: BFL layer inside ``single_blocks.<i>`` -> diffusers modules.
BFL_SINGLE_BLOCK: Final[dict[str, tuple[str, ...]]] = {
    "linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
    "linear2": ("proj_out",),
    "modulation_lin": ("norm.linear",),
}
#: BFL layers outside the blocks -> diffusers module.
BFL_GLOBAL: Final[dict[str, str]] = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in_in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in_out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in_in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in_out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in_in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in_out_layer": "time_text_embed.guidance_embedder.linear_2",
    "final_layer_linear": "proj_out",
    "final_layer_adaLN_modulation_1": "norm_out.linear",
}
#: BFL's final modulation is (shift, scale); diffusers' norm_out is (scale, shift).
_SWAP_SCALE_SHIFT: Final = frozenset({"final_layer_adaLN_modulation_1"})

_DOUBLE_RE: Final = re.compile(r"^double_blocks_(\d+)_(.+)$")
_SINGLE_RE: Final = re.compile(r"^single_blocks_(\d+)_(.+)$")
_KOHYA_SUFFIXES: Final = (".lora_down.weight", ".lora_up.weight", ".alpha")
_PEFT_SUFFIXES: Final = (".lora_A.weight", ".lora_B.weight", ".alpha")
_DIFFUSERS_PREFIXES: Final = ("transformer.", "base_model.model.")


def bfl_targets(bfl_name: str) -> tuple[str, ...] | None:
    """The diffusers module paths an underscored BFL layer name maps to, or None."""
    if m := _DOUBLE_RE.match(bfl_name):
        targets = BFL_DOUBLE_BLOCK.get(m.group(2))
        return (
            None
            if targets is None
            else tuple(f"transformer_blocks.{m.group(1)}.{t}" for t in targets)
        )
    if m := _SINGLE_RE.match(bfl_name):
        targets = BFL_SINGLE_BLOCK.get(m.group(2))
        if targets is None:
            return None
        return tuple(f"single_transformer_blocks.{m.group(1)}.{t}" for t in targets)
    target = BFL_GLOBAL.get(bfl_name)
    return None if target is None else (target,)


@dataclass(frozen=True)
class LoraConversion:
    """A LoRA converted for a given transformer, with what matched and what did not.

    ``state_dict`` has diffusers keys (``transformer.<module>.lora_A.weight`` ...) with alpha
    folded in. ``matched`` / ``unmatched`` count source LoRA layers; ``unmatched_names`` lists
    the layers that were left out, with the reason.
    """

    format: str
    state_dict: dict[str, torch.Tensor]
    matched: int
    unmatched: int
    unmatched_names: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return self.matched + self.unmatched


def read_lora_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a LoRA ``.safetensors`` file. Raises LoraError if it is missing or unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if p.suffix != ".safetensors":
        raise LoraError(f"{p}: LoRA files must be .safetensors (pickled weights are refused)")
    try:
        data = load_file(str(p))
    except FileNotFoundError:
        raise LoraError(f"{p}: no such LoRA file") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise LoraError(f"{p}: not a readable .safetensors file ({exc})") from None
    if not data:
        raise LoraError(f"{p}: the LoRA file holds no tensors")
    return data


def _detect_format(keys: list[str]) -> str:
    if any(k.startswith("lora_unet_") or k.endswith(".lora_down.weight") for k in keys):
        return "kohya"
    if any(k.startswith(("diffusion_model.", "double_blocks.", "single_blocks.")) for k in keys):
        return "bfl"
    return "diffusers"


def _group(
    state_dict: Mapping[str, torch.Tensor], suffixes: tuple[str, str, str]
) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """Group keys by layer: {layer: {"down"|"up"|"alpha": tensor}}, plus keys of no layer."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    stray: list[str] = []
    for key, value in state_dict.items():
        for part, suffix in zip(("down", "up", "alpha"), suffixes, strict=True):
            if key.endswith(suffix):
                groups.setdefault(key[: -len(suffix)], {})[part] = value
                break
        else:
            stray.append(key)
    return groups, stray


def convert_lora(
    state_dict: Mapping[str, torch.Tensor], transformer: torch.nn.Module
) -> LoraConversion:
    """Convert any accepted LoRA layout into diffusers keys for ``transformer``.

    Fused BFL layers are split by the widths of ``transformer``'s own modules, so this works
    for any FLUX-architecture model, full size or tiny. Never raises for unknown keys: they are
    counted as unmatched (see :func:`ensure_lora_loaded` for the refusal).
    """
    keys = list(state_dict)
    fmt = _detect_format(keys)
    suffixes = _KOHYA_SUFFIXES if fmt == "kohya" else _PEFT_SUFFIXES
    groups, stray = _group(state_dict, suffixes)
    # Older diffusers files spell the pair "lora.down.weight" / "lora.up.weight".
    if fmt == "diffusers" and stray:
        legacy, stray = _group(
            {k: state_dict[k] for k in stray}, (".lora.down.weight", ".lora.up.weight", ".alpha")
        )
        for layer, parts in legacy.items():
            groups.setdefault(layer, {}).update(parts)
    modules = dict(transformer.named_modules())
    out: dict[str, torch.Tensor] = {}
    matched = 0
    unmatched: list[str] = [f"{k} (not a LoRA weight)" for k in stray]

    for layer, parts in groups.items():
        if "down" not in parts or "up" not in parts:
            unmatched.append(f"{layer} (incomplete pair)")
            continue
        down, up = parts["down"], parts["up"]
        swap = False
        if fmt == "diffusers":
            name = layer
            for prefix in _DIFFUSERS_PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix) :]
                    break
            else:
                if name.startswith(("text_encoder", "te_", "lora_te")):
                    unmatched.append(
                        f"{layer} (text encoder: the LoRA applies to the transformer only)"
                    )
                    continue
            targets: tuple[str, ...] | None = (name,)
        else:
            bfl = layer
            for prefix in ("lora_unet_", "diffusion_model.", "model.diffusion_model."):
                if bfl.startswith(prefix):
                    bfl = bfl[len(prefix) :]
                    break
            bfl = bfl.replace(".", "_")
            if layer.startswith(("lora_te", "text_encoder")):
                unmatched.append(
                    f"{layer} (text encoder: the LoRA applies to the transformer only)"
                )
                continue
            targets = bfl_targets(bfl)
            swap = bfl in _SWAP_SCALE_SHIFT
        if targets is None:
            unmatched.append(f"{layer} (no such layer in FLUX)")
            continue
        linears = [modules.get(t) for t in targets]
        if any(m is None or not hasattr(m, "out_features") for m in linears):
            unmatched.append(f"{layer} (not in this model)")
            continue
        widths = [int(getattr(m, "out_features")) for m in linears]  # noqa: B009
        in_features = int(getattr(linears[0], "in_features"))  # noqa: B009
        if (
            down.ndim != 2
            or up.ndim != 2
            or down.shape[1] != in_features
            or up.shape[0] != sum(widths)
            or up.shape[1] != down.shape[0]
        ):
            unmatched.append(
                f"{layer} (shape {tuple(up.shape)}x{tuple(down.shape)} does not fit "
                f"{in_features}->{sum(widths)})"
            )
            continue
        rank = down.shape[0]
        scale = float(parts["alpha"].item()) / rank if "alpha" in parts else 1.0
        a = (down.float() * scale).to(down.dtype)
        b = up
        if swap:
            shift, sc = b.chunk(2, dim=0)
            b = _cat_rows(sc, shift)
        for target, chunk in zip(targets, b.split(widths, dim=0), strict=True):
            out[f"transformer.{target}.lora_A.weight"] = a.contiguous()
            out[f"transformer.{target}.lora_B.weight"] = chunk.contiguous()
        matched += 1
    return LoraConversion(
        format=fmt,
        state_dict=out,
        matched=matched,
        unmatched=len(unmatched),
        unmatched_names=tuple(unmatched),
    )


def _cat_rows(*parts: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.cat(parts, dim=0)


def adapter_name_for(sha256: str) -> str:
    """The adapter name a LoRA with this content hash is loaded under."""
    return f"fb_{sha256[:16]}"


def _loaded_adapters(transformer: Any) -> list[str]:
    config = getattr(transformer, "peft_config", None)
    return list(config) if isinstance(config, dict) else []


#: How many distinct LoRAs stay loaded in one transformer; the oldest is dropped beyond this.
MAX_LOADED_LORAS: Final = 2


def is_lora_loaded(transformer: Any, sha256: str) -> bool:
    """Whether the LoRA with this content hash is already loaded into ``transformer``."""
    return adapter_name_for(sha256) in _loaded_adapters(transformer)


def ensure_lora_loaded(pipe: Any, path: str | Path, sha256: str) -> LoraConversion | None:
    """Load the LoRA at ``path`` into ``pipe.transformer`` unless already loaded; return its stats.

    ``pipe`` is a FLUX pipeline with diffusers' LoRA loader. Returns None when the adapter
    (named by ``sha256``) was already loaded. Raises LoraError when the file is unreadable or
    matches no layer of the transformer (the message gives matched/unmatched counts).
    """
    transformer = pipe.transformer
    name = adapter_name_for(sha256)
    loaded = _loaded_adapters(transformer)
    if name in loaded:
        return None
    conversion = convert_lora(read_lora_file(path), transformer)
    if conversion.matched == 0:
        sample = "; ".join(conversion.unmatched_names[:3])
        more = "…" if conversion.unmatched > 3 else ""
        raise LoraError(
            f"{path}: this LoRA matches nothing in the FLUX transformer "
            f"(0 matched, {conversion.unmatched} unmatched: {sample}{more}); "
            "is it a FLUX.1 LoRA?"
        )
    stale = loaded[: max(0, len(loaded) - MAX_LOADED_LORAS + 1)]
    if stale:
        transformer.delete_adapters(stale)
    try:
        with warnings.catch_warnings():
            # PEFT warns when a second adapter joins the first: several are expected here.
            warnings.filterwarnings("ignore", message=".*Already found a `peft_config`.*")
            pipe.load_lora_weights(conversion.state_dict, adapter_name=name)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise LoraError(f"{path}: the LoRA could not be applied ({exc})") from None
    return conversion


def set_lora_state(transformer: Any, adapter: str | None, scale: float = 1.0) -> None:
    """Switch the transformer's LoRA: ``adapter`` at ``scale``, or every adapter off (None)."""
    if not _loaded_adapters(transformer):
        return
    if adapter is None:
        transformer.disable_lora()
        return
    transformer.enable_lora()
    transformer.set_adapters([adapter], weights=[scale])
