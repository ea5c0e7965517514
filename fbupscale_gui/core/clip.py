"""What a clip is (its streams, rate, length, scan) and how its frames and fields are named.

Pure data: :class:`ClipInfo` is read by :mod:`fbupscale_gui.storage.video` when a clip is
opened; its position arithmetic (time <-> frame index, timecode) lives here so it can be used
without touching a file. ``frame_count`` is exact where the container states it (MP4/MOV) and
otherwise estimated from the duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.timecode import Position, format_timecode

__all__ = [
    "FIELDS",
    "AudioStreamInfo",
    "ClipInfo",
    "Field",
    "FieldOrder",
    "FieldRestore",
    "Rect",
]

Field = Literal["top", "bottom"]
FIELDS: Final[tuple[Field, ...]] = ("top", "bottom")
FieldRestore = Literal["interpolate", "double"]
#: progressive, top field first, bottom field first, or not stated by the stream.
FieldOrder = Literal["progressive", "tff", "bff", "unknown"]
#: A rectangle in frame pixels: (x, y, width, height).
Rect = tuple[int, int, int, int]


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
