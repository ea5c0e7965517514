"""The engine served to many desks: a Ray Serve application (``fbupscale serve``).

Deployments:

- ``fast_engine``: CPU replicas running Lanczos, Real-ESRGAN and user SR models;
- ``flux_engine``: one replica per GPU (``num_gpus=1``) running FLUX;
- ``gateway``: the HTTP ingress (FastAPI). It checks the bearer token, the upload size and
  the request rate, turns a model *name* into the server's file (never a client's path),
  routes each job to its deployment and keeps every job's messages so that a client which
  lost its connection resumes the stream where it stopped.

Each engine replica runs jobs through :meth:`Engine.handle <fbupscale_gui.engine.facade.handle>`,
the same entry point as the desk's engine process, and streams the same messages
(:mod:`fbupscale_gui.core.messages`) as JSON (:mod:`fbupscale_gui.core.wire`). Ray Serve
queues jobs when every replica is busy (one job a replica at a time) and restarts a replica
that dies.

A replica killed mid-job fails that job, once, with a clear message (``Failed.crashed``;
the desk offers to run it again): it is not retried, so a job that kills its replica cannot
kill the next one too, and a FLUX job never silently costs twice its GPU time. Other jobs
keep running, and Serve starts a new replica.

Protocol (every call needs ``Authorization: Bearer <token>``, else 401 and nothing runs):

- ``GET /v1/health``; ``GET /v1/models``: engines and named models with their SHA-256;
- ``POST /v1/jobs`` ``{"job_id": n, "request": {...}, "cutout": base64}`` -> ``{"id": ...}``;
- ``GET /v1/jobs``: every job and its state;
- ``GET /v1/jobs/{id}/events?since=k``: Server-Sent Events, event ``k`` onwards (``id:`` is
  the message's index; ``Last-Event-ID`` works too), ending after the job's last message;
- ``POST /v1/jobs/{id}/cancel``.

The window's process never imports this module (an import-linter contract says so).
"""

# No "from __future__ import annotations": FastAPI reads the route annotations at run time.

import asyncio
import base64
import binascii
import collections
import contextvars
import dataclasses
import hmac
import importlib
import json
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from ray import serve

from fbupscale_gui import __version__
from fbupscale_gui.core.errors import FbError, RequestError
from fbupscale_gui.core.messages import (
    FINAL,
    CandidateReady,
    EngineCrashed,
    Failed,
    Message,
    Queued,
    ReconstructJob,
    failed_from,
)
from fbupscale_gui.core.messages import Cancelled as CancelledMessage
from fbupscale_gui.core.request import ModelRef, ReconstructionRequest
from fbupscale_gui.core.wire import message_from_json, message_to_json, model_name
from fbupscale_gui.host.serve_config import ServeConfig
from fbupscale_gui.storage.paths import PathEscapeError, contained

__all__ = ["EngineReplica", "Gateway", "build_app", "make_engine", "resolve_models"]

log = logging.getLogger(__name__)

API: Final = "/v1"
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE_S: Final = 15.0
#: A running job's replica sends this at least every HEARTBEAT_S seconds...
HEARTBEAT_S: Final = 1.0
ALIVE: Final = {"type": "alive"}
#: ...and the gateway fails the job when it has heard nothing for this long: a killed
#: replica's stream does not always end with an error.
SILENT_S: Final = 15.0
#: Extensions of model files a server lists (ComfyUI's set).
MODEL_SUFFIXES: Final = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")


def make_engine(models_dirs: tuple[str, ...] = (), **_: Any) -> Any:
    """The real engine, looking for FLUX folders in the server's models folders."""
    from fbupscale_gui.engine import Engine

    return Engine(search_dirs=models_dirs)


