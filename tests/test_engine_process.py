"""The engine in its own process: typed jobs and messages, crash isolation, cancel, restart.

The child runs the real facade (``Engine.handle``'s code path) around a test double
(:class:`~fbupscale_gui.worker.testing.FakeRunner`, named by ``module:callable`` so the spawned
interpreter can make it) or the real engine with Lanczos (no weights, instant).
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from fbupscale_gui.core.errors import GpuOutOfMemoryError, ModelNotFoundError
from fbupscale_gui.core.job import Progress
from fbupscale_gui.core.messages import (
    Cancelled,
    CandidateReady,
    Done,
    EngineCrashed,
    Failed,
    JobProgress,
    Message,
    ModelJob,
    Pixels,
    ReadNumbersJob,
    ReconstructJob,
    ScoreJob,
    Started,
    UnexpectedEngineError,
    VideoBatchJob,
    failed_from,
    rebuild_error,
)
from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
from fbupscale_gui.core.runtime import ResolvedRuntime
from fbupscale_gui.host.client import EngineProcess
from fbupscale_gui.storage.cutouts import make_source

FAKE = "fbupscale_gui.worker.testing:FakeRunner"
#: A safety net for a hung child, not a timing assertion.
WAIT_S = 120


class Recorder:
    """Collects messages from the reader thread; waits for a job's final message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.changed = threading.Condition()

    def __call__(self, message: Message) -> None:
        with self.changed:
            self.messages.append(message)
            self.changed.notify_all()

    def of(self, job_id: int) -> list[Message]:
        with self.changed:
            return [m for m in self.messages if m.job_id == job_id]

    def wait(self, predicate, timeout: float = WAIT_S) -> None:  # type: ignore[no-untyped-def]
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.messages), timeout), self.messages

    def final(self, job_id: int) -> Message:
        self.wait(
            lambda ms: any(
                m.job_id == job_id and isinstance(m, Done | Failed | Cancelled) for m in ms
            )
        )
        return self.of(job_id)[-1]


@pytest.fixture
def cutout(tmp_path: Path) -> Path:
    path = tmp_path / "cutout.png"
    Image.new("RGB", (32, 32), (30, 120, 60)).save(path)
    return path


def request_for(path: Path, engine: str = "lanczos", variants: int = 1) -> ReconstructionRequest:
    return ReconstructionRequest(engine=engine, source=make_source(path), variants=variants)


@pytest.fixture
def engine():  # type: ignore[no-untyped-def]
    made: list[EngineProcess] = []

    def make(
        factory: str = FAKE, grace_s: float = 10.0, **kwargs: object
    ) -> tuple[EngineProcess, Recorder]:
        recorder = Recorder()
        process = EngineProcess(recorder, factory=factory, kwargs=kwargs, grace_s=grace_s)
        made.append(process)
        return process, recorder

    yield make
    for process in made:
        process.kill()
        process.shutdown(10)


# -- plain data ------------------------------------------------------------------------------


def test_every_job_kind_and_message_round_trips_as_plain_data(cutout: Path) -> None:
    request = request_for(cutout)
    runtime = ResolvedRuntime("cuda:0", "bf16", "model", "torch", "2.13.0", "0.36.0")
    jobs = [
        ReconstructJob(request),
        VideoBatchJob("clip.mp4", 0, 10, "realesrgan", "out.mp4", (1, 2, 30, 40), "top", "median"),
        ModelJob("add", "span.safetensors", "/models", "CC BY-NC-SA 4.0"),
        ModelJob("convert"),
        ScoreJob("cutout.png", ("a.png", "b.png")),
        ReadNumbersJob("cutout.png"),
    ]
    image = Image.new("RGB", (5, 7), (1, 2, 3))
    messages: list[Message] = [
        Started(1, "video"),
        JobProgress(1, Progress.single("fast", 2, 9, "tile 2/9")),
        CandidateReady(
            1,
            CandidateKey(variant=1, lora=True, stage=2),
            7,
            request,
            Pixels.from_image(image),
            runtime,
            "cuda:0 bf16 model",
            {"stage2": 1.5},
            31.25,
            {"realesrgan": {"ref": "x4.bin", "sha256": "ab" * 32}},
        ),
        failed_from(1, GpuOutOfMemoryError("none", "model", "cuda:0")),
        Cancelled(1, "hard"),
        Done(1, (31.0, None)),
    ]
    for item in [*jobs, *messages]:
        assert pickle.loads(pickle.dumps(item)) == item
    ready = messages[2]
    assert isinstance(ready, CandidateReady)
    candidate = ready.candidate()
    assert candidate.image.tobytes() == image.tobytes() and candidate.resolved == runtime


