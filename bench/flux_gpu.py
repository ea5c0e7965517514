"""The paper's whole workflow per cutout, per memory plan and speed mode, on a CUDA GPU.

Builds the full-size FLUX.1-dev transformer (19 double + 38 single blocks, 3072 wide) and a
FLUX ControlNet of the upscaler's size from their configs with random bf16 weights (meta-device
init, then ``to_empty`` and an in-place normal fill; speed does not depend on the weights), and
times the denoiser calls each stage makes per step at the real 1024 px shapes (4096 image
tokens, 512 T5 tokens): stage 1 = transformer; stage 2 = ControlNet + transformer with its
residuals. Seconds per cutout = the paper's workflow, 3 stage-1 runs of 60 steps plus 6 stage-2
runs of 35 steps (3 variants x LoRA A/B): 390 passes; text encoding (cached per prompt) and
VAE decode are excluded.

Memory plans: bf16 (everything resident), fp8 (layerwise casting: fp8 storage, bf16 compute),
bf16-group (block-level group offload, the 16 GB fallback). Speed modes: exact; fast (First
Block Cache on stage 1: the cost of a skipped step is measured and weighted by ``--fbc-skip``;
fast-mag, MagCache on stage 1, likewise by ``--mag-skip``,
since random weights say nothing about how many steps real ones skip; stage 2 is never
cached); compiled (``compile_repeated_blocks``; compile time is in the setup column). Peak
VRAM is ``torch.cuda.max_memory_allocated``. GGUF is not in the table: quantising 12 B random
weights on the CPU would eat the time budget.

About 6-8 minutes on one H100/H200 (``--budget`` stops early), ``--quick`` about 2 minutes.
On a machine without CUDA it says so and exits 0; ``--tiny`` runs the same code on the tiny
test architecture (CPU allowed) to check the script itself.

    .venv/bin/python bench/flux_gpu.py [--quick] [--plans bf16,fp8] [--speeds exact,fast]
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
    step()  # warm-up (kernels, group-offload tracing, compile)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps


# The paper's workflow per cutout: 3 variants x (stage 1 once, stage 2 with and without the
# LoRA) = 3 stage-1 runs of 60 steps and 6 stage-2 runs of 35 steps: 390 transformer passes.
STAGE1_STEPS, STAGE1_RUNS = 60, 3
STAGE2_STEPS, STAGE2_RUNS = 35, 6
#: (plan name, weight storage, memory mode)
PLANS: dict[str, tuple[str, str]] = {
    "bf16": ("native", "none"),
    "fp8": ("fp8", "none"),
    "bf16-group": ("native", "group"),
}
SPEEDS = ("exact", "fast", "fast-mag", "compiled")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per stage")
    parser.add_argument("--plans", default=",".join(PLANS))
    parser.add_argument("--speeds", default=",".join(SPEEDS))
    parser.add_argument(
        "--fbc-skip",
        type=float,
        default=0.4,
        help="fraction of stage-1 steps First Block Cache skips on real weights (random "
        "weights say nothing about it; 0.4 is the published ~1.7x at threshold 0.08)",
    )
    parser.add_argument(
        "--mag-skip",
        type=float,
        default=0.4,
        help="fraction of stage-1 steps MagCache skips on real weights (an assumption, as "
        "for --fbc-skip: at most 3 in a row, never in the first 20 %%)",
    )
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; stops early")
    parser.add_argument("--quick", action="store_true", help="a 2-minute subset")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny architecture (checks the script; CPU allowed)"
    )
    args = parser.parse_args()
    if args.quick:
        args.steps, args.budget = 3, 100.0
        args.plans, args.speeds = "bf16,fp8", "exact,fast"

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print("No CUDA GPU on this machine: the FLUX GPU bench needs one. Nothing to measure.")
        return 0
    from diffusers import FluxControlNetModel, FluxTransformer2DModel
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig

    started = time.perf_counter()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    flux_cfg = TINY_CONFIG if args.tiny else FLUX_CONFIG
    cn_cfg = (
        {**flux_cfg, "num_layers": 1, "num_single_layers": 1} if args.tiny else CONTROLNET_CONFIG
    )
    size = 64 if args.tiny else args.size

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    n_t = n_c = 0
    print(
        f"device: {torch.cuda.get_device_name(0) if cuda else 'cpu (tiny check)'}, "
        f"torch {torch.__version__}, {size} px, {args.steps} timed steps per stage"
    )
    print(
        f"{'plan':<11}{'speed':<9}{'s/pass s1':>10}{'s/pass s2':>10}{'s/cutout':>10}"
        f"{'peak GiB':>10}{'setup s':>9}"
    )
    for plan_name in [p for p in args.plans.split(",") if p]:
        storage, mode = PLANS[plan_name]
        for speed in [s for s in args.speeds.split(",") if s]:
            if time.perf_counter() - started > args.budget:
                print(f"{plan_name:<11}{speed:<9}skipped: time budget ({args.budget:.0f} s) spent")
                continue
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            transformer = build(FluxTransformer2DModel, flux_cfg, dtype, "cpu", seed=0)
            controlnet = build(FluxControlNetModel, cn_cfg, dtype, "cpu", seed=1)
            n_t = sum(p.numel() for p in transformer.parameters())
            n_c = sum(p.numel() for p in controlnet.parameters())
            if storage == "fp8":
                transformer.enable_layerwise_casting(
                    storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype
                )
            if mode == "none":
                transformer.to(device)
                controlnet.to(device)
            else:
                for m in (transformer, controlnet):
                    m.enable_group_offload(
                        onload_device=torch.device(device),
                        offload_device=torch.device("cpu"),
                        offload_type="block_level",
                        num_blocks_per_group=1,
                    )
            if speed == "compiled":
                # layerwise casting's hooks rebuild parameters: no full graph through them
                transformer.compile_repeated_blocks(fullgraph=storage != "fp8")
            x = inputs(flux_cfg, size, dtype, device)

            def stage1(transformer: Any = transformer, x: dict[str, Any] = x) -> None:
                with torch.no_grad():
                    transformer(**x, return_dict=False)

            def stage2(
                transformer: Any = transformer, controlnet: Any = controlnet, x: Any = x
            ) -> None:
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

            try:
                stage1()  # warm-up / compile before the setup time is taken
                sync()
                setup = time.perf_counter() - t0
                s1 = time_steps(stage1, args.steps, sync)
                s1_eff = s1
                if speed == "fast":
                    # a skipped step: the first block, then the cached residual (threshold
                    # above any change, so every timed step after the first is skipped)
                    transformer.enable_cache(FirstBlockCacheConfig(threshold=1e9))
                    with transformer.cache_context("cond"):
                        s1_skip = time_steps(stage1, args.steps, sync)
                    transformer.disable_cache()
                    s1_eff = (1 - args.fbc_skip) * s1 + args.fbc_skip * s1_skip
                elif speed == "fast-mag":
                    # a skipped step: every block skipped, the cached residual added
                    n = args.steps + 1
                    transformer.enable_cache(
                        MagCacheConfig(
                            threshold=1e9,
                            max_skip_steps=n,
                            retention_ratio=0.0,
                            num_inference_steps=n,
                            mag_ratios=[1.0] * n,
                        )
                    )
                    with transformer.cache_context("cond"):
                        stage1()  # computes: the residual to reuse
                        s1_skip = time_steps(stage1, args.steps, sync)
                    transformer.disable_cache()
                    s1_eff = (1 - args.mag_skip) * s1 + args.mag_skip * s1_skip
                s2 = time_steps(stage2, args.steps, sync)  # stage 2 is never cached
                peak = torch.cuda.max_memory_allocated() / 1024**3 if cuda else float("nan")
                cutout = STAGE1_RUNS * STAGE1_STEPS * s1_eff + STAGE2_RUNS * STAGE2_STEPS * s2
                print(
                    f"{plan_name:<11}{speed:<9}{s1_eff:>10.3f}{s2:>10.3f}{cutout:>10.1f}"
                    f"{peak:>10.1f}{setup:>9.0f}"
                )
            except torch.OutOfMemoryError:
                print(f"{plan_name:<11}{speed:<9}out of GPU memory")
            except Exception as exc:  # one failing configuration must not end the table
                print(f"{plan_name:<11}{speed:<9}failed: {type(exc).__name__}: {str(exc)[:80]}")
            del transformer, controlnet, x
    print(
        f"transformer {n_t / 1e9:.2f} B params, controlnet {n_c / 1e9:.2f} B (random weights). "
        f"s/cutout = {STAGE1_RUNS}x{STAGE1_STEPS} stage-1 + {STAGE2_RUNS}x{STAGE2_STEPS} "
        f"stage-2 passes (text encoding and VAE decode excluded); fast assumes "
        f"{args.fbc_skip:.0%} of stage-1 steps skipped, fast-mag {args.mag_skip:.0%}. Total {time.perf_counter() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
