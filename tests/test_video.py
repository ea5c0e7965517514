"""Match clips: open, seek, cut fields, batch-upscale with audio, cancel, refuse bad files.

Every clip is generated here with PyAV: 64x48, 12 frames, each frame a flat colour that encodes
its index (red = 10 + 19 * index) with a small white block moving across the lower half, short
GOPs with B-frames so that seeking has to decode forward from a keyframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from fbupscale_gui.core.errors import Cancelled, InputImageError, RequestError
from fbupscale_gui.core.job import Progress
from fbupscale_gui.storage.video import (
    ClipError,
    ClipReader,
    clamp_rect,
    cut_region,
    extract_field,
    format_timecode,
    lanczos_upscaler,
    open_clip,
    parse_position,
    read_frame,
    upscale_range,
)

W, H, N = 64, 48, 12


def red_of(index: int) -> int:
    return 10 + 19 * index


def index_of_red(value: float) -> int:
    return round((value - 10) / 19)


def draw(index: int, w: int = W, h: int = H) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[...] = (red_of(index), 200 - 10 * index, 90)
    x = (4 * index) % (w - 8)
    img[h - 12 : h - 4, x : x + 8] = 255
    return img


def make_clip(
    path: Path,
    fmt: str,
    vcodec: str,
    *,
    audio: str | None = None,
    rate: Fraction | int = 25,
    interlaced: bool = False,
    n: int = N,
    w: int = W,
    h: int = H,
    bframes: int = 2,
    sar: Fraction | None = None,
) -> Path:
    out = av.open(str(path), "w", format=fmt)
    vs = out.add_stream(vcodec, rate=rate)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.codec_context.gop_size = 5
    vs.codec_context.max_b_frames = bframes
    if sar is not None:
        vs.codec_context.sample_aspect_ratio = sar
    if interlaced:
        flags = av.codec.context.Flags
        vs.codec_context.flags |= flags.interlaced_dct | flags.interlaced_me
    if vcodec == "libx265":
        vs.codec_context.options = {"x265-params": "log-level=none"}
    ast = None
    if audio:
        ast = out.add_stream(audio, rate=48000)
        ast.layout = "stereo"
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(draw(i, w, h), format="rgb24")
        frame.pts = i
        for p in vs.encode(frame):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    if ast is not None:
        total = int(48000 * n / float(rate))
        size = ast.codec_context.frame_size or 1024
        fmt_name = ast.codec_context.format.name
        t = 0
        while t < total:
            k = min(size, total - t)
            wave = (np.sin(2 * np.pi * 440 * np.arange(t, t + k) / 48000) * 0.3).astype(np.float32)
            if fmt_name == "fltp":
                af = av.AudioFrame.from_ndarray(
                    np.stack([wave, wave]), format="fltp", layout="stereo"
                )
            else:
                pcm = (np.stack([wave, wave]).T.reshape(1, -1) * 32767).astype(np.int16)
                af = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
            af.sample_rate = 48000
            af.pts = t
            for p in ast.encode(af):
                out.mux(p)
            t += k
        for p in ast.encode():
            out.mux(p)
    out.close()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "h264": make_clip(d / "h264.mp4", "mp4", "libx264", audio="aac"),
        "mpeg2": make_clip(d / "mpeg2.ts", "mpegts", "mpeg2video", audio="mp2", interlaced=True),
        "h264i": make_clip(d / "h264i.mkv", "matroska", "libx264", interlaced=True),
        "hevc": make_clip(d / "hevc.mov", "mov", "libx265"),
    }


def red_at(image: Image.Image) -> float:
    return float(np.asarray(image)[1:10, 1:10, 0].mean())


# -- opening -----------------------------------------------------------------------------------


def test_info_h264_mp4(clips: dict[str, Path]) -> None:
    info = open_clip(clips["h264"])
    assert (info.codec, info.container) == ("H.264", "MP4/MOV")
    assert (info.width, info.height) == (W, H)
    assert info.frame_rate == 25
    assert info.frame_count == N
    assert info.duration == pytest.approx(N / 25, abs=0.01)
    assert info.interlaced is False and info.field_order == "progressive"
    assert [a.codec for a in info.audio] == ["aac"]
    assert info.audio[0].sample_rate == 48000 and info.audio[0].channels == 2


def test_info_mpeg2_ts_interlaced(clips: dict[str, Path]) -> None:
    info = open_clip(clips["mpeg2"])
    assert (info.codec, info.container) == ("MPEG-2", "MPEG-TS")
    assert info.interlaced is True
    assert info.field_order in ("tff", "bff")
    assert info.first_field == ("top" if info.field_order == "tff" else "bottom")
    assert info.frame_rate == 25 and info.frame_count == N
    assert info.start_time > 0  # a TS clock does not start at zero; positions still do
    assert [a.codec for a in info.audio] == ["mp2"]


def test_info_mkv_and_hevc(clips: dict[str, Path]) -> None:
    mkv = open_clip(clips["h264i"])
    assert (mkv.codec, mkv.container, mkv.interlaced, mkv.field_order) == (
        "H.264",
        "Matroska",
        True,
        "tff",
    )
    assert mkv.frame_count == N and mkv.audio == ()
    hevc = open_clip(clips["hevc"])
    assert (hevc.codec, hevc.width, hevc.height, hevc.frame_count) == ("HEVC", W, H, N)


# -- seeking -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cache", [0, 24])  # 0: every backward step really seeks
@pytest.mark.parametrize("name", ["h264", "mpeg2", "h264i", "hevc"])
def test_accurate_seek(clips: dict[str, Path], name: str, cache: int) -> None:
    order = [7, 2, 11, 0, 5, 6, 10, 3, 3, 9, 1, 8, 4, 3, 2, 1, 0]
    with ClipReader(clips[name], cache_frames=cache) as reader:
        for i in order:
            assert index_of_red(red_at(reader.frame(i))) == i, f"frame {i}"
        assert [idx for idx, _ in reader.frames(3, 8)] == [3, 4, 5, 6, 7]
        got = [index_of_red(red_at(img)) for _, img in reader.frames(3, 8)]
        assert got == [3, 4, 5, 6, 7]
        # times, timecodes and frame numbers all land on the right frame
        assert index_of_red(red_at(reader.read(0.2))) == 5
        assert index_of_red(red_at(reader.read(0.239))) == 5
        assert index_of_red(red_at(reader.read("00:00:00:09"))) == 9
        assert index_of_red(red_at(reader.read("6f"))) == 6


def test_read_frame_one_shot(clips: dict[str, Path]) -> None:
    assert index_of_red(red_at(read_frame(clips["mpeg2"], 10))) == 10


def test_past_the_end_is_a_clear_error(clips: dict[str, Path]) -> None:
    with ClipReader(clips["h264"]) as reader:
        with pytest.raises(ClipError, match=r"h264\.mp4: frame 12 .*past the end .*12 frames"):
            reader.frame(12)
        # the reader is still usable after the error
        assert index_of_red(red_at(reader.frame(4))) == 4


# -- timecode ----------------------------------------------------------------------------------


def test_timecode_non_drop_and_drop_frame() -> None:
    assert format_timecode(0, 25) == "00:00:00:00"
    assert format_timecode(25 * 3661 + 24, 25) == "01:01:01:24"
    ntsc = Fraction(30000, 1001)
    assert format_timecode(1799, ntsc) == "00:00:59;29"
    assert format_timecode(1800, ntsc) == "00:01:00;02"  # frames 0 and 1 are skipped
    assert format_timecode(17982, ntsc) == "00:10:00;00"  # but not every tenth minute
    assert format_timecode(1800, ntsc, drop_frame=False) == "00:01:00:00"
    assert format_timecode(3600, Fraction(60000, 1001)) == "00:01:00;04"
    for i in (0, 1799, 1800, 1801, 17981, 17982, 107892, 123456):
        assert parse_position(format_timecode(i, ntsc), ntsc) == i
    with pytest.raises(ValueError):
        format_timecode(1, 25, drop_frame=True)


def test_parse_position() -> None:
    assert parse_position("12") == 12.0
    assert parse_position("1:02.5") == 62.5
    assert parse_position("1:00:00") == 3600.0
    assert parse_position("250f") == 250
    assert parse_position("00:00:10:05", 25) == 255
    for bad in ("", "abc", "-3", "1:2:3:4:5"):
        with pytest.raises(RequestError):
            parse_position(bad, 25)
    with pytest.raises(RequestError, match="frame rate"):
        parse_position("00:00:10:05")


# -- cutting -----------------------------------------------------------------------------------


def row_coded(w: int = 40, h: int = 30) -> Image.Image:
    """Every line's value is its own line number (R) and parity (G): where each line came from."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, :, 0] = np.arange(h, dtype=np.uint8)[:, None] * 4
    arr[:, :, 1] = (np.arange(h) % 2 * 255).astype(np.uint8)[:, None]
    return Image.fromarray(arr)


