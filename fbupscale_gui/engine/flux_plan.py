"""The memory plan: how FLUX's parts are held on a card of a given size, and the peak.

Pure arithmetic (no torch), from public figures for FLUX.1-dev at 1024 px (anchors): the
transformer holds 11.9 G parameters (22.2 GiB in bf16, half in fp8, about 8.5 bits per weight
in GGUF Q8_0), T5-XXL 8.9 GiB in bf16, the ControlNet upscaler 3.1 GiB, CLIP-L and the VAE a
few hundred MiB; the published bf16 peak (36.2 GB, everything resident) leaves about 2.2 GiB
for activations. The plan:

* the transformer in the file's precision when it fits with the ControlNet resident, else in
  fp8 storage (layerwise casting, LoRAs loaded first), else offloaded (model, group, then
  sequential, as :mod:`devices` would pick);
* text encoders on the GPU only to encode a prompt (once per prompt text, then cached), and
  on the CPU otherwise; on a card too small for them next to the resident weights, those
  weights step off the GPU while a new prompt is encoded (always on the GPU, so the
  embeddings, and the pixels, do not depend on the card);
* the ControlNet resident whenever the transformer is.

:func:`plan` is what ``auto`` storage uses and what ``fbupscale doctor`` prints for 16, 24,
48 and 80 GB cards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["CARDS_GIB", "MemoryPlan", "plan", "transformer_gib"]

CARDS_GIB: Final = (16, 24, 48, 80)
_PARAMS_G: Final = 11.9
_GIB_PER_G_AT_16_BIT: Final = 2e9 / 2**30
#: bits per weight of the GGUF types city96 publishes (block scales included)
_GGUF_BITS: Final[dict[str, float]] = {
    "Q8_0": 8.5,
    "Q6_K": 6.56,
    "Q5_K": 5.5,
    "Q5_0": 5.5,
    "Q5_1": 6.0,
    "Q4_K": 4.5,
    "Q4_0": 4.5,
    "Q4_1": 5.0,
    "Q3_K": 3.44,
    "Q2_K": 2.63,
    "BF16": 16.0,
    "F16": 16.0,
}
T5_GIB: Final = 8.9
CLIP_GIB: Final = 0.23
VAE_GIB: Final = 0.16
CONTROLNET_GIB: Final = 3.1
ACTIVATIONS_GIB: Final = 2.2
VAE_DECODE_GIB: Final = 1.6
CONTEXT_GIB: Final = 0.6


def transformer_gib(quant: str, storage: str) -> float:
    """GiB the transformer holds: fp8 storage halves 16-bit weights; GGUF stays quantised."""
    if quant in _GGUF_BITS:
        return _PARAMS_G * 1e9 * _GGUF_BITS[quant] / 8 / 2**30
    if storage == "fp8" or quant == "nf4":
        return _PARAMS_G * _GIB_PER_G_AT_16_BIT / (2 if storage == "fp8" else 4)
    # bf16 files and fp8 files (upcast at load) are held in 16 bits; fp32 twice that
    return _PARAMS_G * _GIB_PER_G_AT_16_BIT * (2 if quant == "fp32" else 1)


@dataclass(frozen=True)
class MemoryPlan:
    card_gib: float
    storage: str
    memory_mode: str
    encode_swaps: bool
    peak_gib: float
    transformer_gib: float

    def describe(self) -> str:
        encoders = (
            "the resident weights step off the GPU while a new prompt is encoded"
            if self.encode_swaps
            else "a new prompt is encoded next to the resident weights"
        )
        offload = (
            "ControlNet resident, no offload"
            if self.memory_mode == "none"
            else f"{self.memory_mode} offload of both models"
        )
        return (
            f"{self.card_gib:g} GB: transformer {self.storage} ({self.transformer_gib:.1f} GiB), "
            f"{offload}; text encoders on the CPU between prompts, "
            f"{encoders}; predicted peak {self.peak_gib:.1f} GiB"
        )


def plan(card_gib: float, quant: str = "bf16", *, storage: str = "auto") -> MemoryPlan:
    """The plan for a card with ``card_gib`` GiB free and a transformer file of ``quant``."""
    gguf = quant in _GGUF_BITS
    choices = [storage] if storage != "auto" else (["native"] if gguf else ["native", "fp8"])
    rest = CONTROLNET_GIB + VAE_GIB + CONTEXT_GIB
    work = max(ACTIVATIONS_GIB, VAE_DECODE_GIB)
    for choice in choices:
        weights = transformer_gib(quant, choice)
        resident = weights + rest
        if resident + work <= card_gib:
            encode_swaps = resident + T5_GIB + CLIP_GIB > card_gib
            peak = max(
                resident + work,
                (CONTEXT_GIB + T5_GIB + CLIP_GIB) if encode_swaps else resident + T5_GIB + CLIP_GIB,
            )
            return MemoryPlan(card_gib, choice, "none", encode_swaps, peak, weights)
    choice = choices[-1]
    weights = transformer_gib(quant, choice)
    # model offload: one model on the GPU at a time, the transformer the largest
    model_peak = weights + CONTROLNET_GIB + ACTIVATIONS_GIB + CONTEXT_GIB
    if model_peak <= card_gib:
        return MemoryPlan(
            card_gib, choice, "model", True, max(model_peak, T5_GIB + CONTEXT_GIB), weights
        )
    # group offload: one block group of each model on the GPU at a time
    block = weights / 57 * 2
    group_peak = block + CONTROLNET_GIB / 2 + ACTIVATIONS_GIB + CONTEXT_GIB + 0.5
    if group_peak <= card_gib:
        return MemoryPlan(card_gib, choice, "group", True, group_peak, weights)
    return MemoryPlan(
        card_gib, choice, "sequential", True, ACTIVATIONS_GIB + CONTEXT_GIB + 0.4, weights
    )
