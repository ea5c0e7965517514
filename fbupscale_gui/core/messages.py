"""Job kinds and the message stream the engine answers with. Plain data, no Qt, no torch.

A job goes in (:data:`JobKind`), messages come out (:data:`Message`): ``Queued``, ``Started``,
``JobProgress``, ``CandidateReady``, ``Warning``, ``Failed``, ``Cancelled``, ``Done``. Every
field is a number, text, bytes, a tuple, a dict or one of the project's frozen dataclasses
(the request, the candidate key, :class:`~.runtime.ResolvedRuntime`), so a message crosses a
process boundary (pickled over a pipe) or a network unchanged. The window handles them in one
place; the engine (``Engine.handle``) produces them and computes what they carry (the
LR-consistency score, the weights' hashes, the resolved runtime).

Errors travel as :class:`Failed` (the exception's type name, its one-line message and its
simple attributes) and are rebuilt on the other side by :func:`rebuild_error`, so the window
still sees a :class:`~.errors.GpuOutOfMemoryError` with its ``next_mode``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from fbupscale_gui.core import errors as _errors
from fbupscale_gui.core.errors import FbError
from fbupscale_gui.core.job import Candidate, Progress
from fbupscale_gui.core.number_check import NumberCheck
from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
from fbupscale_gui.core.runtime import ResolvedRuntime

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "Cancelled",
    "CandidateReady",
    "Done",
    "EngineCrashed",
    "Failed",
    "JobKind",
    "JobProgress",
    "Message",
    "ModelJob",
    "Pixels",
    "Queued",
    "ReadNumbersJob",
    "ReconstructJob",
    "ScoreJob",
    "Started",
    "UnexpectedEngineError",
    "VideoBatchJob",
    "Warning",
    "failed_from",
    "rebuild_error",
]

# -- job kinds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconstructJob:
    """Reconstruct one cutout: FLUX, a fast engine or a user SR model (``request.engine``)."""

    request: ReconstructionRequest
    kind: Literal["reconstruct"] = "reconstruct"


@dataclass(frozen=True)
class VideoBatchJob:
    """Frames ``[start, end)`` of ``clip`` upscaled ×4 into the clip ``output``."""

    clip: str
    start: int
    end: int
    engine: str
    output: str
    #: (x, y, width, height) in source pixels, or None: the whole frame.
    rect: tuple[int, int, int, int] | None = None
    field: Literal["top", "bottom"] | None = None
    temporal: str = "none"
    kind: Literal["video"] = "video"


@dataclass(frozen=True)
class ModelJob:
    """A user SR model: ``inspect`` (what it is), ``add`` (validated, copied into the library
    folder ``library``), or ``convert`` (the shipped Real-ESRGAN ncnn weights into the
    library, for torch)."""

    op: Literal["inspect", "add", "convert"]
    path: str = ""
    library: str = ""
    licence: str = ""
    kind: Literal["model"] = "model"


@dataclass(frozen=True)
class ScoreJob:
    """LR-consistency of candidate files against their cutout (``Done.result``: the scores in
    dB, None where a file cannot be scored)."""

    cutout: str
    candidates: tuple[str, ...]
    kind: Literal["score"] = "score"


@dataclass(frozen=True)
class ReadNumbersJob:
    """Read the shirt numbers in a cutout, enlarged by the faithful preview first, to suggest
    them in the scene form (``Done.result``: the readings, a tuple of
    :class:`~.number_check.NumberReading`, best first)."""

    cutout: str
    kind: Literal["numbers"] = "numbers"


JobKind = ReconstructJob | VideoBatchJob | ModelJob | ScoreJob | ReadNumbersJob

# -- pixels ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pixels:
    """An RGB image as raw bytes (row-major, 3 bytes a pixel): cheap to send, no encoding.

    bench/engine_process.py measured the alternatives for a 1024² candidate (PNG, shared
    memory); raw bytes over the pipe won or tied (see README).
    """

    width: int
    height: int
    data: bytes

    @classmethod
    def from_image(cls, image: Image.Image) -> Pixels:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return cls(rgb.width, rgb.height, rgb.tobytes("raw", "RGB"))

    def to_image(self) -> Image.Image:
        from PIL import Image

        return Image.frombytes("RGB", (self.width, self.height), self.data)


# -- messages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    job_id: int


@dataclass(frozen=True)
class Started:
    job_id: int
    kind: str = "reconstruct"


@dataclass(frozen=True)
class JobProgress:
    job_id: int
    progress: Progress


@dataclass(frozen=True)
class CandidateReady:
    """One finished candidate, with everything the window shows and exports about it."""

    job_id: int
    key: CandidateKey
    seed: int
    request: ReconstructionRequest
    pixels: Pixels
    runtime: ResolvedRuntime
    #: The engine's own runtime text ("cpu ncnn fp32", "cuda:0 bf16 model").
    runtime_label: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)
    #: LR-consistency in dB against the cutout (None: the job had no readable cutout).
    lr_consistency: float | None = None
    #: Weights actually used that the request does not name: {name: {"ref", "sha256"}}.
    weights: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: What the LoRA touched (the engine's report), for the candidate's metadata.
    lora_report: Mapping[str, Any] | None = None
    #: The shirt numbers read in the candidate, judged against the scene (None: not run).
    number_check: NumberCheck | None = None

    @classmethod
    def of(
        cls,
        job_id: int,
        candidate: Candidate,
        runtime: ResolvedRuntime,
        lr_consistency: float | None,
        weights: Mapping[str, Mapping[str, str]],
        number_check: NumberCheck | None = None,
    ) -> CandidateReady:
        return cls(
            job_id=job_id,
            key=candidate.key,
            seed=candidate.seed,
            request=candidate.request,
            pixels=Pixels.from_image(candidate.image),
            runtime=runtime,
            runtime_label=candidate.runtime,
            timings=dict(candidate.timings),
            lr_consistency=lr_consistency,
            weights={k: dict(v) for k, v in weights.items()},
            lora_report=dict(candidate.lora_report) if candidate.lora_report else None,
            number_check=number_check,
        )

    def candidate(self) -> Candidate:
        """The candidate, with its image decoded from the pixels."""
        return Candidate(
            key=self.key,
            seed=self.seed,
            image=self.pixels.to_image(),
            request=self.request,
            timings=dict(self.timings),
            runtime=self.runtime_label or self.runtime.label,
            lora_report=self.lora_report,
            resolved=self.runtime,
            number_check=self.number_check,
        )


@dataclass(frozen=True)
class Warning:
    job_id: int
    text: str


@dataclass(frozen=True)
class Failed:
    """The job failed. ``reason`` is the one line for the operator; ``detail`` is more (e.g.
    the engine process's last stderr lines); ``error_type`` and ``attrs`` rebuild the
    exception (:func:`rebuild_error`). ``crashed``: the engine process died running it (the
    job can be re-run as it was)."""

    job_id: int
    reason: str
    detail: str = ""
    error_type: str = ""
    attrs: Mapping[str, Any] = field(default_factory=dict)
    expected: bool = True
    crashed: bool = False


@dataclass(frozen=True)
class Cancelled:
    job_id: int
    #: How the engine stopped: "" (cooperatively) or why it was stopped hard.
    note: str = ""


@dataclass(frozen=True)
class Done:
    job_id: int
    #: What a non-reconstruction job returned (a LibraryEntry, an UpscaleResult, scores).
    result: Any = None


Message = Queued | Started | JobProgress | CandidateReady | Warning | Failed | Cancelled | Done

#: Message types that end a job.
FINAL: Final = (Failed, Cancelled, Done)

# -- errors across the boundary -------------------------------------------------------------


class EngineCrashed(FbError):
    """The engine process died while running the job (signal or exit code in the message)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class UnexpectedEngineError(Exception):
    """An error from the engine that is not one of the project's own (a bug); ``type_name``
    is the original exception's type."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return False


def failed_from(job_id: int, exc: BaseException, detail: str = "") -> Failed:
    """The :class:`Failed` message for ``exc``: its type, message and simple attributes."""
    attrs = {k: v for k, v in vars(exc).items() if _plain(v)}
    expected = isinstance(exc, FbError)
    reason = str(exc) if expected else f"{type(exc).__name__}: {exc}"
    crashed = isinstance(exc, EngineCrashed)
    if crashed and not detail:
        detail = exc.detail  # type: ignore[attr-defined]
    return Failed(
        job_id,
        reason,
        detail,
        type(exc).__name__,
        attrs,
        expected=expected,
        crashed=crashed,
    )


def rebuild_error(message: Failed) -> BaseException:
    """The exception a :class:`Failed` describes: the project's own error type with its
    attributes (``GpuOutOfMemoryError.next_mode``...), else :class:`UnexpectedEngineError`."""
    cls = getattr(_errors, message.error_type, None)
    if message.error_type == "EngineCrashed":
        return EngineCrashed(message.reason, message.detail)
    if isinstance(cls, type) and issubclass(cls, FbError):
        exc = cls.__new__(cls)
        Exception.__init__(exc, message.reason)
        for name, value in message.attrs.items():
            setattr(exc, name, list(value) if isinstance(value, tuple) else value)
        return exc
    if message.expected:  # a project error this side does not know by name
        return FbError(message.reason)
    type_name, _, text = message.reason.partition(": ")
    return UnexpectedEngineError(message.error_type or type_name, text or message.reason)