def _factory(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return factory


# -- models: names in, server paths out -----------------------------------------------------


def _find(name: str, models_dirs: tuple[str, ...], what: str) -> str:
    model_name(name, what)
    for folder in models_dirs:
        try:
            target = contained(folder, name, what)
        except PathEscapeError as exc:
            raise RequestError(str(exc)) from None
        if target.exists():
            return str(target)
    raise RequestError(f"{what}: this server has no model named {name!r} (see GET {API}/models)")


def _named(ref: ModelRef | None, models_dirs: tuple[str, ...], what: str) -> ModelRef | None:
    if ref is None:
        return None
    if ref.path:
        return dataclasses.replace(ref, path=_find(ref.path, models_dirs, what))
    if ref.repo_id:  # a Hugging Face repo id in the server's cache: "org/name"
        owner, _, repo = ref.repo_id.partition("/")
        model_name(owner, what), model_name(repo, what)
    return ref


def resolve_models(
    request: ReconstructionRequest, models_dirs: tuple[str, ...]
) -> ReconstructionRequest:
    """``request`` with every model *name* replaced by the server's file; raises
    :class:`RequestError` for a path-shaped or unknown name."""
    lora = request.lora
    if lora.model is not None:
        lora = dataclasses.replace(lora, model=_named(lora.model, models_dirs, "lora.model"))
    flux = _named(request.flux, models_dirs, "flux")
    controlnet = _named(request.controlnet, models_dirs, "controlnet")
    assert flux is not None and controlnet is not None
    return request.replace(
        flux=flux,
        controlnet=controlnet,
        lora=lora,
        sr_model=_named(request.sr_model, models_dirs, "sr_model"),
    )


# -- the engine replicas --------------------------------------------------------------------


class EngineReplica:
    """One engine in one Ray actor; runs one job at a time (Serve queues the rest)."""

    def __init__(self, factory: str, kwargs: Mapping[str, Any], models_dirs: tuple[str, ...]):
        self.engine = _factory(factory)(models_dirs=tuple(models_dirs), **dict(kwargs))
        self._one_job = threading.Lock()  # a cancelled job's thread may still be winding down

    def __del__(self) -> None:  # pragma: no cover - the actor's teardown
        release = getattr(self.engine, "release", None)
        if release is not None:
            release()

    async def run(
        self,
        job_id: int,
        request_data: Mapping[str, Any],
        client_data: Mapping[str, Any],
        cutout: bytes,
    ) -> AsyncIterator[dict[str, Any]]:
        """Run the (already model-resolved) request on ``cutout``; yield its messages as
        JSON. A cancelled stream (the client cancelled) stops the engine at its next step."""
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        stop = threading.Event()

        def send(item: dict[str, Any] | None) -> None:
            loop.call_soon_threadsafe(out.put_nowait, item)

        def work() -> None:
            from fbupscale_gui.engine.facade import handle

            try:
                with self._one_job, tempfile.TemporaryDirectory(prefix="fbupscale-job-") as tmp:
                    client = ReconstructionRequest.from_dict(client_data)
                    request = ReconstructionRequest.from_dict(request_data)
                    assert request.source is not None
                    path = Path(tmp) / "cutout"
                    path.write_bytes(cutout)
                    source = dataclasses.replace(request.source, path=str(path))
                    job = ReconstructJob(request.replace(source=source))
                    for message in handle(self.engine, job_id, job, stop.is_set):
                        if isinstance(message, CandidateReady):  # no server path goes back
                            message = dataclasses.replace(
                                message, request=client.replace(only=message.request.only)
                            )
                        send(message_to_json(message))
            except Exception as exc:
                send(message_to_json(failed_from(job_id, exc)))
            finally:
                send(None)

        threading.Thread(target=work, name=f"fbupscale-served-{job_id}", daemon=True).start()
        try:
            yield ALIVE
            while True:
                try:
                    item = await asyncio.wait_for(out.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield ALIVE  # the gateway knows this replica still runs the job
                    continue
                if item is None:
                    return
                yield item
        finally:
            stop.set()


# -- the gateway ----------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _Job:
    id: str
    job_id: int
    engine: str
    created: float
    events: list[str] = dataclasses.field(default_factory=list)
    state: str = "queued"
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    stream: Any = None  # the DeploymentResponseGenerator while running
    heard: float = 0.0  # when the replica last sent something
    watchdog: asyncio.Task[None] | None = None

    @property
    def final(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def add(self, message: Message) -> None:
        if self.final:  # e.g. the engine's own Cancelled after the gateway ended the job
            return
        self.events.append(json.dumps(message_to_json(message), separators=(",", ":")))
        if isinstance(message, FINAL):
            self.state = {Failed: "failed", CancelledMessage: "cancelled"}.get(
                type(message), "done"
            )
        elif self.state == "queued" and not isinstance(message, Queued):
            self.state = "running"
        self.changed.set()
        self.changed = asyncio.Event()


api = FastAPI(title="fbupscale engine server", version=__version__, docs_url=None, redoc_url=None)


class _Silent(Exception):
    """The replica running a job stopped answering (killed, or its node went away)."""


def _check(job: _Job) -> None:
    """Fail ``job`` if its replica has sent nothing (not even a heartbeat) for SILENT_S."""
    if job.final or not job.heard or time.monotonic() - job.heard <= SILENT_S:
        return
    log.error("job %s: its replica went silent; the job failed", job.id)
    job.add(_crashed(job.job_id, _Silent(f"no word from it for {SILENT_S:g} s")))
    if job.stream is not None:
        job.stream.cancel()


def _crashed(job_id: int, exc: BaseException) -> Message:
    why = str(exc) if isinstance(exc, _Silent) else type(exc).__name__
    text = (
        f"the server's engine replica died while running this job ({why}); "
        "the server restarts it - run the job again"
    )
    return failed_from(job_id, EngineCrashed(text, " ".join(str(exc).split())[:400]))


@serve.deployment(name="gateway", num_replicas=1, max_ongoing_requests=1000)
@serve.ingress(api)
class Gateway:
    """The HTTP ingress. One replica: it holds the job table that reconnecting clients read."""

    def __init__(self, config: ServeConfig, fast: Any, flux: Any) -> None:
        self.config = config
        self.fast = fast
        self.flux = flux
        self.jobs: dict[str, _Job] = {}
        self._calls: dict[str, collections.deque[float]] = {}
        self._hashes: dict[tuple[str, float, int], str] = {}

    # -- guards ---------------------------------------------------------------------------

    def _guard(self, request: Request) -> None:
        """Rate limit (per client address), then the bearer token: 429 / 401."""
        client = request.client.host if request.client else "?"
        now = time.monotonic()
        calls = self._calls.setdefault(client, collections.deque())
        while calls and now - calls[0] > 60.0:
            calls.popleft()
        if len(calls) >= self.config.max_requests_per_minute:
            raise HTTPException(
                429,
                f"too many requests: at most {self.config.max_requests_per_minute} a minute",
                headers={"Retry-After": str(max(1, int(61 - (now - calls[0]))))},
            )
        calls.append(now)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        expected = self.config.token.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(
                401,
                "missing or wrong token: send 'Authorization: Bearer <token>' (FBUPSCALE_TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def _body(self, request: Request) -> bytes:
        limit = self.config.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"upload too large: {declared} bytes, at most {limit}")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise HTTPException(413, f"upload too large: more than {limit} bytes")
        return bytes(body)

    def _job(self, job_id: str) -> _Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} on this server (finished long ago?)")
        return job

    # -- routes ---------------------------------------------------------------------------

    @api.get(f"{API}/health")
    async def health(self, request: Request) -> dict[str, Any]:
        self._guard(request)
        running = sum(1 for j in self.jobs.values() if not j.final)
        return {"ok": True, "version": __version__, "jobs_running": running}

    @api.get(f"{API}/models")
    async def models(self, request: Request) -> dict[str, Any]:
        self._guard(request)
        engines = ["lanczos", "realesrgan"] + (["flux"] if self.flux is not None else [])
        return {"engines": engines, "models": await asyncio.to_thread(self._list_models)}

    def _list_models(self) -> list[dict[str, Any]]:
        from fbupscale_gui.storage.weights import fingerprint

        found: list[dict[str, Any]] = []
        for folder in self.config.models_dirs:
            for entry in sorted(Path(folder).iterdir()):
                if entry.name.startswith(".") or not (
                    entry.is_dir() or entry.suffix.lower() in MODEL_SUFFIXES
                ):
                    continue
                stat = entry.stat()
                key = (str(entry), stat.st_mtime, stat.st_size)
                if key not in self._hashes:
                    self._hashes[key] = fingerprint(entry)
                kind = "folder" if entry.is_dir() else "file"
                found.append({"name": entry.name, "kind": kind, "sha256": self._hashes[key]})
        return found

    @api.post(f"{API}/jobs", status_code=202)
    async def submit(self, request: Request) -> dict[str, Any]:
        self._guard(request)
        body = await self._body(request)
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise RequestError("expected a JSON object")
            job_id = data.get("job_id", 0)
            if not isinstance(job_id, int) or isinstance(job_id, bool):
                raise RequestError("job_id: expected an integer")
            client = ReconstructionRequest.from_dict(data.get("request") or {})
            cutout = base64.b64decode(data.get("cutout", ""), validate=True)
            if client.source is None or not cutout:
                raise RequestError("a job needs the request's source and the cutout's bytes")
            served = resolve_models(client, self.config.models_dirs)
        except (ValueError, binascii.Error, TypeError) as exc:
            raise HTTPException(400, f"bad job: {' '.join(str(exc).split())}") from None
        except FbError as exc:
            raise HTTPException(400, str(exc)) from None
        handle = self.flux if served.engine == "flux" else self.fast
        if handle is None:
            raise HTTPException(422, "this server has no GPU replicas, so it does not run FLUX")
        self._forget_old()
        job = _Job(uuid.uuid4().hex, job_id, served.engine, time.time())
        self.jobs[job.id] = job
        job.add(Queued(job_id))
        # A fresh context: the tasks outlive this request, which Serve may clean up after.
        job.task = asyncio.create_task(
            self._run(job, handle, served, client, cutout), context=contextvars.Context()
        )
        job.watchdog = asyncio.create_task(self._watch(job), context=contextvars.Context())
        return {"id": job.id}

    async def _run(
        self,
        job: _Job,
        handle: Any,
        served: ReconstructionRequest,
        client: ReconstructionRequest,
        cutout: bytes,
    ) -> None:
        ended = False
        try:
            job.stream = handle.options(stream=True).run.remote(
                job.job_id, served.to_dict(), client.to_dict(), cutout
            )
            async for item in job.stream:
                job.heard = time.monotonic()  # (before its first item it waits in Serve's queue)
                if item == ALIVE:
                    continue
                message = message_from_json(item)
                job.add(message)
                ended = isinstance(message, FINAL)
        except asyncio.CancelledError:
            if not ended:
                job.add(CancelledMessage(job.job_id))
            return
        except Exception as exc:
            if job.state == "cancelled" or ended:
                return
            if _is_cancel(exc):
                job.add(CancelledMessage(job.job_id))
                return
            log.error("job %s: the engine replica failed: %r", job.id, exc)
            job.add(_crashed(job.job_id, exc))
            return
        finally:
            job.stream = None
            if job.watchdog is not None:
                job.watchdog.cancel()
        if not ended:
            job.add(_crashed(job.job_id, RuntimeError("the stream ended early")))

    async def _watch(self, job: _Job) -> None:
        """Fail a running job whose replica went silent: a killed replica's stream does not
        always end with an error. (Whoever reads the job checks too: :func:`_check`.)"""
        while not job.final:
            await asyncio.sleep(1.0)
            _check(job)

    def _forget_old(self) -> None:
        finished = sorted((j for j in self.jobs.values() if j.final), key=lambda j: j.created)
        for job in finished[: max(0, len(finished) - self.config.keep_jobs)]:
            del self.jobs[job.id]

    @api.get(f"{API}/jobs")
    async def list_jobs(self, request: Request) -> dict[str, Any]:
        self._guard(request)
        for job in list(self.jobs.values()):
            _check(job)
        return {
            "jobs": [
                {
                    "id": j.id,
                    "job_id": j.job_id,
                    "engine": j.engine,
                    "state": j.state,
                    "messages": len(j.events),
                    "silent_s": round(time.monotonic() - j.heard, 1) if j.heard else None,
                    "created": j.created,
                }
                for j in self.jobs.values()
            ]
        }

    @api.post(f"{API}/jobs/{{job_id}}/cancel", status_code=202)
    async def cancel(self, job_id: str, request: Request) -> dict[str, Any]:
        self._guard(request)
        job = self._job(job_id)
        if not job.final:
            # The job ends here and now; Serve cancels the replica's call, whose engine stops
            # at its next step (the replica takes its next job only once it has).
            job.add(CancelledMessage(job.job_id))
            if job.stream is not None:
                job.stream.cancel()
            if job.task is not None:
                job.task.cancel()
        return {"id": job.id, "state": job.state}

    @api.get(f"{API}/jobs/{{job_id}}/events")
    async def events(self, job_id: str, request: Request, since: int = 0) -> StreamingResponse:
        self._guard(request)
        job = self._job(job_id)
        last = request.headers.get("last-event-id", "")
        start = max(since, int(last) + 1 if last.isdigit() else 0)

        async def stream() -> AsyncIterator[bytes]:
            index, quiet = start, time.monotonic()
            while True:
                while index < len(job.events):
                    yield f"id: {index}\ndata: {job.events[index]}\n\n".encode()
                    index += 1
                if job.final:
                    return
                changed = job.changed
                try:
                    await asyncio.wait_for(changed.wait(), 1.0)
                except TimeoutError:
                    _check(job)
                    if time.monotonic() - quiet > KEEPALIVE_S:
                        quiet = time.monotonic()
                        yield b": keep-alive\n\n"

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def _is_cancel(exc: BaseException) -> bool:
    return type(exc).__name__ in ("RequestCancelledError", "TaskCancelledError")


# -- the application ------------------------------------------------------------------------


def build_app(config: ServeConfig, gpus: float = 0.0) -> Any:
    """The Serve application for ``config`` (``gpus``: GPUs the cluster has, for "auto")."""
    gpu_replicas = int(gpus) if config.gpu_replicas < 0 else config.gpu_replicas
    engine: Any = serve.deployment(EngineReplica, max_ongoing_requests=1, max_queued_requests=-1)
    args = (config.factory, dict(config.factory_kwargs), tuple(config.models_dirs))
    fast = engine.options(
        name="fast_engine",
        num_replicas=config.cpu_replicas,
        ray_actor_options={"num_cpus": config.cpus_per_replica},
    ).bind(*args)
    flux = (
        engine.options(
            name="flux_engine",
            num_replicas=gpu_replicas,
            ray_actor_options={"num_gpus": 1, "num_cpus": config.cpus_per_replica},
        ).bind(*args)
        if gpu_replicas > 0
        else None
    )
    gateway: Any = Gateway
    return gateway.options(ray_actor_options={"num_cpus": 0}).bind(config, fast, flux)
