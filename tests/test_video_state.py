"""The video window's rules, without a window: ranges, outputs and the words for a result."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from fbupscale_gui.core.clip import ClipInfo
from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.state.video import parse_range, range_summary, resolve_output, result_text
from fbupscale_gui.storage.video import UpscaleResult


def _info(path: Path, frames: int = 50) -> ClipInfo:
    return ClipInfo(
        path=str(path),
        container="MP4/MOV",
        codec="H.264",
        width=64,
        height=48,
        frame_rate=Fraction(25),
        duration=frames / 25,
        frame_count=frames,
        interlaced=False,
        field_order="progressive",
        pixel_format="yuv420p",
        sample_aspect_ratio=None,
        start_time=0.0,
    )


def test_parse_range_clamps_the_end_and_refuses_what_is_not_a_range(tmp_path: Path) -> None:
    info = _info(tmp_path / "clip.mp4")
    assert parse_range(info, "00:00:00:05", "1.0") == (5, 25)
    assert parse_range(info, "10f", "999f") == (10, 49)  # the end is clamped to the clip
    with pytest.raises(RequestError, match="comes before the start 00:00:00:10"):
        parse_range(info, "10f", "9f")
    with pytest.raises(RequestError, match="past the clip's last frame"):
        parse_range(info, "50f", "60f")
    with pytest.raises(RequestError, match="position"):
        parse_range(info, "soon", "60f")


def test_range_summary_counts_frames_and_the_upscaled_size(tmp_path: Path) -> None:
    info = _info(tmp_path / "clip.mp4")
    assert range_summary(info, 0, 24, None) == "25 frame(s), 1.00 s · 64×48 → 256×192 per frame"
    assert range_summary(info, 0, 0, (1, 2, 10, 6)).endswith("10×6 → 40×24 per frame")


def test_resolve_output_never_replaces_a_file_the_operator_did_not_choose(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"clip")
    info = _info(clip)
    default = tmp_path / "clip_f0-f9_lanczos_x4.mp4"
    assert resolve_output(info, "  ", default, "") == default
    with pytest.raises(RequestError, match="clip being read"):
        resolve_output(info, str(clip), default, str(clip))
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"an earlier result")
    with pytest.raises(RequestError, match="already exists"):
        resolve_output(info, str(taken), default, "")
    assert resolve_output(info, str(taken), default, str(taken)) == taken  # chosen in the dialog
    with pytest.raises(RequestError, match=r"must end in \.mp4"):
        resolve_output(info, str(tmp_path / "out.avi"), default, "")


def test_result_text_names_the_file_and_what_went_into_it() -> None:
    result = UpscaleResult(
        path="/clips/up.mp4",
        frames=12,
        width=256,
        height=192,
        frame_rate=Fraction(30000, 1001),
        start_index=0,
        end_index=12,
        audio=("aac (copied)",),
        seconds=1.34,
    )
    assert result_text(result) == (
        "Wrote /clips/up.mp4 — 12 frames, 256×192, 29.97 fps, audio: aac (copied) (1.3 s)"
    )
