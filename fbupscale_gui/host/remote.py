"""A desk's (or the CLI's) side of a served engine (``fbupscale serve``): HTTP + SSE.

Standard library only (no Ray, no Qt, no engine): the window's process imports this.

:func:`remote_handle` has the shape of the engine's own entry point
(``handle(job_id, job, is_cancelled) -> Iterator[Message]``): it submits a reconstruction
(the request as JSON plus the cutout's bytes), follows the job's event stream and yields the
same :mod:`~fbupscale_gui.core.messages` messages as the local engine process. A dropped
connection does not end the job: the server keeps running it, and the stream is resumed by
the job's id from the last message received (one :class:`Warning` says so).

:class:`RemoteEngine` has the face of :class:`~.client.EngineProcess` (``submit``,
``cancel``, ``shutdown``, ``on_message`` from a reader thread) for the window's jobs client.

The server never takes a path: :func:`for_server` sends the cutout as bytes and each model
as its *name* (the file or folder name, looked up in the server's models folders).
Candidates come back with the desk's own request, paths included.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path, PureWindowsPath
from typing import Any, Final

from fbupscale_gui.core.errors import Cancelled as CancelledError
from fbupscale_gui.core.errors import FbError
from fbupscale_gui.core.job import IsCancelled
from fbupscale_gui.core.messages import (
    FINAL,
    Cancelled,
    CandidateReady,
    EngineCrashed,
    JobKind,
    Message,
    ReconstructJob,
    Warning,
    failed_from,
)
from fbupscale_gui.core.request import ModelRef, ReconstructionRequest
from fbupscale_gui.core.wire import message_from_json

__all__ = [
    "RemoteAuthError",
    "RemoteEngine",
    "RemoteError",
    "ServerClient",
    "for_server",
    "remote_handle",
]

log = logging.getLogger(__name__)

#: How long a desk keeps trying to reattach to a job after losing the server.
REATTACH_S: Final = 600.0
#: Seconds between reconnection attempts (doubling up to this).
RETRY_MAX_S: Final = 5.0


class RemoteError(FbError):
    """The server refused a call or could not be reached (one line, naming the server)."""


class RemoteAuthError(RemoteError):
    """The server refused the token (HTTP 401)."""


class _Dropped(Exception):
    """The connection broke; the job goes on on the server."""


def _name(path: str) -> str:
    return PureWindowsPath(path).name if "\\" in path else Path(path).name


def _ref(ref: ModelRef | None) -> ModelRef | None:
    if ref is None or not ref.path:
        return ref
    return dataclasses.replace(ref, path=_name(ref.path))


def for_server(request: ReconstructionRequest) -> ReconstructionRequest:
    """``request`` as a server takes it: the cutout and every model named, not pathed."""
    source = request.source
    if source is not None:
        source = dataclasses.replace(source, path=source.name or _name(source.path))
    lora = request.lora
    if lora.model is not None:
        lora = dataclasses.replace(lora, model=_ref(lora.model))
    flux, controlnet = _ref(request.flux), _ref(request.controlnet)
    assert flux is not None and controlnet is not None
    return request.replace(
        source=source, lora=lora, flux=flux, controlnet=controlnet, sr_model=_ref(request.sr_model)
    )


class ServerClient:
    """Calls to one server with one token. Raises :class:`RemoteError` (401:
    :class:`RemoteAuthError`) with the server's one-line reason."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RemoteError(f"server: {url!r} is not an http:// or https:// address")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def _open(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        req = urllib.request.Request(f"{self.url}/v1{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout_s)
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read())
                reason = str(body.get("error") or body.get("detail") or "")
            except (ValueError, AttributeError, OSError):
                reason = ""
            reason = reason or exc.reason
            cls = RemoteAuthError if exc.code == 401 else RemoteError
            raise cls(f"server {self.url} refused ({exc.code}): {reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", exc)
            raise _Dropped(f"cannot reach the server {self.url} ({why})") from None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON call; raises RemoteError (also when the server cannot be reached)."""
        try:
            with self._open(method, path, body) as response:
                return json.loads(response.read())
        except _Dropped as exc:
            raise RemoteError(str(exc)) from None

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/health")

    def models(self) -> dict[str, Any]:
        return self.call("GET", "/models")

    def jobs(self) -> list[dict[str, Any]]:
        return self.call("GET", "/jobs")["jobs"]

    def cancel(self, server_id: str) -> None:
        self.call("POST", f"/jobs/{server_id}/cancel", {})

    def submit(self, job_id: int, request: ReconstructionRequest) -> str:
        """Send the request and its cutout's bytes; the server's id for the job."""
        if request.source is None:
            raise RemoteError("the request names no cutout to send to the server")
        try:
            cutout = Path(request.source.path).read_bytes()
        except OSError as exc:
            raise RemoteError(f"{request.source.path}: cannot read ({exc.strerror})") from None
        body = {
            "job_id": job_id,
            "request": for_server(request).to_dict(),
            "cutout": base64.b64encode(cutout).decode("ascii"),
        }
        return str(self.call("POST", "/jobs", body)["id"])

    def events(self, server_id: str, since: int) -> Iterator[tuple[int, Message]]:
        """The job's messages from index ``since`` over one connection; raises
        :class:`_Dropped` when it breaks before the job's last message."""
        response = self._open("GET", f"/jobs/{server_id}/events?since={since}", timeout=60.0)
        index, data = since, ""
        with response:
            try:
                while True:
                    line = response.readline()
                    if not line:
                        raise _Dropped("the event stream ended")
                    text = line.decode("utf-8").rstrip("\r\n")
                    if text.startswith("id:"):
                        index = int(text[3:].strip())
                    elif text.startswith("data:"):
                        data += text[5:].strip()
                    elif not text and data:
                        message = message_from_json(json.loads(data))
                        data = ""
                        yield index, message
                        if isinstance(message, FINAL):
                            return
            except (OSError, ValueError) as exc:
                raise _Dropped(f"the connection broke ({exc})") from None

    def follow(
        self,
        server_id: str,
        *,
        since: int = 0,
        reattach_s: float = REATTACH_S,
        on_drop: Callable[[str], None] | None = None,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Iterator[Message]:
        """The job's messages from index ``since`` to its last one, reattaching after a
        dropped connection (``on_drop`` is told once per drop) for up to ``reattach_s`` s."""
        lost_at, delay = 0.0, 0.2
        while not stopped():
            try:
                for index, message in self.events(server_id, since):
                    since, lost_at, delay = index + 1, 0.0, 0.2
                    yield message
                return
            except _Dropped as exc:
                if not lost_at:
                    lost_at = time.monotonic()
                    if on_drop is not None:
                        on_drop(str(exc))
                if time.monotonic() - lost_at > reattach_s:
                    raise RemoteError(
                        f"lost the server {self.url} for {reattach_s:.0f} s ({exc}); the job "
                        f"may still finish there (job {server_id})"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)


def _restored(message: Message, request: ReconstructionRequest) -> Message:
    """A candidate carries the desk's own request (its paths), not the one sent."""
    if isinstance(message, CandidateReady):
        return dataclasses.replace(message, request=request.replace(only=message.request.only))
    return message


def remote_handle(
    client: ServerClient,
    job_id: int,
    job: JobKind,
    is_cancelled: IsCancelled,
    *,
    reattach_s: float = REATTACH_S,
) -> Iterator[Message]:
    """Run ``job`` on the server; the same messages as the local ``Engine.handle``. Never
    raises for the job's own failure (that is a ``Failed`` message)."""
    if not isinstance(job, ReconstructJob):
        yield failed_from(job_id, RemoteError(f"a {job.kind} job runs on this computer only"))
        return
    try:
        server_id = client.submit(job_id, job.request)
    except RemoteError as exc:
        yield failed_from(job_id, exc)
        return
    out: queue.SimpleQueue[Message | BaseException | None] = queue.SimpleQueue()
    done = threading.Event()

    def read() -> None:
        try:
            for message in client.follow(
                server_id,
                reattach_s=reattach_s,
                on_drop=lambda why: out.put(
                    Warning(job_id, f"lost the server ({why}); the job goes on there, reattaching")
                ),
                stopped=done.is_set,
            ):
                out.put(_restored(message, job.request))
        except BaseException as exc:
            out.put(exc)
        finally:
            out.put(None)

    threading.Thread(target=read, name=f"fbupscale-remote-{job_id}", daemon=True).start()
    cancel_sent = False
    try:
        while True:
            try:
                item = out.get(timeout=0.2)
            except queue.Empty:
                if not cancel_sent and is_cancelled():
                    cancel_sent = True
                    with contextlib.suppress(RemoteError):
                        client.cancel(server_id)
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                if isinstance(item, CancelledError):
                    yield Cancelled(job_id)
                else:
                    yield failed_from(job_id, item)
                return
            yield item
    finally:
        done.set()


OnMessage = Callable[[Message], None]


class RemoteEngine:
    """A served engine with the face of :class:`~.client.EngineProcess`: ``submit`` a job,
    its messages go to ``on_message`` from a reader thread. Several jobs may run at once."""

    def __init__(self, on_message: OnMessage, url: str, token: str) -> None:
        self.client = ServerClient(url, token)
        self._on_message = on_message
        self._cancelled: set[int] = set()
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def is_alive(self) -> bool:
        return not self._stopping

    def start(self) -> None:
        self._stopping = False

    def submit(self, job_id: int, job: JobKind) -> None:
        with self._lock:
            self._running.add(job_id)
        threading.Thread(
            target=self._run, args=(job_id, job), name=f"fbupscale-desk-{job_id}", daemon=True
        ).start()

    def _run(self, job_id: int, job: JobKind) -> None:
        try:
            for message in remote_handle(self.client, job_id, job, lambda: self._stop(job_id)):
                self._deliver(message)
        except Exception as exc:  # a bug here must still end the job in the window
            log.exception("served job %d", job_id)
            self._deliver(failed_from(job_id, EngineCrashed(f"the server link failed: {exc}")))
        finally:
            with self._lock:
                self._running.discard(job_id)
                self._cancelled.discard(job_id)

    def _stop(self, job_id: int) -> bool:
        return self._stopping or job_id in self._cancelled

    def cancel(self, job_id: int) -> None:
        with self._lock:
            if job_id in self._running:
                self._cancelled.add(job_id)

    def shutdown(self, timeout_s: float = 30.0) -> bool:
        """Stop following jobs (the server cancels those still running)."""
        self._stopping = True
        deadline = time.monotonic() + timeout_s
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._running

    def _deliver(self, message: Message) -> None:
        try:
            self._on_message(message)
        except Exception:
            log.exception("handling a served engine message failed")
