"""A tiny, randomly initialised FLUX for tests and benches, built in well under a second.

Same architecture and file layout as FLUX.1-dev and the ControlNet upscaler, only minute:
one double and one single transformer block (guidance embeddings, 64 packed input channels),
a two-level VAE with 16 latent channels, one-layer CLIP and T5 encoders, and word-level
tokenizers built in memory. Everything is deterministic from a seed and is written with
``save_pretrained`` so tests go through the real offline loading path. Nothing is downloaded.

The ControlNet's output projections are zero-initialised by diffusers (so a fresh ControlNet
has no effect); here they are randomised so stage 2 really depends on its control image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from fbupscale_gui.engine.lora.train_checkpoints import bfl_lora_layers

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "TINY_HEADS",
    "TINY_HEAD_DIM",
    "TinyFluxFiles",
    "build_tiny_components",
    "build_tiny_controlnet",
    "make_tiny_flux_files",
    "make_tiny_lora",
    "save_tiny_flux",
    "tiny_cutout",
]

TINY_HEADS: Final = 2
TINY_HEAD_DIM: Final = 16
_TEXT_DIM: Final = 32
_WORDS: Final = [
    "a",
    "the",
    "of",
    "and",
    "with",
    "on",
    "in",
    "is",
    "his",
    "her",
    "player",
    "players",
    "football",
    "soccer",
    "match",
    "pitch",
    "field",
    "goal",
    "goalkeeper",
    "striker",
    "defender",
    "ball",
    "shirt",
    "jersey",
    "shorts",
    "socks",
    "number",
    "kit",
    "home",
    "away",
    "red",
    "blue",
    "green",
    "white",
    "black",
    "yellow",
    "orange",
    "purple",
    "striped",
    "running",
    "diving",
    "kicking",
    "save",
    "crowd",
    "stadium",
    "grass",
    "lines",
    "broadcast",
    "frame",
    "sharp",
    "detailed",
    "photo",
    "photograph",
    "high",
    "quality",
]


def _tokenizers() -> tuple[Any, Any]:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>", "<s>"]
    words = [*specials, *_WORDS, *(str(i) for i in range(100))]
    vocab = {w: i for i, w in enumerate(words)}

    def build(template: str, max_length: int) -> Any:
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.post_processor = processors.TemplateProcessing(
            single=template, special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="<unk>",
            pad_token="<pad>",
            eos_token="</s>",
            bos_token="<s>",
            model_max_length=max_length,
        )

    return build("<s> $A </s>", 77), build("$A </s>", 512)


def build_tiny_components(seed: int = 0) -> dict[str, Any]:
    """The components of a FluxImg2ImgPipeline (float32, CPU), deterministic from ``seed``."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    tokenizer, tokenizer_2 = _tokenizers()
    vocab_size = len(tokenizer.get_vocab())
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=_TEXT_DIM,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=1,
            projection_dim=_TEXT_DIM,
            max_position_embeddings=77,
            bos_token_id=3,
            eos_token_id=1,
            pad_token_id=0,
        )
    )
    torch.manual_seed(seed + 1)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=_TEXT_DIM,
            d_kv=8,
            d_ff=37,
            num_layers=1,
            num_heads=4,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
        )
    )
    torch.manual_seed(seed + 2)
    transformer = FluxTransformer2DModel(**_tiny_dit_config())
    torch.manual_seed(seed + 3)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(4, 8),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    for module in (text_encoder, text_encoder_2, transformer, vae):
        cast(Any, module).eval()
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": tokenizer_2,
        "transformer": transformer,
    }


def _tiny_dit_config() -> dict[str, Any]:
    """The 1+1-block DiT shared by the tiny transformer and its ControlNet: the ControlNet's
    residuals are added to the transformer's blocks, so the two must match exactly."""
    return {
        "patch_size": 1,
        "in_channels": 64,
        "num_layers": 1,
        "num_single_layers": 1,
        "attention_head_dim": TINY_HEAD_DIM,
        "num_attention_heads": TINY_HEADS,
        "joint_attention_dim": _TEXT_DIM,
        "pooled_projection_dim": _TEXT_DIM,
        "guidance_embeds": True,
        "axes_dims_rope": (4, 6, 6),
    }


