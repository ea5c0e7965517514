"""Batch upscale: a range of a clip, upscaled frame by frame, encoded into a new clip.

:func:`upscale_range` decodes a range of frames, optionally cuts a region (and a field) from
each, runs an upscaler callable on every frame, optionally steadies the result over time
(:mod:`fbupscale_gui.core.temporal`), and writes a new clip: H.264 (libx264, yuv420p, BT.709,
CRF 18), the source's frame rate, and every audio stream of the source for the same range
(:mod:`fbupscale_gui.storage.video.audio`). Odd output sizes are made even by repeating the
last column/row. The source's pixel aspect ratio (anamorphic 1440x1080 HD, 16:9 SD) is kept.
The file is written under a temporary name in the output folder and renamed only when
complete: on cancel or error nothing is left behind and an existing file of that name is
untouched.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from PIL import Image

from fbupscale_gui.core.clip import FIELDS, ClipInfo, Field, Rect
from fbupscale_gui.core.errors import Cancelled, RequestError
from fbupscale_gui.core.frame_cut import check_rect, cut_region
from fbupscale_gui.core.job import IsCancelled, OnProgress, Progress
from fbupscale_gui.core.timecode import Position, parse_position
from fbupscale_gui.storage.atomic import apply_umask
from fbupscale_gui.storage.video.audio import collect_audio, packet_seconds
from fbupscale_gui.storage.video.reader import ClipError, ClipReader, reason

if TYPE_CHECKING:
    import av
    import av.container

    from fbupscale_gui.core.temporal import TemporalMode, TemporalOptions

__all__ = ["UpscaleFn", "UpscaleResult", "lanczos_upscaler", "upscale_range"]

#: Output containers by file suffix.
_OUTPUT_FORMATS: Final[dict[str, str]] = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}
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
    on_progress: OnProgress | None = None,
    is_cancelled: IsCancelled | None = None,
) -> UpscaleResult:
    """Upscale frames ``start`` (inclusive) to ``end`` (exclusive; None: to the end) into a clip.

    Each frame is decoded, cut to ``rect`` (and ``field``, see :func:`cut_region`) when given,
    run through ``upscale_frame``, steadied by ``temporal`` ("none", "median" or "blend", see
    :mod:`fbupscale_gui.core.temporal`) and encoded to H.264 at the source's frame rate, with the
    source's audio for the same range (see the module docstring). ``out_path`` ends in .mp4,
    .mov or .mkv; an existing file there is replaced only when the new one is complete.

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

        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{out.stem}.", suffix=f".partial{out.suffix}", dir=out.parent
        )
        apply_umask(fd)  # mkstemp makes it 0600
        os.close(fd)
        tmp = Path(tmp_name)
        done = 0
        audio_labels: tuple[str, ...] = ()
        size = (0, 0)
        frame_tb = Fraction(1) / info.frame_rate
        try:
            container = av.open(str(tmp), mode="w", format=fmt)
            try:
                stream: Any = None
                pending: list[Any] = []
                # decode on to the end of the stream (frame counts of MKV/TS are estimates)
                for index, image in reader.frames(first, None):
                    if index >= last:
                        break
                    if is_cancelled is not None and is_cancelled():
                        raise Cancelled()
                    low = cut_region(image, crop, field) if cut else image
                    arr = _even(steadier.process(low, upscale_frame(low)))
                    if stream is None:
                        # the video stream comes first; the audio streams follow it
                        size = (arr.shape[1], arr.shape[0])
                        stream = _add_video_stream(
                            container, info.frame_rate, size, crf, preset, info.sample_aspect_ratio
                        )
                        if info.audio:
                            audio = collect_audio(
                                reader.path,
                                container,
                                fmt,
                                Fraction(first) / info.frame_rate,
                                Fraction(last) / info.frame_rate,
                                Fraction(info.start_time).limit_denominator(10**9),
                            )
                            audio_labels = tuple(a.label for a in audio)
                            pending = sorted(
                                (p for a in audio for p in a.packets), key=packet_seconds
                            )
                    elif (arr.shape[1], arr.shape[0]) != size:
                        raise ValueError(
                            f"the upscaler returned {arr.shape[1]}x{arr.shape[0]} for frame "
                            f"{index}, but {size[0]}x{size[1]} before"
                        )
                    vf = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(
                        format="yuv420p", dst_colorspace="itu709", dst_color_range=1
                    )
                    vf.pts = done
                    vf.time_base = frame_tb
                    for packet in stream.encode(vf):
                        container.mux(packet)
                    done += 1
                    now = float(done * frame_tb)
                    while pending and packet_seconds(pending[0]) < now:
                        container.mux(pending.pop(0))
                    total = max(total, done)
                    if on_progress is not None:
                        on_progress(
                            Progress.single(
                                "fast",
                                done,
                                total,
                                f"frame {done}/{total} ({info.timecode(index)})",
                            )
                        )
                if stream is None:  # pragma: no cover - frames() yields at least the start
                    raise ClipError(reader.path, "no frame in the range could be decoded")
                for packet in stream.encode(None):
                    container.mux(packet)
                end_s = float(done * frame_tb)
                for packet in pending:
                    if packet_seconds(packet) < end_s:  # no audio past the last frame
                        container.mux(packet)
            except av.FFmpegError as exc:
                written = tmp.stat().st_size if tmp.exists() else 0
                raise ClipError(
                    out,
                    f"writing the clip failed after {done} frames, {written} bytes ({reason(exc)}); "
                    "nothing was saved under this name",
                ) from None
            finally:
                with contextlib.suppress(av.FFmpegError, OSError):
                    container.close()
            with open(tmp, "rb+") as fh:  # durable before the rename
                os.fsync(fh.fileno())
            os.replace(tmp, out)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    return UpscaleResult(
        path=str(out),
        frames=done,
        width=size[0],
        height=size[1],
        frame_rate=info.frame_rate,
        start_index=first,
        end_index=first + done,
        audio=audio_labels,
        seconds=time.perf_counter() - began,
        temporal=temporal,
    )


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
