"""Train a football LoRA for the FLUX transformer (paper 3.3.2), with diffusers and PEFT.

The method is sd-scripts' ``flux_train_network.py`` as the paper ran it (Code 6):

* a LoRA on every linear layer of the double and single blocks (``network_train_unet_only``),
  rank and alpha 8 / 8, AdamW at lr 1e-4 (8-bit AdamW where bitsandbytes and CUDA exist);
* bf16 autocast where the device supports it, gradient checkpointing;
* latents (VAE mean) and text-encoder outputs computed once and cached on disk, each file named
  by the SHA-256 of what it depends on (image bytes or caption, bucket, model files), so a
  second run or a resumed one never loads the VAE or the text encoders again;
* the rectified-flow loss: ``x_t = (1 - t) x_0 + t noise``, target ``noise - x_0``, raw model
  prediction, MSE; ``t = shift(sigmoid(n))`` with ``n ~ N(0, 1)`` and the paper's
  ``discrete_flow_shift`` 3.1582 (``t' = s t / (1 + (s - 1) t)``); guidance 1.0;
* images resized and centre-cropped to aspect buckets of about ``resolution²`` pixels, batches
  drawn within a bucket.

Checkpoints are written every N epochs in the Kohya/BFL layout that :mod:`.lora` reads
(``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`` ...): PEFT's separate q/k/v
adapters are joined exactly into the fused layer (``down`` stacked, ``up`` block-diagonal, alpha
multiplied so ``alpha / rank`` is unchanged). Next to the output a ``.state.pt`` file keeps the
adapter, the optimizer state and the step, so a killed run resumes where its last checkpoint
was. :func:`train_lora` checks ``is_cancelled`` after every step (and every cached item) and
then saves a resume state. Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from fbupscale_gui.core.errors import Cancelled, RequestError
from fbupscale_gui.core.lora_dataset import DISCRETE_FLOW_SHIFT
from fbupscale_gui.engine.lora_convert import BFL_DOUBLE_BLOCK, BFL_GLOBAL, BFL_SINGLE_BLOCK
from fbupscale_gui.storage.atomic import atomic_write_bytes
from fbupscale_gui.storage.lora_dataset_files import METADATA_NAME, frame_size, read_metadata

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "TrainConfig",
    "TrainEstimate",
    "TrainResult",
    "bfl_lora_layers",
    "estimate",
    "flow_timesteps",
    "peft_to_kohya",
    "state_path_for",
    "train_lora",
]

Event = dict[str, Any]
_STATE_VERSION: Final = 1
_ADAPTER: Final = "football_lora"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run. Defaults are the paper's, except ``resolution``
    (512 here; the paper trains at 1024) and ``batch_size`` (1; the paper uses 4)."""

    flux: Path
    dataset: Path
    output: Path
    steps: int | None = None  # None: epochs * steps per epoch
    epochs: int = 10
    rank: int = 8
    alpha: float = 8.0
    learning_rate: float = 1e-4
    resolution: int = 512
    batch_size: int = 1
    num_repeats: int = 1
    save_every_n_epochs: int = 2
    save_every_n_steps: int = 0  # 0: only every N epochs
    shift: float = DISCRETE_FLOW_SHIFT
    guidance: float = 1.0
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    qlora: bool = False
    gradient_checkpointing: bool = True
    flip: bool = False
    max_sequence_length: int = 512
    cache_dir: Path | None = None
    resume: bool = True

    def __post_init__(self) -> None:
        if self.rank < 1 or self.rank > 256:
            raise RequestError("rank: must be 1..256")
        if not 0 < self.alpha <= self.rank:
            raise RequestError(f"alpha: must be above 0 and at most the rank ({self.rank})")
        if not 0 < self.learning_rate < 1:
            raise RequestError("learning rate: must be between 0 and 1")
        if self.resolution < 16 or self.resolution > 4096:
            raise RequestError("resolution: must be 16..4096 pixels")
        if self.steps is not None and self.steps < 1:
            raise RequestError("steps: must be at least 1")
        for name in ("epochs", "batch_size", "num_repeats", "save_every_n_epochs"):
            if getattr(self, name) < 1:
                raise RequestError(f"{name.replace('_', ' ')}: must be at least 1")
        if self.save_every_n_steps < 0:
            raise RequestError("save every n steps: must be 0 or more")
        if self.output.suffix != ".safetensors":
            raise RequestError(f"{self.output}: the LoRA must be written as .safetensors")

    def fingerprint(self, dataset_sha: str) -> str:
        """What a resume must match: everything but the step count, paths to outputs, device."""
        keep = {
            k: str(v)
            for k, v in asdict(self).items()
            if k not in ("steps", "epochs", "output", "save_every_n_epochs", "save_every_n_steps")
            and k not in ("device", "cache_dir", "resume", "dataset")
        }
        keep["dataset_sha"] = dataset_sha
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class TrainEstimate:
    """Time and memory a run will take, computed before it starts (rough: +-50 %)."""

    steps: int
    steps_per_epoch: int
    images: int
    trainable_params: int
    base_params: int
    peak_memory_bytes: int
    seconds_per_step: float
    #: The same from FLOPs and measured matmul speed (too low for tiny, overhead-bound models).
    flops_seconds_per_step: float
    total_seconds: float
    device: str
    precision: str
    optimizer: str