def test_errors_are_rebuilt_with_their_type_and_fields() -> None:
    oom = rebuild_error(
        pickle.loads(pickle.dumps(failed_from(3, GpuOutOfMemoryError("none", "model"))))
    )
    assert isinstance(oom, GpuOutOfMemoryError) and oom.next_mode == "model"
    missing = rebuild_error(
        failed_from(3, ModelNotFoundError("FLUX.1-dev", "bfl/flux", ["/a"], "put it there"))
    )
    assert isinstance(missing, ModelNotFoundError)
    assert (
        missing.what == "FLUX.1-dev"
        and missing.searched == ["/a"]
        and "put it there" in str(missing)
    )
    bug = rebuild_error(failed_from(3, KeyError("stage3")))
    assert isinstance(bug, UnexpectedEngineError) and bug.type_name == "KeyError"
    crash = rebuild_error(
        failed_from(3, EngineCrashed("the engine process was killed by SIGKILL", "last line"))
    )
    assert isinstance(crash, EngineCrashed) and crash.detail == "last line"


def test_resolved_runtime_names_what_differs() -> None:
    then = ResolvedRuntime("cuda:0", "bf16", "model", "torch", "2.13.0", "0.36.0")
    now = ResolvedRuntime("cpu", "bf16", "none", "torch", "2.13.0", "0.36.0")
    assert then.differences(now) == ["device: cuda:0 -> cpu", "memory_mode: model -> none"]
    assert ResolvedRuntime.from_dict(then.to_dict()) == then
    assert (
        ResolvedRuntime.from_dict({"device": "cpu", "precision": "fp32", "new": "x"}).backend == ""
    )


# -- the facade, in this process -------------------------------------------------------------


def test_engine_handle_streams_scored_candidates_with_runtime(cutout: Path) -> None:
    from fbupscale_gui.engine import Engine

    messages = list(Engine().handle(5, ReconstructJob(request_for(cutout)), lambda: False))
    assert isinstance(messages[0], Started) and isinstance(messages[-1], Done)
    (ready,) = [m for m in messages if isinstance(m, CandidateReady)]
    assert ready.lr_consistency is not None and ready.lr_consistency > 20
    assert ready.runtime.backend == "pillow" and ready.runtime.device == "cpu"
    assert any(isinstance(m, JobProgress) for m in messages)


def test_score_job_runs_through_the_same_facade(cutout: Path, tmp_path: Path) -> None:
    from fbupscale_gui.engine import Engine

    good = tmp_path / "good.png"
    Image.open(cutout).resize((320, 320), Image.Resampling.LANCZOS).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    messages = list(Engine().handle(6, ScoreJob(str(cutout), (str(good), str(bad))), lambda: False))
    done = messages[-1]
    assert isinstance(done, Done)
    score, missing = done.result
    assert score is not None and score > 30 and missing is None


def test_a_failed_fingerprint_is_not_cached(monkeypatch: pytest.MonkeyPatch, cutout: Path) -> None:
    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.engine import facade
    from fbupscale_gui.engine.fast import engines as fast

    monkeypatch.setattr(facade, "_weights_cache", {})
    calls: list[int] = []

    def broken() -> tuple[Path, Path]:
        calls.append(1)
        raise OSError("disk gone")

    monkeypatch.setattr(fast, "realesrgan_model_files", broken)
    candidate = Candidate(
        CandidateKey(0, False), 1, Image.new("RGB", (4, 4)), request_for(cutout, "realesrgan")
    )
    assert facade.weights_for(candidate) == {}
    weights = cutout.parent / "x4.bin"
    weights.write_bytes(b"weights")
    monkeypatch.setattr(fast, "realesrgan_model_files", lambda: (weights, weights))
    found = facade.weights_for(candidate)  # tried again, not "{}" from the first failure
    assert found["realesrgan"]["sha256"] and len(calls) == 1


def test_a_bug_reading_the_cutout_to_score_fails_the_job(
    monkeypatch: pytest.MonkeyPatch, cutout: Path
) -> None:
    """Only an unreadable cutout (which the runner reports itself) leaves the score out; any
    other error fails the job with its message, never a candidate silently left unscored."""
    from fbupscale_gui.core.job import Candidate, IsCancelled, OnProgress
    from fbupscale_gui.engine import facade
    from fbupscale_gui.storage import cutouts

    def broken(source: object) -> None:
        raise RuntimeError("decoder bug")

    class Runner:
        def run(
            self, request: ReconstructionRequest, on_progress: OnProgress, is_cancelled: IsCancelled
        ) -> Iterator[Candidate]:
            yield Candidate(CandidateKey(0, False), 1, Image.new("RGB", (4, 4)), request)

    monkeypatch.setattr(cutouts, "load_source", broken)
    job = ReconstructJob(request_for(cutout))
    messages = list(facade.handle(Runner(), 7, job, lambda: False))
    final = messages[-1]
    assert isinstance(final, Failed) and "decoder bug" in final.reason
    assert not any(isinstance(m, CandidateReady) for m in messages)


# -- the engine process ----------------------------------------------------------------------


