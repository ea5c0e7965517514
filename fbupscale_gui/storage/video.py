"""Match clips: open, scrub, cut a region exactly as the operator would, batch-upscale a range.

Everything here runs on PyAV (FFmpeg), numpy and Pillow; PyAV is imported only when a clip is
touched, so importing this module stays cheap.

Clips. Containers MP4/MOV, Matroska and MPEG-TS (also ``.m2ts``) holding H.264, HEVC or
MPEG-2 video (:data:`SUPPORTED_CODECS`), progressive or interlaced. Anything else, and a
missing, empty, corrupt or truncated file, raises :class:`ClipError`: one line naming the file,
and nothing changes (no reader is left half-open, no output file is left behind).

Positions. A position is a frame index (``int``, 0 = the clip's first frame) or a time in
seconds (``float``) from the clip's first frame, whatever the container's own start time (an
MPEG-TS recording typically starts at 1.4 s or anywhere in the 26-hour PCR range). The frame at
time ``t`` is the one on screen at ``t``: index ``floor(t * fps)``. Broadcast material is
constant frame rate; a frame that is missing from the stream (a dropped frame) reads as the
frame before it, which is what a player shows.

Seeking is accurate: seek to the keyframe at or before the wanted frame, then decode forward
to it. If the demuxer lands past the frame (MPEG-TS seeks by timestamp search, and an open-GOP
B-frame right after a seek cannot be decoded), it seeks again further back. :class:`ClipReader`
keeps the container open, decodes forward without seeking for small forward steps, and keeps
the last frames it decoded (every frame from the keyframe to the one asked for), so a scrub
slider, playback and stepping back a few frames stay cheap.

Fields. Interlaced material (1080i) carries two fields per frame; a moving object is in a
different place in each, so a cutout of a fast player shows combing. :func:`cut_region` can take
a single field: the top field is the frame's even lines (0, 2, 4...), the bottom field its odd
lines. The field has half the height, so the aspect is restored to the rectangle the operator
drew, by one of two methods (:data:`FieldRestore`):

* ``"interpolate"`` (default): the field's own lines are kept exactly where they are and the
  missing lines are interpolated with the 4-tap kernel (-1, 9, 9, -1)/16 between the field lines
  above and below (classic "bob" deinterlacing). No half-line shift between the two fields, and
  no stair-steps for the upscaler to sharpen.
* ``"double"``: line doubling; every field line is repeated on the line below (top field) or
  above (bottom field). Nothing is invented, but diagonal edges get stair-steps.

Batch. :func:`upscale_range` decodes a range of frames, optionally cuts a region (and a field)
from each, runs an upscaler callable on every frame, optionally steadies the result over time
(:mod:`fbupscale_gui.core.temporal`), and writes a new clip: H.264 (libx264, yuv420p, BT.709,
CRF 18), the source's frame rate, and every audio stream of the source for the same range.
Audio packets are copied as they are (cut at packet boundaries, within one audio frame of about
21-32 ms) when the output can carry the codec and players play it there: MP4/MOV copy AAC, MP3,
AC-3, E-AC-3 and ALAC; Matroska copies anything it can hold. Everything else (MP2, the usual
DVB broadcast audio, which QuickTime and browsers do not play from MP4; PCM from a MOV
recording) is re-encoded to AAC at 192 kb/s per stereo pair, sample rate and layout kept.
Odd output sizes are made even by repeating the last column/row. The source's pixel aspect ratio
(anamorphic 1440x1080 HD, 16:9 SD) is kept. The file is written under a temporary name in the
output folder and renamed only when complete: on cancel or error nothing is left behind and an
existing file of that name is untouched.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
from PIL import Image

from fbupscale_gui.core.errors import Cancelled, InputImageError, RequestError, error_line
from fbupscale_gui.core.job import IsCancelled, OnProgress, Progress
from fbupscale_gui.storage.atomic import apply_umask

if TYPE_CHECKING:
    import av
    import av.container
    import av.stream

    from fbupscale_gui.core.temporal import TemporalMode, TemporalOptions

__all__ = [
    "FIELDS",
    "MAX_POSITION_S",
    "SUPPORTED_CODECS",
    "SUPPORTED_FORMATS",
    "AudioStreamInfo",
    "ClipError",
    "ClipInfo",
    "ClipReader",
    "Field",
    "FieldOrder",
    "FieldRestore",
    "Position",
    "Rect",
    "UpscaleFn",
    "UpscaleResult",
    "clamp_rect",
    "cut_region",
    "extract_field",
    "format_timecode",
    "lanczos_upscaler",
    "open_clip",
    "parse_position",
    "read_frame",
    "upscale_range",
]

#: Video codecs the product reads (FFmpeg decoder names) and how the user sees them named.
SUPPORTED_CODECS: Final[dict[str, str]] = {
    "h264": "H.264",
    "hevc": "HEVC",
    "mpeg2video": "MPEG-2",
}
#: Demuxers the product reads (FFmpeg names; MP4 and MOV share one) and their user-facing names.
SUPPORTED_FORMATS: Final[dict[str, str]] = {
    "mov,mp4,m4a,3gp,3g2,mj2": "MP4/MOV",
    "matroska,webm": "Matroska",
    "mpegts": "MPEG-TS",
}
#: Output containers by file suffix.
_OUTPUT_FORMATS: Final[dict[str, str]] = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}

Field = Literal["top", "bottom"]
FIELDS: Final[tuple[Field, ...]] = ("top", "bottom")
#: Latest time a position may name: a week, longer than any recording.
MAX_POSITION_S: Final = 7 * 24 * 3600
FieldRestore = Literal["interpolate", "double"]
#: progressive, top field first, bottom field first, or not stated by the stream.
FieldOrder = Literal["progressive", "tff", "bff", "unknown"]
#: A frame index (int, from 0) or a time in seconds (float) from the clip's first frame.
Position = int | float
#: A rectangle in frame pixels: (x, y, width, height).
Rect = tuple[int, int, int, int]
#: An upscaler: one RGB frame in, its upscaled RGB version out (same size for every frame).
UpscaleFn = Callable[[Image.Image], Image.Image]

#: AVFieldOrder values (libavcodec/defs.h): 1 progressive, 2 TT, 3 BB, 4 TB, 5 BT.
_FIELD_ORDERS: Final[dict[int, FieldOrder]] = {
    1: "progressive",
    2: "tff",
    3: "bff",
    4: "tff",
    5: "bff",
}
#: Forward steps up to this many seconds decode on instead of seeking.
_FORWARD_DECODE_S: Final = 2.0
#: Audio codecs copied into MP4/MOV as they are: the ones every common player decodes there.
#: FFmpeg would also mux MP2 (the usual DVB broadcast audio) into MP4, but QuickTime, browsers
#: and many editors do not play it, so it is re-encoded to AAC; Matroska copies everything.
_MP4_AUDIO_COPY: Final = frozenset({"aac", "mp3", "mp3float", "ac3", "eac3", "alac"})
#: AAC bit rate per channel pair when audio must be re-encoded.
_AAC_BITRATE_PER_PAIR: Final = 192_000
_AVCOL_SPC_UNSPECIFIED: Final = 2


class ClipError(InputImageError):
    """A clip could not be read: missing, empty, corrupt, truncated, unsupported, or out of range.

    The message is one line, ``"{path}: {reason}"``. A subclass of :class:`InputImageError`, so
    code that reports unreadable inputs reports clips too.
    """


# -- what a clip is ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream of a clip."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    layout: str
    language: str = ""


@dataclass(frozen=True)
class ClipInfo:
    """What the product knows about a clip, read when it is opened.

    ``frame_count`` is exact where the container states it (MP4/MOV) and otherwise estimated
    from the duration (Matroska, MPEG-TS), so treat it as the slider's range, not a promise.
    ``duration`` is in seconds from the first frame. ``interlaced`` is None when the stream
    does not say; ``field_order`` is "unknown" then.
    """

    path: str
    container: str
    codec: str
    codec_name: str
    width: int
    height: int
    frame_rate: Fraction
    duration: float
    frame_count: int
    interlaced: bool | None
    field_order: FieldOrder
    pixel_format: str
    sample_aspect_ratio: Fraction | None
    start_time: float
    audio: tuple[AudioStreamInfo, ...] = ()

    @property
    def fps(self) -> float:
        return float(self.frame_rate)

    @property
    def first_field(self) -> Field:
        """The field that comes first in time (top unless the stream says bottom first)."""
        return "bottom" if self.field_order == "bff" else "top"

    def time_of(self, index: int) -> float:
        """Seconds from the first frame to frame ``index``."""
        return float(index / self.frame_rate)

    def index_at(self, seconds: float) -> int:
        """The frame on screen at ``seconds`` from the first frame (never negative).

        Raises RequestError for a time that is not a finite number."""
        if not math.isfinite(seconds):
            raise RequestError(
                f"position: a time must be a finite number of seconds, got {seconds}"
            )
        return max(0, math.floor(seconds * self.frame_rate + Fraction(1, 10**6)))

    def index_of(self, position: Position) -> int:
        """A position as a frame index (an int is one already, a float is seconds)."""
        if isinstance(position, bool):
            raise TypeError("a position is a frame index (int) or seconds (float), not a bool")
        if isinstance(position, int):
            return position
        return self.index_at(float(position))

    def timecode(self, index: int) -> str:
        """Frame ``index`` as ``HH:MM:SS:FF`` (``;`` before FF for drop-frame 29.97/59.94)."""
        return format_timecode(index, self.frame_rate)


# -- timecode and positions ------------------------------------------------------------------


def _is_drop_frame_rate(rate: Fraction) -> bool:
    return rate in (Fraction(30000, 1001), Fraction(60000, 1001))


def format_timecode(
    index: int, frame_rate: Fraction | float, *, drop_frame: bool | None = None
) -> str:
    """Frame ``index`` as SMPTE timecode ``HH:MM:SS:FF`` counted from 00:00:00:00.

    ``drop_frame`` defaults to True for 29.97 and 59.94 fps, where drop-frame timecode skips
    frame numbers 0 and 1 (0-3 at 59.94) at the start of every minute except each tenth, so
    that the timecode keeps up with the clock; it is written ``HH:MM:SS;FF``. Other rates
    (25, 50, 24...) count frames at their nominal rate. Raises ValueError for a negative index
    or a rate that is not positive, or for drop-frame at a rate other than 29.97/59.94.
    """
    rate = Fraction(frame_rate).limit_denominator(1001)
    if index < 0:
        raise ValueError(f"frame index must not be negative, got {index}")
    if rate <= 0:
        raise ValueError(f"frame rate must be positive, got {frame_rate}")
    nominal = max(1, round(rate))
    if drop_frame is None:
        drop_frame = _is_drop_frame_rate(rate)
    frame = index
    sep = ":"
    if drop_frame:
        if nominal not in (30, 60):
            raise ValueError(f"drop-frame timecode exists for 29.97 and 59.94 fps, not {rate}")
        drop = 2 if nominal == 30 else 4
        per_10min = nominal * 600 - drop * 9
        per_min = nominal * 60 - drop
        tens, rest = divmod(frame, per_10min)
        frame += drop * 9 * tens
        if rest > drop:
            frame += drop * ((rest - drop) // per_min)
        sep = ";"
    ff = frame % nominal
    seconds = frame // nominal
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}{sep}{ff:02d}"


def parse_position(text: str, frame_rate: Fraction | float | None = None) -> Position:
    """Parse a position typed by the user.

    * ``"312f"``: frame 312 (int);
    * ``"12.48"``, ``"12"``: seconds (float);
    * ``"01:02.5"``, ``"1:01:02.5"``: [HH:]MM:SS[.fff] (float seconds);
    * ``"00:01:02:12"`` or ``"00:01:02;12"``: timecode HH:MM:SS:FF (int frame; needs
      ``frame_rate``; ``;`` means drop-frame).

    Raises RequestError naming the text for anything else.
    """
    s = text.strip()

    def bad(why: str) -> RequestError:
        return RequestError(f"position: {why}, got {text!r}")

    if not s:
        raise bad("empty")
    try:
        if s.lower().endswith("f"):
            frame = int(s[:-1])
            if frame < 0:
                raise bad("a frame number must not be negative")
            return frame
        parts = s.replace(";", ":").split(":")
        if len(parts) == 4:
            if frame_rate is None:
                raise bad("a timecode needs the clip's frame rate")
            return _timecode_to_index(
                [int(p) for p in parts], Fraction(frame_rate).limit_denominator(1001), ";" in s
            )
        if len(parts) > 3:
            raise bad("expected seconds, [HH:]MM:SS[.fff], HH:MM:SS:FF or a frame like 312f")
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + float(part)
    except RequestError:
        raise
    except ValueError:
        raise bad("expected seconds, [HH:]MM:SS[.fff], HH:MM:SS:FF or a frame like 312f") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise bad("a time must be a finite number of seconds, not negative")
    if seconds > MAX_POSITION_S:
        raise bad(f"a time must be at most {MAX_POSITION_S} s ({MAX_POSITION_S // 3600} hours)")
    return seconds


def _timecode_to_index(parts: list[int], rate: Fraction, drop_frame: bool) -> int:
    hh, mm, ss, ff = parts
    nominal = max(1, round(rate))
    if min(parts) < 0 or mm > 59 or ss > 59 or ff >= nominal:
        raise RequestError(f"position: timecode {hh:02d}:{mm:02d}:{ss:02d}:{ff:02d} is not valid")
    index = ((hh * 60 + mm) * 60 + ss) * nominal + ff
    if drop_frame and nominal in (30, 60):
        drop = 2 if nominal == 30 else 4
        minutes = hh * 60 + mm
        index -= drop * (minutes - minutes // 10)
    return index


# -- opening and decoding --------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ClipError(path, "no such file")
    if path.is_dir():
        raise ClipError(path, "is a folder, not a video clip")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ClipError(path, f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise ClipError(path, "empty file (0 bytes)")


def _open_container(path: Path) -> av.container.InputContainer:
    import av

    _check_file(path)
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise ClipError(
            path, f"not a video clip FFmpeg can read ({error_line(exc, limit=200)})"
        ) from None
    except (OSError, ValueError) as exc:
        raise ClipError(path, f"cannot be read ({error_line(exc, limit=200)})") from None
    try:
        fmt = container.format.name
        if fmt not in SUPPORTED_FORMATS:
            names = ", ".join(SUPPORTED_FORMATS.values())
            raise ClipError(path, f"container {fmt!r} is not supported (supported: {names})")
        if not container.streams.video:
            raise ClipError(path, "has no video stream")
        codec = container.streams.video[0].codec_context.name
        if codec not in SUPPORTED_CODECS:
            names = ", ".join(SUPPORTED_CODECS.values())
            raise ClipError(path, f"video codec {codec!r} is not supported (supported: {names})")
    except BaseException:
        container.close()
        raise
    return container


def _frame_to_image(frame: av.VideoFrame) -> Image.Image:
    """RGB image of a decoded frame; untagged HD material is read as BT.709."""
    src: str | int | None = None
    if frame.colorspace == _AVCOL_SPC_UNSPECIFIED:
        src = "itu709" if frame.height >= 720 else "itu601"
    rgb = frame.reformat(format="rgb24", src_colorspace=src)
    return Image.fromarray(rgb.to_ndarray(), "RGB")


class ClipReader:
    """An open clip for scrubbing: frames by index or time, decoded accurately.

    Keeps the container open (use it as a context manager, or call :meth:`close`). The last
    ``cache_frames`` decoded frames are kept (decoded YUV, about 3 MB each at 1080), so going
    back to a frame seen recently is free, and forward steps up to two seconds decode on
    without seeking. Not thread-safe: one reader per thread.

    Raises :class:`ClipError` on construction for a missing, empty, corrupt, truncated or
    unsupported clip (its first frame must decode).
    """

    info: ClipInfo

    def __init__(self, path: str | Path, *, cache_frames: int = 24) -> None:
        self.path = Path(path)
        self._cache: OrderedDict[int, av.VideoFrame] = OrderedDict()
        self._cache_size = max(0, cache_frames)
        self._container: av.container.InputContainer | None = _open_container(self.path)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    # -- setup ----------------------------------------------------------------------------

    def _setup(self) -> None:
        import av

        container = self._require()
        stream = container.streams.video[0]
        self._stream_index = stream.index
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate or rate <= 0:
            raise ClipError(self.path, "the video stream states no frame rate")
        rate = Fraction(rate).limit_denominator(1001)
        self._rate = rate
        tb = stream.time_base
        if tb is None:
            raise ClipError(self.path, "the video stream has no time base")
        self._tb = Fraction(tb)
        self._frames_iter: Iterator[tuple[int, av.VideoFrame]] | None = None
        self._last: tuple[int, av.VideoFrame] | None = None
        self._first_pts: int | None = None
        # The first decoded frame fixes the clip's time origin and proves the clip decodes;
        # the decoder stays there, so reading on from frame 0 needs no seek.
        self._frames_iter = self._indexed()
        first = next(self._frames_iter, None)
        if first is None:
            self._frames_iter = None
            raise ClipError(self.path, "no video frame could be decoded (truncated or corrupt)")
        self._last = first
        frame = first[1]
        assert self._first_pts is not None

        start_time = float(self._first_pts * self._tb)
        duration = 0.0
        if stream.duration:
            duration = float(stream.duration * self._tb) - (
                start_time - float((stream.start_time or 0) * self._tb)
            )
        elif container.duration:
            duration = container.duration / av.time_base - (
                start_time - (container.start_time or 0) / av.time_base
            )
        duration = max(duration, 1 / float(rate))
        count = stream.frames if stream.frames and stream.frames > 0 else round(duration * rate)
        field_order = _FIELD_ORDERS.get(stream.codec_context.field_order, "unknown")
        interlaced: bool | None
        if field_order in ("tff", "bff") or frame.interlaced_frame:
            interlaced = True
        elif field_order == "progressive":
            interlaced = False
        else:
            interlaced = None
        sar = stream.sample_aspect_ratio
        audio = tuple(
            AudioStreamInfo(
                index=a.index,
                codec=a.codec_context.name,
                sample_rate=a.codec_context.sample_rate or 0,
                channels=a.codec_context.channels or 0,
                layout=a.codec_context.layout.name if a.codec_context.layout else "",
                language=a.language or "",
            )
            if a.codec_context is not None
            else AudioStreamInfo(
                index=a.index, codec="unknown", sample_rate=0, channels=0, layout=""
            )
            for a in container.streams.audio
        )
        codec = stream.codec_context.name
        self.info = ClipInfo(
            path=str(self.path),
            container=SUPPORTED_FORMATS[container.format.name],
            codec=SUPPORTED_CODECS[codec],
            codec_name=codec,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            frame_rate=rate,
            duration=duration,
            frame_count=max(1, int(count)),
            interlaced=interlaced,
            field_order=field_order,
            pixel_format=stream.codec_context.format.name if stream.codec_context.format else "",
            sample_aspect_ratio=Fraction(sar) if sar else None,
            start_time=start_time,
            audio=audio,
        )

    def _require(self) -> av.container.InputContainer:
        if self._container is None:
            raise ClipError(self.path, "the clip is closed")
        return self._container

    # -- decoding -------------------------------------------------------------------------

    def _index_of_pts(self, pts: int) -> int:
        first = self._first_pts or 0
        return round((pts - first) * self._tb * self._rate)

    def _decode_all(self) -> Iterator[av.VideoFrame]:
        """Decode video frames from the current position; skips packets FFmpeg rejects."""
        import av

        container = self._require()
        stream = container.streams.video[0]
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.InvalidDataError:
                    continue  # a damaged packet: the decoder recovers at the next one
                yield from frames
        except av.FFmpegError as exc:
            raise ClipError(self.path, f"decoding failed ({error_line(exc, limit=200)})") from None

    def _indexed(self) -> Iterator[tuple[int, av.VideoFrame]]:
        last = -1
        for frame in self._decode_all():
            if self._first_pts is None:
                self._first_pts = frame.pts if frame.pts is not None else 0
            index = self._index_of_pts(frame.pts) if frame.pts is not None else last + 1
            last = index
            yield index, frame

    def _seek_to(self, index: int, back_s: float) -> None:
        container = self._require()
        stream = container.streams.video[0]
        first = self._first_pts or 0
        target = first + math.floor((Fraction(index) / self._rate - Fraction(back_s)) / self._tb)
        self._frames_iter = None
        self._last = None
        if target <= first:
            self._rewind()
            return
        import av

        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
        except av.FFmpegError:
            self._rewind()
            return
        self._frames_iter = self._indexed()

    def _rewind(self) -> None:
        """Back to the very start: reopen the clip (works for every container)."""
        if self._container is not None:
            self._container.close()
            self._container = None
        self._container = _open_container(self.path)
        self._frames_iter = self._indexed()
        self._last = None

    def _decode_to(self, index: int) -> av.VideoFrame:
        """Decode forward from the current position to frame ``index``.

        Raises :class:`_Overshot` if the first frame decoded is already past ``index`` (seek
        further back), and :class:`ClipError` if the stream ends first.
        """
        assert self._frames_iter is not None
        previous = self._last  # the frame before, when decoding on without a seek
        for i, frame in self._frames_iter:
            self._remember(i, frame)
            if i < index:
                previous = self._last = (i, frame)
                continue
            if i == index:
                self._last = (i, frame)
                return frame
            if previous is None:
                self._frames_iter = None
                raise _Overshot(i)
            # ``index`` is missing from the stream (a dropped frame): the previous frame is
            # the one on screen. Frame ``i`` is consumed, so the next read seeks.
            self._frames_iter = None
            self._last = previous
            return previous[1]
        self._frames_iter = None
        where = f"frame {index} ({self.info.timecode(index)})"
        if index >= self.info.frame_count:
            count = self.info.frame_count
            raise ClipError(self.path, f"{where} is past the end of the clip ({count} frames)")
        last = f" ({self._last[0]})" if self._last is not None else ""
        raise ClipError(
            self.path, f"{where} is past the last decodable frame{last}; the clip is truncated"
        )

    def _remember(self, index: int, frame: av.VideoFrame) -> None:
        if self._cache_size:
            self._cache[index] = frame
            self._cache.move_to_end(index)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _frame(self, index: int) -> av.VideoFrame:
        if index < 0:
            raise ClipError(self.path, f"frame {index} does not exist (frames count from 0)")
        last = self._last
        if last is not None and last[0] == index:
            return last[1]
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        forward = int(_FORWARD_DECODE_S * self._rate)
        if (
            self._frames_iter is not None
            and last is not None
            and last[0] < index <= last[0] + forward
        ):
            with contextlib.suppress(_Overshot):
                return self._decode_to(index)
        back = 0.0
        while True:
            self._seek_to(index, back)
            try:
                return self._decode_to(index)
            except _Overshot:
                if back > 0 and (Fraction(index) / self._rate) - Fraction(back) <= 0:
                    raise ClipError(
                        self.path, f"frame {index} cannot be decoded (damaged stream)"
                    ) from None
                back = 1.0 if back == 0 else back * 2

    def frame(self, index: int) -> Image.Image:
        """Frame ``index`` as an RGB image. Raises :class:`ClipError` past the end."""
        return _frame_to_image(self._frame(index))

    def read(self, position: Position | str) -> Image.Image:
        """The frame at a position: index (int), seconds (float) or text (:func:`parse_position`)."""
        if isinstance(position, str):
            position = parse_position(position, self.info.frame_rate)
        return self.frame(self.info.index_of(position))

    def frames(self, start: int, end: int | None = None) -> Iterator[tuple[int, Image.Image]]:
        """Frames ``start`` (inclusive) to ``end`` (exclusive; None: to the end), in order.

        Each index appears once; a dropped frame repeats the one before it. Raises
        :class:`ClipError` if ``start`` is past the end.
        """
        for index, frame in self._frames_av(start, end):
            yield index, _frame_to_image(frame)

    def _frames_av(self, start: int, end: int | None) -> Iterator[tuple[int, av.VideoFrame]]:
        current = self._frame(start)
        index = start
        yield index, current
        while end is None or index + 1 < end:
            try:
                current = self._frame(index + 1)
            except ClipError:
                if end is None:
                    return
                raise
            index += 1
            yield index, current

    def close(self) -> None:
        """Close the clip (idempotent)."""
        self._frames_iter = None
        self._last = None
        self._cache.clear()
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> ClipReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Overshot(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def open_clip(path: str | Path) -> ClipInfo:
    """Read what a clip is (and prove its first frame decodes). Raises :class:`ClipError`."""
    with ClipReader(path) as reader:
        return reader.info


def read_frame(path: str | Path, position: Position | str) -> Image.Image:
    """One frame of a clip as RGB; see :meth:`ClipReader.read`. Raises :class:`ClipError`."""
    with ClipReader(path) as reader:
        return reader.read(position)


# -- cutting ---------------------------------------------------------------------------------


def clamp_rect(rect: Rect, size: tuple[int, int]) -> Rect | None:
    """``rect`` clipped to a frame of ``size`` (width, height); None if nothing is left."""
    x, y, w, h = rect
    left, top = max(0, x), max(0, y)
    right, bottom = min(size[0], x + w), min(size[1], y + h)
    if right <= left or bottom <= top:
        return None
    return (left, top, right - left, bottom - top)


def _check_rect(rect: Rect, size: tuple[int, int]) -> None:
    x, y, w, h = rect
    if w < 1 or h < 1:
        raise RequestError(f"rect: width and height must be at least 1 px, got {w}x{h}")
    if x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
        raise RequestError(
            f"rect: {w}x{h} at ({x}, {y}) is not inside the {size[0]}x{size[1]} frame"
        )


def extract_field(frame: Image.Image, field: Field) -> Image.Image:
    """The field's lines only (half height): top = lines 0, 2, 4...; bottom = lines 1, 3, 5...

    Raises RequestError for an unknown field name.
    """
    if field not in FIELDS:
        raise RequestError(f"field: must be one of {', '.join(FIELDS)}, got {field!r}")
    arr = np.asarray(frame)
    return Image.fromarray(np.ascontiguousarray(arr[(0 if field == "top" else 1) :: 2]))


def cut_region(
    frame: Image.Image,
    rect: Rect,
    field: Field | None = None,
    *,
    restore: FieldRestore = "interpolate",
) -> Image.Image:
    """Cut ``rect`` (x, y, width, height in frame pixels) out of ``frame``, as an RGB image.

    With ``field`` the cutout is made from that field only (see the module docstring): lines of
    the other field never reach the result; field parity is that of the frame's lines, not of
    the rectangle's. Works in stored pixels: for an anamorphic source
    (:attr:`ClipInfo.sample_aspect_ratio` not 1) the cutout keeps that pixel shape. The result
    always has the rectangle's size; ``restore`` says how the missing
    lines are made ("interpolate" or "double"). Raises RequestError for a rectangle that is not
    inside the frame, an unknown field or an unknown restore method.
    """
    rgb = frame if frame.mode == "RGB" else frame.convert("RGB")
    _check_rect(rect, rgb.size)
    x, y, w, h = rect
    if field is None:
        return rgb.crop((x, y, x + w, y + h))
    if field not in FIELDS:
        raise RequestError(f"field: must be one of {', '.join(FIELDS)}, got {field!r}")
    if restore not in ("interpolate", "double"):
        raise RequestError(f"restore: must be interpolate or double, got {restore!r}")
    arr = np.asarray(rgb)[:, x : x + w]
    height = arr.shape[0]
    parity = 0 if field == "top" else 1
    # the field's lines of the whole frame (so lines just outside the rect are used as context)
    field_rows = np.arange(parity, height, 2)
    if field_rows.size == 0:  # a 1-line frame has no bottom field
        raise RequestError(f"field: a {height}-line frame has no {field} field")
    rows = np.arange(y, y + h)
    own = (rows % 2) == parity
    out = np.empty((h, w, 3), dtype=np.uint8)
    out[own] = arr[rows[own]]
    missing = rows[~own]
    if missing.size:
        if restore == "double":
            # top field: line 2k fills 2k+1; bottom field: line 2k+1 fills 2k
            src = missing - 1 if parity == 0 else missing + 1
            src = np.clip(src, field_rows[0], field_rows[-1])
            src = np.where((src % 2) == parity, src, src - 1 if parity else src + 1)
            out[~own] = arr[np.clip(src, 0, height - 1)]
        else:
            # field line k sits on frame line 2k + parity; a missing line m lies halfway
            # between field lines (m - 1 - parity) / 2 and that + 1
            k = (missing - 1 - parity) // 2
            n = field_rows.size
            taps = [np.clip(k + d, 0, n - 1) for d in (-1, 0, 1, 2)]
            lines = [arr[field_rows[t]].astype(np.int32) for t in taps]
            acc = -lines[0] + 9 * lines[1] + 9 * lines[2] - lines[3]
            out[~own] = np.clip((acc + 8) >> 4, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


# -- batch upscale ---------------------------------------------------------------------------


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


@dataclass
class _AudioOut:
    """Audio packets for one output stream, already in output time."""

    stream: Any  # None: the stream is left out
    packets: list[Any]
    label: str


def _can_copy(in_stream: av.stream.Stream, fmt: str) -> bool:
    """Whether ``fmt`` can carry the stream's codec as is (a header written to memory)."""
    import io

    import av

    buf = io.BytesIO()
    try:
        out = av.open(buf, mode="w", format=fmt)
    except av.FFmpegError:  # pragma: no cover - the formats are FFmpeg's own
        return False
    try:
        out.add_stream_from_template(in_stream)
        out.start_encoding()
        return True
    except (av.FFmpegError, ValueError, TypeError):
        return False
    finally:
        with contextlib.suppress(Exception):
            out.close()