def test_cut_region_plain() -> None:
    frame = row_coded()
    cut = cut_region(frame, (5, 7, 10, 9))
    assert cut.size == (10, 9)
    assert np.array_equal(np.asarray(cut), np.asarray(frame)[7:16, 5:15])


@pytest.mark.parametrize("field", ["top", "bottom"])
@pytest.mark.parametrize("y", [6, 7])
def test_cut_region_double_takes_only_that_field(field: str, y: int) -> None:
    frame = row_coded()
    cut = np.asarray(cut_region(frame, (3, y, 12, 11), field, restore="double"))  # type: ignore[arg-type]
    assert cut.shape == (11, 12, 3)  # the rectangle's size: aspect restored
    parity = 0 if field == "top" else 1
    lines = cut[:, 0, 0] // 4
    assert set((lines % 2).tolist()) == {parity}  # only that field's lines
    # own lines in place, each missing line a copy of its field neighbour
    for r, line in enumerate(lines):
        absolute = y + r
        assert abs(int(line) - absolute) <= 1
        if absolute % 2 == parity:
            assert line == absolute


@pytest.mark.parametrize("field", ["top", "bottom"])
def test_cut_region_interpolate_never_reads_the_other_field(field: str) -> None:
    frame = row_coded()
    other = np.asarray(frame).copy()
    parity = 0 if field == "top" else 1
    other[1 - parity :: 2] = 77  # scribble over the other field only
    rect = (2, 5, 20, 13)
    a = np.asarray(cut_region(frame, rect, field))  # type: ignore[arg-type]
    b = np.asarray(cut_region(Image.fromarray(other), rect, field))  # type: ignore[arg-type]
    assert np.array_equal(a, b)
    assert a.shape == (13, 20, 3)
    lines = a[:, 0, 0].astype(int)
    for r in range(13):
        absolute = 5 + r
        if absolute % 2 == parity:
            assert lines[r] == absolute * 4  # the field's own lines, untouched
        else:
            assert abs(lines[r] - absolute * 4) <= 1  # interpolated halfway (linear ramp)
    assert set(a[:, 0, 1].tolist()) == {255 * parity}


