"""The engine process's entry point: ``python -m fbupscale_gui.host.child --fd N``.

The process is *spawned* (a fresh interpreter through exec, never a fork of the window: Qt and
CUDA do not survive a fork), and it never re-imports the window's ``__main__``.

The pipe protocol, parent to child: ``("job", job_id, JobKind)``, ``("cancel", job_id)``,
``("stop",)``. Child to parent: the :mod:`~fbupscale_gui.core.messages` dataclasses, pickled
as they are. Jobs run one at a time in arrival order; a cancel is read by a reader thread at
any moment and seen by the engine within one tile or one denoising step.

The engine (torch, diffusers, ncnn) is imported here, on the first job, never in the window's
process. stderr is a pipe the parent reads, so when this process dies the window can
say why with its last lines; :mod:`faulthandler` writes a native crash's traceback there.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import logging
import os
import queue
import sys
import threading
from collections.abc import Iterator, Mapping
from multiprocessing.connection import Connection
from typing import Any

from fbupscale_gui.core.messages import JobKind, Message, Started, failed_from

__all__ = ["DEFAULT_FACTORY", "main", "make_runner"]

#: Scheduling priority below the window's (a CPU engine must not starve the GUI thread).
NICENESS = 5
#: The real engine: ``module:callable``.
DEFAULT_FACTORY = "fbupscale_gui.engine:Engine"

log = logging.getLogger("fbupscale_gui.host.child")


def make_runner(factory: str, kwargs: Mapping[str, Any] | None = None) -> Any:
    """Import ``module:callable`` and call it with ``kwargs`` (the engine, or a test double)."""
    module, _, name = factory.partition(":")
    return getattr(importlib.import_module(module), name)(**dict(kwargs or {}))


def _messages(runner: Any, job_id: int, job: JobKind, cancel: threading.Event) -> Iterator[Message]:
    handle = getattr(runner, "handle", None)
    if callable(handle):
        return iter(handle(job_id, job, cancel.is_set))
    from fbupscale_gui.engine.facade import handle as facade_handle

    return facade_handle(runner, job_id, job, cancel.is_set)


def run_from_argv(argv: list[str]) -> int:
    """``--fd N [--factory module:callable] [--kwargs JSON]``: serve the socket ``N``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="fbupscale-engine")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--factory", default=DEFAULT_FACTORY)
    parser.add_argument("--kwargs", default="{}")
    args = parser.parse_args(argv)
    main(Connection(args.fd), args.factory, json.loads(args.kwargs))
    return 0


def _die_with_parent() -> None:
    """On Linux, have the kernel SIGKILL this process when the window's process dies (a
    window killed mid-job must not leave an engine computing on)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def main(
    conn: Connection,
    factory: str = DEFAULT_FACTORY,
    kwargs: Mapping[str, Any] | None = None,
) -> None:
    """Serve jobs from ``conn`` until it closes or says stop."""
    faulthandler.enable()
    with contextlib.suppress(OSError, AttributeError):
        os.nice(NICENESS)  # the window's thread wins the CPU on a small machine
    # ncnn's OpenMP threads busy-wait unless told otherwise (a shared machine's cores)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(
        level=os.environ.get("FBUPSCALE_LOG", "INFO").upper(),
        format="%(asctime)s %(levelname)s engine %(name)s: %(message)s",
    )
    _die_with_parent()
    jobs: queue.SimpleQueue[tuple[int, JobKind] | None] = queue.SimpleQueue()
    cancels: dict[int, threading.Event] = {}
    lock = threading.Lock()
    closing = threading.Event()

    def event(job_id: int) -> threading.Event:
        with lock:
            made = cancels.setdefault(job_id, threading.Event())
            if closing.is_set():
                made.set()
            return made

    def read() -> None:
        while True:
            try:
                item = conn.recv()
            except (EOFError, OSError):
                break
            if item[0] == "job":
                jobs.put((item[1], item[2]))
            elif item[0] == "cancel":
                event(item[1]).set()
            elif item[0] == "stop":
                break
        # the window is gone or said stop: whatever runs stops at its next step
        closing.set()
        with lock:
            for running in cancels.values():
                running.set()
        jobs.put(None)

    threading.Thread(target=read, name="fbupscale-engine-pipe", daemon=True).start()
    runner: Any = None
    try:
        while (item := jobs.get()) is not None:
            job_id, job = item
            cancel = event(job_id)
            try:
                if runner is None:
                    runner = make_runner(factory, kwargs)
                for message in _messages(runner, job_id, job, cancel):
                    conn.send(message)
            except Exception as exc:  # the engine failed to load: this job fails, we live
                log.exception("the engine could not start")
                conn.send(Started(job_id, job.kind))
                conn.send(failed_from(job_id, exc))
            finally:
                with lock:
                    cancels.pop(job_id, None)
    except (BrokenPipeError, EOFError, OSError):
        pass  # the window went away
    finally:
        release = getattr(runner, "release", None)
        if callable(release):
            try:
                release()
            except Exception:
                log.exception("releasing the engine failed")


if __name__ == "__main__":
    raise SystemExit(run_from_argv(sys.argv[1:]))
