"""The engine's process boundary: what it costs, side by side with the engine in this process.

1. Transfer of one 1024² RGB candidate from a child process, three ways: the raw pixels inside
   the pickled message over the pipe (what the app does), the pixels in shared memory with only
   its name over the pipe, and PNG-encoded bytes (encode + decode included). Median of 10,
   measured from the child's send to the pixels being usable here (target <= 20 ms).
2. Overhead of the boundary per candidate: Real-ESRGAN x4plus on a 64 px cutout (-> 256),
   warm, through ``Engine.handle`` in this process against the same job in the engine process
   (target <= 5 %).
3. Cold start to the first Real-ESRGAN candidate: a fresh interpreter running the engine in
   its thread (the old path) against starting the engine process from a running window
   process (modules already imported there).
4. Cancel latency: Real-ESRGAN on a 200 px cutout (several tiles) in the engine process,
   cancelled at its first tile: seconds from the cancel to the ``Cancelled`` message (target:
   within one tile; the hard stop after the grace period is the fallback).

Prints figures, asserts nothing.

    .venv/bin/python bench/engine_process.py
"""

from __future__ import annotations

import io
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FBUPSCALE_CPU_THREADS", "2")

SIDE = 1024
REPEATS = 10


def _sender(conn: Connection, how: str) -> None:
    """Child: send REPEATS candidates of SIDE² the way ``how`` says, timestamped."""
    from PIL import Image

    from fbupscale_gui.core.messages import Pixels

    image = Image.frombytes("RGB", (SIDE, SIDE), os.urandom(SIDE * SIDE * 3))
    for _ in range(REPEATS):
        conn.recv()  # go
        t0 = time.monotonic()
        if how == "pipe":
            conn.send((t0, Pixels.from_image(image)))
        elif how == "shm":
            data = image.tobytes()
            shm = SharedMemory(create=True, size=len(data))
            shm.buf[: len(data)] = data
            conn.send((t0, shm.name))
            conn.recv()  # the reader copied it
            shm.close()
            shm.unlink()
        else:
            buf = io.BytesIO()
            image.save(buf, format="PNG", compress_level=1)
            conn.send((t0, buf.getvalue()))
    conn.close()


def transfer(how: str) -> float:
    from PIL import Image

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_sender, args=(child, how))
    proc.start()
    times: list[float] = []
    for _ in range(REPEATS):
        parent.send("go")
        t0, payload = parent.recv()
        if how == "pipe":
            image = payload.to_image()
        elif how == "shm":
            shm = SharedMemory(name=payload)
            image = Image.frombytes("RGB", (SIDE, SIDE), bytes(shm.buf[: SIDE * SIDE * 3]))
            shm.close()
            parent.send("done")
        else:
            image = Image.open(io.BytesIO(payload))
            image.load()
        assert image.size == (SIDE, SIDE)
        times.append((time.monotonic() - t0) * 1000)
    proc.join(30)
    return statistics.median(times)


def _cutout(tmp: Path) -> Path:
    from PIL import Image

    src = Image.open(ROOT / "resources" / "samples" / "gk_save.png").convert("RGB")
    path = tmp / "c64.png"
    src.resize((64, 64), Image.Resampling.LANCZOS).save(path)
    return path


def _request(path: Path):  # type: ignore[no-untyped-def]
    from fbupscale_gui.core.request import Preprocess, ReconstructionRequest
    from fbupscale_gui.storage.cutouts import make_source

    return ReconstructionRequest(
        engine="realesrgan", source=make_source(path), preprocess=Preprocess(size=256)
    )


def overhead(path: Path, runs: int = 5) -> tuple[float, float]:
    """Median seconds per warm Real-ESRGAN job: (in this process, in the engine process)."""
    from fbupscale_gui.core.messages import CandidateReady, Done, ReconstructJob
    from fbupscale_gui.engine import Engine
    from fbupscale_gui.host.client import EngineProcess

    job = ReconstructJob(_request(path))
    engine = Engine()
    inproc: list[float] = []
    for i in range(runs + 1):
        t = time.perf_counter()
        for _m in engine.handle(i, job, lambda: False):
            pass
        if i:
            inproc.append(time.perf_counter() - t)
    engine.release()

    done = threading.Event()
    got: list[object] = []

    def on(message: object) -> None:
        got.append(message)
        if isinstance(message, Done):
            done.set()

    process = EngineProcess(on)
    crossed: list[float] = []
    for i in range(runs + 1):
        done.clear()
        t = time.perf_counter()
        process.submit(i, job)
        done.wait(600)
        if i:
            crossed.append(time.perf_counter() - t)
    assert any(isinstance(m, CandidateReady) for m in got)
    process.shutdown(30)
    return statistics.median(inproc), statistics.median(crossed)