def test_extract_field_and_rect_checks() -> None:
    frame = row_coded(8, 7)
    assert np.asarray(extract_field(frame, "top"))[:, 0, 0].tolist() == [0, 8, 16, 24]
    assert np.asarray(extract_field(frame, "bottom"))[:, 0, 0].tolist() == [4, 12, 20]
    with pytest.raises(RequestError, match="rect"):
        cut_region(frame, (4, 4, 10, 2))
    with pytest.raises(RequestError, match="rect"):
        cut_region(frame, (0, 0, 0, 2))
    with pytest.raises(RequestError, match="field"):
        cut_region(frame, (0, 0, 2, 2), "middle")  # type: ignore[arg-type]
    assert clamp_rect((-2, 3, 6, 10), (8, 7)) == (0, 3, 4, 4)
    assert clamp_rect((9, 0, 3, 3), (8, 7)) is None


# -- batch upscale -----------------------------------------------------------------------------


@dataclass
class Probe:
    codec: str
    rate: Fraction
    size: tuple[int, int]
    pix_fmt: str
    frames: list[np.ndarray]
    audio: list[tuple[str, int]]


def probe(path: Path) -> Probe:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(v)]
        c.seek(0)
        audio = [
            (a.codec_context.name, sum(f.samples for f in c.decode(a))) for a in c.streams.audio
        ]
        return Probe(
            codec=v.codec_context.name,
            rate=Fraction(v.average_rate),
            size=(v.codec_context.width, v.codec_context.height),
            pix_fmt=v.codec_context.format.name,
            frames=frames,
            audio=audio,
        )