def build_tiny_controlnet(seed: int = 0) -> Any:
    """A tiny FluxControlNetModel whose zero-initialised output layers are randomised."""
    import torch
    from diffusers import FluxControlNetModel

    torch.manual_seed(seed + 10)
    controlnet: Any = FluxControlNetModel(**_tiny_dit_config())
    controlnet.eval()
    generator = torch.Generator().manual_seed(seed + 11)
    zeroed = [
        *controlnet.controlnet_blocks,
        *controlnet.controlnet_single_blocks,
        controlnet.controlnet_x_embedder,
    ]
    with torch.no_grad():
        for linear in zeroed:
            fan_in = linear.weight.shape[1]
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator) / fan_in**0.5)
            linear.bias.copy_(torch.randn(linear.bias.shape, generator=generator) * 0.02)
    return controlnet


def save_tiny_flux(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a tiny FLUX folder and ControlNet folder under ``directory``; return both paths."""
    from diffusers import FluxImg2ImgPipeline

    root = Path(directory)
    flux_dir, controlnet_dir = root / "FLUX.1-dev", root / "Flux.1-dev-Controlnet-Upscaler"
    pipe: Any = FluxImg2ImgPipeline(**build_tiny_components(seed))
    pipe.save_pretrained(flux_dir)
    build_tiny_controlnet(seed).save_pretrained(controlnet_dir)
    return flux_dir, controlnet_dir


def make_tiny_lora(
    transformer: Any,
    path: str | Path,
    fmt: Literal["diffusers", "kohya"] = "diffusers",
    rank: int = 4,
    seed: int = 0,
    strength: float = 0.5,
) -> Path:
    """Write a random LoRA for ``transformer`` to ``path`` (a ``.safetensors`` file).

    ``fmt="kohya"`` writes the real Kohya/BFL key names for this architecture (fused qkv,
    ``linear1``, ``.alpha`` = rank / 2); ``"diffusers"`` writes ``transformer.<module>.lora_A``
    keys. Both describe LoRAs with a clearly visible effect.
    """
    import torch
    from safetensors.torch import save_file

    modules = dict(transformer.named_modules())
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for bfl, targets in bfl_lora_layers(transformer, with_globals=True):
        in_features = int(modules[targets[0]].in_features)
        widths = [int(modules[t].out_features) for t in targets]
        down = torch.randn(rank, in_features, generator=generator) / in_features**0.5
        up = torch.randn(sum(widths), rank, generator=generator) * strength / rank**0.5
        if fmt == "kohya":
            tensors[f"lora_unet_{bfl}.lora_down.weight"] = down
            # alpha = rank / 2 halves the effect; compensate so both formats are equally strong
            tensors[f"lora_unet_{bfl}.lora_up.weight"] = up * 2.0
            tensors[f"lora_unet_{bfl}.alpha"] = torch.tensor(rank / 2.0)
        else:
            for target, chunk in zip(targets, up.split(widths, dim=0), strict=True):
                tensors[f"transformer.{target}.lora_A.weight"] = down.clone()
                tensors[f"transformer.{target}.lora_B.weight"] = chunk.contiguous()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out))
    return out


@dataclass(frozen=True)
class TinyFluxFiles:
    """Saved tiny models: FLUX folder, ControlNet folder and one LoRA file per format."""

    flux_dir: Path
    controlnet_dir: Path
    lora_diffusers: Path
    lora_kohya: Path


def make_tiny_flux_files(directory: str | Path, seed: int = 0) -> TinyFluxFiles:
    """Save the tiny FLUX, ControlNet and two LoRAs (diffusers and Kohya) under ``directory``."""
    root = Path(directory)
    flux_dir, controlnet_dir = save_tiny_flux(root, seed)
    transformer = build_tiny_components(seed)["transformer"]
    return TinyFluxFiles(
        flux_dir=flux_dir,
        controlnet_dir=controlnet_dir,
        lora_diffusers=make_tiny_lora(
            transformer, root / "lora_diffusers.safetensors", "diffusers", seed=seed + 100
        ),
        lora_kohya=make_tiny_lora(
            transformer, root / "lora_kohya.safetensors", "kohya", seed=seed + 200
        ),
    )


def tiny_cutout(width: int = 48, height: int = 64, seed: int = 0) -> Image.Image:
    """A small synthetic RGB cutout (a striped "player" on green), deterministic from ``seed``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), dtype=np.float32)
    img[...] = (40, 130, 50)
    x0, x1 = width // 3, 2 * width // 3
    y0, y1 = height // 5, 4 * height // 5
    img[y0:y1, x0:x1] = (200, 30, 30)
    img[y0:y1:4, x0:x1] = (240, 240, 240)
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def save_tiny_transformer_file(
    transformer: Any,
    path: str | Path,
    *,
    layout: Literal["bfl", "comfy"] = "bfl",
    quant: Literal["none", "fp8_e4m3fn", "fp8_scaled"] = "none",
) -> Path:
    """Write ``transformer`` as a single-file checkpoint in BFL or ComfyUI key layout.

    ``fp8_e4m3fn`` stores 2-D weights in float8; ``fp8_scaled`` stores them as ComfyUI does,
    divided by a per-weight ``scale_weight`` (plus the ``scaled_fp8`` marker), so a loader
    that ignores the scales reads wrong weights.
    """
    import torch
    from safetensors.torch import save_file

    from fbupscale_gui.engine.flux.files import COMFY_PREFIX, diffusers_to_bfl

    state = diffusers_to_bfl({k: v.detach().clone() for k, v in transformer.state_dict().items()})
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if quant != "none" and key.endswith(".weight") and value.ndim == 2:
            if quant == "fp8_scaled":
                scale = value.abs().max().float() / 448.0
                out[key[: -len("weight")] + "scale_weight"] = scale.reshape(1)
                value = value / scale
            value = value.to(torch.float8_e4m3fn)
        out[key] = value.contiguous()
    if quant == "fp8_scaled":
        out["scaled_fp8"] = torch.zeros(0, dtype=torch.float8_e4m3fn)
    if layout == "comfy":
        out = {COMFY_PREFIX + k: v for k, v in out.items()}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(target))
    return target


