"""The video window's state: an open clip decoded off the GUI thread, cutting, batch jobs.

:class:`ClipModel` keeps one :class:`~fbupscale_gui.storage.video.ClipReader` in a decoder
:class:`QThread` of its own (a reader is not thread-safe, so it is only ever touched there).
The window asks for frames with :meth:`ClipModel.request_frame`; requests are coalesced, so a
slider dragged across a thousand frames decodes only the latest one asked for whenever the
decoder comes free, and the window never waits. Opening a clip also happens in that thread: the
new reader replaces the old one only once it has decoded its first frame, so a bad file
(missing, empty, corrupt, truncated, unsupported) leaves the open clip as it was and reports
one line naming the file.

A batch (:func:`batch_task`) is an engine job (:class:`~fbupscale_gui.core.messages.VideoBatchJob`,
queued with :meth:`~fbupscale_gui.state.job_queue.JobQueue.enqueue` ``task=``): the engine builds
the upscaler (Real-ESRGAN's ncnn net is loaded, used and freed there, never here) and runs
:func:`~fbupscale_gui.storage.video.upscale_range`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

from fbupscale_gui.core.messages import VideoBatchJob
from fbupscale_gui.storage.video import (
    ClipError,
    ClipInfo,
    ClipReader,
    Field,
    Rect,
    cut_region,
)
from fbupscale_gui.worker.qimage import pil_to_qimage

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.temporal import TemporalMode

__all__ = [
    "BATCH_ENGINES",
    "BATCH_ENGINE_LABELS",
    "BATCH_SCALE",
    "OUTPUT_SUFFIXES",
    "VIDEO_SUFFIXES",
    "BatchEngine",
    "BatchSpec",
    "ClipModel",
    "batch_task",
    "check_output",
    "cutout_name",
    "default_output",
    "describe_clip",
    "is_clip_path",
]

log = logging.getLogger(__name__)

#: File suffixes treated as clips (dropped on the window, offered by Open clip…).
VIDEO_SUFFIXES: Final = (".mp4", ".mov", ".m4v", ".mkv", ".ts", ".m2ts", ".mts")
#: Output containers a batch can write.
OUTPUT_SUFFIXES: Final = (".mp4", ".mov", ".mkv")

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


def cutout_name(info: ClipInfo, index: int) -> str:
    """``<clip>_<timecode>.png``: the name a cut from frame ``index`` gets in the cutouts list."""
    return f"{Path(info.path).stem}_{info.timecode(index)}.png"


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


# -- decoding off the GUI thread -------------------------------------------------------------


class _Latest:
    """The newest frame request, shared by the GUI and the decoder thread (lock-protected).

    :meth:`put` replaces any request not yet taken and says whether the decoder must be woken
    (it is idle); :meth:`take` hands the decoder the newest request, or None, and then marks it
    idle under the same lock, so no request is ever left behind.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: tuple[int, int] | None = None
        self._busy = False

    def put(self, token: int, index: int) -> bool:
        with self._lock:
            self._value = (token, index)
            if self._busy:
                return False
            self._busy = True
            return True

    def take(self) -> tuple[int, int] | None:
        with self._lock:
            value, self._value = self._value, None
            if value is None:
                self._busy = False
            return value

    def clear(self) -> None:
        with self._lock:
            self._value = None

    def busy(self) -> bool:
        with self._lock:
            return self._busy