def _collect_audio(
    path: Path,
    out: av.container.OutputContainer,
    fmt: str,
    start_s: Fraction,
    end_s: Fraction,
    video_origin: Fraction,
) -> list[_AudioOut]:
    """Add every audio stream of the clip to ``out`` and gather its packets for the range.

    ``start_s``/``end_s`` are seconds from the clip's first frame; ``video_origin`` is that
    frame's time in the container's own clock. Packets are rebased so the range starts at 0.
    A stream that can neither be copied nor decoded is left out (its label says so).
    """
    import av

    results: list[_AudioOut] = []
    range_start = video_origin + start_s
    range_end = video_origin + end_s
    probe = _open_container(path)
    try:
        count = len(probe.streams.audio)
    finally:
        probe.close()
    for n in range(count):
        container = _open_container(path)  # one pass per stream, each from its own position
        try:
            in_stream = container.streams.audio[n]
            ctx = in_stream.codec_context
            codec = ctx.name if ctx is not None else "unknown codec"
            copy = ctx is not None and (fmt == "matroska" or codec in _MP4_AUDIO_COPY)
            copy = copy and _can_copy(in_stream, fmt)
            if not copy and (ctx is None or not _has_decoder(codec)):
                results.append(_AudioOut(None, [], f"{codec} (left out: no decoder)"))
                continue
            atb = Fraction(in_stream.time_base or Fraction(1, in_stream.sample_rate or 48000))
            seek_to = math.floor((range_start - 1) / atb)
            if seek_to > (in_stream.start_time or 0):
                with contextlib.suppress(av.FFmpegError):  # unseekable: read from the start
                    container.seek(seek_to, stream=in_stream, backward=True)
            if copy:
                out_stream = out.add_stream_from_template(in_stream)
                offset = math.floor(range_start / atb)
                packets = []
                for packet in container.demux(in_stream):
                    if packet.pts is None or packet.size == 0:
                        continue
                    t = packet.pts * atb
                    if t < range_start:
                        continue
                    if t >= range_end:
                        break
                    packet.pts -= offset
                    if packet.dts is not None:
                        packet.dts -= offset
                    packet.stream = out_stream
                    packets.append(packet)
                results.append(_AudioOut(out_stream, packets, f"{codec} (copied)"))
            else:
                results.append(_reencode_audio(container, in_stream, out, range_start, range_end))
        except av.FFmpegError as exc:
            raise ClipError(
                path, f"reading audio stream #{n + 1} failed ({error_line(exc, limit=200)})"
            ) from None
        finally:
            container.close()
    return results


