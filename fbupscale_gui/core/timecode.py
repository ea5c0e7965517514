"""Timecode and positions in a clip: pure rules, no file is touched.

A position is a frame index (``int``, 0 = the clip's first frame) or a time in seconds
(``float``) from the clip's first frame, whatever the container's own start time. The frame at
time ``t`` is the one on screen at ``t``: index ``floor(t * fps)``. :func:`format_timecode`
writes SMPTE timecode (drop-frame at 29.97/59.94); :func:`parse_position` reads what an
operator types (seconds, ``[HH:]MM:SS[.fff]``, timecode or ``312f``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Final

from fbupscale_gui.core.errors import RequestError

__all__ = ["MAX_POSITION_S", "Position", "format_timecode", "parse_position"]

#: Latest time a position may name: a week, longer than any recording.
MAX_POSITION_S: Final = 7 * 24 * 3600
#: A frame index (int, from 0) or a time in seconds (float) from the clip's first frame.
Position = int | float


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
