"""Seconds per denoising step at 1024 px for each memory mode, on a CUDA GPU, with no download.

Builds the full-size FLUX.1-dev transformer (19 double + 38 single blocks, 3072 wide) and a
FLUX ControlNet of the upscaler's size from their configs with random bf16 weights (meta-device
init, then ``to_empty`` and an in-place normal fill), and times the denoiser calls each stage
makes per step: stage 1 = transformer; stage 2 = ControlNet + transformer with its residuals.
Inputs are the real 1024 px shapes: 4096 image tokens, 512 T5 tokens. Text encoders and VAE run
once per image and are not part of the per-step figure.

Memory modes (as the engine applies them): none (everything resident), model (the whole
denoiser moved in before the steps and out after: the per-image transfer is reported
separately), group (diffusers block-level group offload), sequential (accelerate per-layer
offload; only 2 steps, it is slow). Peak VRAM is ``torch.cuda.max_memory_allocated``.

On a machine without CUDA it says so and exits 0. ``--tiny`` runs the same code on the tiny
test architecture (CPU allowed) to check the script itself.

    .venv/bin/python bench/flux_gpu.py [--steps 6] [--modes none,model,group,sequential]
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FLUX_CONFIG: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
# The upscaler ControlNet is about 2B parameters (3.58 GB bf16): 4 double + 2 single blocks of
# the FLUX width comes to that size; the printed parameter count lets you check it.
CONTROLNET_CONFIG: dict[str, Any] = {**FLUX_CONFIG, "num_layers": 4, "num_single_layers": 2}
TINY_CONFIG: dict[str, Any] = {
    **FLUX_CONFIG,
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 32,
    "axes_dims_rope": (4, 6, 6),
}


def build(cls: Any, config: dict[str, Any], dtype: Any, device: str, seed: int) -> Any:
    """A model from its config with random weights, without materialising fp32 copies."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device("meta"):
            model = cls(**config)
    finally:
        torch.set_default_dtype(previous)
    model = model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif param.ndim == 1:  # RMSNorm scales
                param.fill_(1.0)
            else:
                param.normal_(0.0, param.shape[-1] ** -0.5, generator=gen)
        for _, buf in model.named_buffers():
            buf.zero_()
    return model.eval()


def inputs(config: dict[str, Any], size: int, dtype: Any, device: str) -> dict[str, Any]:
    import torch

    side = size // 16  # VAE /8, then 2x2 packing
    tokens, text = side * side, 512
    g = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.zeros(side, side, 3)
    ids[..., 1] = torch.arange(side)[:, None]
    ids[..., 2] = torch.arange(side)[None, :]
    return {
        "hidden_states": torch.randn(1, tokens, config["in_channels"], generator=g).to(
            device, dtype
        ),
        "encoder_hidden_states": torch.randn(
            1, text, config["joint_attention_dim"], generator=g
        ).to(device, dtype),
        "pooled_projections": torch.randn(1, config["pooled_projection_dim"], generator=g).to(
            device, dtype
        ),
        "timestep": torch.tensor([0.5], device=device, dtype=dtype),
        "guidance": torch.tensor([3.5], device=device, dtype=dtype),
        "img_ids": ids.reshape(tokens, 3).to(device),
        "txt_ids": torch.zeros(text, 3, device=device),
    }


