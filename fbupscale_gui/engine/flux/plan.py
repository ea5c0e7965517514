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
* the ControlNet resident whenever the transformer is;
* NF4 (bitsandbytes 4-bit, CUDA only) when the caller allows it (``nf4=True``: a CUDA card with
  bitsandbytes installed), after native and fp8, before any offload;
* VAE tiling when decoding at the request's size would not fit next to what is resident (the
  VAE's decode memory grows with the image area: about 1.6 GiB at 1024 px, 6.4 at 2048).

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


#: bits per weight of bitsandbytes NF4 (4-bit codes, one fp32 scale per 64 weights)
NF4_BITS: Final = 4.5
#: decode memory of the VAE in tiles (512 px tiles at any image size)
VAE_TILED_GIB: Final = 0.5


def transformer_gib(quant: str, storage: str) -> float:
    """GiB the transformer holds: fp8 storage halves 16-bit weights, NF4 stores 4.5 bits per
    weight; GGUF stays quantised."""
    if quant in _GGUF_BITS:
        return _PARAMS_G * 1e9 * _GGUF_BITS[quant] / 8 / 2**30
    if storage == "nf4" or quant == "nf4":
        return _PARAMS_G * 1e9 * NF4_BITS / 8 / 2**30
    if storage == "fp8":
        return _PARAMS_G * _GIB_PER_G_AT_16_BIT / 2
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
    vae_tiling: bool = False

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
        tiling = "VAE tiled" if self.vae_tiling else "VAE whole"
        return (
            f"{self.card_gib:g} GB: transformer {self.storage} ({self.transformer_gib:.1f} GiB), "
            f"{offload}, {tiling}; text encoders on the CPU between prompts, "
            f"{encoders}; predicted peak {self.peak_gib:.1f} GiB"
        )


def plan(
    card_gib: float,
    quant: str = "bf16",
    *,
    storage: str = "auto",
    nf4: bool = False,
    size: int = 1024,
) -> MemoryPlan:
    """The plan for a card with ``card_gib`` GiB free, a transformer file of ``quant`` and
    ``size`` px images. ``nf4``: NF4 storage is possible here (CUDA and bitsandbytes)."""
    gguf = quant in _GGUF_BITS
    if storage != "auto":
        choices = [storage]
    else:
        choices = ["native"] if gguf else ["native", "fp8", *(["nf4"] if nf4 else [])]
    area = (size / 1024) ** 2
    activations = ACTIVATIONS_GIB * area
    decode = VAE_DECODE_GIB * area
    rest = CONTROLNET_GIB + VAE_GIB + CONTEXT_GIB
    for choice in choices:
        weights = transformer_gib(quant, choice)
        resident = weights + rest
        tiled = resident + decode > card_gib
        work = max(activations, VAE_TILED_GIB if tiled else decode)
        if resident + work <= card_gib:
            encode_swaps = resident + T5_GIB + CLIP_GIB > card_gib
            peak = max(
                resident + work,
                (CONTEXT_GIB + T5_GIB + CLIP_GIB) if encode_swaps else resident + T5_GIB + CLIP_GIB,
            )
            return MemoryPlan(card_gib, choice, "none", encode_swaps, peak, weights, tiled)
    # offload keeps fp8 (closer to bf16 than NF4) unless NF4 was asked for
    choice = [c for c in choices if c != "nf4"][-1] if storage == "auto" else choices[-1]
    weights = transformer_gib(quant, choice)
    # model offload: one model on the GPU at a time, the transformer the largest
    model_peak = weights + CONTROLNET_GIB + activations + CONTEXT_GIB
    tiled = decode + VAE_GIB + CONTEXT_GIB > card_gib
    if model_peak <= card_gib:
        peak = max(model_peak, T5_GIB + CONTEXT_GIB)
        return MemoryPlan(card_gib, choice, "model", True, peak, weights, tiled)
    # group offload: one block group of each model on the GPU at a time
    block = weights / 57 * 2
    group_peak = block + CONTROLNET_GIB / 2 + activations + CONTEXT_GIB + 0.5
    if group_peak <= card_gib:
        return MemoryPlan(card_gib, choice, "group", True, group_peak, weights, tiled)
    return MemoryPlan(
        card_gib, choice, "sequential", True, activations + CONTEXT_GIB + 0.4, weights, tiled
    )
