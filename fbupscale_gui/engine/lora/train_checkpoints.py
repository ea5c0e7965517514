"""Checkpoints of a LoRA run: the LoRA in the Kohya/BFL layout, and the state to resume from.

Checkpoints are written in the Kohya/BFL layout that :mod:`fbupscale_gui.engine.lora.files` and :mod:`fbupscale_gui.engine.lora.convert`
read (``lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight`` ...): PEFT's separate q/k/v
adapters are joined exactly into the fused layer (``down`` stacked, ``up`` block-diagonal, alpha
multiplied so ``alpha / rank`` is unchanged). Next to the output a ``.state.pt`` file keeps the
adapter, the optimizer state and the step, so a killed run resumes where its last checkpoint
was. Every file is written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.engine.lora.convert import BFL_DOUBLE_BLOCK, BFL_GLOBAL, BFL_SINGLE_BLOCK
from fbupscale_gui.engine.lora.train_config import TrainConfig
from fbupscale_gui.storage.atomic import atomic_write_bytes

if TYPE_CHECKING:
    import torch

__all__ = ["ADAPTER_NAME", "Checkpoints", "bfl_lora_layers", "peft_to_kohya", "state_path_for"]

_STATE_VERSION: Final = 1
#: The name the LoRA being trained has in the transformer's PEFT config.
ADAPTER_NAME: Final = "football_lora"


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


class Checkpoints:
    """Writes the LoRA and the resume state of one run, and reads the state back."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.state_path = state_path_for(config.output)

    def peft_state(self, transformer: Any) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(transformer, adapter_name=ADAPTER_NAME)
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
