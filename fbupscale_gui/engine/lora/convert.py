"""Converting a LoRA's layout to diffusers keys for the loaded FLUX transformer.

Accepted ``.safetensors`` layouts, all for the FLUX transformer:

* diffusers / PEFT: ``transformer.<module>.lora_A.weight`` / ``lora_B.weight`` (``.alpha``
  optional; a ``base_model.model.`` prefix or no prefix is accepted too);
* Kohya / sd-scripts: ``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`` /
  ``lora_up.weight`` / ``.alpha``, with BFL module names (fused qkv, ``linear1`` ...);
* BFL / ComfyUI: ``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`` ...

**Strength.** A LoRA layer adds ``B @ A * alpha / rank`` (times the operator's scale), and the
file says what alpha and rank are, as diffusers reads them:

* a diffusers file's LoRA config (its header, or PEFT's ``adapter_config.json``, see
  :mod:`fbupscale_gui.engine.lora.files`) becomes the PEFT config, as in diffusers' ``load_lora_adapter``; alpha is
  not folded.
* Without that config, ``.alpha`` tensors of a diffusers file are handed to diffusers as its
  ``network_alphas``; Kohya / BFL ``.alpha`` tensors are folded into the weights the way
  diffusers' Kohya converter does (``alpha / rank`` split between down and up by powers of two).
* With neither, diffusers' convention holds: alpha = rank, scale 1.0. The report says which.

**Matching.** diffusers ships a Kohya converter, but it hard-codes the real FLUX widths when it
splits a fused single-block ``linear1`` (``dims=[3072, 3072, 3072, 12288]``), stops at 19/38
blocks, leaves the non-block layers (``img_in``, ``time_in`` ...) without the ``transformer.``
prefix so they are silently not loaded, and only logs the keys it cannot place. So this module
converts every layout itself: fused layers are split by the widths of the model actually
loaded, and every source layer is counted as matched or unmatched, with the reason, grouped for
the report ("2 layers for blocks the model does not have: ...").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import LoraError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BFL_DOUBLE_BLOCK",
    "BFL_GLOBAL",
    "BFL_SINGLE_BLOCK",
    "GROUP_TEXT",
    "LoraConversion",
    "bfl_targets",
    "convert_lora",
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
#: The LoraConfig fields taken from a diffusers file's LoRA config: the ones that decide the strength per layer.
#: The target modules are the layers that matched; other fields do not change the output of
#: loaded weights, and DoRA is refused (its magnitude vectors are not converted).
_CONFIG_FIELDS: Final = ("r", "lora_alpha", "rank_pattern", "alpha_pattern", "use_rslora")

_DOUBLE_RE: Final = re.compile(r"^double_blocks_(\d+)_(.+)$")
_SINGLE_RE: Final = re.compile(r"^single_blocks_(\d+)_(.+)$")
_BLOCK_RE: Final = re.compile(r"^((?:single_)?transformer_blocks\.\d+)\.")
#: rank_pattern / alpha_pattern keys PEFT matches as regular expressions: module names only
#: (diffusers prefixes "^"), so a hostile header cannot hang the matching.
_PATTERN_KEY: Final = re.compile(r"^\^?[A-Za-z0-9_.]{1,200}$")
_KOHYA_SUFFIXES: Final = (".lora_down.weight", ".lora_up.weight", ".alpha")
_PEFT_SUFFIXES: Final = (".lora_A.weight", ".lora_B.weight", ".alpha")
_DIFFUSERS_PREFIXES: Final = ("transformer.", "base_model.model.")
_SOURCE_PREFIXES: Final = (
    "lora_unet_",
    "transformer.",
    "model.diffusion_model.",
    "diffusion_model.",
)
_TEXT_ENCODER_PREFIXES: Final = ("text_encoder", "te_", "te1_", "te2_", "lora_te")

# Why a source layer was left out: the report groups the layers by these.
_WHY_TEXT_ENCODER: Final = "text encoder"
_WHY_NO_BLOCK: Final = "no such block"
_WHY_NO_LAYER: Final = "no such layer"
_WHY_NOT_FLUX: Final = "not a FLUX layer"
_WHY_SHAPE: Final = "shape"
_WHY_INCOMPLETE: Final = "incomplete"
_WHY_STRAY: Final = "not a LoRA weight"
#: (singular, plural, what happened) per reason, in report order.
GROUP_TEXT: Final[dict[str, tuple[str, str, str]]] = {
    _WHY_NO_BLOCK: ("layer for a block the model does not have", "layers for blocks the model does not have", ""),
    _WHY_NO_LAYER: ("layer this model does not have", "layers this model does not have", ""),
    _WHY_NOT_FLUX: ("layer FLUX does not have", "layers FLUX does not have", ""),
    _WHY_SHAPE: ("layer whose shape does not fit this model", "layers whose shape does not fit this model", ""),
    _WHY_TEXT_ENCODER: ("text-encoder layer", "text-encoder layers", "not loaded (the LoRA applies to the FLUX transformer only)"),
    _WHY_INCOMPLETE: ("layer without its down/up pair", "layers without their down/up pair", ""),
    _WHY_STRAY: ("key that is not a LoRA weight", "keys that are not LoRA weights", ""),
}  # fmt: skip
_CONVENTION: Final = "none in the file: diffusers' convention, alpha = rank (scale 1.0)"


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

    ``state_dict`` has diffusers keys (``transformer.<module>.lora_A.weight`` ...). Kohya and
    BFL alphas are folded in (``folded``: the factor per target module); a diffusers file's
    strength travels as ``config`` (from its header) or ``network_alphas`` (its ``.alpha``
    tensors), as diffusers' own loader takes them. ``matched`` / ``unmatched`` count source
    LoRA layers; ``groups`` lists the unmatched ones by reason.
    """

    format: str
    state_dict: dict[str, torch.Tensor]
    matched: int
    unmatched: int
    unmatched_names: tuple[str, ...] = field(default=())
    #: (reason, source layer names) for the layers left out.
    groups: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())
    #: Where the scaling comes from, in words.
    alpha_source: str = _CONVENTION
    #: alpha / rank folded into the weights, per diffusers target module (Kohya, BFL).
    folded: Mapping[str, float] = field(default_factory=dict)
    #: LoraConfig fields from the file's header (diffusers files), target modules included.
    config: Mapping[str, Any] | None = None
    #: ``transformer.<module>.alpha`` tensors of a diffusers file without a header config.
    network_alphas: Mapping[str, torch.Tensor] | None = None

    @property
    def total(self) -> int:
        return self.matched + self.unmatched


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


