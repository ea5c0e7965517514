"""Opening a clip and decoding its frames accurately: the PyAV (FFmpeg) reader.

Clips. Containers MP4/MOV, Matroska and MPEG-TS (also ``.m2ts``) holding H.264, HEVC or
MPEG-2 video (:data:`SUPPORTED_CODECS`), progressive or interlaced. Anything else, and a
missing, empty, corrupt or truncated file, raises :class:`ClipError`: one line naming the file,
and nothing changes (no reader is left half-open).

Positions count from the clip's first frame, whatever the container's own start time (an
MPEG-TS recording typically starts at 1.4 s or anywhere in the 26-hour PCR range). Broadcast
material is constant frame rate; a frame that is missing from the stream (a dropped frame)
reads as the frame before it, which is what a player shows.

Seeking is accurate: seek to the keyframe at or before the wanted frame, then decode forward
to it. If the demuxer lands past the frame (MPEG-TS seeks by timestamp search, and an open-GOP
B-frame right after a seek cannot be decoded), it seeks again further back. :class:`ClipReader`
keeps the container open, decodes forward without seeking for small forward steps, and keeps
the last frames it decoded (every frame from the keyframe to the one asked for), so a scrub
slider, playback and stepping back a few frames stay cheap. PyAV is imported only when a clip
is touched.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Final

from PIL import Image

from fbupscale_gui.core.clip import AudioStreamInfo, ClipInfo, FieldOrder
from fbupscale_gui.core.errors import InputImageError, error_line
from fbupscale_gui.core.timecode import Position, parse_position

if TYPE_CHECKING:
    import av
    import av.container

__all__ = [
    "SUPPORTED_CODECS",
    "SUPPORTED_FORMATS",
    "ClipError",
    "ClipReader",
    "open_clip",
    "open_container",
    "read_frame",
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
_AVCOL_SPC_UNSPECIFIED: Final = 2


class ClipError(InputImageError):
    """A clip could not be read: missing, empty, corrupt, truncated, unsupported, or out of range.

    The message is one line, ``"{path}: {reason}"``. A subclass of :class:`InputImageError`, so
    code that reports unreadable inputs reports clips too.
    """


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


def open_container(path: Path) -> av.container.InputContainer:
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
        self._container: av.container.InputContainer | None = open_container(self.path)
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
        self._container = open_container(self.path)
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
