"""The source's audio for a batch's range: packets copied as they are, or re-encoded to AAC.

Audio packets are copied as they are (cut at packet boundaries, within one audio frame of about
21-32 ms) when the output can carry the codec and players play it there: MP4/MOV copy AAC, MP3,
AC-3, E-AC-3 and ALAC; Matroska copies anything it can hold. Everything else (MP2, the usual
DVB broadcast audio, which QuickTime and browsers do not play from MP4; PCM from a MOV
recording) is re-encoded to AAC at 192 kb/s per stereo pair, sample rate and layout kept.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import error_line
from fbupscale_gui.storage.video.reader import ClipError, open_container

if TYPE_CHECKING:
    import av
    import av.container
    import av.stream

__all__ = ["AudioOut", "collect_audio", "packet_seconds"]

#: Audio codecs copied into MP4/MOV as they are: the ones every common player decodes there.
#: FFmpeg would also mux MP2 (the usual DVB broadcast audio) into MP4, but QuickTime, browsers
#: and many editors do not play it, so it is re-encoded to AAC; Matroska copies everything.
_MP4_AUDIO_COPY: Final = frozenset({"aac", "mp3", "mp3float", "ac3", "eac3", "alac"})
#: AAC bit rate per channel pair when audio must be re-encoded.
_AAC_BITRATE_PER_PAIR: Final = 192_000


@dataclass
class AudioOut:
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


def collect_audio(
    path: Path,
    out: av.container.OutputContainer,
    fmt: str,
    start_s: Fraction,
    end_s: Fraction,
    video_origin: Fraction,
) -> list[AudioOut]:
    """Add every audio stream of the clip to ``out`` and gather its packets for the range.

    ``start_s``/``end_s`` are seconds from the clip's first frame; ``video_origin`` is that
    frame's time in the container's own clock. Packets are rebased so the range starts at 0.
    A stream that can neither be copied nor decoded is left out (its label says so).
    """
    import av

    results: list[AudioOut] = []
    range_start = video_origin + start_s
    range_end = video_origin + end_s
    probe = open_container(path)
    try:
        count = len(probe.streams.audio)
    finally:
        probe.close()
    for n in range(count):
        container = open_container(path)  # one pass per stream, each from its own position
        try:
            in_stream = container.streams.audio[n]
            ctx = in_stream.codec_context
            codec = ctx.name if ctx is not None else "unknown codec"
            copy = ctx is not None and (fmt == "matroska" or codec in _MP4_AUDIO_COPY)
            copy = copy and _can_copy(in_stream, fmt)
            if not copy and (ctx is None or not _has_decoder(codec)):
                results.append(AudioOut(None, [], f"{codec} (left out: no decoder)"))
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
                results.append(AudioOut(out_stream, packets, f"{codec} (copied)"))
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
) -> AudioOut:
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
    return AudioOut(out_stream, packets, f"aac (re-encoded from {ctx.name})")


def packet_seconds(packet: Any) -> float:
    ts = packet.dts if packet.dts is not None else packet.pts
    if ts is None or packet.time_base is None:
        return 0.0
    return float(ts * packet.time_base)
