"""A scriptable stand-in for the engine, for tests and benchmarks of the window (no torch).

:class:`FakeRunner` follows the engine's contract: it yields one candidate per
``request.candidate_keys()`` in order, reports progress per "step", checks ``is_cancelled``
after every step (raising :class:`Cancelled`), and can be told to fail, or to wait on a gate so
a test can cancel a job that is certainly running.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image

from fbupscale_gui.core.errors import Cancelled
from fbupscale_gui.core.job import Candidate, IsCancelled, Note, OnProgress, Progress
from fbupscale_gui.core.request import ReconstructionRequest
from fbupscale_gui.core.runtime import ResolvedRuntime

__all__ = ["FakeRunner", "broken_engine"]

_COLOURS = [(200, 40, 40), (40, 160, 60), (40, 80, 200), (220, 180, 40), (160, 60, 180)]


@dataclass
class FakeRunner:
    """``steps`` progress events per candidate, ``step_s`` seconds each.

    ``fail_after``: raise ``error`` after that many candidates (None: never). ``gate``: before
    the first step, wait until it is set (or the job is cancelled). ``size``: long side of the
    images made. ``notes`` are reported (as the engine reports a LoRA load) before the first
    candidate. ``runs`` records every request, ``released`` counts release() calls.
    """

    steps: int = 3
    step_s: float = 0.0
    size: int = 96
    fail_after: int | None = None
    error: BaseException | None = None
    gate: threading.Event | None = None
    runs: list[ReconstructionRequest] = field(default_factory=list)
    released: int = 0
    thread_names: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)
    #: Before the first step, block this many seconds without looking at the cancel flag (a
    #: native call that cannot be interrupted).
    hang_s: float = 0.0
    notes: list[Note] = field(default_factory=list)

    def run(
        self,
        request: ReconstructionRequest,
        on_progress: OnProgress | None = None,
        is_cancelled: IsCancelled | None = None,
    ) -> Iterator[Candidate]:
        self.runs.append(request)
        self.thread_names.append(threading.current_thread().name)
        self.started.set()
        cancelled = is_cancelled or (lambda: False)
        report = on_progress or (lambda _p: None)
        if self.hang_s:
            time.sleep(self.hang_s)
        if self.gate is not None:
            while not self.gate.wait(0.01):
                if cancelled():
                    raise Cancelled()
        keys = request.candidate_keys()
        total = self.steps * len(keys)
        done = 0
        for note in self.notes:
            report(Progress("load", 0, 1, 0, total, 0, len(keys), note=note))
        for i, key in enumerate(keys):
            if self.fail_after is not None and i >= self.fail_after:
                raise self.error or RuntimeError("scripted failure")
            stage = "fast" if request.engine != "flux" else f"stage{key.stage}"
            for step in range(1, self.steps + 1):
                if self.step_s:
                    time.sleep(self.step_s)
                done += 1
                report(Progress(stage, step, self.steps, done, total, i, len(keys)))  # type: ignore[arg-type]
                if cancelled():
                    raise Cancelled()
            colour = _COLOURS[(key.variant + 2 * key.lora + key.stage) % len(_COLOURS)]
            seed = request.seed_for(key.variant)
            yield Candidate(
                key=key,
                seed=seed,
                image=Image.new("RGB", (self.size, self.size), colour),
                request=request,
                timings={stage: 0.0},
                runtime="fake",
                resolved=ResolvedRuntime("cpu", "fp32", "none", "fake"),
            )
        if self.fail_after is not None and self.fail_after >= len(keys) and self.error:
            raise self.error

    def release(self) -> None:
        self.released += 1


def broken_engine() -> FakeRunner:
    """An engine whose import fails (as a broken torch or ncnn install would)."""
    raise ImportError("libtorch_cpu.so: cannot open shared object file (scripted)")