@pytest.mark.slow  # an engine child process
def test_jobs_run_in_the_child_and_its_messages_come_back(engine, cutout: Path) -> None:  # type: ignore[no-untyped-def]
    process, messages = engine(steps=2)
    request = request_for(cutout, "flux", variants=2)
    process.submit(1, ReconstructJob(request))
    assert isinstance(messages.final(1), Done)
    assert isinstance(messages.of(1)[0], Started)
    ready = [m for m in messages.of(1) if isinstance(m, CandidateReady)]
    assert [m.key for m in ready] == request.candidate_keys()  # all, in order
    assert all(m.lr_consistency is not None and m.runtime.backend == "fake" for m in ready)
    assert process.pid is not None and process.pid != os.getpid()


@pytest.mark.slow  # an engine child process
def test_sigkill_mid_job_fails_it_with_the_signal_and_the_next_job_runs(
    engine, cutout: Path
) -> None:  # type: ignore[no-untyped-def]
    process, messages = engine(steps=400, step_s=0.05)
    process.submit(1, ReconstructJob(request_for(cutout, variants=3)))
    messages.wait(lambda ms: any(isinstance(m, JobProgress) for m in ms))
    first = process.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    failed = messages.final(1)
    assert isinstance(failed, Failed) and failed.crashed
    assert "SIGKILL" in failed.reason
    assert not any(isinstance(m, CandidateReady) for m in messages.of(1))  # nothing partial
    process.kwargs = {"steps": 1}  # the restarted engine: quick
    process.submit(2, ReconstructJob(request_for(cutout)))
    assert isinstance(messages.final(2), Done)
    assert process.pid != first and process.starts == 2


@pytest.mark.slow  # an engine child process
def test_a_crash_reports_the_engines_last_stderr_lines(engine, cutout: Path) -> None:  # type: ignore[no-untyped-def]
    process, messages = engine(factory="fbupscale_gui.host.testing:crashing_runner")
    process.submit(1, ReconstructJob(request_for(cutout)))
    failed = messages.final(1)
    assert isinstance(failed, Failed) and failed.crashed
    assert "exited with code 3" in failed.reason
    assert "CUDA error: an illegal memory access" in failed.detail


@pytest.mark.slow  # an engine child process
def test_an_engine_that_raises_while_importing_fails_the_job_and_lives(
    engine, cutout: Path
) -> None:  # type: ignore[no-untyped-def]
    process, messages = engine(factory="fbupscale_gui.worker.testing:broken_engine")
    process.submit(1, ReconstructJob(request_for(cutout)))
    failed = messages.final(1)
    assert isinstance(failed, Failed) and not failed.crashed
    assert "libtorch_cpu.so" in failed.reason and failed.error_type == "ImportError"
    pid = process.pid
    process.submit(2, ReconstructJob(request_for(cutout)))
    assert isinstance(messages.final(2), Failed)
    assert process.pid == pid  # the process stayed up; it says the same, clearly


@pytest.mark.slow  # an engine child process
def test_cancel_stops_within_a_step(engine, cutout: Path) -> None:  # type: ignore[no-untyped-def]
    process, messages = engine(steps=10_000, step_s=0.01)
    process.submit(1, ReconstructJob(request_for(cutout)))
    messages.wait(lambda ms: any(isinstance(m, JobProgress) for m in ms))
    process.cancel(1)
    end = messages.final(1)
    assert isinstance(end, Cancelled) and end.note == ""  # cooperative, no hard stop
    steps = [m.progress.job_step for m in messages.of(1) if isinstance(m, JobProgress)]
    assert steps[-1] < 10_000
    pid = process.pid
    process.kwargs = {"steps": 1}
    process.submit(2, ReconstructJob(request_for(cutout)))
    assert isinstance(messages.final(2), Done) and process.pid == pid  # no restart needed


@pytest.mark.slow  # an engine child process
def test_a_hung_engine_is_stopped_hard_after_the_grace_period(engine, cutout: Path) -> None:  # type: ignore[no-untyped-def]
    process, messages = engine(grace_s=1.0, hang_s=600.0)
    process.submit(1, ReconstructJob(request_for(cutout)))
    messages.wait(lambda ms: any(isinstance(m, Started) for m in ms))
    first = process.pid
    process.cancel(1)
    end = messages.final(1)
    assert isinstance(end, Cancelled) and "did not stop within 1 s" in end.note
    process.kwargs = {"steps": 1}
    process.submit(2, ReconstructJob(request_for(cutout)))
    assert isinstance(messages.final(2), Done) and process.pid != first


@pytest.mark.slow  # an engine child process
def test_the_engine_process_ends_with_the_window(engine, cutout: Path) -> None:  # type: ignore[no-untyped-def]
    process, messages = engine(steps=10_000, step_s=0.01)
    process.submit(1, ReconstructJob(request_for(cutout)))
    messages.wait(lambda ms: any(isinstance(m, JobProgress) for m in ms))
    pid = process.pid
    assert process.shutdown(30)  # the running job stops at its next step, then the process
    assert isinstance(messages.final(1), Cancelled)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
