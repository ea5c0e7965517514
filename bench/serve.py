"""The served engine (``fbupscale serve``) under 1, 2, 4 and 8 concurrent desks.

Measured on this machine: a local Ray (``--cpus``, no dashboard) serving ``--replicas`` CPU
replicas; for Lanczos and Real-ESRGAN (ncnn, CPU), each desk (a thread with its own HTTP
client) runs ``--jobs`` one-candidate jobs back to back. Printed per engine and desk count:
throughput (candidates/s), p50/p95 latency (submit to the last message), and the overhead per
candidate against the same request in the local engine process (``host.client.EngineProcess``,
what a desk runs without a server), measured in the same run.

Then, on paper, desks per H100 at the paper's workflow (3 variants; stage 1 img2img
80 steps x 0.75 = 60 steps, stage 2 ControlNet 35 steps with and without the LoRA). Those
figures are public anchors, not measured here: FLUX.1-dev bf16 at 1024² on an H100 runs about
0.25 s per step (diffusers, 28 steps in 7.1 s; see anchors). ``bench/flux_gpu.py`` measures
s/step on a CUDA machine; pass its figures with ``--stage1-s-step``/``--stage2-s-step``.

    .venv/bin/python bench/serve.py [--jobs 3] [--desks 1,2,4,8] [--replicas 2] [--cpus 2]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fbupscale_gui.core.messages import FINAL, Done, ReconstructJob
from fbupscale_gui.core.request import Preprocess, ReconstructionRequest
from fbupscale_gui.storage.cutouts import make_source

TOKEN = "bench-token-for-the-served-engine"
#: Public anchor (H100, diffusers bf16, FLUX.1-dev 1024²): 7.1 s for 28 steps.
H100_S_PER_STEP = 7.1 / 28


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _local_latency(request: ReconstructionRequest, jobs: int) -> float:
    """Median seconds per job in the local engine process (after one warm-up job)."""
    from fbupscale_gui.host.client import EngineProcess

    ended = threading.Event()

    def on_message(message: object) -> None:
        if isinstance(message, FINAL):
            assert isinstance(message, Done), message
            ended.set()

    process = EngineProcess(on_message)
    times: list[float] = []
    try:
        for n in range(jobs + 1):
            ended.clear()
            start = time.perf_counter()
            process.submit(n, ReconstructJob(request))
            ended.wait(300)
            if n:
                times.append(time.perf_counter() - start)
    finally:
        process.shutdown()
    return statistics.median(times)


def _served(
    url: str, request: ReconstructionRequest, desks: int, jobs: int
) -> tuple[float, list[float]]:
    from fbupscale_gui.host.remote import ServerClient, remote_handle

    latencies: list[float] = []
    lock = threading.Lock()

    def desk(d: int) -> None:
        client = ServerClient(url, TOKEN)
        for j in range(jobs):
            start = time.perf_counter()
            last = list(remote_handle(client, d * 100 + j, ReconstructJob(request), lambda: False))[
                -1
            ]
            assert isinstance(last, Done), last
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=desk, args=(d,)) for d in range(desks)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies


def _paper(args: argparse.Namespace) -> None:
    s1, s2 = args.stage1_s_step, args.stage2_s_step
    steps1, steps2, variants, branches = 60, 35, 3, 2
    per_cutout = variants * (steps1 * s1 + branches * steps2 * s2) + args.fixed_s
    demand = args.cutouts_per_hour * per_cutout / 3600.0
    print("\nDesks per H100 on paper (anchors, not measured here):")
    print(
        f"  stage 1 {s1:.3f} s/step x 60, stage 2 {s2:.3f} s/step x 35 x 2 LoRA branches, 3 variants,"
    )
    print(
        f"  + {args.fixed_s:.0f} s text encoders/VAE per cutout = {per_cutout:.0f} s of GPU per cutout"
    )
    print(
        f"  a desk sending {args.cutouts_per_hour:g} cutouts/hour uses {demand:.2f} of a GPU -> "
        f"{1 / demand:.1f} desks per H100 (queueing: keep it under ~70 %, "
        f"{0.7 / demand:.1f} desks)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3, help="jobs per desk")
    parser.add_argument("--desks", default="1,2,4,8")
    parser.add_argument("--replicas", type=int, default=2, help="CPU replicas")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs the local Ray may use")
    parser.add_argument("--engines", default="lanczos,realesrgan")
    parser.add_argument("--stage1-s-step", type=float, default=H100_S_PER_STEP)
    parser.add_argument(
        "--stage2-s-step",
        type=float,
        default=H100_S_PER_STEP * 1.25,
        help="ControlNet + transformer (assumed 1.25x a plain step unless measured)",
    )
    parser.add_argument("--fixed-s", type=float, default=3.0)
    parser.add_argument("--cutouts-per-hour", type=float, default=12.0)
    parser.add_argument("--paper-only", action="store_true")
    args = parser.parse_args()
    if args.paper_only:
        _paper(args)
        return 0

    import ray
    from ray import serve

    from fbupscale_gui.engine.testing import tiny_cutout
    from fbupscale_gui.host.serve_config import ServeConfig
    from fbupscale_gui.host.server import build_app

    tmp = Path(tempfile.mkdtemp(prefix="fbupscale-bench-serve-"))
    cutout = tmp / "cutout.png"
    tiny_cutout(72, 96, seed=1).save(cutout)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = ServeConfig(token=TOKEN, port=port, cpu_replicas=args.replicas).check()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(config), blocking=False)
        url = f"http://127.0.0.1:{port}"
        print(f"local Ray: {args.cpus} CPUs, {args.replicas} CPU replicas; {args.jobs} jobs/desk")
        print(
            f"{'engine':<11}{'desks':>6}{'cand/s':>9}{'p50 s':>8}{'p95 s':>8}{'local s':>9}{'overhead s':>12}"
        )
        for engine in args.engines.split(","):
            request = ReconstructionRequest(
                engine=engine,
                source=make_source(cutout),
                preprocess=Preprocess(size=1024),
                device="cpu",
            )
            local = _local_latency(request, args.jobs)
            _served(url, request, 1, 1)  # warm the replicas
            for desks in (int(d) for d in args.desks.split(",")):
                wall, lat = _served(url, request, desks, args.jobs)
                p50 = _pct(lat, 0.5)
                overhead = f"{p50 - local:.3f}" if desks == 1 else "-"
                print(
                    f"{engine:<11}{desks:>6}{len(lat) / wall:>9.2f}{p50:>8.3f}{_pct(lat, 0.95):>8.3f}"
                    f"{local:>9.3f}{overhead:>12}"
                )
        print(
            "overhead: served p50 with one desk minus the local engine process's median (same run)"
        )
    finally:
        serve.shutdown()
        ray.shutdown()
    _paper(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