def _short(layer: str) -> str:
    """A source layer's name without the format's prefix, for the report."""
    for prefix in _SOURCE_PREFIXES:
        if layer.startswith(prefix):
            return layer[len(prefix) :]
    return layer


def _alpha_scales(scale: Any) -> tuple[Any, Any]:
    """(down, up) factors of ``scale`` (a float or a 0-d tensor), split by powers of two as
    diffusers' Kohya converter does, so the folded weights are the ones its loader makes."""
    down, up = scale, 1.0
    while down * 2 < up:
        down *= 2
        up /= 2
    return down, up


def convert_lora(
    state_dict: Mapping[str, torch.Tensor],
    transformer: torch.nn.Module,
    adapter_metadata: Mapping[str, Any] | None = None,
    metadata_source: str = "header",
) -> LoraConversion:
    """Convert any accepted LoRA layout into diffusers keys for ``transformer``.

    Fused BFL layers are split by the widths of ``transformer``'s own modules, so this works
    for any FLUX-architecture model, full size or tiny. ``adapter_metadata`` is the file's
    LoraConfig (:attr:`LoraFile.adapter_metadata`, read from ``metadata_source``). Never raises for unknown keys: they are
    counted as unmatched (see :func:`ensure_lora_loaded` for the refusal). Raises LoraError for
    a header config that asks for DoRA or is malformed.
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
    folded: dict[str, float] = {}
    alphas: dict[str, torch.Tensor] = {}
    matched = 0
    with_alpha = 0
    left_out: list[tuple[str, str, str]] = [(_WHY_STRAY, k, k) for k in stray]

    def leave_out(why: str, layer: str, detail: str = "") -> None:
        left_out.append((why, _short(layer), f"{layer} ({detail or why})"))

    for layer, parts in groups.items():
        if "down" not in parts or "up" not in parts:
            leave_out(_WHY_INCOMPLETE, layer, "incomplete pair")
            continue
        down, up = parts["down"], parts["up"]
        swap = False
        if layer.startswith(_TEXT_ENCODER_PREFIXES):
            leave_out(
                _WHY_TEXT_ENCODER, layer, "text encoder: the LoRA applies to the transformer only"
            )
            continue
        if fmt == "diffusers":
            name = layer
            for prefix in _DIFFUSERS_PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix) :]
                    break
            targets: tuple[str, ...] | None = (name,)
        else:
            bfl = layer
            for prefix in ("lora_unet_", "diffusion_model.", "model.diffusion_model."):
                if bfl.startswith(prefix):
                    bfl = bfl[len(prefix) :]
                    break
            bfl = bfl.replace(".", "_")
            targets = bfl_targets(bfl)
            swap = bfl in _SWAP_SCALE_SHIFT
        if targets is None:
            leave_out(_WHY_NOT_FLUX, layer, "no such layer in FLUX")
            continue
        linears = [modules.get(t) for t in targets]
        if any(m is None or not hasattr(m, "out_features") for m in linears):
            block = _BLOCK_RE.match(targets[0])
            if block is not None and block.group(1) not in modules:
                leave_out(_WHY_NO_BLOCK, layer, "not in this model: no such block")
            else:
                leave_out(_WHY_NO_LAYER, layer, "not in this model")
            continue
        widths = [int(getattr(m, "out_features")) for m in linears]  # noqa: B009
        in_features = int(getattr(linears[0], "in_features"))  # noqa: B009
        if (
            down.ndim != 2
            or up.ndim != 2
            or down.shape[1] != in_features
            or up.shape[0] != sum(widths)
            or up.shape[1] != down.shape[0]
            or down.shape[0] == 0
            or ("alpha" in parts and parts["alpha"].numel() != 1)
        ):
            leave_out(
                _WHY_SHAPE,
                layer,
                f"shape {tuple(up.shape)}x{tuple(down.shape)} does not fit "
                f"{in_features}->{sum(widths)}",
            )
            continue
        rank = down.shape[0]
        a, b = down, up
        if fmt == "diffusers":
            if "alpha" in parts:
                alphas[f"transformer.{targets[0]}.alpha"] = parts["alpha"]
                with_alpha += 1
        else:
            scale = 1.0
            if "alpha" in parts:
                alpha = parts["alpha"]
                scale = float(alpha.item()) / rank
                with_alpha += 1
                # as diffusers' converter: a fused layer's factor stays a tensor in alpha's dtype
                factor: Any = alpha / rank if len(targets) > 1 else scale
                scale_down, scale_up = _alpha_scales(factor)
                a, b = down * scale_down, up * scale_up
            for target in targets:
                folded[target] = scale
        if swap:
            shift, sc = b.chunk(2, dim=0)
            b = _cat_rows(sc, shift)
        for target, chunk in zip(targets, b.split(widths, dim=0), strict=True):
            out[f"transformer.{target}.lora_A.weight"] = a.contiguous()
            out[f"transformer.{target}.lora_B.weight"] = chunk.contiguous()
        matched += 1

    config: dict[str, Any] | None = None
    network_alphas: dict[str, torch.Tensor] | None = None
    if fmt == "diffusers" and adapter_metadata:
        where = f"its {metadata_source}"
        config = _config_from_metadata(adapter_metadata, out, where)
        source = _describe_config(config, where)
        if alphas:
            source += "; its .alpha tensors are ignored"
    elif with_alpha:
        network_alphas = alphas or None
        source = "its .alpha tensors"
        if with_alpha < matched and fmt != "diffusers":
            source += f" ({matched - with_alpha} layer(s) without one: alpha = rank)"
    else:
        source = _CONVENTION
    return LoraConversion(
        format=fmt,
        state_dict=out,
        matched=matched,
        unmatched=len(left_out),
        unmatched_names=tuple(text for _, _, text in left_out),
        groups=_grouped(left_out),
        alpha_source=source,
        folded=folded,
        config=config,
        network_alphas=network_alphas,
    )


def _grouped(left_out: Sequence[tuple[str, str, str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    by_reason: dict[str, list[str]] = {}
    for why, short, _ in left_out:
        by_reason.setdefault(why, []).append(short)
    return tuple((why, tuple(by_reason[why])) for why in GROUP_TEXT if why in by_reason)


def _config_from_metadata(
    metadata: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], where: str
) -> dict[str, Any]:
    """The LoraConfig fields that set the strength, checked; targets: the matched modules."""
    if metadata.get("use_dora"):
        raise LoraError(
            f"this is a DoRA adapter (use_dora in {where}); only plain LoRAs are supported"
        )
    config: dict[str, Any] = {k: metadata[k] for k in _CONFIG_FIELDS if k in metadata}
    r, alpha = config.get("r", 8), config.get("lora_alpha", 8)
    if not _is_rank(r) or not _is_number(alpha):
        raise LoraError(
            f"{where} gives r={r!r}, lora_alpha={alpha!r}: expected a positive whole rank "
            "and a finite alpha"
        )
    for name, check in (("rank_pattern", _is_rank), ("alpha_pattern", _is_number)):
        pattern = config.get(name) or {}
        if not isinstance(pattern, dict) or not all(
            isinstance(k, str) and _PATTERN_KEY.match(k) and check(v) for k, v in pattern.items()
        ):
            raise LoraError(f"{where}: {name} is not a map of module names to numbers")
        config[name] = pattern
    config["use_rslora"] = bool(config.get("use_rslora", False))
    suffix = ".lora_A.weight"
    ranks = {
        k[len("transformer.") : -len(suffix)]: int(v.shape[0])
        for k, v in state_dict.items()
        if k.endswith(suffix)
    }
    config["target_modules"] = sorted(ranks)
    _check_ranks(config, ranks, where)
    return config


def _check_ranks(config: Mapping[str, Any], ranks: Mapping[str, int], where: str) -> None:
    """The header's ranks must be the tensors' (PEFT would otherwise allocate what the header
    says before it finds the mismatch: a hostile ``r`` of 10^8 exhausts the memory)."""
    from peft.utils.other import get_pattern_key

    pattern: Mapping[str, int] = config["rank_pattern"]
    r = config.get("r", 8)
    ceiling = max([*ranks.values(), 64])
    too_big = [v for v in (r, *pattern.values()) if v > ceiling]
    if too_big:
        raise LoraError(
            f"{where} gives rank {max(too_big)} but its layers have rank "
            f"{max(ranks.values(), default=0)} at most: the config is damaged"
        )
    for module, rank in ranks.items():
        want = pattern.get(get_pattern_key(list(pattern), module), r)  # as PEFT resolves it
        if want != rank:
            raise LoraError(
                f"{where} gives rank {want} for {module}, whose weights have rank {rank}: "
                "the config does not belong to these weights"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_rank(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _describe_config(config: Mapping[str, Any], where: str) -> str:
    text = f"{where} (lora_alpha {config.get('lora_alpha', 8)}, r {config.get('r', 8)}"
    if config.get("alpha_pattern") or config.get("rank_pattern"):
        text += ", per-module alpha_pattern / rank_pattern"
    if config.get("use_rslora"):
        text += ", rsLoRA: alpha / sqrt(r)"
    return text + ")"


def _cat_rows(*parts: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.cat(parts, dim=0)
