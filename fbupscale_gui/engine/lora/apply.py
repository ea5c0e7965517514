"""Applying the football LoRA to a FLUX pipeline: loaded once, switched on and off, reported.

A LoRA is read (:mod:`fbupscale_gui.engine.lora.files`), converted for the loaded transformer
(:mod:`fbupscale_gui.engine.lora.convert`), and loaded once per content hash (the adapter is named after it), then
switched with ``enable_lora``/``disable_lora``/``set_adapters`` — never reloaded, never fused.
With the adapter disabled PEFT calls the untouched base layer, so "LoRA off" is bit-identical to
a pipeline that never had a LoRA. It applies to the FLUX transformer only, never the ControlNet
or the text encoders. A LoRA that matches nothing (an SDXL LoRA, say) is refused, and so is one
whose alpha / rank is absurd.

The per-layer scaling is read back from the PEFT layers after loading, so the report
(:class:`LoraReport`, and the candidate's metadata) states what is really applied.

If fp8 layerwise casting (``transformer.enable_layerwise_casting``) is ever added, LoRAs must
be loaded before it is enabled: PEFT wraps the Linear layers the casting hooks are bound to.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from fbupscale_gui.core.errors import LoraError
from fbupscale_gui.engine.lora.convert import GROUP_TEXT, convert_lora
from fbupscale_gui.engine.lora.files import read_lora

__all__ = [
    "MAX_LOADED_LORAS",
    "MAX_LORA_SCALING",
    "LoraReport",
    "adapter_name_for",
    "ensure_lora_loaded",
    "is_lora_loaded",
    "lora_report",
    "set_lora_state",
]

#: Refused above this per-layer alpha / rank (times a weight near MAX_LORA_WEIGHT ...).
MAX_LORA_SCALING: Final = 1e3
#: How many names of one group a one-line report shows before "…".
_NAMES_SHOWN: Final = 3
#: How many names of one group the candidate's metadata keeps.
_NAMES_KEPT: Final = 20

_FORMAT_LABELS: Final = {"kohya": "Kohya", "bfl": "BFL/ComfyUI", "diffusers": "diffusers/PEFT"}


def _plural(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


def _group_lines(groups: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    lines = []
    for why, names in groups:
        singular, plural, what = GROUP_TEXT[why]
        listed = ", ".join(names[:_NAMES_SHOWN]) + ("…" if len(names) > _NAMES_SHOWN else "")
        lines.append(f"{_plural(len(names), singular, plural)}: {what or listed}")
    return lines


@dataclass(frozen=True)
class LoraReport:
    """What one LoRA load did: what matched, what was left out and why, and the scaling.

    ``scaling`` is the file's own alpha / rank per diffusers module the LoRA patches (the
    operator's scale multiplies it). :meth:`summary` is the one line shown to the operator;
    :meth:`to_metadata` is what a candidate made with the LoRA records.
    """

    file: str
    format: str
    alpha_source: str
    matched: int
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    scaling: Mapping[str, float]

    @property
    def unmatched(self) -> int:
        return sum(len(names) for _, names in self.groups)

    @property
    def partial(self) -> bool:
        return bool(self.groups)

    @property
    def level(self) -> Literal["info", "warning"]:
        """How the load is reported: a warning when layers were left out."""
        return "warning" if self.groups else "info"

    def group_lines(self) -> list[str]:
        """ "2 layers for blocks the model does not have: double_blocks_7…", one per reason."""
        return _group_lines(self.groups)

    def _scaling_text(self) -> str:
        values = sorted(set(self.scaling.values()))
        if not values:
            return ""
        if len(values) == 1:
            return f"alpha/rank {values[0]:g}"
        return f"alpha/rank {values[0]:g}–{values[-1]:g} by layer"

    def summary(self) -> str:
        head = (
            f"LoRA {self.file}: {self.matched} of {self.matched + self.unmatched} layers applied "
            f"({_FORMAT_LABELS.get(self.format, self.format)}; {self._scaling_text()}, "
            f"from {self.alpha_source})"
        )
        if not self.groups:
            return head
        return f"{head}; left out: " + "; ".join(self.group_lines())

    def to_metadata(self, strength: float, stages: Sequence[str]) -> dict[str, Any]:
        """The candidate's record: effective scaling per layer (strength x alpha / rank) as the
        most common value plus the layers that differ, and the layers left out."""
        effective = {name: strength * value for name, value in sorted(self.scaling.items())}
        common = Counter(effective.values()).most_common(1)
        default = common[0][0] if common else strength
        return {
            "file": self.file,
            "format": self.format,
            "alpha_source": self.alpha_source,
            "strength": strength,
            "stages": list(stages),
            "matched": self.matched,
            "unmatched": self.unmatched,
            "left_out": [
                {
                    "reason": GROUP_TEXT[why][1],
                    "count": len(names),
                    "names": list(names[:_NAMES_KEPT]),
                }
                for why, names in self.groups
            ],
            "scaling": {
                "layers": len(effective),
                "default": default,
                "other": {k: v for k, v in effective.items() if v != default},
            },
        }


# -- loading --------------------------------------------------------------------------------


def adapter_name_for(sha256: str) -> str:
    """The adapter name a LoRA with this content hash is loaded under."""
    return f"fb_{sha256[:16]}"


def _loaded_adapters(transformer: Any) -> list[str]:
    config = getattr(transformer, "peft_config", None)
    return list(config) if isinstance(config, dict) else []


#: How many distinct LoRAs stay loaded in one transformer; the oldest is dropped beyond this.
MAX_LOADED_LORAS: Final = 2

#: transformer -> {adapter name: the report of its load}
_REPORTS: weakref.WeakKeyDictionary[Any, dict[str, LoraReport]] = weakref.WeakKeyDictionary()


def is_lora_loaded(transformer: Any, sha256: str) -> bool:
    """Whether the LoRA with this content hash is already loaded into ``transformer``."""
    return adapter_name_for(sha256) in _loaded_adapters(transformer)


def lora_report(transformer: Any, sha256: str) -> LoraReport | None:
    """The report of the load of the LoRA with this hash into ``transformer`` (None: not loaded)."""
    if not is_lora_loaded(transformer, sha256):
        return None
    return _REPORTS.get(transformer, {}).get(adapter_name_for(sha256))


def _low_cpu_mem_usage() -> bool:
    """diffusers' own default for ``load_lora_weights`` (True with recent peft and torch)."""
    from diffusers.loaders import lora_pipeline

    return bool(getattr(lora_pipeline, "_LOW_CPU_MEM_USAGE_DEFAULT_LORA", False))


