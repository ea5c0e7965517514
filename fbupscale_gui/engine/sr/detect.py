"""Which super-resolution architecture a weights file holds, and whether fbupscale runs it.

Any single-image SR model that spandrel recognises (SPAN, ESRGAN/RRDB, Compact/SRVGG, SwinIR,
HAT, DAT, OmniSR, RealCUGAN, ...) can be used, provided it maps RGB to RGB at scale 2x or more;
inpainting, face-restoration and scale-1 restoration models are refused with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from fbupscale_gui.core.errors import ModelFileError
from fbupscale_gui.engine.sr.safe_weights import load_state_dict
from fbupscale_gui.engine.sr.spandrel_import import import_spandrel
from fbupscale_gui.storage.weights_library import ModelInfo

__all__ = ["SR_ARCHITECTURES", "describe", "detect_architecture", "inspect_model"]

#: Architectures we test and document; any other spandrel SR architecture works too.
SR_ARCHITECTURES: Final = (
    "SPAN",
    "ESRGAN",
    "Compact",
    "SwinIR",
    "HAT",
    "DAT",
    "OmniSR",
    "RealCUGAN",
)
_PURPOSE_TEXT: Final = {
    "Inpainting": "an inpainting model",
    "FaceSR": "a face restoration model (it needs aligned face crops)",
    "Restoration": "a scale-1 restoration model (denoise/deblur/dejpeg), not an upscaler",
}


def _refusal(path: Path | str, descriptor: Any) -> str | None:
    """Why a detected model is not usable here, or None."""
    spandrel = import_spandrel()
    arch = descriptor.architecture.name
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        what = _PURPOSE_TEXT.get(descriptor.purpose, f"a {descriptor.purpose} model")
        return f"{path}: {arch} is {what}"
    if descriptor.purpose != "SR":
        what = _PURPOSE_TEXT.get(descriptor.purpose, f"a {descriptor.purpose} model")
        return f"{path}: {arch} is {what}"
    if descriptor.scale < 2:
        return (
            f"{path}: {arch} has scale {descriptor.scale}x (a restoration model, not an upscaler)"
        )
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        return (
            f"{path}: {arch} maps {descriptor.input_channels} to {descriptor.output_channels} "
            "channels; only RGB (3 -> 3) models are supported"
        )
    return None


def detect_architecture(path: Path, state_dict: dict[str, Any]) -> Any:
    """spandrel's descriptor for a state dict; raises ModelFileError if unusable."""
    spandrel = import_spandrel()
    try:
        canonical = spandrel.canonicalize_state_dict(state_dict)
        descriptor = spandrel.MAIN_REGISTRY.load(canonical)
    except spandrel.UnsupportedModelError:
        raise ModelFileError(
            f"{path}: not a model architecture fbupscale recognises (supported: "
            f"{', '.join(SR_ARCHITECTURES)} and the other spandrel SR architectures)"
        ) from None
    except ModelFileError:
        raise
    except Exception as exc:  # an architecture matched but its weights do not fit it
        raise ModelFileError(
            f"{path}: looks like a known architecture but its weights do not fit it "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    reason = _refusal(path, descriptor)
    if reason is not None:
        raise ModelFileError(
            f"{reason}. fbupscale needs an RGB super-resolution model of scale 2x or more"
        )
    return descriptor


def describe(descriptor: Any, size_bytes: int) -> ModelInfo:
    """The :class:`ModelInfo` of a loaded spandrel descriptor."""
    precisions = ["fp32"]
    if descriptor.supports_half:
        precisions.append("fp16")
    if descriptor.supports_bfloat16:
        precisions.append("bf16")
    params = sum(int(p.numel()) for p in descriptor.model.parameters())
    tiling = getattr(descriptor.tiling, "name", str(descriptor.tiling)).lower()
    return ModelInfo(
        arch=descriptor.architecture.name,
        arch_id=str(descriptor.architecture.id),
        scale=int(descriptor.scale),
        params=params,
        size_bytes=size_bytes,
        input_channels=int(descriptor.input_channels),
        output_channels=int(descriptor.output_channels),
        precisions=tuple(precisions),
        purpose=str(descriptor.purpose),
        tags=tuple(str(t) for t in descriptor.tags),
        tiling=tiling,
    )


def inspect_model(path: str | Path) -> ModelInfo:
    """Load ``path`` on the CPU, detect it and describe it. Raises ModelFileError if unusable."""
    path = Path(path)
    state = load_state_dict(path)
    descriptor = detect_architecture(path, state)
    return describe(descriptor, path.stat().st_size)
