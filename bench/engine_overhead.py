"""What the Engine costs on top of bare diffusers calls (target: ratio <= 1.05).

Both sides run the same plan on the tiny random FLUX (engine/testing.py), same seeds, same
steps, same LoRA A/B: per variant, one stage-1 img2img call, then stage 2 without and with the
LoRA. Model loading is excluded from both (each side is warmed up once first). The engine adds
locating/fingerprinting (cached), standardisation, progress callbacks, cancel checks, LoRA
toggling and cropping; it saves one prompt encoding per call. Tiny models make each call cost
milliseconds, so this is the worst case for relative overhead. Prints times, never asserts.

    .venv/bin/python bench/engine_overhead.py [--size 128] [--variants 3] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--steps1", type=int, default=8)
    parser.add_argument("--steps2", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier)")
    args = parser.parse_args()

    import numpy as np
    import torch

    from fbupscale_gui.core.images import crop_to_content, standardise
    from fbupscale_gui.core.request import (
        LoraParams,
        ModelRef,
        Preprocess,
        ReconstructionRequest,
        Stage1Params,
        Stage2Params,
    )
    from fbupscale_gui.engine import Engine
    from fbupscale_gui.engine.testing import make_tiny_flux_files, tiny_cutout
    from fbupscale_gui.storage.cutouts import make_source

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="fb-overhead-"))
    files = make_tiny_flux_files(tmp)
    cutout_path = tmp / "cutout.png"
    tiny_cutout(48, 64, seed=1).save(cutout_path)
    req = ReconstructionRequest(
        source=make_source(cutout_path),
        prompt="a goalkeeper in a green shirt",
        preprocess=Preprocess(size=args.size),
        stage1=Stage1Params(steps=args.steps1, strength=0.75),
        stage2=Stage2Params(steps=args.steps2),
        variants=args.variants,
        seed=5,
        flux=ModelRef(path=str(files.flux_dir)),
        controlnet=ModelRef(path=str(files.controlnet_dir)),
        lora=LoraParams(model=ModelRef(path=str(files.lora_kohya)), scale=0.9),
    )

    # -- the engine ------------------------------------------------------------------------
    engine = Engine()
    list(engine.run(req))  # warm-up: loads and caches the pipelines, loads the LoRA

    def run_engine() -> list[np.ndarray]:
        return [np.asarray(c.image) for c in engine.run(req, lambda p: None, lambda: False)]

    # -- bare diffusers --------------------------------------------------------------------
    from diffusers import FluxControlNetModel, FluxControlNetPipeline, FluxImg2ImgPipeline

    from fbupscale_gui.engine.lora.convert import convert_lora
    from fbupscale_gui.engine.lora.files import read_lora_file

    pipe1 = FluxImg2ImgPipeline.from_pretrained(
        files.flux_dir, dtype=torch.float32, local_files_only=True
    )
    cn = FluxControlNetModel.from_pretrained(
        files.controlnet_dir, dtype=torch.float32, local_files_only=True
    )
    pipe2: Any = FluxControlNetPipeline(**pipe1.components, controlnet=cn)
    for p in (pipe1, pipe2):
        p.set_progress_bar_config(disable=True)
    # diffusers cannot read a Kohya LoRA for a non-full-size FLUX, so both sides use our converter
    pipe1.load_lora_weights(
        convert_lora(read_lora_file(files.lora_kohya), pipe1.transformer).state_dict,
        adapter_name="football",
    )
    square, placement = standardise(tiny_cutout(48, 64, seed=1), req.preprocess)

    def run_bare(encode_once: bool = False) -> list[np.ndarray]:
        # encode_once: like the engine, encode the prompt once per run instead of per call
        text: dict[str, Any] = {"prompt": req.prompt}
        if encode_once:
            embeds, pooled, _ = pipe1.encode_prompt(prompt=req.prompt, prompt_2=None)
            text = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
        out = []
        for v in range(req.variants):
            seed = req.seed_for(v)
            pipe1.transformer.disable_lora()
            img1 = pipe1(
                **text,
                image=square,
                strength=req.stage1.strength,
                num_inference_steps=req.stage1.steps,
                guidance_scale=req.stage1.guidance,
                height=args.size,
                width=args.size,
                generator=torch.Generator("cpu").manual_seed(seed),
            ).images[0]
            out.append(np.asarray(crop_to_content(img1, placement)))
            for lora_on in (False, True):
                if lora_on:
                    pipe1.transformer.enable_lora()
                    pipe1.transformer.set_adapters(["football"], weights=[req.lora.scale])
                else:
                    pipe1.transformer.disable_lora()
                img2 = pipe2(
                    **text,
                    control_image=img1,
                    controlnet_conditioning_scale=req.stage2.conditioning_scale,
                    num_inference_steps=req.stage2.steps,
                    guidance_scale=req.stage2.guidance,
                    height=args.size,
                    width=args.size,
                    generator=torch.Generator("cpu").manual_seed(seed),
                ).images[0]
                out.append(np.asarray(crop_to_content(img2, placement)))
        return out

    run_bare()  # warm-up

    # Wall time and this process's CPU time; on a shared machine CPU time is the fairer figure.
    engine_times, bare_times, engine_cpu, bare_cpu, once_cpu = [], [], [], [], []
    same = True
    for _ in range(args.repeats):  # interleaved, so background load hits both sides alike
        t0, c0 = time.perf_counter(), time.process_time()
        a = run_engine()
        engine_times.append(time.perf_counter() - t0)
        engine_cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        b = run_bare()
        bare_times.append(time.perf_counter() - t0)
        bare_cpu.append(time.process_time() - c0)
        c0 = time.process_time()
        run_bare(encode_once=True)
        once_cpu.append(time.process_time() - c0)
        same = (
            same
            and len(a) == len(b)
            and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        )

    n_calls = req.variants * 3
    e_med, b_med = statistics.median(engine_times), statistics.median(bare_times)
    e_min, b_min = min(engine_times), min(bare_times)
    print(
        f"tiny FLUX, {args.size}px, {req.variants} variants x (stage 1 {req.stage1.steps}x{req.stage1.strength} + 2 x stage 2 {req.stage2.steps}) = {n_calls} pipeline calls, torch threads {torch.get_num_threads()}"
    )
    ec, bc = statistics.median(engine_cpu), statistics.median(bare_cpu)
    print(
        f"engine : wall median {e_med:.3f} s  min {e_min:.3f} s   CPU median {ec:.3f} s  ({args.repeats} runs)"
    )
    print(f"bare   : wall median {b_med:.3f} s  min {b_min:.3f} s   CPU median {bc:.3f} s")
    print(
        f"ratio  : wall median {e_med / b_med:.3f}  min {e_min / b_min:.3f}   CPU median {ec / bc:.3f}  (target <= 1.05)"
    )
    oc = statistics.median(once_cpu)
    print(
        f"bare, prompt encoded once per run like the engine: CPU median {oc:.3f} s -> engine/bare CPU {ec / oc:.3f} (the engine's own bookkeeping)"
    )
    print(f"pixel-identical outputs: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