@pytest.mark.slow
def test_upscale_range_h264_copies_audio(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "up.mp4"
    events: list[Progress] = []
    result = upscale_range(
        clips["h264"], 2, 10, lanczos_upscaler(4), out, on_progress=events.append
    )
    assert out.is_file() and result.path == str(out)
    assert (result.frames, result.start_index, result.end_index) == (8, 2, 10)
    assert result.audio == ("aac (copied)",)
    got = probe(out)
    assert got.codec == "h264" and got.pix_fmt == "yuv420p"
    assert got.rate == 25
    assert got.size == (4 * W, 4 * H)
    frames = got.frames
    assert len(frames) == 8
    assert [index_of_red(f[4:40, 4:40, 0].mean()) for f in frames] == list(range(2, 10))
    [(codec, samples)] = got.audio
    assert codec == "aac" and abs(samples - 48000 * 8 / 25) < 2048
    assert [e.step for e in events] == list(range(1, 9))
    assert all(e.total == 8 and e.stage == "fast" for e in events)
    assert open_clip(out).frame_count == 8  # the product reads its own output


@pytest.mark.slow
def test_upscale_range_ts_field_rect_reencodes_mp2(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cut.mp4"
    result = upscale_range(
        clips["mpeg2"],
        0.08,
        0.4,
        lanczos_upscaler(4),
        out,
        rect=(3, 5, 21, 15),
        field="top",
        temporal="blend",
    )
    assert (result.start_index, result.end_index) == (2, 10)
    # MP2 is re-encoded for MP4 players; the odd 84x60 -> even stays 84x60
    assert result.audio == ("aac (re-encoded from mp2)",)
    got = probe(out)
    assert got.size == (84, 60) and got.rate == 25
    assert len(got.frames) == 8
    assert got.audio[0][0] == "aac"


@pytest.mark.slow
def test_upscale_range_odd_size_and_pcm_audio(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "pcm.mov", "mov", "libx264", audio="pcm_s16le", bframes=0)
    out = tmp_path / "pcm_up.mp4"
    result = upscale_range(clip, 0, None, lambda im: im.resize((33, 25)), out, temporal="median")
    assert (result.width, result.height, result.frames) == (34, 26, N)
    assert result.audio == ("aac (re-encoded from pcm_s16le)",)
    got = probe(out)
    assert got.size == (34, 26)
    assert got.audio[0][0] == "aac"


@pytest.mark.slow
def test_upscale_range_keeps_pixel_aspect(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "hdv.mkv", "matroska", "libx264", sar=Fraction(4, 3))
    assert open_clip(clip).sample_aspect_ratio == Fraction(4, 3)
    out = tmp_path / "hdv_up.mp4"
    upscale_range(clip, 0, 3, lanczos_upscaler(2), out)
    assert open_clip(out).sample_aspect_ratio == Fraction(4, 3)


@pytest.mark.slow
def test_upscale_range_keeps_2997(tmp_path: Path) -> None:
    ntsc = Fraction(30000, 1001)
    clip = make_clip(tmp_path / "ntsc.mkv", "matroska", "libx264", rate=ntsc, audio="aac")
    out = tmp_path / "ntsc_up.mkv"
    result = upscale_range(clip, "1f", "7f", lanczos_upscaler(2), out)
    assert result.frame_rate == ntsc and result.frames == 6
    info = open_clip(out)
    assert info.frame_rate == ntsc and info.codec == "H.264"
    assert [a.codec for a in info.audio] == ["aac"]


@pytest.mark.slow
def test_cancel_leaves_no_output(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cancelled.mp4"
    calls = 0

    def cancel_after_three() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    with pytest.raises(Cancelled):
        upscale_range(
            clips["h264"], 0, None, lanczos_upscaler(4), out, is_cancelled=cancel_after_three
        )
    assert list(tmp_path.iterdir()) == []
    # an existing file of that name is left as it was
    out.write_bytes(b"keep me")
    with pytest.raises(Cancelled):
        upscale_range(clips["h264"], 0, None, lanczos_upscaler(4), out, is_cancelled=lambda: True)
    assert out.read_bytes() == b"keep me"
    assert list(tmp_path.iterdir()) == [out]


def test_upscale_range_bad_arguments(clips: dict[str, Path], tmp_path: Path) -> None:
    up = lanczos_upscaler(2)
    with pytest.raises(RequestError, match="output"):
        upscale_range(clips["h264"], 0, 4, up, tmp_path / "out.avi")
    with pytest.raises(RequestError, match="range"):
        upscale_range(clips["h264"], 5, 5, up, tmp_path / "out.mp4")
    with pytest.raises(RequestError, match="is the clip being read"):
        upscale_range(clips["h264"], 0, 4, up, clips["h264"])
    with pytest.raises(RequestError, match="rect"):
        upscale_range(clips["h264"], 0, 4, up, tmp_path / "out.mp4", rect=(60, 0, 10, 10))
    with pytest.raises(RequestError, match="temporal"):
        upscale_range(clips["h264"], 0, 4, up, tmp_path / "out.mp4", temporal="magic")  # type: ignore[arg-type]
    with pytest.raises(ClipError, match="past the end"):
        upscale_range(clips["h264"], 20, 30, up, tmp_path / "out.mp4")
    with pytest.raises(ClipError, match="no such file"):
        upscale_range(tmp_path / "nope.mp4", 0, 4, up, tmp_path / "out.mp4")

    def shrinking(image: Image.Image) -> Image.Image:
        shrinking.n += 1  # type: ignore[attr-defined]
        return image.resize((10 + 2 * shrinking.n, 10))  # type: ignore[attr-defined]

    shrinking.n = 0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="upscaler returned"):
        upscale_range(clips["h264"], 0, 4, shrinking, tmp_path / "out.mp4")
    assert list(tmp_path.iterdir()) == []


# -- bad clips ---------------------------------------------------------------------------------


def _bad_clips(tmp: Path, good: dict[str, Path]) -> dict[str, tuple[Path, str]]:
    missing = tmp / "missing.mp4"
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    truncated = tmp / "truncated.mp4"
    data = good["h264"].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    unsupported = make_clip(tmp / "mpeg4.mp4", "mp4", "mpeg4")
    folder = tmp / "folder.mp4"
    folder.mkdir()
    return {
        "missing": (missing, "no such file"),
        "empty": (empty, "empty file"),
        "corrupt": (corrupt, "not a video clip"),
        "truncated": (truncated, "not a video clip"),
        "unsupported": (unsupported, "codec 'mpeg4' is not supported"),
        "folder": (folder, "is a folder"),
    }


def test_bad_clips_give_one_clear_message(clips: dict[str, Path], tmp_path: Path) -> None:
    for name, (path, reason) in _bad_clips(tmp_path, clips).items():
        for call in (open_clip, ClipReader, lambda p: read_frame(p, 0)):
            with pytest.raises(ClipError) as info:
                call(path)
            message = str(info.value)
            assert message.startswith(f"{path}: "), name
            assert reason in message, (name, message)
            assert "\n" not in message
            assert isinstance(info.value, InputImageError)


@pytest.mark.slow
def test_truncated_ts_reads_up_to_the_damage(clips: dict[str, Path], tmp_path: Path) -> None:
    data = clips["mpeg2"].read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) // 2])
    with ClipReader(cut) as reader:
        assert index_of_red(red_at(reader.frame(0))) == 0
        with pytest.raises(ClipError, match=r"cut\.ts: frame 11 .*past the"):
            reader.frame(11)
    # a range past the damage stops where the clip stops, and says so
    out = tmp_path / "out.mp4"
    result = upscale_range(cut, 0, 12, lanczos_upscaler(2), out)
    assert 0 < result.frames < 12 and result.end_index == result.frames
    assert open_clip(out).frame_count == result.frames


def test_clip_error_names_file(tmp_path: Path) -> None:
    err = ClipError(tmp_path / "x.ts", "why")
    assert str(err) == f"{tmp_path / 'x.ts'}: why"


# -- command line ------------------------------------------------------------------------------


def test_cli_info_cut_upscale(
    clips: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from fbupscale_gui.cli.video import main

    assert main(["video", "info", str(clips["mpeg2"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["codec"], info["frame_count"], info["interlaced"]) == ("MPEG-2", N, True)

    out = tmp_path / "cut.png"
    args = ["video", "cut", str(clips["mpeg2"]), "--time", "5f", "--rect", "10,9,20,15"]
    assert main([*args, "--field", "top", "-o", str(out)]) == 0
    assert main([*args, "-o", str(out)]) == 0  # never overwrites: cut-2.png
    printed = capsys.readouterr().out.split()
    assert printed == [str(out), str(tmp_path / "cut-2.png")]
    with Image.open(out) as img:
        assert img.size == (20, 15)
        assert index_of_red(red_at(img)) == 5

    clip_out = tmp_path / "up.mp4"
    argv = ["video", "upscale", str(clips["h264"]), "--start", "0.04", "--end", "5f"]
    argv += ["--engine", "lanczos", "--temporal", "median", "-q", "-o", str(clip_out)]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(clip_out)
    assert open_clip(clip_out).frame_count == 4

    assert main(["video", "info", str(tmp_path / "missing.ts")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"fbupscale video info: error: {tmp_path / 'missing.ts'}: no such file"
