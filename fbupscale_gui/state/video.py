"""The video window's rules: which files are clips, how a clip is described, batch jobs.

The open clip itself is :class:`fbupscale_gui.state.clip_model.ClipModel` (decoded off the GUI
thread). A batch (:func:`batch_task`) is an engine job
(:class:`~fbupscale_gui.core.messages.VideoBatchJob`, queued by :class:`VideoBatch` on the
session's :class:`~fbupscale_gui.state.job_queue.JobQueue`): the engine builds the upscaler
(Real-ESRGAN's ncnn net is loaded, used and freed there, never here) and runs
:func:`~fbupscale_gui.storage.video.upscale_range`. The range, output and result rules the
window applies to a batch live here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from PySide6.QtCore import QObject, Signal, Slot

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.images import image_sha256
from fbupscale_gui.core.messages import VideoBatchJob
from fbupscale_gui.core.request import ReconstructionRequest
from fbupscale_gui.storage.video import (
    OUTPUT_SUFFIXES,
    ClipInfo,
    Cut,
    Field,
    Rect,
    UpscaleResult,
    parse_position,
)

if TYPE_CHECKING:
    from fbupscale_gui.core.temporal import TemporalMode
    from fbupscale_gui.state.cutouts import Cutout, CutoutsModel
    from fbupscale_gui.state.job_queue import Job, JobQueue, ProgressInfo

__all__ = [
    "BATCH_ENGINES",
    "BATCH_ENGINE_LABELS",
    "BATCH_SCALE",
    "OUTPUT_SUFFIXES",
    "VIDEO_SUFFIXES",
    "BatchEngine",
    "BatchSpec",
    "VideoBatch",
    "add_cut",
    "batch_name",
    "batch_task",
    "check_output",
    "default_output",
    "describe_clip",
    "is_clip_path",
    "parse_range",
    "range_summary",
    "resolve_output",
    "result_text",
]

#: File suffixes treated as clips (dropped on the window, offered by Open clip…).
VIDEO_SUFFIXES: Final = (".mp4", ".mov", ".m4v", ".mkv", ".ts", ".m2ts", ".mts")

BatchEngine = Literal["lanczos", "realesrgan"]
BATCH_ENGINES: Final[tuple[BatchEngine, ...]] = ("lanczos", "realesrgan")
BATCH_ENGINE_LABELS: Final[dict[BatchEngine, str]] = {
    "lanczos": "Lanczos ×4 (instant)",
    "realesrgan": "Real-ESRGAN x4plus ×4 (CPU, slow)",
}
#: Both fast engines scale by 4.
BATCH_SCALE: Final = 4


def is_clip_path(path: str | Path) -> bool:
    """Whether ``path`` names a clip by its suffix (the contents are checked on opening)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def describe_clip(info: ClipInfo) -> str:
    """One line for the window: codec, size, rate, scan, audio, length, container."""
    rate = info.frame_rate
    fps = f"{float(rate):.3f}".rstrip("0").rstrip(".") if rate.denominator != 1 else str(rate)
    if info.interlaced:
        order = {"tff": "top field first", "bff": "bottom field first"}.get(
            info.field_order, "field order not stated"
        )
        scan = f"interlaced, {order}"
    elif info.interlaced is None:
        scan = "scan not stated"
    else:
        scan = "progressive"
    size = f"{info.width}×{info.height}"
    if info.sample_aspect_ratio and info.sample_aspect_ratio != 1:
        sar = info.sample_aspect_ratio
        size += f" (pixel aspect {sar.numerator}:{sar.denominator})"
    if info.audio:
        audio = "audio: " + ", ".join(
            f"{a.codec} {a.sample_rate / 1000:g} kHz {a.layout or f'{a.channels} ch'}"
            for a in info.audio
        )
    else:
        audio = "no audio"
    length = f"{info.frame_count} frames ({info.timecode(info.frame_count)})"
    return " · ".join((info.codec, size, f"{fps} fps", scan, audio, length, info.container))


def default_output(info: ClipInfo, first: int, last: int, engine: str) -> Path:
    """``<clip>_f<first>-f<last>_<engine>_x4.mp4`` next to the clip, never an existing file."""
    clip = Path(info.path)
    stem = f"{clip.stem}_f{first}-f{last}_{engine}_x{BATCH_SCALE}"
    candidate = clip.with_name(stem + ".mp4")
    n = 2
    while candidate.exists():
        candidate = clip.with_name(f"{stem}-{n}.mp4")
        n += 1
    return candidate


# -- batch jobs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSpec:
    """A batch: frames ``[start, end)`` of ``clip`` upscaled into ``output``."""

    clip: str
    start: int
    end: int
    engine: BatchEngine
    output: str
    rect: Rect | None = None
    field: Field | None = None
    temporal: TemporalMode = "none"


def batch_task(spec: BatchSpec) -> VideoBatchJob:
    """The engine job for ``spec``: it runs where reconstructions run (the engine process),
    with the same progress and cancel (see :func:`fbupscale_gui.engine.facade.make_upscaler`)."""
    return VideoBatchJob(
        clip=spec.clip,
        start=spec.start,
        end=spec.end,
        engine=spec.engine,
        output=spec.output,
        rect=spec.rect,
        field=spec.field,
        temporal=spec.temporal,
    )


