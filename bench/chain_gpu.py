"""FLUX's stage-1 start image on a GPU: Lanczos (the paper's) against fast engines, side by side.

For each ground-truth photograph and severity of ``bench/fidelity.py``, the degraded cutout is
reconstructed by the two-stage FLUX engine once per start engine (``stage1.start``: lanczos,
faithful, ...), same seed, same prompt, one variant; the stage-1 and stage-2 results get luma
PSNR / SSIM against the ground truth and LR-consistency against the cutout. Needs CUDA and the
FLUX.1-dev + ControlNet weights (found as the app finds them); otherwise it says so and exits 1.

    .venv/bin/python bench/chain_gpu.py                       # quick set, lanczos vs faithful
    .venv/bin/python bench/chain_gpu.py --starts lanczos faithful sharp --steps1 28 --steps2 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fidelity import QUICK_SET, SEVERITY_SEED, ground_truth  # noqa: E402

from fbupscale_gui.core.request import ReconstructionRequest, Stage1Params, Stage2Params  # noqa: E402
from fbupscale_gui.eval.degrade import degrade  # noqa: E402
from fbupscale_gui.eval.degrade_params import SEVERITIES  # noqa: E402
from fbupscale_gui.eval.fidelity import lr_consistency, psnr_y, ssim_y  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="+", default=list(QUICK_SET))
    parser.add_argument("--severities", nargs="+", choices=SEVERITIES, default=list(SEVERITIES))
    parser.add_argument("--starts", nargs="+", default=["lanczos", "faithful"])
    parser.add_argument("--steps1", type=int, default=Stage1Params.steps)
    parser.add_argument("--steps2", type=int, default=Stage2Params.steps)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)

    from fbupscale_gui.engine.devices import nvidia_gpu_count

    if nvidia_gpu_count() == 0:
        print("chain_gpu: no NVIDIA GPU here (NVML sees none); run it on a CUDA machine")
        return 1
    from fbupscale_gui.core.errors import FbError
    from fbupscale_gui.engine import Engine
    from fbupscale_gui.storage.cutouts import make_source

    engine = Engine()
    tmp = Path(tempfile.mkdtemp(prefix="fbupscale-chain-"))
    rows: list[tuple[str, str, str, int, float, float, float, float]] = []
    for name in args.images:
        gt = ground_truth(name)
        for sev in args.severities:
            cut, _ = degrade(gt, sev, seed=SEVERITY_SEED)
            path = tmp / f"{name}_{sev}.png"
            cut.save(path)
            for start in args.starts:
                request = ReconstructionRequest(
                    engine="flux",
                    source=make_source(path, cut),
                    variants=1,
                    seed=args.seed,
                    stage1=Stage1Params(steps=args.steps1, start=start),
                    stage2=Stage2Params(steps=args.steps2),
                )
                t0 = time.perf_counter()
                try:
                    candidates = list(engine.run(request))
                except FbError as exc:
                    print(f"chain_gpu: {exc}")
                    return 1
                seconds = time.perf_counter() - t0
                for c in candidates:
                    out = c.image.convert("RGB").resize(gt.size)
                    rows.append(
                        (
                            name,
                            sev,
                            start,
                            c.key.stage,
                            psnr_y(gt, out),
                            ssim_y(gt, out),
                            lr_consistency(cut, out),
                            seconds,
                        )
                    )
                    print(
                        f"  {name:12s} {sev:6s} start {start:10s} stage {c.key.stage}  "
                        f"PSNR-Y {rows[-1][4]:6.2f}  SSIM-Y {rows[-1][5]:.4f}  "
                        f"LR {rows[-1][6]:6.2f}  {seconds:6.1f} s",
                        flush=True,
                    )
    print("\n| start | severity | stage | PSNR-Y dB | SSIM-Y | LR-consistency dB |")
    print("|---|---|---:|---:|---:|---:|")
    for start in args.starts:
        for sev in args.severities:
            for stage in (1, 2):
                sel = [r for r in rows if r[2] == start and r[1] == sev and r[3] == stage]
                if sel:
                    print(
                        f"| {start} | {sev} | {stage} | {np.mean([r[4] for r in sel]):.2f} | "
                        f"{np.mean([r[5] for r in sel]):.4f} | {np.mean([r[6] for r in sel]):.2f} |"
                    )
    engine.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
