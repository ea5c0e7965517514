"""The tiny FLUX's VAE, text encoders and tokenizers laid out as a ComfyUI install keeps them.

For tests and benches of :mod:`fbupscale_gui.engine.flux.part_files`: from a tiny diffusers FLUX folder
(:mod:`.testing`) this writes ``models/vae/ae.safetensors`` in the LDM/BFL key layout,
``models/text_encoders/clip_l.safetensors`` and ``t5xxl_*.safetensors`` (fp32, or fp8 as
``t5xxl_fp8_e4m3fn``), the tokenizers where ComfyUI's code ships them
(``comfy/sd1_tokenizer``, ``comfy/text_encoders/t5_tokenizer``), and the folder's configs
alone (what the app ships for FLUX.1-dev, here for the tiny model).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Final, Literal

__all__ = ["config_only_copy", "save_tiny_comfy_parts", "vae_to_ldm"]

_RESNET: Final = re.compile(r"^(encoder|decoder)\.(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$")
_SAMPLER: Final = re.compile(r"^(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(down|up)samplers\.0\.")
_MID: Final = re.compile(r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.")
_ATTN: Final = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}


def vae_to_ldm(state: dict[str, Any]) -> dict[str, Any]:
    """A diffusers AutoencoderKL state dict in the LDM/BFL layout of ``ae.safetensors``."""
    n_up = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("decoder.up_blocks."))
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        if m := _RESNET.match(new):
            side, kind, i, j, rest = m.groups()
            block = int(i) if kind == "down" else n_up - 1 - int(i)
            new = f"{side}.{kind}.{block}.block.{j}.{rest}"
        elif m := _SAMPLER.match(new):
            side, kind, i, _ = m.groups()
            block = int(i) if kind == "down" else n_up - 1 - int(i)
            new = f"{side}.{kind}.{block}.{kind}sample." + new[m.end() :]
        elif m := _MID.match(new):
            new = f"{m.group(1)}.mid.block_{int(m.group(2)) + 1}." + new[m.end() :]
        elif ".mid_block.attentions.0." in new:
            side, rest = new.split(".mid_block.attentions.0.")
            layer, param = rest.rsplit(".", 1)
            new = f"{side}.mid.attn_1.{_ATTN[layer]}.{param}"
            if value.ndim == 2:  # LDM attention projections are 1x1 convolutions
                value = value[:, :, None, None]
        out[new] = value.contiguous()
    return out


def config_only_copy(flux_dir: Path, target: Path) -> Path:
    """The JSON configs of a diffusers FLUX folder, without weights or tokenizers."""
    for src in flux_dir.rglob("*.json"):
        rel = src.relative_to(flux_dir)
        if rel.parts[0].startswith("tokenizer"):
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target / rel)
    return target


def save_tiny_comfy_parts(
    flux_dir: Path, root: Path, *, t5_quant: Literal["none", "fp8", "fp8_scaled"] = "none"
) -> dict[str, Path]:
    """Write the tiny folder's VAE, CLIP-L, T5 and tokenizers as a ComfyUI install holds them
    under ``root``; returns their paths by component name. ``t5_quant``: T5's 2-D weights in
    float8, or as ComfyUI's fp8_scaled files hold them (divided by a per-weight
    ``scale_weight``, with the ``scaled_fp8`` marker)."""
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, T5EncoderModel

    def tensors(model: Any) -> dict[str, Any]:
        return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    models = root / "models"
    vae = AutoencoderKL.from_pretrained(flux_dir, subfolder="vae")
    clip = CLIPTextModel.from_pretrained(flux_dir, subfolder="text_encoder")
    t5 = T5EncoderModel.from_pretrained(flux_dir, subfolder="text_encoder_2")
    t5_state = tensors(t5)
    t5_state.pop("encoder.embed_tokens.weight", None)  # tied to shared.weight, as ComfyUI saves
    if t5_quant != "none":
        quantised: dict[str, Any] = {}
        for k, v in t5_state.items():
            if v.ndim == 2 and k != "shared.weight":
                if t5_quant == "fp8_scaled":
                    scale = v.abs().max().float() / 448.0
                    quantised[k[: -len("weight")] + "scale_weight"] = scale.reshape(1)
                    v = v / scale
                v = v.to(torch.float8_e4m3fn)
            quantised[k] = v
        if t5_quant == "fp8_scaled":
            quantised["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
        t5_state = quantised
    clip_state = {  # CLIP-L files name every tensor under "text_model."
        k if k.startswith("text_model.") else f"text_model.{k}": v
        for k, v in tensors(clip).items()
        if not k.endswith("position_ids")
    }
    paths = {
        "vae": models / "vae" / "ae.safetensors",
        "text_encoder": models / "text_encoders" / "clip_l.safetensors",
        "text_encoder_2": models
        / "text_encoders"
        / {
            "none": "t5xxl_fp32.safetensors",
            "fp8": "t5xxl_fp8_e4m3fn.safetensors",
            "fp8_scaled": "t5xxl_fp8_e4m3fn_scaled.safetensors",
        }[t5_quant],
        "tokenizer": root / "comfy" / "sd1_tokenizer",
        "tokenizer_2": root / "comfy" / "text_encoders" / "t5_tokenizer",
    }
    for state, key in ((vae_to_ldm(tensors(vae)), "vae"), (clip_state, "text_encoder")):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(paths[key]))
    save_file(t5_state, str(paths["text_encoder_2"]))
    for component in ("tokenizer", "tokenizer_2"):
        shutil.copytree(flux_dir / component, paths[component])
    return paths
