"""Quality cost of the non-exact FLUX modes against ``exact``, same request, same seeds.

For each mode (fast, fast-mag, fp8 storage, compiled) every candidate is compared with the ``exact``
candidate of the same key: the LR-consistency delta (dB, the mode's minus exact's; target
within 0.2 dB) and the luma PSNR against the exact candidate (dB, higher is closer). Wall
time per run is printed beside them (one run each, no timing assertions).

On the tiny random FLUX (default) the figures only check the script: random weights say
nothing about image quality. Pass real models (``--flux``, ``--flux-base``, ``--controlnet``,
optionally ``--lora``) on a GPU machine for meaningful ones.

    .venv/bin/python bench/flux_speed_quality.py [--modes fast,fp8] [--size 64] [--cutout PNG]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--modes", default="fast,fast-mag,fp8", help="of fast, fast-mag, fp8, compiled"
    )
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps1", type=int, default=8)
    parser.add_argument("--steps2", type=int, default=4)
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--cutout", help="a cutout PNG (default: a synthetic one)")
    parser.add_argument("--flux")
    parser.add_argument("--flux-base")
    parser.add_argument("--controlnet")
    parser.add_argument("--lora")
    parser.add_argument("--prompt", default="a football player in a red shirt")
    args = parser.parse_args()

    from PIL import Image

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
    from fbupscale_gui.eval.fidelity import lr_consistency, psnr_y
    from fbupscale_gui.eval.scoring import placement_for
    from fbupscale_gui.storage.cutouts import make_source

    tmp = Path(tempfile.mkdtemp(prefix="fbupscale-quality-"))
    if args.flux:
        flux, controlnet, lora = args.flux, args.controlnet, args.lora
        base = args.flux_base
        print(f"models: {flux} (+ {base or 'no base'}), {controlnet}")
    else:
        tiny = make_tiny_flux_files(tmp / "tiny")
        flux, controlnet, lora, base = (
            str(tiny.flux_dir),
            str(tiny.controlnet_dir),
            str(tiny.lora_kohya),
            None,
        )
        print("models: tiny random FLUX (figures check the script only)")
    cutout_path = Path(args.cutout) if args.cutout else tmp / "cutout.png"
    if not args.cutout:
        tiny_cutout(40, 64, seed=1).save(cutout_path)
    cutout = Image.open(cutout_path).convert("RGB")
    request = ReconstructionRequest(
        source=make_source(cutout_path),
        prompt=args.prompt,
        preprocess=Preprocess(size=args.size),
        stage1=Stage1Params(steps=args.steps1),
        stage2=Stage2Params(steps=args.steps2),
        variants=args.variants,
        flux=ModelRef(path=flux),
        flux_base=ModelRef(path=base) if base else None,
        controlnet=ModelRef(path=controlnet or ""),
        lora=LoraParams(model=ModelRef(path=lora)) if lora else LoraParams(model=None),
        storage="native",
    )
    modes: dict[str, ReconstructionRequest] = {"exact": request}
    for mode in [m for m in args.modes.split(",") if m]:
        if mode == "fp8":
            modes["fp8"] = request.replace(storage="fp8")
        else:
            modes[mode] = request.replace(speed=mode)

    results: dict[str, tuple[float, dict[Any, Any]]] = {}
    for name, req in modes.items():
        engine = Engine()
        start = time.perf_counter()
        cands = {c.key: c for c in engine.run(req, None, None)}
        results[name] = (time.perf_counter() - start, cands)
        engine.release()

    placement = placement_for(cutout, request)
    exact_time, exact = results["exact"]
    print(
        f"{'mode':<10}{'run s':>8}{'candidate':>16}{'LR-cons dB':>12}{'delta dB':>10}{'PSNR vs exact':>15}"
    )
    for name, (seconds, cands) in results.items():
        for key, cand in cands.items():
            lr = lr_consistency(cutout, cand.image, placement)
            lr_exact = lr_consistency(cutout, exact[key].image, placement)
            vs = psnr_y(exact[key].image, cand.image)
            print(
                f"{name:<10}{seconds:>8.1f}{key.label:>16}{lr:>12.2f}{lr - lr_exact:>+10.2f}"
                f"{vs:>15.1f}"
            )
    print(f"exact run: {exact_time:.1f} s; PSNR vs exact is capped (identical -> cap).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
