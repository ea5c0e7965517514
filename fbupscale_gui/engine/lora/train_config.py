"""What a LoRA training run is: its settings, its result, and its time and memory estimate.

Defaults are the paper's (sd-scripts' ``flux_train_network.py``, paper 3.3.2), except the
resolution and the batch size, which fit a single consumer GPU. :func:`estimate` is computed
before the run starts (rough: +-50 %).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.lora_dataset import DISCRETE_FLOW_SHIFT

__all__ = ["TrainConfig", "TrainEstimate", "TrainResult", "estimate"]


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