_COLD_INTHREAD = """
import sys, time
t0 = time.monotonic()
from fbupscale_gui.storage.cutouts import make_source
from fbupscale_gui.core.messages import CandidateReady, ReconstructJob
from fbupscale_gui.core.request import Preprocess, ReconstructionRequest
from fbupscale_gui.engine import Engine
request = ReconstructionRequest(
    engine="realesrgan", source=make_source(sys.argv[1]), preprocess=Preprocess(size=256)
)
for m in Engine().handle(1, ReconstructJob(request), lambda: False):
    if isinstance(m, CandidateReady):
        print(time.monotonic() - t0)
        break
"""


def cold(path: Path) -> tuple[float, float]:
    """Seconds to the first candidate: (fresh interpreter, engine in-thread) and (engine
    process started from a process that has the window's modules)."""
    out = subprocess.run(
        [sys.executable, "-c", _COLD_INTHREAD, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    inthread = float(out.stdout.strip().splitlines()[-1])

    from fbupscale_gui.core.messages import CandidateReady, ReconstructJob
    from fbupscale_gui.host.client import EngineProcess

    first = threading.Event()
    process = EngineProcess(lambda m: first.set() if isinstance(m, CandidateReady) else None)
    t0 = time.monotonic()
    process.submit(1, ReconstructJob(_request(path)))
    first.wait(600)
    crossed = time.monotonic() - t0
    process.shutdown(30)
    return inthread, crossed


def cancel_latency(tmp: Path, runs: int = 3) -> list[float]:
    from PIL import Image

    from fbupscale_gui.core.messages import Cancelled, JobProgress, ReconstructJob
    from fbupscale_gui.core.request import ReconstructionRequest
    from fbupscale_gui.host.client import EngineProcess
    from fbupscale_gui.storage.cutouts import make_source

    src = Image.open(ROOT / "resources" / "samples" / "gk_save.png").convert("RGB")
    path = tmp / "c200.png"
    src.resize((200, 200), Image.Resampling.LANCZOS).save(path)
    request = ReconstructionRequest(engine="realesrgan", source=make_source(path))
    tiled = threading.Event()
    ended = threading.Event()
    at: list[float] = []

    def on(message: object) -> None:
        if isinstance(message, JobProgress) and message.progress.stage == "fast":
            tiled.set()
        if isinstance(message, Cancelled):
            at.append(time.monotonic())
            ended.set()

    process = EngineProcess(on)
    latencies: list[float] = []
    for i in range(runs):
        tiled.clear()
        ended.clear()
        process.submit(i, ReconstructJob(request))
        tiled.wait(600)
        t0 = time.monotonic()
        process.cancel(i)
        ended.wait(600)
        latencies.append(at[-1] - t0)
    process.shutdown(30)
    return latencies


def main() -> None:
    threads = os.environ["FBUPSCALE_CPU_THREADS"]
    print(f"machine: {os.cpu_count()} CPUs; FBUPSCALE_CPU_THREADS={threads}")
    print(f"1. transfer of one {SIDE}² candidate from a child (median of {REPEATS}; <= 20 ms)")
    for how, label in (
        ("pipe", "raw pixels in the message"),
        ("shm", "shared memory"),
        ("png", "PNG bytes"),
    ):
        print(f"   {label:28s} {transfer(how):7.1f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FBUPSCALE_CACHE_DIR"] = str(Path(tmp) / "cache")
        path = _cutout(Path(tmp))
        try:
            inproc, crossed = overhead(path)
        except Exception as exc:  # no Real-ESRGAN weights
            print(f"2./3. skipped: {exc}")
            return
        extra = crossed - inproc
        print("2. Real-ESRGAN 64 -> 256, warm, median per job (target: boundary <= 5 %)")
        print(
            f"   in this process {inproc * 1000:7.1f} ms   engine process {crossed * 1000:7.1f} ms"
            f"   boundary {extra * 1000:+6.1f} ms ({extra / inproc * 100:+.1f} %)"
        )
        a, b = cold(path)
        print("3. cold start to the first Real-ESRGAN candidate (64 -> 256)")
        print(f"   fresh interpreter, engine in-thread {a:6.2f} s   engine process {b:6.2f} s")
        late = cancel_latency(Path(tmp))
        print("4. cancel at the first tile to Cancelled, Real-ESRGAN 200 px in the engine process")
        print("   " + "  ".join(f"{x * 1000:.0f} ms" for x in late))


if __name__ == "__main__":
    main()