def _has_decoder(codec: str) -> bool:
    import av

    try:
        av.codec.Codec(codec, "r")
    except (av.FFmpegError, ValueError):
        return False
    return True


def _reencode_audio(
    container: av.container.InputContainer,
    in_stream: Any,
    out: av.container.OutputContainer,
    range_start: Fraction,
    range_end: Fraction,
) -> _AudioOut:
    import av

    ctx = in_stream.codec_context
    rate = ctx.sample_rate or 48000
    channels = ctx.channels or 2
    layout = "stereo" if channels == 2 else ("mono" if channels == 1 else ctx.layout.name)
    out_stream = out.add_stream("aac", rate=rate)
    out_stream.layout = layout
    out_stream.bit_rate = _AAC_BITRATE_PER_PAIR * max(1, channels // 2)
    frame_size = out_stream.codec_context.frame_size or 1024
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=frame_size)
    atb = Fraction(in_stream.time_base or Fraction(1, rate))
    packets: list[Any] = []
    samples = 0
    started = False

    def encode(frame: av.AudioFrame | None) -> None:
        for packet in out_stream.encode(frame):
            packets.append(packet)

    for frame in container.decode(in_stream):
        if frame.pts is None:
            continue
        t = frame.pts * atb
        if t < range_start:
            continue
        if t >= range_end:
            break
        if not started:
            samples = max(0, round((t - range_start) * rate))
            started = True
        for chunk in resampler.resample(frame):
            chunk.pts = samples
            chunk.time_base = Fraction(1, rate)
            samples += chunk.samples
            encode(chunk)
    for chunk in resampler.resample(None):
        chunk.pts = samples
        chunk.time_base = Fraction(1, rate)
        samples += chunk.samples
        encode(chunk)
    encode(None)
    return _AudioOut(out_stream, packets, f"aac (re-encoded from {ctx.name})")


def _even(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return arr


def _packet_seconds(packet: Any) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    if ts is None or packet.time_base is None:
        return 0.0
    return float(ts * packet.time_base)


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
            _check_rect(rect, (info.width, info.height))
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
                            audio = _collect_audio(
                                reader.path,
                                container,
                                fmt,
                                Fraction(first) / info.frame_rate,
                                Fraction(last) / info.frame_rate,
                                Fraction(info.start_time).limit_denominator(10**9),
                            )
                            audio_labels = tuple(a.label for a in audio)
                            pending = sorted(
                                (p for a in audio for p in a.packets), key=_packet_seconds
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
                    while pending and _packet_seconds(pending[0]) < now:
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
                    if _packet_seconds(packet) < end_s:  # no audio past the last frame
                        container.mux(packet)
            except av.FFmpegError as exc:
                written = tmp.stat().st_size if tmp.exists() else 0
                raise ClipError(
                    out,
                    f"writing the clip failed after {done} frames, {written} bytes ({error_line(exc, limit=200)}); "
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
