"""Batch upscale: a range of a clip, upscaled frame by frame, encoded into a new clip.

:func:`upscale_range` decodes a range of frames, optionally cuts a region (and a field) from
each, runs an upscaler callable on every frame, optionally steadies the result over time
(:mod:`fbupscale_gui.core.temporal`), and writes a new clip: H.264 (libx264, yuv420p, BT.709,
CRF 18), the source's frame rate, and every audio stream of the source for the same range
(:mod:`fbupscale_gui.storage.video.audio`). Odd output sizes are made even by repeating the
last column/row. The source's pixel aspect ratio (anamorphic 1440x1080 HD, 16:9 SD) is kept.
The file is written under a hidden temporary name in the output folder
(:func:`~fbupscale_gui.storage.atomic.atomic_write`) and takes its name only when complete: on
cancel or error nothing is left under that name, and an existing file there is untouched.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import numpy as np
from PIL import Image

from fbupscale_gui.core.clip import FIELDS, ClipInfo, Field, Rect
from fbupscale_gui.core.errors import Cancelled, RequestError, error_line
from fbupscale_gui.core.frame_cut import check_rect, cut_region
from fbupscale_gui.core.job import IsCancelled, OnProgress, Progress
from fbupscale_gui.core.timecode import Position, parse_position
from fbupscale_gui.storage.atomic import atomic_write
from fbupscale_gui.storage.video.audio import collect_audio, packet_seconds
from fbupscale_gui.storage.video.reader import ClipError, ClipReader

if TYPE_CHECKING:
    import av
    import av.container

    from fbupscale_gui.core.temporal import TemporalMode, TemporalOptions

__all__ = ["OUTPUT_SUFFIXES", "UpscaleFn", "UpscaleResult", "lanczos_upscaler", "upscale_range"]

#: Output containers by file suffix.
_OUTPUT_FORMATS: Final[dict[str, str]] = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: File suffixes a batch can write.
OUTPUT_SUFFIXES: Final = tuple(_OUTPUT_FORMATS)
#: An upscaler: one RGB frame in, its upscaled RGB version out (same size for every frame).
UpscaleFn = Callable[[Image.Image], Image.Image]


def lanczos_upscaler(scale: int = 4) -> UpscaleFn:
    """An :data:`UpscaleFn` that resizes by ``scale`` with Lanczos (the baseline engine)."""
    if scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")

    def upscale(image: Image.Image) -> Image.Image:
        return image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS)

    return upscale


@dataclass(frozen=True)
class UpscaleResult:
    """A finished batch: the written clip and what went into it.

    ``audio`` describes each audio stream written, e.g. ``"aac (copied)"`` or
    ``"aac (re-encoded from pcm_s16le)"``.
    """

    path: str
    frames: int
    width: int
    height: int
    frame_rate: Fraction
    start_index: int
    end_index: int
    audio: tuple[str, ...]
    seconds: float
    temporal: str = "none"


def _even(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return arr


def upscale_range(
    path: str | Path,
    start: Position | str,
    end: Position | str | None,
    upscale_frame: UpscaleFn,
    out_path: str | Path,
    *,
    rect: Rect | None = None,
    field: Field | None = None,
    temporal: TemporalMode = "none",
    temporal_options: TemporalOptions | None = None,
    crf: int = 18,
    preset: str = "veryfast",
    exclusive: bool = False,
    on_progress: OnProgress | None = None,
    is_cancelled: IsCancelled | None = None,
) -> UpscaleResult:
    """Upscale frames ``start`` (inclusive) to ``end`` (exclusive; None: to the end) into a clip.

    Each frame is decoded, cut to ``rect`` (and ``field``, see :func:`cut_region`) when given,
    run through ``upscale_frame``, steadied by ``temporal`` ("none", "median" or "blend", see
    :mod:`fbupscale_gui.core.temporal`) and encoded to H.264 at the source's frame rate, with the
    source's audio for the same range (see the module docstring). ``out_path`` ends in .mp4,
    .mov or .mkv; an existing file there is replaced only when the new one is complete, or
    with ``exclusive`` never: the clip then takes the first free name ``stem-2.suffix``...
    (the result's ``path`` says which). The clip is written by
    :func:`~fbupscale_gui.storage.atomic.atomic_write`, which also removes the stale hidden
    temporary files a killed run left in that folder.

    A range reaching past the last decodable frame stops there (MPEG-TS and Matroska do not
    state their length, and a recording cut off mid-stream reads like a shorter one): the
    result's ``end_index`` says where it stopped.

    ``on_progress`` gets ``Progress(stage="fast")`` after every frame; ``is_cancelled`` is
    checked before every frame. Raises :class:`Cancelled` when cancelled, :class:`ClipError`
    for a clip that cannot be read or a range outside it, RequestError for bad arguments (rect,
    field, output suffix, an empty range, temporal settings) and ValueError if ``upscale_frame``
    returns frames of changing size. Nothing is written on any error.
    """
    import av

    from fbupscale_gui.core.temporal import TemporalFilter

    out = Path(out_path)
    fmt = _OUTPUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise RequestError(
            f"output: {out.name} must end in {', '.join(_OUTPUT_FORMATS)} (got {out.suffix!r})"
        )
    if not out.parent.is_dir():
        raise RequestError(f"output: folder {out.parent} does not exist")
    with contextlib.suppress(OSError):
        if out.exists() and out.samefile(path):
            raise RequestError(f"output: {out} is the clip being read; choose another file")
    if not 0 <= crf <= 51:
        raise RequestError(f"crf: must be 0..51, got {crf}")
    if field is not None and field not in FIELDS:
        raise RequestError(f"field: must be one of {', '.join(FIELDS)}, got {field!r}")
    steadier = TemporalFilter(temporal, temporal_options)

    began = time.perf_counter()
    with ClipReader(path) as reader:
        info = reader.info
        first, last = _resolve_range(info, start, end)
        if rect is not None:
            check_rect(rect, (info.width, info.height))
        crop = rect if rect is not None else (0, 0, info.width, info.height)
        cut = rect is not None or field is not None
        # the bar's length; to the end of an MKV/TS clip it is an estimate
        total = (min(last, info.frame_count) if end is None else last) - first
        clip = _ClipWriter(reader, fmt, first, last, crf, preset)

        def write(fh: IO[bytes]) -> None:
            nonlocal total
            try:
                clip.open(fh)
                # decode on to the end of the stream (frame counts of MKV/TS are estimates)
                for index, image in reader.frames(first, None):
                    if index >= last:
                        break
                    if is_cancelled is not None and is_cancelled():
                        raise Cancelled()
                    low = cut_region(image, crop, field) if cut else image
                    clip.add(_even(steadier.process(low, upscale_frame(low))), index)
                    total = max(total, clip.frames)
                    if on_progress is not None:
                        message = f"frame {clip.frames}/{total} ({info.timecode(index)})"
                        on_progress(Progress.single("fast", clip.frames, total, message))
                clip.finish()
            except (av.FFmpegError, OSError) as exc:  # OSError: a full disk
                raise ClipError(
                    out,
                    f"writing the clip failed after {clip.frames} frames, {_size(fh)} bytes "
                    f"({error_line(exc, limit=200)}); nothing was saved under this name",
                ) from None
            finally:
                clip.close()

        written = atomic_write(out, write, exclusive=exclusive)
    return UpscaleResult(
        path=str(written),
        frames=clip.frames,
        width=clip.size[0],
        height=clip.size[1],
        frame_rate=info.frame_rate,
        start_index=first,
        end_index=first + clip.frames,
        audio=clip.audio_labels,
        seconds=time.perf_counter() - began,
        temporal=temporal,
    )


def _size(fh: IO[bytes]) -> int:
    """How many bytes have reached the file behind ``fh`` (0 if that cannot be told)."""
    try:
        return os.fstat(fh.fileno()).st_size
    except (OSError, ValueError):
        return 0


class _ClipWriter:
    """The output clip of a batch: H.264 video, then the source's audio, interleaved by time.

    The video stream is added with the first frame (its size is known then), the audio streams
    after it; audio packets are muxed once the video has reached their time, and none past the
    last frame.
    """

    def __init__(
        self, reader: ClipReader, fmt: str, first: int, last: int, crf: int, preset: str
    ) -> None:
        self._reader = reader
        self._fmt = fmt
        self._range = (first, last)
        self._crf = crf
        self._preset = preset
        self._container: av.container.OutputContainer | None = None
        self._raw: IO[bytes] | None = None
        self._stream: Any = None
        self._pending: list[Any] = []
        self._tb = Fraction(1) / reader.info.frame_rate
        self.frames = 0
        self.size = (0, 0)
        self.audio_labels: tuple[str, ...] = ()

    def open(self, fh: IO[bytes]) -> None:
        """Start the clip in ``fh``'s file. FFmpeg buffers its own writes, so it writes
        through an unbuffered view of the file: a write error (a full disk) is raised where
        it happens, never again when ``fh`` is closed."""
        import av

        self._raw = open(fh.fileno(), "wb", buffering=0, closefd=False)  # noqa: SIM115
        self._container = av.open(self._raw, mode="w", format=self._fmt)

    def add(self, arr: np.ndarray, index: int) -> None:
        """Encode one RGB frame (``index`` names it in an error)."""
        import av

        container = self._container
        assert container is not None
        if self._stream is None:
            self.size = (arr.shape[1], arr.shape[0])
            self._start(container)
        elif (arr.shape[1], arr.shape[0]) != self.size:
            raise ValueError(
                f"the upscaler returned {arr.shape[1]}x{arr.shape[0]} for frame "
                f"{index}, but {self.size[0]}x{self.size[1]} before"
            )
        vf = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(
            format="yuv420p", dst_colorspace="itu709", dst_color_range=1
        )
        vf.pts = self.frames
        vf.time_base = self._tb
        for packet in self._stream.encode(vf):
            container.mux(packet)
        self.frames += 1
        now = float(self.frames * self._tb)
        while self._pending and packet_seconds(self._pending[0]) < now:
            container.mux(self._pending.pop(0))

    def _start(self, container: av.container.OutputContainer) -> None:
        """Add the video stream, then every audio stream of the source for the range."""
        info = self._reader.info
        self._stream = _add_video_stream(
            container, info.frame_rate, self.size, self._crf, self._preset, info.sample_aspect_ratio
        )
        if info.audio:
            first, last = self._range
            audio = collect_audio(
                self._reader.path,
                container,
                self._fmt,
                Fraction(first) / info.frame_rate,
                Fraction(last) / info.frame_rate,
                Fraction(info.start_time).limit_denominator(10**9),
            )
            self.audio_labels = tuple(a.label for a in audio)
            self._pending = sorted((p for a in audio for p in a.packets), key=packet_seconds)

    def finish(self) -> None:
        """Flush the encoder and the audio up to the last frame, and write the trailer."""
        container = self._container
        assert container is not None
        if self._stream is None:  # pragma: no cover - frames() yields at least the start
            raise ClipError(self._reader.path, "no frame in the range could be decoded")
        for packet in self._stream.encode(None):
            container.mux(packet)
        end_s = float(self.frames * self._tb)
        for packet in self._pending:
            if packet_seconds(packet) < end_s:  # no audio past the last frame
                container.mux(packet)
        self._container = None
        container.close()
        self._close_raw()

    def close(self) -> None:
        """Close a clip that was not finished (after an error; nothing of it is kept)."""
        import av

        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()
        self._close_raw()

    def _close_raw(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()  # unbuffered and not owning the descriptor: nothing can fail here


def _resolve_range(
    info: ClipInfo, start: Position | str, end: Position | str | None
) -> tuple[int, int]:
    """Frame indices [first, last) of a range; a float end takes every frame shown before it."""
    if isinstance(start, str):
        start = parse_position(start, info.frame_rate)
    if isinstance(end, str):
        end = parse_position(end, info.frame_rate)
    first = info.index_of(start)
    if end is None:
        last = info.frame_count + round(info.frame_rate * 3600)  # to the end, however long
    elif isinstance(end, float):
        info.index_at(end)  # refuses a time that is not finite
        last = max(0, math.ceil(end * info.frame_rate - Fraction(1, 10**6)))
    else:
        last = info.index_of(end)
    if first < 0:
        raise RequestError(f"range: the start must not be negative, got frame {first}")
    if last <= first:
        raise RequestError(
            f"range: the end ({info.timecode(max(last, 0))}) must come after the start "
            f"({info.timecode(first)})"
        )
    if first >= info.frame_count:
        raise ClipError(
            info.path,
            f"start frame {first} ({info.timecode(first)}) is past the end of the clip "
            f"({info.frame_count} frames)",
        )
    return first, last


def _add_video_stream(
    container: av.container.OutputContainer,
    rate: Fraction,
    size: tuple[int, int],
    crf: int,
    preset: str,
    sar: Fraction | None,
) -> Any:
    stream = container.add_stream("libx264", rate=rate)
    stream.width, stream.height = size
    if sar and sar != 1:
        # anamorphic sources (1440x1080 HD, 720x576 16:9 SD) keep their pixel shape
        stream.codec_context.sample_aspect_ratio = sar
    stream.pix_fmt = "yuv420p"
    ctx = stream.codec_context
    ctx.time_base = Fraction(1) / rate
    ctx.colorspace = 1  # BT.709
    ctx.color_primaries = 1
    ctx.color_trc = 1
    ctx.color_range = 1  # limited range, as broadcast
    ctx.options = {"crf": str(crf), "preset": preset}
    return stream