def time_steps(step: Callable[[], None], steps: int, sync: Callable[[], None]) -> float:
    step()  # warm-up (kernels, group-offload tracing)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--modes", default="none,model,group,sequential")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny architecture (checks the script; CPU allowed)"
    )
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print("No CUDA GPU on this machine: the FLUX GPU bench needs one. Nothing to measure.")
        return 0
    from diffusers import FluxControlNetModel, FluxTransformer2DModel

    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    flux_cfg = TINY_CONFIG if args.tiny else FLUX_CONFIG
    cn_cfg = (
        {**flux_cfg, "num_layers": 1, "num_single_layers": 1} if args.tiny else CONTROLNET_CONFIG
    )
    size = 64 if args.tiny else args.size
    modes = [m for m in args.modes.split(",") if m]

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    transformer = build(FluxTransformer2DModel, flux_cfg, dtype, "cpu", seed=0)
    controlnet = build(FluxControlNetModel, cn_cfg, dtype, "cpu", seed=1)
    n_t = sum(p.numel() for p in transformer.parameters())
    n_c = sum(p.numel() for p in controlnet.parameters())
    print(
        f"device: {torch.cuda.get_device_name(0) if cuda else 'cpu (tiny check)'}, torch {torch.__version__}"
    )
    print(
        f"transformer {n_t / 1e9:.2f} B params ({n_t * 2 / 1e9:.1f} GB bf16), controlnet {n_c / 1e9:.2f} B ({n_c * 2 / 1e9:.2f} GB), built in {time.perf_counter() - t0:.0f} s"
    )
    x = inputs(flux_cfg, size, dtype, device)

    def stage1() -> None:
        with torch.no_grad():
            transformer(**x, return_dict=False)

    def stage2() -> None:
        with torch.no_grad():
            block, single = controlnet(
                hidden_states=x["hidden_states"],
                controlnet_cond=x["hidden_states"],
                conditioning_scale=0.6,
                encoder_hidden_states=x["encoder_hidden_states"],
                pooled_projections=x["pooled_projections"],
                timestep=x["timestep"],
                guidance=x["guidance"],
                img_ids=x["img_ids"],
                txt_ids=x["txt_ids"],
                return_dict=False,
            )
            transformer(
                **x,
                controlnet_block_samples=block,
                controlnet_single_block_samples=single,
                return_dict=False,
            )

    print(
        f"{'mode':<11}{'stage1 s/step':>15}{'stage2 s/step':>15}{'move in+out s':>15}{'peak VRAM GiB':>15}"
    )
    for mode in modes:
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        steps = 2 if mode == "sequential" else args.steps
        move = float("nan")
        try:
            if mode in ("none", "model"):
                t0 = time.perf_counter()
                transformer.to(device)
                controlnet.to(device)
                sync()
                move = time.perf_counter() - t0
            elif mode == "group":
                for m in (transformer, controlnet):
                    m.enable_group_offload(
                        onload_device=torch.device(device),
                        offload_device=torch.device("cpu"),
                        offload_type="block_level",
                        num_blocks_per_group=1,
                    )
            elif mode == "sequential":
                from accelerate import cpu_offload

                for m in (transformer, controlnet):
                    cpu_offload(m, torch.device(device))
            s1 = time_steps(stage1, steps, sync)
            s2 = time_steps(stage2, steps, sync)
            peak = torch.cuda.max_memory_allocated() / 1024**3 if cuda else float("nan")
            if mode == "model":
                t0 = time.perf_counter()
                transformer.to("cpu")
                controlnet.to("cpu")
                sync()
                move += time.perf_counter() - t0
            shown = f"{move:>15.2f}" if mode == "model" else f"{'-':>15}"
            print(f"{mode:<11}{s1:>15.3f}{s2:>15.3f}{shown}{peak:>15.1f}")
        except torch.OutOfMemoryError:
            print(f"{mode:<11}{'out of GPU memory':>45}")
        finally:
            # undo the mode so the next one starts from CPU-resident weights
            if mode == "group":
                from diffusers.hooks import HookRegistry
                from diffusers.hooks import group_offloading as go

                names = [
                    getattr(go, n, None)
                    for n in (
                        "_GROUP_OFFLOADING",
                        "_LAYER_EXECUTION_TRACKER",
                        "_LAZY_PREFETCH_GROUP_OFFLOADING",
                    )
                ]
                for m in (transformer, controlnet):
                    registry = HookRegistry.check_if_exists_or_initialize(m)
                    for hook in filter(None, names):
                        registry.remove_hook(hook, recurse=True)
            elif mode == "sequential":
                from accelerate.hooks import remove_hook_from_module

                for m in (transformer, controlnet):
                    remove_hook_from_module(m, recurse=True)
            transformer.to("cpu")
            controlnet.to("cpu")
    print("Per image at the paper's settings: stage 1 = 60 steps, stage 2 = 35 steps.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
