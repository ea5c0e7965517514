"""The window's side of the engine process: spawn it, send jobs, read its messages.

The process is a fresh interpreter (``python -m fbupscale_gui.host.child``, exec'd, never a
fork of the window, which Qt and CUDA would not survive); jobs and messages travel over a
socket pair as pickled plain dataclasses (:mod:`multiprocessing.connection` framing).

No Qt and no engine here: :class:`EngineProcess` calls ``on_message`` from its reader thread
with each :mod:`~fbupscale_gui.core.messages` message; the window's bridge
(:mod:`fbupscale_gui.worker.engine_process`) hands them to the GUI thread.

Crash isolation: when the process dies (a segfault, an out-of-memory kill, a CUDA fault, an
exit) the job it was running ends with :class:`~fbupscale_gui.core.messages.Failed`
(``crashed=True``; the reason names the signal or the exit code, the detail holds its last
stderr lines); the next job starts a fresh process. A cancel the engine does not acknowledge
within ``grace_s`` stops the process hard (SIGKILL) and the job ends ``Cancelled``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import IO, Any, Final

from fbupscale_gui.core.messages import (
    FINAL,
    Cancelled,
    EngineCrashed,
    JobKind,
    Message,
    failed_from,
)

__all__ = ["DEFAULT_FACTORY", "DEFAULT_GRACE_S", "EngineProcess", "exit_reason"]

log = logging.getLogger(__name__)

DEFAULT_FACTORY: Final = "fbupscale_gui.engine:Engine"
#: First argument that makes the frozen app run as the engine process.
ENGINE_CHILD_FLAG: Final = "--engine-child"
#: Seconds a cancelled job may take to stop before the process is killed and restarted.
DEFAULT_GRACE_S: Final = 10.0
#: stderr lines kept for a crash report.
STDERR_LINES: Final = 12

OnMessage = Callable[[Message], None]


def exit_reason(exitcode: int | None) -> str:
    """ "was killed by SIGKILL", "exited with code 3"."""
    if exitcode is None:
        return "stopped responding"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


def child_command(fd: int, factory: str, kwargs: Mapping[str, Any]) -> list[str]:
    """The engine process's command line: this interpreter (or the frozen app) in child mode."""
    tail = ["--fd", str(fd), "--factory", factory, "--kwargs", json.dumps(dict(kwargs))]
    if getattr(sys, "frozen", False):  # the PyInstaller bundle: packaging/launch.py
        return [sys.executable, ENGINE_CHILD_FLAG, *tail]
    return [sys.executable, "-m", "fbupscale_gui.host.child", *tail]


class _Generation:
    """One started engine process, its pipe and its stderr reader."""

    def __init__(
        self, process: subprocess.Popen[bytes], conn: Connection, stderr: IO[bytes]
    ) -> None:
        self.process = process
        self.conn = conn
        self.stderr = stderr
        self.tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self.stderr_done = threading.Event()
        self.send_lock = threading.Lock()