def parse_range(info: ClipInfo, start: str, end: str) -> tuple[int, int]:
    """Frames ``(first, last)`` (last included, clamped to the clip) from two typed positions.

    Raises RequestError saying why not (a position that does not parse, a start past the end,
    an end before the start)."""
    first = info.index_of(parse_position(start, info.frame_rate))
    last = info.index_of(parse_position(end, info.frame_rate))
    if first >= info.frame_count:
        raise RequestError(f"the start {info.timecode(first)} is past the clip's last frame.")
    if last < first:
        raise RequestError(
            f"the end {info.timecode(last)} comes before the start {info.timecode(first)}."
        )
    return first, min(last, info.frame_count - 1)


def range_summary(info: ClipInfo, first: int, last: int, region: Rect | None) -> str:
    """How long the range is and how big its frames become (the region's, or the frame's)."""
    n = last - first + 1
    w, h = (region[2], region[3]) if region is not None else (info.width, info.height)
    return (
        f"{n} frame(s), {n / info.fps:.2f} s · {w}×{h} → "
        f"{w * BATCH_SCALE}×{h * BATCH_SCALE} per frame"
    )


def batch_name(info: ClipInfo, first: int, last: int) -> str:
    """The batch's name in the job list: ``<clip file> <first>–<last>`` (timecodes)."""
    return f"{Path(info.path).name} {info.timecode(first)}–{info.timecode(last)}"


def resolve_output(info: ClipInfo, text: str, default: Path, confirmed: str) -> Path:
    """The file a batch writes: ``text`` (or ``default`` when empty), checked.

    An existing file is replaced only when it is ``confirmed`` (the operator chose it in the
    file dialog, which asked). Raises RequestError saying why not."""
    output = text.strip() or str(default)
    why = check_output(output)
    if why is not None:
        raise RequestError(f"{why}.")
    out = Path(output).expanduser()
    if out.exists() and out.resolve() == Path(info.path).resolve():
        raise RequestError("that is the clip being read; choose another file.")
    if out.exists() and str(out) != confirmed:
        raise RequestError(
            f"{out} already exists; choose it with … to replace it, "
            "or clear the field for a new name."
        )
    return out


def result_text(result: UpscaleResult) -> str:
    """One line for a finished batch: the file, frames, size, rate, audio and time taken."""
    audio = ", ".join(result.audio) if result.audio else "none"
    fps = f"{float(result.frame_rate):.3f}".rstrip("0").rstrip(".")
    return (
        f"Wrote {result.path} — {result.frames} frames, {result.width}×{result.height}, "
        f"{fps} fps, audio: {audio} ({result.seconds:.1f} s)"
    )


class VideoBatch(QObject):
    """The video window's batch: one at a time, queued on the session's jobs and followed.

    Signals, for this batch only: ``started()``, ``progressed(ProgressInfo)`` and
    ``ended(Job)`` (state DONE, FAILED or CANCELLED; :attr:`job` is None again by then).
    """

    started = Signal()
    progressed = Signal(object)
    ended = Signal(object)

    def __init__(self, jobs: JobQueue, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs = jobs
        self.job: Job | None = None
        jobs.jobStarted.connect(self._on_started)
        jobs.progressed.connect(self._on_progress)
        jobs.jobEnded.connect(self._on_ended)

    def start(self, spec: BatchSpec, name: str) -> Job:
        """Queue ``spec`` as the job ``name`` (call only when no batch is running)."""
        assert self.job is None, "a batch is already running"
        self.job = self._jobs.enqueue(
            0, name, ReconstructionRequest(engine=spec.engine), task=batch_task(spec)
        )
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self._jobs.cancel_job(self.job)

    @Slot(object)
    def _on_started(self, job: Job) -> None:
        if job is self.job:
            self.started.emit()

    @Slot(object, object)
    def _on_progress(self, job: Job, info: ProgressInfo) -> None:
        if job is self.job:
            self.progressed.emit(info)

    @Slot(object)
    def _on_ended(self, job: Job) -> None:
        if job is self.job:
            self.job = None
            self.ended.emit(job)


def add_cut(cutouts: CutoutsModel, cut: Cut) -> tuple[Cutout | None, str, str]:
    """Add ``cut`` to the cutouts list, or find it there when it was added before.

    Returns the cutout (None when it could not be added) and a message for the operator with
    its level ("info" or "error"; empty when there is nothing to say)."""
    image = cut.image
    report = cutouts.add_image(image, cut.name)
    if report.errors:
        return None, "error", "; ".join(report.errors)
    if report.added:
        added = report.added[0]
        how = f", {cut.field} field" if cut.field else ""
        size = f"{image.width}×{image.height} px{how}"
        return added, "info", f"Sent {added.name} ({size}) to the cutouts."
    sha256 = image_sha256(image)
    known = next((c for c in cutouts.cutouts() if c.source.sha256 == sha256), None)
    if known is None:
        return None, "info", ""
    return known, "info", f"Already in the cutouts as {known.name}; selected it."


def check_output(path: str) -> str | None:
    """Why ``path`` cannot be a batch output, or None if it can."""
    if not path.strip():
        return "choose an output file"
    out = Path(path).expanduser()
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        return f"the output {out.name} must end in {', '.join(OUTPUT_SUFFIXES)}"
    if not out.parent.is_dir():
        return f"the output folder {out.parent} does not exist"
    return None
