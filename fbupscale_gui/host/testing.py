"""Engine doubles that misbehave as a process (for the crash tests): no Qt, no torch."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["crashing_runner", "stalling_engine"]


class _Crashing:
    def run(self, *_args: Any, **_kwargs: Any) -> Iterator[Any]:
        print("RuntimeError: CUDA error: an illegal memory access was encountered", file=sys.stderr)
        sys.stderr.flush()
        os._exit(3)
        yield  # a generator, as the engine's run is

    def release(self) -> None:
        pass


def crashing_runner() -> Any:
    """An engine that writes a CUDA-like error to stderr and exits with code 3 on its job."""
    return _Crashing()


class _Stalling:
    """The real engine, except a request whose prompt is ``stall:PIDFILE``: that one writes
    this process's id to PIDFILE and waits (cancel works) until the process is killed."""

    def __init__(self, models_dirs: tuple[str, ...]) -> None:
        from fbupscale_gui.engine import Engine

        self.real = Engine(search_dirs=models_dirs)

    def run(self, request: Any, on_progress: Any, is_cancelled: Any) -> Iterator[Any]:
        if not request.prompt.startswith("stall:"):
            yield from self.real.run(request, on_progress, is_cancelled)
            return
        from pathlib import Path

        from fbupscale_gui.core.errors import Cancelled

        Path(request.prompt[len("stall:") :]).write_text(str(os.getpid()))
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline:
            if is_cancelled():
                raise Cancelled()
            time.sleep(0.05)
        raise RuntimeError("the stalled job was neither cancelled nor killed")

    def release(self) -> None:
        self.real.release()


def stalling_engine(models_dirs: tuple[str, ...] = (), **_: Any) -> Any:
    """A served engine for the fault tests (see :class:`_Stalling`)."""
    return _Stalling(models_dirs)
