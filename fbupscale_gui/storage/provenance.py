"""What every export says about itself beyond the request: model hashes, LR-consistency and the
optional visible "AI-reconstructed" badge. Pure Python (Pillow).

:func:`provenance` builds the ``provenance`` object that
:func:`fbupscale_gui.storage.metadata.save_candidate` embeds next to the request (JSON) and, for the
key figures, in the XMP packet. :func:`draw_badge` burns a small corner label into the exported
pixels; it runs only when the operator enabled it in the settings, and the record says so
(``badge.applied``) together with the SHA-256 of the pixels *before* the badge
(``pixels_sha256``), so ``fbupscale reproduce`` and any later check compare against the
un-badged image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.request import ReconstructionRequest

__all__ = [
    "BADGE_AI",
    "BADGE_ENHANCED",
    "LR_METRIC",
    "badge_text",
    "draw_badge",
    "model_hashes",
    "provenance",
]

BADGE_AI: Final = "AI-reconstructed"
#: Lanczos invents nothing: its badge must not claim AI.
BADGE_ENHANCED: Final = "Upscaled"
LR_METRIC: Final = (
    "BT.601 luma PSNR (dB, cap 99) of the candidate BOX-downscaled to the cutout's size, "
    "against the cutout; higher is more faithful"
)


def model_hashes(
    request: ReconstructionRequest, extra: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, dict[str, str]]:
    """``{name: {"ref": path or repo id, "sha256": hash or ""}}`` for the models that made the
    candidate. FLUX requests carry their hashes (the engine fills them in), user-model requests
    their model's (``sr_model``); ``extra`` adds
    models the request does not name (e.g. the bundled Real-ESRGAN weights)."""
    out: dict[str, dict[str, str]] = {}
    if request.engine == "flux":
        flux = request.flux
        out["flux"] = {"ref": flux.label, "sha256": flux.sha256}
        if flux.format:  # what the file was: "safetensors-bfl", "gguf-bfl", "diffusers"...
            out["flux"].update(format=flux.format, quant=flux.quant)
        if request.flux_base is not None:
            out["flux_base"] = {"ref": request.flux_base.label, "sha256": request.flux_base.sha256}
        for name, part in request.parts.given().items():  # ae.safetensors, clip_l, t5xxl...
            out[name] = {"ref": part.label, "sha256": part.sha256}
            if part.format:
                out[name].update(format=part.format, quant=part.quant)
        if request.stage2.enabled:
            cn = request.controlnet
            out["controlnet"] = {"ref": cn.label, "sha256": cn.sha256}
            if cn.format:
                out["controlnet"].update(format=cn.format, quant=cn.quant)
        lora = request.lora.model
        if lora is not None:
            out["lora"] = {"ref": lora.label, "sha256": lora.sha256}
    if request.sr_model is not None:
        out["sr_model"] = {"ref": request.sr_model.label, "sha256": request.sr_model.sha256}
    for name, ref in (extra or {}).items():
        out[str(name)] = {"ref": str(ref.get("ref", "")), "sha256": str(ref.get("sha256", ""))}
    return out


def badge_text(engine: str) -> str:
    return BADGE_ENHANCED if engine == "lanczos" else BADGE_AI


def draw_badge(image: Image.Image, text: str = BADGE_AI) -> Image.Image:
    """A copy of ``image`` with ``text`` in a dark rounded box in the bottom-right corner.

    Sized to the image (about 2.2 % of the long side for the text), legible on any content.
    """
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    base = image.convert("RGB")
    long_side = max(base.size)
    size = max(10, round(long_side * 0.022))
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.load_default(size=size)
    except (OSError, TypeError, ImportError):  # Pillow without FreeType: the bitmap font
        font = ImageFont.load_default()
    layer = PILImage.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad_x, pad_y = round(size * 0.6), round(size * 0.35)
    margin = round(size * 0.8)
    w = right - left + 2 * pad_x
    h = bottom - top + 2 * pad_y
    x1, y1 = base.width - margin, base.height - margin
    x0, y0 = max(0, x1 - w), max(0, y1 - h)
    draw.rounded_rectangle((x0, y0, x1, y1), radius=max(2, size // 3), fill=(0, 0, 0, 170))
    draw.text((x0 + pad_x - left, y0 + pad_y - top), text, font=font, fill=(255, 255, 255, 255))
    return PILImage.alpha_composite(base.convert("RGBA"), layer).convert("RGB")


def provenance(
    request: ReconstructionRequest,
    *,
    seed: int,
    lr_consistency_db: float | None,
    models: Mapping[str, Mapping[str, str]] | None = None,
    badge: str | None = None,
    pixels_sha256: str = "",
) -> dict[str, Any]:
    """The ``provenance`` object of an export (see the module docstring)."""
    from fbupscale_gui.storage.metadata import DIGITAL_SOURCE_ENHANCED, DIGITAL_SOURCE_TRAINED

    return {
        "ai_reconstructed": request.engine != "lanczos",
        "digital_source_type": (
            DIGITAL_SOURCE_ENHANCED if request.engine == "lanczos" else DIGITAL_SOURCE_TRAINED
        ),
        "engine": request.engine,
        "seed": seed,
        "models": model_hashes(request, models),
        "lr_consistency_db": None if lr_consistency_db is None else round(lr_consistency_db, 3),
        "lr_consistency_metric": LR_METRIC,
        "badge": {"applied": badge is not None, "text": badge or ""},
        "pixels_sha256": pixels_sha256,
    }
