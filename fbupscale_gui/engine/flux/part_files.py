"""FLUX's VAE, text encoders and tokenizers from the single files operators have.

ComfyUI and Forge keep FLUX's parts as files of their own: ``ae.safetensors`` (BFL's VAE, in
the LDM key layout), ``clip_l.safetensors`` (transformers' CLIPTextModel keys, sometimes under
a prefix) and ``t5xxl_fp16`` / ``t5xxl_fp8_e4m3fn`` (T5EncoderModel keys; fp8 is upcast at
load, ComfyUI's fp8_scaled scales are applied). Each is built offline and width-agnostic:
widths and depths are read from the weights; what weights cannot say (VAE norm groups and
latent scaling, CLIP's head count and activation, T5's feed-forward kind) comes from the
architecture configs that ship with the app (``resources/flux/FLUX.1-dev``), or from the
``--flux-base`` folder's when one is given. The VAE keys are converted by diffusers' own LDM
converter (it counts blocks, the tensors carry the widths). Tokenizers load from a folder with
``AutoTokenizer``, offline.

:func:`load_parts` assembles the components a single-file transformer lacks: each from its
own file or folder (``request.parts``) or else from the base folder; the scheduler config
ships with the app.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import ModelFileError
from fbupscale_gui.engine.flux.files import dequantise_scaled_fp8, shipped_flux_config_dir
from fbupscale_gui.storage.weight_files import describe_file

if TYPE_CHECKING:
    import torch

__all__ = [
    "PART_COMPONENTS",
    "load_clip_file",
    "load_parts",
    "load_t5_file",
    "load_vae_file",
]

#: The components a single-file transformer lacks, as diffusers names them.
PART_COMPONENTS: Final = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
_CLIP_PREFIXES: Final = (
    "text_encoders.clip_l.transformer.",
    "cond_stage_model.transformer.",
    "conditioner.embedders.0.transformer.",
)
_T5_PREFIXES: Final = ("text_encoders.t5xxl.transformer.", "cond_stage_model.transformer.")
#: Keys a CLIP-L file may carry that CLIPTextModel has no place for.
_CLIP_EXTRA: Final = (
    "text_projection.weight",
    "logit_scale",
    "text_model.embeddings.position_ids",
    "embeddings.position_ids",
)


def _read(path: Path, dtype: torch.dtype, layout: str) -> dict[str, Any]:
    """The file's tensors, fp8 scales applied and fp8 upcast to ``dtype``. Raises
    ModelFileError when the file is not a safetensors file of the expected ``layout``."""
    import torch
    from safetensors.torch import load_file

    desc = describe_file(path)
    if desc.container != "safetensors" or desc.layout != layout:
        raise ModelFileError(
            f"{path}: not a {_LAYOUT_NAMES[layout]} (its keys look like '{desc.layout}')"
        )
    state = dict(load_file(str(path)))
    if desc.quant == "fp8_scaled":
        state = dequantise_scaled_fp8(state, dtype)
    fp8 = (torch.float8_e4m3fn, torch.float8_e5m2)
    return {k: (v.to(dtype) if v.dtype in fp8 else v) for k, v in state.items()}


_LAYOUT_NAMES: Final = {
    "vae": "FLUX VAE such as ae.safetensors",
    "clip_l": "CLIP-L text encoder such as clip_l.safetensors",
    "t5": "T5-XXL text encoder such as t5xxl_fp16.safetensors",
}


def _strip(state: Mapping[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def _count(keys: Any, pattern: str) -> int:
    """How many numbered children ``pattern`` (a regex with one group) finds."""
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in keys if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def _config(config_dir: Path | None, sub: str) -> Path:
    root = config_dir if config_dir is not None else shipped_flux_config_dir()
    folder = root / sub
    if not (folder / "config.json").is_file():
        raise ModelFileError(f"{folder}/config.json: the {sub} config is missing")
    return folder


def _load_into(model: Any, state: Mapping[str, Any], path: Path, ignore: tuple[str, ...]) -> None:
    """Load ``state`` into ``model``; ModelFileError naming what does not fit."""
    try:
        result = model.load_state_dict(
            {k: v for k, v in state.items() if k not in ignore}, strict=False
        )
    except RuntimeError as exc:  # shapes that do not fit
        why = " ".join(str(exc).split())[:300]
        raise ModelFileError(f"{path}: weights do not fit ({why})") from None
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    missing = [
        k for k in result.missing_keys if k not in tied and not k.endswith("embed_tokens.weight")
    ]
    if missing or result.unexpected_keys:
        raise ModelFileError(
            f"{path}: incomplete or foreign weights (missing {missing[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]})"
        )


def _finish(model: Any, dtype: torch.dtype) -> Any:
    """Cast to ``dtype`` as ``from_pretrained`` does: in float16 the ``_keep_in_fp32_modules``
    (T5's ``wo``) keep their float32 values, never a round trip through float16."""
    import itertools

    import torch

    keep = getattr(model, "_keep_in_fp32_modules", None) or ()
    keep = keep if dtype == torch.float16 else ()
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    for name, tensor in tensors:
        if tensor.is_floating_point():
            fp32 = any(k in name.split(".") for k in keep)
            tensor.data = tensor.data.to(torch.float32 if fp32 else dtype)
    return model.eval()


def load_vae_file(path: str | Path, dtype: torch.dtype, config_dir: Path | None = None) -> Any:
    """An AutoencoderKL from one file in the LDM/BFL layout (``ae.safetensors``)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    p = Path(path)
    state = _read(p, dtype, "vae")
    if not any(k.startswith("encoder.down_blocks.") for k in state):
        n_down = _count(state, r"(?:first_stage_model\.|vae\.)?encoder\.down\.(\d+)\.")
        n_up = _count(state, r"(?:first_stage_model\.|vae\.)?decoder\.up\.(\d+)\.")
        state = convert_ldm_vae_checkpoint(
            state, {"down_block_types": [None] * n_down, "up_block_types": [None] * n_up}
        )
    n = _count(state, r"encoder\.down_blocks\.(\d+)\.")
    if n == 0 or "decoder.conv_in.weight" not in state:
        raise ModelFileError(f"{p}: not a complete VAE (no encoder blocks or decoder input)")
    widths = [
        int(state[f"encoder.down_blocks.{i}.resnets.0.conv2.weight"].shape[0]) for i in range(n)
    ]
    config = dict(AutoencoderKL.load_config(str(_config(config_dir, "vae"))))
    config.update(
        in_channels=int(state["encoder.conv_in.weight"].shape[1]),
        out_channels=int(state["decoder.conv_out.weight"].shape[0]),
        latent_channels=int(state["decoder.conv_in.weight"].shape[1]),
        block_out_channels=widths,
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
        layers_per_block=_count(state, r"encoder\.down_blocks\.0\.resnets\.(\d+)\."),
        use_quant_conv="quant_conv.weight" in state,
        use_post_quant_conv="post_quant_conv.weight" in state,
        mid_block_add_attention=any(k.startswith("encoder.mid_block.attentions.") for k in state),
    )
    groups = int(config.get("norm_num_groups", 32))
    if any(w % groups for w in widths):
        raise ModelFileError(
            f"{p}: VAE widths {widths} do not fit the config's {groups} norm groups; pass "
            "--flux-base with this VAE's diffusers folder"
        )
    model = AutoencoderKL.from_config(config)
    _load_into(model, state, p, ())
    return _finish(model, dtype)


def load_clip_file(path: str | Path, dtype: torch.dtype, config_dir: Path | None = None) -> Any:
    """A CLIPTextModel (FLUX's CLIP-L) from one file (``clip_l.safetensors``)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    p = Path(path)
    state = _strip(_read(p, dtype, "clip_l"), _CLIP_PREFIXES)
    try:
        embed = state["text_model.embeddings.token_embedding.weight"]
        config = CLIPTextConfig.from_pretrained(str(_config(config_dir, "text_encoder")))
        config.vocab_size, config.hidden_size = (int(s) for s in embed.shape)
        config.max_position_embeddings = int(
            state["text_model.embeddings.position_embedding.weight"].shape[0]
        )
        config.intermediate_size = int(state["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0])
    except KeyError as exc:
        raise ModelFileError(
            f"{p}: not a complete CLIP-L text encoder ({exc} is missing)"
        ) from None
    config.num_hidden_layers = _count(state, r"text_model\.encoder\.layers\.(\d+)\.")
    if "text_projection.weight" in state:
        config.projection_dim = int(state["text_projection.weight"].shape[0])
    if config.hidden_size % config.num_attention_heads:
        raise ModelFileError(
            f"{p}: width {config.hidden_size} does not split into the config's "
            f"{config.num_attention_heads} heads; pass --flux-base with its diffusers folder"
        )
    model = CLIPTextModel(config)
    if "text_model.embeddings.token_embedding.weight" not in model.state_dict():
        # transformers 5 names CLIPTextModel's tensors without the files' "text_model."
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    _load_into(model, state, p, _CLIP_EXTRA)
    return _finish(model, dtype)


def load_t5_file(path: str | Path, dtype: torch.dtype, config_dir: Path | None = None) -> Any:
    """A T5EncoderModel (FLUX's T5-XXL) from one file (``t5xxl_fp16``, ``t5xxl_fp8_e4m3fn``)."""
    from transformers import T5Config, T5EncoderModel

    p = Path(path)
    state = _strip(_read(p, dtype, "t5"), _T5_PREFIXES)
    if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    block = "encoder.block.0.layer."
    try:
        shared = state["shared.weight"]
        bias = state[f"{block}0.SelfAttention.relative_attention_bias.weight"]
        inner = int(state[f"{block}0.SelfAttention.q.weight"].shape[0])
    except KeyError as exc:
        raise ModelFileError(f"{p}: not a complete T5 text encoder ({exc} is missing)") from None
    gated = f"{block}1.DenseReluDense.wi_0.weight" in state
    wi = state[f"{block}1.DenseReluDense.{'wi_0' if gated else 'wi'}.weight"]
    config = T5Config.from_pretrained(str(_config(config_dir, "text_encoder_2")))
    if bool(config.is_gated_act) != gated:
        raise ModelFileError(
            f"{p}: its feed-forward is {'gated' if gated else 'not gated'}, the config's "
            f"'{config.feed_forward_proj}' is not; pass --flux-base with its diffusers folder"
        )
    config.vocab_size, config.d_model = (int(s) for s in shared.shape)
    config.relative_attention_num_buckets, config.num_heads = (int(s) for s in bias.shape)
    config.d_kv = inner // config.num_heads
    config.d_ff = int(wi.shape[0])
    config.num_layers = _count(state, r"encoder\.block\.(\d+)\.")
    model = T5EncoderModel(config)
    state.pop("encoder.embed_tokens.weight", None)
    _load_into(model, state, p, ())
    return _finish(model, dtype)


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{folder}: not a readable tokenizer folder ({exc})") from None


_FILE_LOADERS: Final = {
    "vae": load_vae_file,
    "text_encoder": load_clip_file,
    "text_encoder_2": load_t5_file,
}


def _load_folder(component: str, folder: Path, dtype: torch.dtype) -> Any:
    """A component from a diffusers/transformers folder of its own (config.json + weights)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, T5EncoderModel

    cls: Any = {
        "vae": AutoencoderKL,
        "text_encoder": CLIPTextModel,
        "text_encoder_2": T5EncoderModel,
    }[component]
    return cls.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True).eval()


def load_parts(
    parts: Mapping[str, Path], dtype: torch.dtype, base: Path | None = None
) -> dict[str, Any]:
    """The components ``parts`` names (component -> file or folder), loaded offline.

    A single-file VAE or text encoder takes what its weights cannot say from ``base``'s
    configs when given, else from the shipped FLUX.1-dev configs; without ``base`` the
    scheduler comes from the shipped config too.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler

    config_dir = base if base is not None and (base / "model_index.json").is_file() else None
    out: dict[str, Any] = {}
    for component, path in parts.items():
        if component.startswith("tokenizer"):
            out[component] = _load_tokenizer(path)
        elif path.is_dir():
            out[component] = _load_folder(component, path, dtype)
        else:
            out[component] = _FILE_LOADERS[component](path, dtype, config_dir)
    if base is None:
        out["scheduler"] = FlowMatchEulerDiscreteScheduler.from_pretrained(
            str(shipped_flux_config_dir()), subfolder="scheduler", local_files_only=True
        )
    return out
