"""Engine doubles that misbehave as a process (for the crash tests): no Qt, no torch."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["crashing_runner"]


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