def save_tiny_gguf(transformer: Any, path: str | Path, quant: str = "Q8_0") -> Path:
    """Write ``transformer`` as a city96-style GGUF: BFL keys, 2-D weights quantised."""
    import gguf
    import numpy as np

    from fbupscale_gui.engine.flux.files import diffusers_to_bfl

    qtype = gguf.GGMLQuantizationType[quant]
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    state = diffusers_to_bfl({k: v.detach().float() for k, v in transformer.state_dict().items()})
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(target), arch="flux")
    for key, value in state.items():
        data = value.numpy().astype(np.float32)
        if data.ndim == 2 and data.shape[1] % block == 0:
            writer.add_tensor(key, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(key, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def tiny_request(files: TinyFluxFiles, cutout: str | Path, **changes: Any) -> Any:
    """A FLUX request for the tiny models at tiny settings: 64 px, stage 1 4 x 0.75 = 3
    steps, stage 2 2 steps, no LoRA; ``cutout`` is written first when it does not exist."""
    from fbupscale_gui.core.request import (
        CONTROLNET_REPO_ID,
        FLUX_REPO_ID,
        LoraParams,
        ModelRef,
        Preprocess,
        ReconstructionRequest,
        Stage1Params,
        Stage2Params,
    )
    from fbupscale_gui.storage.cutouts import make_source

    path = Path(cutout)
    if not path.exists():
        tiny_cutout(40, 64, seed=3).save(path)
    request = ReconstructionRequest(
        source=make_source(path),
        prompt="a goalkeeper in a green shirt",
        preprocess=Preprocess(size=64),
        stage1=Stage1Params(steps=4, strength=0.75),
        stage2=Stage2Params(steps=2),
        flux=ModelRef(path=str(files.flux_dir), repo_id=FLUX_REPO_ID),
        controlnet=ModelRef(path=str(files.controlnet_dir), repo_id=CONTROLNET_REPO_ID),
        lora=LoraParams(model=None),
    )
    return request.replace(**changes)