class EngineProcess:
    """The engine in a child process (multiprocessing *spawn*), restarted after a crash.

    ``factory`` (``module:callable``) and ``kwargs`` make the engine in the child (a test
    double in tests). ``on_message`` is called from a reader thread. One job runs at a time;
    :meth:`submit` a job only after the previous one ended.
    """

    def __init__(
        self,
        on_message: OnMessage,
        *,
        factory: str = DEFAULT_FACTORY,
        kwargs: Mapping[str, Any] | None = None,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> None:
        self._on_message = on_message
        self.factory = factory
        self.kwargs = dict(kwargs or {})
        self.grace_s = grace_s
        self._lock = threading.RLock()
        self._gen: _Generation | None = None
        self._running: int | None = None  # job id in flight
        self._hard_stopped: set[int] = set()
        self._stopping = False
        self.starts = 0

    # -- state ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        gen = self._gen
        return gen.process.pid if gen is not None and gen.process.poll() is None else None

    def is_alive(self) -> bool:
        gen = self._gen
        return gen is not None and gen.process.poll() is None

    # -- commands ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process unless it runs (pre-warm: the engine itself loads on a job)."""
        with self._lock:
            if self._gen is not None and self._gen.process.poll() is None:
                return
            self._stopping = False
            parent, child = multiprocessing.Pipe(duplex=True)
            process = subprocess.Popen(
                child_command(child.fileno(), self.factory, self.kwargs),
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                close_fds=True,
            )
            child.close()
            assert process.stderr is not None
            gen = _Generation(process, parent, process.stderr)
            self._gen = gen
            self.starts += 1
            threading.Thread(
                target=self._read_stderr, args=(gen,), name="fbupscale-engine-stderr", daemon=True
            ).start()
            threading.Thread(
                target=self._read, args=(gen,), name="fbupscale-engine-reader", daemon=True
            ).start()

    def submit(self, job_id: int, job: JobKind) -> None:
        """Send ``job`` (starting the process first if needed); its messages follow."""
        with self._lock:
            self.start()
            gen = self._gen
            assert gen is not None
            self._running = job_id
        try:
            with gen.send_lock:
                gen.conn.send(("job", job_id, job))
        except (OSError, ValueError):
            pass  # the process died just now: its reader reports the job as failed

    def cancel(self, job_id: int) -> None:
        """Ask the engine to stop ``job_id``; kill it after ``grace_s`` if it does not."""
        with self._lock:
            gen = self._gen
            if gen is None or self._running != job_id:
                return
        try:
            with gen.send_lock:
                gen.conn.send(("cancel", job_id))
        except (OSError, ValueError):
            return
        timer = threading.Timer(self.grace_s, self._hard_stop, args=(gen, job_id))
        timer.daemon = True
        timer.start()

    def kill(self) -> None:
        """SIGKILL the process (what a crash looks like; tests and the grace timeout)."""
        gen = self._gen
        if gen is not None and gen.process.poll() is None:
            gen.process.kill()

    def shutdown(self, timeout_s: float = 30.0) -> bool:
        """Stop the process (after the running job, which should be cancelled first)."""
        with self._lock:
            gen, self._stopping = self._gen, True
        if gen is None:
            return True
        try:
            with gen.send_lock:
                gen.conn.send(("stop",))
        except (OSError, ValueError):
            pass
        try:
            gen.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            gen.process.kill()
            gen.process.wait(5)
            return False
        return True

    # -- reader threads ---------------------------------------------------------------------

    def _hard_stop(self, gen: _Generation, job_id: int) -> None:
        with self._lock:
            if self._gen is not gen or self._running != job_id:
                return
            self._hard_stopped.add(job_id)
        log.warning(
            "the engine did not stop job %d within %.0f s: restarting it", job_id, self.grace_s
        )
        self.kill()

    def _read_stderr(self, gen: _Generation) -> None:
        with gen.stderr as pipe:
            buffered = b""
            while chunk := os.read(pipe.fileno(), 65536):
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(chunk.decode(errors="replace"))
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                gen.tail.extend(line.decode(errors="replace") for line in lines if line.strip())
            if buffered.strip():
                gen.tail.append(buffered.decode(errors="replace"))
        gen.stderr_done.set()

    def _read(self, gen: _Generation) -> None:
        while True:
            try:
                message = gen.conn.recv()
            except (EOFError, OSError):
                break
            if isinstance(message, FINAL):
                with self._lock:
                    if self._running == message.job_id:
                        self._running = None
            self._deliver(message)
        self._died(gen)

    def _died(self, gen: _Generation) -> None:
        try:
            gen.process.wait(10)
        except subprocess.TimeoutExpired:
            gen.process.kill()
            gen.process.wait(5)
        gen.stderr_done.wait(2)
        gen.conn.close()
        with self._lock:
            job_id, self._running = self._running, None
            if self._gen is gen:
                self._gen = None
            hard = job_id is not None and job_id in self._hard_stopped
            self._hard_stopped.discard(job_id if job_id is not None else -1)
            stopping = self._stopping
        if job_id is None:
            if not stopping:
                log.warning("the engine process %s while idle", exit_reason(gen.process.returncode))
            return
        if hard:
            note = f"the engine did not stop within {self.grace_s:g} s and was restarted"
            self._deliver(Cancelled(job_id, note))
            return
        reason = exit_reason(gen.process.returncode)
        detail = "\n".join(gen.tail)
        last = gen.tail[-1] if gen.tail else ""
        text = f"the engine process {reason}" + (f" (last output: {last})" if last else "")
        log.error("%s while running job %d", text, job_id)
        self._deliver(failed_from(job_id, EngineCrashed(text, detail), detail))

    def _deliver(self, message: Message) -> None:
        try:
            self._on_message(message)
        except Exception:
            log.exception("handling an engine message failed")