class _Decoder(QObject):
    """Lives in the decoder thread and owns the reader; its signals are queued to the GUI."""

    opened = Signal(int, object, object, object)  # token, ClipInfo, PIL frame 0, QImage
    openFailed = Signal(int, str)  # token, message
    frameReady = Signal(int, int, object, object)  # token, index, PIL image, QImage
    frameFailed = Signal(int, int, str)  # token, index, message

    def __init__(self, latest: _Latest) -> None:
        super().__init__()
        self._latest = latest
        self._reader: ClipReader | None = None
        self._token = 0

    @Slot(int, str)
    def open(self, token: int, path: str) -> None:
        try:
            reader = ClipReader(path)
        except ClipError as exc:
            self.openFailed.emit(token, str(exc))
            return
        except Exception as exc:  # a clip must never take the window down
            log.exception("opening %s failed unexpectedly", path)
            self.openFailed.emit(token, f"{path}: cannot be opened ({type(exc).__name__}: {exc})")
            return
        try:
            image = reader.frame(0)
        except ClipError as exc:
            reader.close()
            self.openFailed.emit(token, str(exc))
            return
        old, self._reader = self._reader, reader
        self._token = token
        if old is not None:
            old.close()
        self.opened.emit(token, reader.info, image, pil_to_qimage(image))

    @Slot()
    def work(self) -> None:
        """Decode the newest requested frame until no request is left."""
        while (request := self._latest.take()) is not None:
            token, index = request
            reader = self._reader
            if reader is None or token != self._token:
                continue  # asked of a clip that is no longer (or not yet) open
            try:
                image = reader.frame(index)
            except ClipError as exc:
                self.frameFailed.emit(token, index, str(exc))
                continue
            except Exception as exc:
                log.exception("decoding frame %d failed unexpectedly", index)
                self.frameFailed.emit(token, index, f"frame {index}: {type(exc).__name__}: {exc}")
                continue
            self.frameReady.emit(token, index, image, pil_to_qimage(image))

    @Slot()
    def close(self) -> None:
        """Close the reader here, in its own thread, then end the thread's event loop."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        thread = QThread.currentThread()
        if thread is not None:
            thread.quit()


class ClipModel(QObject):
    """The open clip and the frame on show. GUI thread; decoding runs in its own thread.

    Signals: ``opened(ClipInfo)`` when a clip replaced the previous one (frame 0 is on show),
    ``openFailed(str)`` with one line naming the file (nothing changed), ``frameChanged(int)``
    when a decoded frame is on show, ``frameFailed(str)`` for a frame that cannot be decoded.
    """

    opened = Signal(object)
    openFailed = Signal(str)
    frameChanged = Signal(int)
    frameFailed = Signal(str)

    _open = Signal(int, str)
    _wake = Signal()
    _close = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._latest = _Latest()
        self._thread = QThread()
        self._thread.setObjectName("fbupscale-clip")
        self._decoder = _Decoder(self._latest)
        self._decoder.moveToThread(self._thread)
        self._open.connect(self._decoder.open)
        self._wake.connect(self._decoder.work)
        self._close.connect(self._decoder.close)
        self._decoder.opened.connect(self._on_opened)
        self._decoder.openFailed.connect(self._on_open_failed)
        self._decoder.frameReady.connect(self._on_frame)
        self._decoder.frameFailed.connect(self._on_frame_failed)
        self._tokens = 0
        self._token = 0  # the open clip's
        self._opening: set[int] = set()
        self.info: ClipInfo | None = None
        #: The frame on show: its index, pixels (exactly as decoded) and QImage.
        self.index = -1
        self.image: Image.Image | None = None
        self.qimage = QImage()
        #: The frame last asked for (the slider's position); ``index`` catches up with it.
        self.requested = -1

    # -- commands -------------------------------------------------------------------------

    def open(self, path: str | Path) -> None:
        """Open ``path`` in the decoder thread; ``opened`` or ``openFailed`` follows."""
        if not self._thread.isRunning():
            self._thread.start()
        self._tokens += 1
        self._opening.add(self._tokens)
        self._open.emit(self._tokens, str(Path(path).expanduser()))

    def is_opening(self) -> bool:
        return bool(self._opening)

    def request_frame(self, index: int) -> None:
        """Show frame ``index`` (clamped to the clip) once decoded; the newest request wins."""
        if self.info is None:
            return
        index = max(0, min(self.info.frame_count - 1, index))
        self.requested = index
        if index == self.index and not self._latest.busy():
            return  # on show already, and no other frame on its way
        if self._latest.put(self._token, index):
            self._wake.emit()

    def is_current(self) -> bool:
        """Whether the frame on show is the one last asked for."""
        return self.index == self.requested

    def cut(self, rect: Rect, field: Field | None) -> Image.Image:
        """The frame on show cut to ``rect`` (and one field), as in core.video.cut_region."""
        if self.image is None:
            raise ClipError(self.info.path if self.info else "clip", "no frame is on show")
        return cut_region(self.image, rect, field)

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Close the reader in its thread and wait for the thread to end."""
        self._latest.clear()
        if not self._thread.isRunning():
            return True
        self._close.emit()
        return bool(self._thread.wait(timeout_ms))

    # -- decoder signals ------------------------------------------------------------------

    @Slot(int, object, object, object)
    def _on_opened(self, token: int, info: ClipInfo, image: Image.Image, qimage: QImage) -> None:
        self._opening.discard(token)
        if token <= self._token:
            return  # the decoder opens in order; an older result is never newer
        # the decoder now reads this clip (opens run in order there, so follow each one)
        self._token = token
        self.info = info
        self.index = self.requested = 0
        self.image = image
        self.qimage = qimage
        self.opened.emit(info)
        self.frameChanged.emit(0)

    @Slot(int, str)
    def _on_open_failed(self, token: int, message: str) -> None:
        self._opening.discard(token)
        self.openFailed.emit(message)

    @Slot(int, int, object, object)
    def _on_frame(self, token: int, index: int, image: Image.Image, qimage: QImage) -> None:
        if token != self._token:
            return
        self.index = index
        self.image = image
        self.qimage = qimage
        self.frameChanged.emit(index)

    @Slot(int, int, str)
    def _on_frame_failed(self, token: int, index: int, message: str) -> None:
        if token == self._token:
            self.frameFailed.emit(message)


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