def _peft_scaling(transformer: Any, name: str) -> dict[str, float]:
    """alpha / rank (PEFT's ``scaling``) per module the adapter ``name`` patches."""
    out: dict[str, float] = {}
    for module_name, module in transformer.named_modules():
        scaling = getattr(module, "scaling", None)
        if isinstance(scaling, dict) and name in scaling and hasattr(module, "lora_A"):
            out[module_name] = float(scaling[name])
    return out


def ensure_lora_loaded(pipe: Any, path: str | Path, sha256: str) -> LoraReport | None:
    """Load the LoRA at ``path`` into ``pipe.transformer`` unless already loaded; return its report.

    ``pipe`` is a FLUX pipeline with diffusers' LoRA loader. Returns None when the adapter
    (named by ``sha256``) was already loaded (:func:`lora_report` has its report). Raises
    LoraError when the file is unreadable, holds NaN/Inf/huge values, matches no layer of the
    transformer, or has a scaling outside :data:`MAX_LORA_SCALING` (nothing stays loaded).
    """
    transformer = pipe.transformer
    name = adapter_name_for(sha256)
    loaded = _loaded_adapters(transformer)
    if name in loaded:
        return None
    lora = read_lora(path)
    try:
        conversion = convert_lora(
            lora.tensors, transformer, lora.adapter_metadata, lora.metadata_source
        )
    except LoraError as exc:
        raise LoraError(f"{path}: {exc}") from None
    if conversion.matched == 0:
        raise LoraError(
            f"{path}: this LoRA matches nothing in the FLUX transformer (0 of "
            f"{conversion.unmatched} layers: {'; '.join(_group_lines(conversion.groups))}); "
            "is it a FLUX.1 LoRA? "
            "LoRAs for SDXL or SD 1.5 do not work with FLUX"
        )
    stale = loaded[: max(0, len(loaded) - MAX_LOADED_LORAS + 1)]
    if stale:
        transformer.delete_adapters(stale)
        for old in stale:
            _REPORTS.get(transformer, {}).pop(old, None)
    metadata = (
        None
        if conversion.config is None
        else {f"transformer.{k}": v for k, v in conversion.config.items()}
    )
    try:
        with warnings.catch_warnings():
            # PEFT warns when a second adapter joins the first: several are expected here.
            warnings.filterwarnings("ignore", message=".*Already found a `peft_config`.*")
            # diffusers' own path for the transformer (load_lora_weights ends here too), with
            # the file's header config or .alpha tensors as its loader would take them
            pipe.load_lora_into_transformer(
                conversion.state_dict,
                network_alphas=conversion.network_alphas,
                transformer=transformer,
                adapter_name=name,
                metadata=metadata,
                _pipeline=pipe,
                low_cpu_mem_usage=_low_cpu_mem_usage(),
            )
    except (ValueError, RuntimeError, KeyError, TypeError) as exc:
        if name in _loaded_adapters(transformer):
            transformer.delete_adapters([name])
        raise LoraError(f"{path}: the LoRA could not be applied ({exc})") from None
    # PEFT matches target names by suffix ("proj_out" also patches single blocks' proj_out,
    # with zero weights): report the modules the file has weights for.
    suffix = ".lora_A.weight"
    own = {
        k[len("transformer.") : -len(suffix)] for k in conversion.state_dict if k.endswith(suffix)
    }
    scaling = {
        module: conversion.folded.get(module, 1.0) * value
        for module, value in _peft_scaling(transformer, name).items()
        if module in own
    }
    worst = max((abs(v) if math.isfinite(v) else math.inf for v in scaling.values()), default=0)
    if worst > MAX_LORA_SCALING:
        transformer.delete_adapters([name])
        raise LoraError(
            f"{path}: the LoRA's alpha / rank reaches {worst:.3g} (limit {MAX_LORA_SCALING:g}); "
            "its alpha values are damaged"
        )
    report = LoraReport(
        file=Path(path).name,
        format=conversion.format,
        alpha_source=conversion.alpha_source,
        matched=conversion.matched,
        groups=conversion.groups,
        scaling=scaling,
    )
    _REPORTS.setdefault(transformer, {})[name] = report
    return report


def set_lora_state(transformer: Any, adapter: str | None, scale: float = 1.0) -> None:
    """Switch the transformer's LoRA: ``adapter`` at ``scale``, or every adapter off (None)."""
    if not _loaded_adapters(transformer):
        return
    if adapter is None:
        transformer.disable_lora()
        return
    transformer.enable_lora()
    transformer.set_adapters([adapter], weights=[scale])