@dataclass
class TrainResult:
    output: Path
    steps_done: int
    resumed_from: int
    losses: list[float] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)


def flow_timesteps(noise: torch.Tensor, shift: float) -> torch.Tensor:
    """sd-scripts' ``shift`` sampling: ``sigmoid(n)`` mapped by ``s t / (1 + (s - 1) t)``."""
    t = noise.sigmoid()
    return (t * shift) / (1 + (shift - 1) * t)


def bfl_lora_layers(
    transformer: Any, *, with_globals: bool = False
) -> list[tuple[str, tuple[str, ...]]]:
    """(underscored BFL layer, diffusers module paths) for every LoRA layer of this model."""
    layers: list[tuple[str, tuple[str, ...]]] = []
    for i in range(len(transformer.transformer_blocks)):
        for name, targets in BFL_DOUBLE_BLOCK.items():
            layers.append(
                (f"double_blocks_{i}_{name}", tuple(f"transformer_blocks.{i}.{t}" for t in targets))
            )
    for i in range(len(transformer.single_transformer_blocks)):
        for name, targets in BFL_SINGLE_BLOCK.items():
            layers.append(
                (
                    f"single_blocks_{i}_{name}",
                    tuple(f"single_transformer_blocks.{i}.{t}" for t in targets),
                )
            )
    if with_globals:
        for name in ("img_in", "txt_in", "final_layer_linear"):
            layers.append((name, (BFL_GLOBAL[name],)))
    return layers


def peft_to_kohya(
    peft_state: dict[str, torch.Tensor],
    layers: Sequence[tuple[str, tuple[str, ...]]],
    alpha: float,
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """PEFT adapter weights (``<module>.lora_A.weight`` ...) as Kohya/BFL keys.

    A fused BFL layer over k modules gets ``down = [A_1; ...; A_k]`` (rank k r) and a
    block-diagonal ``up``, with alpha k * alpha: the same update, exactly.
    """
    import torch

    out: dict[str, torch.Tensor] = {}
    for bfl, targets in layers:
        a_list = [peft_state.get(f"{t}.lora_A.weight") for t in targets]
        b_list = [peft_state.get(f"{t}.lora_B.weight") for t in targets]
        if any(x is None for x in (*a_list, *b_list)):
            continue
        downs = [x for x in a_list if x is not None]
        ups = [x for x in b_list if x is not None]
        down = torch.cat(downs, dim=0)
        up = torch.block_diag(*ups) if len(ups) > 1 else ups[0]
        cast = dtype or down.dtype
        out[f"lora_unet_{bfl}.lora_down.weight"] = down.detach().to("cpu", cast).contiguous()
        out[f"lora_unet_{bfl}.lora_up.weight"] = up.detach().to("cpu", cast).contiguous()
        out[f"lora_unet_{bfl}.alpha"] = torch.tensor(float(alpha) * len(targets))
    return out


def state_path_for(output: Path) -> Path:
    """The resume state kept next to a LoRA being trained."""
    return output.with_name(output.stem + ".state.pt")


# -- data -------------------------------------------------------------------------------------


def _bucket(size: tuple[int, int], resolution: int, step: int) -> tuple[int, int]:
    """(w, h), multiples of ``step``, about ``resolution²`` pixels, the image's aspect."""
    w, h = size
    aspect = w / h
    area = resolution * resolution
    bw = max(step, int(math.sqrt(area * aspect)) // step * step)
    bh = max(step, int(bw / aspect) // step * step)
    while bw * bh > area and bw > step:
        bw -= step
        bh = max(step, int(bw / aspect) // step * step)
    return bw, bh


def _fit(img: Image.Image, bucket: tuple[int, int]) -> Image.Image:
    from PIL import ImageOps

    return ImageOps.fit(img, bucket, method=3, centering=(0.5, 0.5))  # 3: BICUBIC


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model_fingerprint(folder: Path, sub: Sequence[str]) -> str:
    """Identity of a diffusers folder's parts: config text plus weight names, sizes, mtimes."""
    h = hashlib.sha256()
    for name in sub:
        part = folder / name
        if not part.exists():
            continue
        for f in sorted(part.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}".encode())
                if f.suffix == ".json" and st.st_size < 1_000_000:
                    h.update(f.read_bytes())
    return h.hexdigest()


@dataclass
class _Item:
    path: Path
    caption: str
    image_sha: str
    caption_sha: str
    bucket: tuple[int, int]
    flip: bool = False


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.contiguous().cpu() for k, v in tensors.items()}))


def _load_tensors(path: Path) -> dict[str, torch.Tensor] | None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (FileNotFoundError, SafetensorError, OSError):
        return None


# -- the trainer ------------------------------------------------------------------------------


def _resolve(config: TrainConfig) -> tuple[str, str, Any]:
    import torch

    from fbupscale_gui.engine.devices import _cuda_available

    if config.device == "cuda" and not _cuda_available():
        raise RequestError("device: CUDA was requested but no CUDA GPU is available")
    device = "cuda:0" if config.device != "cpu" and _cuda_available() else "cpu"
    cuda = device.startswith("cuda")
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if config.precision == "bf16" and not bf16_ok:
        raise RequestError("precision: bf16 training needs a CUDA GPU that supports bf16")
    precision = (
        "bf16"
        if (config.precision == "bf16" or (config.precision == "auto" and bf16_ok))
        else "fp32"
    )
    if config.qlora and not (cuda and _bnb_available()):
        raise RequestError(
            "qlora: the NF4 base needs a CUDA GPU and the bitsandbytes package; "
            "train without --qlora here"
        )
    return device, precision, torch.bfloat16 if precision == "bf16" else torch.float32


def _bnb_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def _matmul_flops(device: str, dtype: Any) -> float:
    """Measured dense matmul throughput on ``device`` (FLOP/s), about 0.2 s of work."""
    import torch

    n = 512 if device == "cpu" else 4096
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    (a @ b).sum().item()
    reps, start = 0, time.perf_counter()
    while True:
        (a @ b).sum().item()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed > 0.15 or reps >= 200:
            return 2 * n**3 * reps / max(elapsed, 1e-9)


def estimate(
    transformer: Any,
    config: TrainConfig,
    items: int,
    steps: int,
    steps_per_epoch: int,
    device: str,
    precision: str,
    optimizer: str,
    *,
    measured_step_s: float | None = None,
) -> TrainEstimate:
    """Memory from parameter counts and token counts. Time from ``measured_step_s`` (one timed
    forward and backward pass) when given, else from FLOPs over measured matmul throughput
    (half of it: training is never pure matmul); both are in the estimate."""
    import torch

    base = sum(p.numel() for p in transformer.parameters())
    trainable = sum(p.numel() for p in transformer.parameters() if p.requires_grad)
    cfg = transformer.config
    hidden = int(cfg.num_attention_heads * cfg.attention_head_dim)
    blocks = int(cfg.num_layers + cfg.num_single_layers)
    img_tokens = (config.resolution // 16) ** 2
    tokens = img_tokens + config.max_sequence_length
    width = 0.5 if config.qlora else (2 if precision == "bf16" else 4)
    opt_bytes = 2 if optimizer == "adamw8bit" else 8
    act_bytes = 2 if precision == "bf16" else 4
    per_token = hidden * act_bytes * config.batch_size
    activations = (
        tokens * per_token * (blocks * 2 if config.gradient_checkpointing else blocks * 24)
    )
    activations += tokens * per_token * 24  # one block recomputed at a time
    attn = config.batch_size * int(cfg.num_attention_heads) * tokens * tokens * act_bytes
    peak = int(base * width + trainable * (4 + 4 + opt_bytes) + activations + attn)
    dense = 2 * base * tokens * config.batch_size
    attention = 4 * tokens * tokens * hidden * blocks * config.batch_size
    passes = 4 if config.gradient_checkpointing else 3  # forward, backward (2x), recompute
    flops = (dense + attention) * passes
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    flops_per_step = flops / (0.5 * _matmul_flops(device, dtype))
    per_step = measured_step_s if measured_step_s is not None else flops_per_step
    return TrainEstimate(
        steps=steps,
        steps_per_epoch=steps_per_epoch,
        images=items,
        trainable_params=trainable,
        base_params=base,
        peak_memory_bytes=peak,
        seconds_per_step=per_step,
        flops_seconds_per_step=flops_per_step,
        total_seconds=per_step * steps,
        device=device,
        precision="nf4" if config.qlora else precision,
        optimizer=optimizer,
    )


class _Trainer:
    def __init__(
        self,
        config: TrainConfig,
        on_event: Callable[[Event], None],
        is_cancelled: Callable[[], bool],
    ) -> None:
        self.config = config
        self.emit = on_event
        self.is_cancelled = is_cancelled
        self.cache = config.cache_dir or (config.dataset / ".cache")
        self.state_path = state_path_for(config.output)

    def check(self) -> None:
        if self.is_cancelled():
            raise Cancelled("training cancelled")

    # data -------------------------------------------------------------------------------

    def items(self, vae_step: int) -> list[_Item]:
        pairs = read_metadata(self.config.dataset)
        items = []
        for path, caption in pairs:
            data = path.read_bytes()
            size = frame_size(path)
            bucket = _bucket(size, self.config.resolution, vae_step)
            base = _Item(path, caption, _sha(data), _sha(caption.encode()), bucket)
            items.append(base)
            if self.config.flip:
                items.append(_Item(path, caption, base.image_sha, base.caption_sha, bucket, True))
        return items

    def batches(self, items: list[_Item], epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.config.seed}:{epoch}")
        order = [i for i in range(len(items)) for _ in range(self.config.num_repeats)]
        rng.shuffle(order)
        by_bucket: dict[tuple[int, int], list[int]] = {}
        for i in order:
            by_bucket.setdefault(items[i].bucket, []).append(i)
        batches = []
        for idx in by_bucket.values():
            for k in range(0, len(idx), self.config.batch_size):
                batches.append(idx[k : k + self.config.batch_size])
        rng.shuffle(batches)
        return batches

    def latent_key(self, item: _Item, vae_fp: str) -> str:
        return _sha(f"{item.image_sha}:{item.bucket}:{item.flip}:{vae_fp}".encode())

    def text_key(self, item: _Item, te_fp: str) -> str:
        return _sha(f"{item.caption_sha}:{self.config.max_sequence_length}:{te_fp}".encode())

    def cache_latents(self, items: list[_Item], vae_fp: str, device: str, dtype: Any) -> None:
        import torch
        from diffusers import AutoencoderKL
        from PIL import Image, ImageOps

        todo = [
            it
            for it in items
            if not (self.cache / "latents" / f"{self.latent_key(it, vae_fp)}.safetensors").is_file()
        ]
        self.emit(
            {
                "event": "cache",
                "kind": "latents",
                "new": len(todo),
                "cached": len(items) - len(todo),
            }
        )
        if not todo:
            return
        vae: Any = AutoencoderKL.from_pretrained(
            str(self.config.flux), subfolder="vae", local_files_only=True, torch_dtype=dtype
        ).to(device)
        vae.requires_grad_(False)
        shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)
        scale = float(vae.config.scaling_factor)
        with torch.no_grad():
            for n, it in enumerate(todo):
                self.check()
                with Image.open(it.path) as opened:
                    img = ImageOps.exif_transpose(opened).convert("RGB")
                img = _fit(img, it.bucket)
                if it.flip:
                    img = ImageOps.mirror(img)
                import numpy as np

                arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
                x = arr.permute(2, 0, 1).unsqueeze(0).to(device, dtype)
                lat = vae.encode(x).latent_dist.mode()
                lat = (lat - shift) * scale
                _save_tensors(
                    self.cache / "latents" / f"{self.latent_key(it, vae_fp)}.safetensors",
                    {"latents": lat[0].float()},
                )
                self.emit({"event": "cache", "kind": "latents", "done": n + 1, "of": len(todo)})
        del vae

    def cache_text(self, items: list[_Item], te_fp: str, device: str, dtype: Any) -> None:
        import torch
        from diffusers import FluxPipeline

        unique: dict[str, _Item] = {}
        for it in items:
            key = self.text_key(it, te_fp)
            if not (self.cache / "text" / f"{key}.safetensors").is_file():
                unique.setdefault(key, it)
        self.emit({"event": "cache", "kind": "text", "new": len(unique)})
        if not unique:
            return
        pipe: Any = FluxPipeline.from_pretrained(
            str(self.config.flux),
            transformer=None,
            vae=None,
            local_files_only=True,
            torch_dtype=dtype,
        )
        pipe.text_encoder.to(device)
        pipe.text_encoder_2.to(device)
        with torch.no_grad():
            for n, (key, it) in enumerate(unique.items()):
                self.check()
                embeds, pooled, _ids = pipe.encode_prompt(
                    prompt=it.caption,
                    prompt_2=it.caption,
                    device=torch.device(device),
                    max_sequence_length=self.config.max_sequence_length,
                )
                _save_tensors(
                    self.cache / "text" / f"{key}.safetensors",
                    {"embeds": embeds[0].float(), "pooled": pooled[0].float()},
                )
                self.emit({"event": "cache", "kind": "text", "done": n + 1, "of": len(unique)})
        del pipe

    # model ------------------------------------------------------------------------------

    def load_transformer(self, dtype: Any, device: str) -> Any:
        from diffusers import FluxTransformer2DModel

        kwargs: dict[str, Any] = {"local_files_only": True, "torch_dtype": dtype}
        if self.config.qlora:
            from diffusers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            )
        transformer: Any = FluxTransformer2DModel.from_pretrained(
            str(self.config.flux), subfolder="transformer", **kwargs
        )
        if not self.config.qlora:
            transformer.to(device)
        transformer.requires_grad_(False)
        if self.config.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        return transformer

    def add_lora(self, transformer: Any) -> list[tuple[str, tuple[str, ...]]]:
        from peft import LoraConfig

        layers = bfl_lora_layers(transformer)
        targets = [t for _, ts in layers for t in ts]
        transformer.add_adapter(
            LoraConfig(
                r=self.config.rank,
                lora_alpha=cast(Any, self.config.alpha),  # PEFT takes any number
                init_lora_weights=True,
                target_modules=targets,
            ),
            adapter_name=_ADAPTER,
        )
        for p in transformer.parameters():
            if p.requires_grad:
                p.data = p.data.float()
        return layers

    # checkpoints ------------------------------------------------------------------------

    def peft_state(self, transformer: Any) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(transformer, adapter_name=_ADAPTER)
        return {k: v.detach().cpu().float() for k, v in state.items()}

    def save_lora(self, path: Path, transformer: Any, layers: Any, step: int, epoch: int) -> Path:
        import torch
        from safetensors.torch import save

        tensors = peft_to_kohya(
            self.peft_state(transformer), layers, self.config.alpha, torch.bfloat16
        )
        metadata = {
            "ss_network_module": "networks.lora_flux",
            "ss_network_dim": str(self.config.rank),
            "ss_network_alpha": f"{self.config.alpha:g}",
            "ss_base_model_version": "flux1",
            "ss_learning_rate": f"{self.config.learning_rate:g}",
            "ss_discrete_flow_shift": f"{self.config.shift:g}",
            "ss_guidance_scale": f"{self.config.guidance:g}",
            "ss_steps": str(step),
            "ss_epoch": str(epoch),
            "fbupscale_trainer": "fbupscale lora train",
        }
        atomic_write_bytes(path, save(tensors, metadata=metadata))
        return path

    def save_state(
        self, transformer: Any, optimizer: Any, step: int, fingerprint: str, losses: list[float]
    ) -> None:
        import torch

        buf = io.BytesIO()
        torch.save(
            {
                "version": _STATE_VERSION,
                "fingerprint": fingerprint,
                "step": step,
                "lora": self.peft_state(transformer),
                "optimizer": optimizer.state_dict(),
                "losses": losses[-1000:],
            },
            buf,
        )
        atomic_write_bytes(self.state_path, buf.getvalue())

    def load_state(self, fingerprint: str) -> dict[str, Any] | None:
        import torch

        if not self.config.resume or not self.state_path.is_file():
            return None
        try:
            state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged state file is reported, never half-used
            raise RequestError(
                f"{self.state_path}: unreadable training state ({type(exc).__name__}); delete "
                "it to start again"
            ) from None
        if state.get("version") != _STATE_VERSION or state.get("fingerprint") != fingerprint:
            raise RequestError(
                f"{self.state_path}: a training state for other settings or another dataset "
                "exists; use the same settings to resume, or delete it to start again"
            )
        return dict(state)

    # loop -------------------------------------------------------------------------------

    def run(self, *, estimate_only: bool = False) -> TrainResult:
        import torch
        from diffusers import FluxPipeline

        config = self.config
        if not (config.dataset / METADATA_NAME).is_file():
            raise RequestError(
                f"{config.dataset}: not a built dataset (no {METADATA_NAME}); run "
                "fbupscale lora dataset FOLDER -o OUT first"
            )
        device, precision, dtype = _resolve(config)
        torch.manual_seed(config.seed)
        vae_cfg = json.loads((config.flux / "vae" / "config.json").read_text())
        vsf = 2 ** (len(vae_cfg.get("block_out_channels", [0, 0, 0, 0])) - 1)
        items = self.items(vsf * 8)
        dataset_sha = _sha(
            json.dumps([(i.image_sha, i.caption_sha, i.flip) for i in items]).encode()
        )
        fingerprint = config.fingerprint(dataset_sha)
        vae_fp = _model_fingerprint(config.flux, ["vae"])
        te_fp = _model_fingerprint(
            config.flux, ["text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"]
        )
        self.cache_latents(items, vae_fp, device, dtype)
        self.cache_text(items, te_fp, device, dtype)

        transformer = self.load_transformer(dtype, device)
        layers = self.add_lora(transformer)
        params = [p for p in transformer.parameters() if p.requires_grad]
        optimizer: Any
        if device.startswith("cuda") and _bnb_available():
            import bitsandbytes as bnb

            optimizer = bnb.optim.AdamW8bit(params, lr=config.learning_rate, weight_decay=0.01)
            opt_name = "adamw8bit"
        else:
            optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
            opt_name = "adamw"
        steps_per_epoch = len(self.batches(items, 0))
        total = config.steps or steps_per_epoch * config.epochs
        latents: dict[str, torch.Tensor] = {}
        texts: dict[str, dict[str, torch.Tensor]] = {}
        for it in items:
            lk, tk = self.latent_key(it, vae_fp), self.text_key(it, te_fp)
            lat = _load_tensors(self.cache / "latents" / f"{lk}.safetensors")
            txt = _load_tensors(self.cache / "text" / f"{tk}.safetensors")
            if lat is None or txt is None:
                raise RequestError(
                    f"{self.cache}: a cached latent or caption is unreadable; delete the cache folder"
                )
            latents[lk], texts[tk] = lat["latents"], txt
        transformer.train()
        guidance_on = bool(transformer.config.guidance_embeds)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if precision == "bf16"
            else torch.autocast("cpu", enabled=False)
        )
        epoch_batches: dict[int, list[list[int]]] = {}

        def loss_for(step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
            """The flow-matching loss of training step ``step`` (deterministic), its t, epoch."""
            nonlocal epoch_batches
            epoch, index = divmod(step, steps_per_epoch)
            if epoch not in epoch_batches:
                epoch_batches = {epoch: self.batches(items, epoch)}
            batch = [items[i] for i in epoch_batches[epoch][index]]
            x0 = torch.stack([latents[self.latent_key(it, vae_fp)] for it in batch]).to(device)
            emb = torch.stack([texts[self.text_key(it, te_fp)]["embeds"] for it in batch]).to(
                device, dtype
            )
            pooled = torch.stack([texts[self.text_key(it, te_fp)]["pooled"] for it in batch]).to(
                device, dtype
            )
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            t = flow_timesteps(torch.randn(len(batch), generator=gen), config.shift).to(device)
            tt = t.view(-1, 1, 1, 1)
            noisy = (1 - tt) * x0 + tt * noise
            b, c, h, w = noisy.shape
            packed = FluxPipeline._pack_latents(noisy, b, c, h, w).to(dtype)
            img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, device, dtype)
            txt_ids = torch.zeros(emb.shape[1], 3, device=device, dtype=dtype)
            guidance = torch.full((b,), config.guidance, device=device) if guidance_on else None
            with autocast:
                pred = transformer(
                    hidden_states=packed,
                    timestep=t.to(dtype),
                    guidance=guidance,
                    pooled_projections=pooled,
                    encoder_hidden_states=emb,
                    txt_ids=txt_ids,
                    img_ids=img_ids,
                    return_dict=False,
                )[0]
            pred = FluxPipeline._unpack_latents(pred, h * vsf, w * vsf, vsf)
            return torch.nn.functional.mse_loss(pred.float(), (noise - x0).float()), t, epoch

        # Estimate first: one timed forward and backward pass (no update), scaled to the run.
        timer = time.perf_counter()
        loss_for(0)[0].backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        measured = time.perf_counter() - timer
        optimizer.zero_grad(set_to_none=True)
        est = estimate(
            transformer, config, len(items), total, steps_per_epoch, device, precision, opt_name,
            measured_step_s=measured,
        )  # fmt: skip
        self.emit({"event": "estimate", **asdict(est)})
        if estimate_only:
            return TrainResult(output=config.output, steps_done=0, resumed_from=0)

        start, losses = 0, []
        state = self.load_state(fingerprint)
        if state is not None:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(transformer, state["lora"], adapter_name=_ADAPTER)
            optimizer.load_state_dict(state["optimizer"])
            start, losses = int(state["step"]), [float(x) for x in state.get("losses", [])]
            self.emit({"event": "resumed", "step": start, "losses": list(losses)})
        result = TrainResult(
            output=config.output, steps_done=start, resumed_from=start, losses=losses
        )
        if start >= total:
            self.save_lora(config.output, transformer, layers, start, start // steps_per_epoch)
            self.emit({"event": "done", "step": start, "output": str(config.output)})
            return result

        began = time.perf_counter()
        step = start
        try:
            for step in range(start, total):
                loss, t, epoch = loss_for(step)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                value = float(loss.detach().item())
                losses.append(value)
                done = step + 1
                result.steps_done = done
                elapsed = time.perf_counter() - began
                rate = elapsed / (done - start)
                self.emit(
                    {
                        "event": "step",
                        "step": done,
                        "total": total,
                        "epoch": epoch + 1,
                        "loss": value,
                        "t": float(t.mean().item()),
                        "lr": config.learning_rate,
                        "elapsed_s": round(elapsed, 3),
                        "eta_s": round(rate * (total - done), 1),
                    }
                )
                epoch_end = done % steps_per_epoch == 0
                by_epoch = epoch_end and (done // steps_per_epoch) % config.save_every_n_epochs == 0
                by_step = config.save_every_n_steps and done % config.save_every_n_steps == 0
                if (by_epoch or by_step) and done < total:
                    ep = math.ceil(done / steps_per_epoch)
                    ckpt = config.output.with_name(f"{config.output.stem}-{done:06d}.safetensors")
                    self.save_lora(ckpt, transformer, layers, done, ep)
                    self.save_state(transformer, optimizer, done, fingerprint, losses)
                    result.checkpoints.append(ckpt)
                    self.emit({"event": "checkpoint", "step": done, "epoch": ep, "path": str(ckpt)})
                self.check()
        except Cancelled:
            self.save_state(transformer, optimizer, result.steps_done, fingerprint, losses)
            self.emit(
                {"event": "cancelled", "step": result.steps_done, "state": str(self.state_path)}
            )
            raise
        self.save_lora(
            config.output, transformer, layers, total, math.ceil(total / steps_per_epoch)
        )
        self.save_state(transformer, optimizer, total, fingerprint, losses)
        self.emit({"event": "done", "step": total, "output": str(config.output)})
        result.checkpoints.append(config.output)
        return result


def train_lora(
    config: TrainConfig,
    on_event: Callable[[Event], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    *,
    estimate_only: bool = False,
) -> TrainResult:
    """Train (or resume) a LoRA as ``config`` says; see the module docstring.

    ``on_event`` receives plain dicts (``event`` = ``estimate``, ``cache``, ``resumed``,
    ``step`` with ``step``/``loss``/``eta_s``, ``checkpoint``, ``cancelled``, ``done``).
    ``estimate_only`` stops after the estimate (the caches are filled, nothing is trained).
    Raises :class:`Cancelled` after saving a resume state when ``is_cancelled`` turns true,
    :class:`RequestError` for unusable settings, datasets or states.
    """
    trainer = _Trainer(config, on_event or (lambda e: None), is_cancelled or (lambda: False))
    return trainer.run(estimate_only=estimate_only)
