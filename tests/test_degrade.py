"""The broadcast degradation model: determinism, the direction of each step, the record, JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from fbupscale_gui.cli.fidelity import main as cli_main
from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.eval.degrade import PNG_KEY, degrade, read_degrade_record, save_degraded
from fbupscale_gui.eval.degrade_params import (
    SEVERITIES,
    ChromaSubsampling,
    DegradeParams,
    Downscale,
    FieldDrop,
    JpegCompression,
    MotionBlur,
    OpticalBlur,
    Sharpen,
    VideoCompression,
    severity,
)
from fbupscale_gui.eval.fidelity import luma, psnr_y

#: Every step off: each test switches on only what it measures.
NOTHING = DegradeParams(
    optical_blur=OpticalBlur(enabled=False),
    motion_blur=MotionBlur(enabled=False),
    downscale=Downscale(enabled=False),
    sharpen=Sharpen(enabled=False),
    field_drop=FieldDrop(enabled=False),
    chroma_420=ChromaSubsampling(enabled=False),
    video=VideoCompression(enabled=False),
    jpeg=JpegCompression(enabled=False),
)


def scene(size: int = 128, seed: int = 1) -> Image.Image:
    """A synthetic frame: coloured rectangles (edges in every direction of colour) plus grain."""
    rng = np.random.default_rng(seed)
    arr = np.zeros((size, size, 3)) + rng.uniform(40, 200, 3)
    for _ in range(40):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(4, size // 3, 2)
        arr[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, 3)
    arr += rng.normal(0, 6, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def grad_energy(image: Image.Image, axis: int) -> float:
    """Mean squared luma difference between neighbours along ``axis`` (1 = horizontal)."""
    return float(np.mean(np.diff(luma(image), axis=axis) ** 2))


# -- determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SEVERITIES)
def test_same_seed_same_output_other_seed_differs(name: str) -> None:
    frame = scene(256)
    a, rec_a = degrade(frame, name, seed=11)
    b, rec_b = degrade(frame, name, seed=11)
    c, _ = degrade(frame, name, seed=12)
    assert np.array_equal(px(a), px(b))
    assert rec_a == rec_b
    assert a.size == c.size
    assert not np.array_equal(px(a), px(c))


def test_params_and_seed_from_the_record_reproduce_the_output() -> None:
    frame = scene(256)
    out, record = degrade(frame, "heavy", seed=5)
    json.dumps(record)  # the record is plain JSON
    again, _ = degrade(frame, DegradeParams.from_dict(record["params"]), record["seed"])
    assert np.array_equal(px(out), px(again))


def test_switching_one_step_off_keeps_the_other_draws() -> None:
    frame = scene(256)
    _, with_video = degrade(frame, "medium", seed=3)
    params = severity("medium")
    _, without = degrade(frame, params.replace(video=VideoCompression(enabled=False)), seed=3)
    phase = [s["phase"] for s in with_video["steps"] if s["step"] == "downscale"]
    assert phase == [s["phase"] for s in without["steps"] if s["step"] == "downscale"]


# -- the record -----------------------------------------------------------------------------


def test_record_lists_every_enabled_step_in_order_with_parameters() -> None:
    out, record = degrade(scene(256), "heavy", seed=0)
    names = [s["step"] for s in record["steps"]]
    assert names == [
        "optical_blur",
        "motion_blur",
        "downscale",
        "sharpen",
        "field_drop",
        "chroma_420",
        "video",
        "jpeg",
    ]
    by_name = {s["step"]: s for s in record["steps"]}
    heavy = severity("heavy")
    assert by_name["optical_blur"]["sigma"] == heavy.optical_blur.sigma
    assert by_name["motion_blur"]["angle"] == heavy.motion_blur.angle
    assert by_name["downscale"]["size"] == heavy.downscale.size
    assert by_name["sharpen"]["percent"] == heavy.sharpen.percent
    assert by_name["field_drop"]["kept"] in ("top", "bottom")
    assert by_name["video"]["codec"] == "mpeg2"
    assert by_name["video"]["bitrate_kbps"] == heavy.video.bitrate_kbps
    assert by_name["video"]["bytes"] > 0
    assert by_name["jpeg"]["quality"] == heavy.jpeg.quality
    assert record["severity"] == "heavy"
    assert record["input_size"] == [256, 256]
    assert record["output_size"] == list(out.size) == [64, 64]
    assert record["params"] == heavy.to_dict()


def test_record_leaves_out_disabled_steps() -> None:
    params = NOTHING.replace(jpeg=JpegCompression(enabled=True, quality=70))
    _, record = degrade(scene(), params, seed=0)
    assert [s["step"] for s in record["steps"]] == ["jpeg"]
    assert record["severity"] is None


def test_nothing_enabled_is_the_identity() -> None:
    frame = scene()
    out, record = degrade(frame, NOTHING, seed=0)
    assert record["steps"] == []
    assert np.array_equal(px(out), px(frame))


def test_a_failed_save_leaves_the_earlier_cutout_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, record = degrade(scene(256), "light", seed=9)
    path = tmp_path / "cutout.png"
    save_degraded(out, record, path)
    before = path.read_bytes()

    def half_then_fail(self: Image.Image, fp: Any, *args: object, **kwargs: object) -> None:
        if isinstance(fp, str | Path):  # a writer that opens the target itself
            fp = open(fp, "wb")  # noqa: SIM115 - left open as a crash would
        fp.write(b"\x89PNG half a file")
        fp.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        save_degraded(out, record, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cutout.png"]


def test_record_round_trips_through_the_png_chunk(tmp_path: Path) -> None:
    out, record = degrade(scene(256), "light", seed=9)
    path = tmp_path / "cutout.png"
    save_degraded(out, record, path)
    assert read_degrade_record(path) == record
    with Image.open(path) as reread:
        assert np.array_equal(px(reread.convert("RGB")), px(out))
    plain = tmp_path / "plain.png"
    out.save(plain)
    assert read_degrade_record(plain) is None


def test_a_chunk_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text(PNG_KEY, "[1, 2]")
    path = tmp_path / "odd.png"
    scene(16).save(path, pnginfo=info)
    with pytest.raises(ValueError, match="not a JSON object"):
        read_degrade_record(path)


# -- each step moves the image the expected way ----------------------------------------------


def test_optical_blur_lowers_high_frequency_energy() -> None:
    frame = scene()
    soft, _ = degrade(frame, NOTHING.replace(optical_blur=OpticalBlur(sigma=1.0)), 0)
    softer, _ = degrade(frame, NOTHING.replace(optical_blur=OpticalBlur(sigma=2.0)), 0)
    for axis in (0, 1):
        assert grad_energy(softer, axis) < grad_energy(soft, axis) < 0.5 * grad_energy(frame, axis)


def test_horizontal_motion_blur_smears_along_its_line() -> None:
    frame = scene()
    params = NOTHING.replace(motion_blur=MotionBlur(enabled=True, length=6.0, angle=0.0))
    out, _ = degrade(frame, params, 0)
    horizontal = grad_energy(out, 1) / grad_energy(frame, 1)
    vertical = grad_energy(out, 0) / grad_energy(frame, 0)
    assert horizontal < 0.35
    assert horizontal < 0.6 * vertical
    # the kernel is normalised: mean brightness is kept
    assert abs(luma(out).mean() - luma(frame).mean()) < 1.0


@pytest.mark.parametrize("codec", ["h264", "mpeg2"])
def test_lower_bitrate_lowers_psnr(codec: Literal["h264", "mpeg2"]) -> None:
    frame = scene()
    scores = []
    for kbps in (30.0, 300.0, 1500.0):
        out, _ = degrade(
            frame, NOTHING.replace(video=VideoCompression(codec=codec, bitrate_kbps=kbps)), 0
        )
        assert out.size == frame.size
        scores.append(psnr_y(frame, out))
    assert scores[0] < scores[1] < scores[2]
    assert scores[2] < 60  # lossy even at the top rate


def test_lower_jpeg_quality_lowers_psnr() -> None:
    frame = scene()
    scores = [
        psnr_y(
            frame,
            degrade(frame, NOTHING.replace(jpeg=JpegCompression(enabled=True, quality=q)), 0)[0],
        )
        for q in (15, 50, 95)
    ]
    assert scores[0] < scores[1] < scores[2]


@pytest.mark.parametrize("parity", ["top", "bottom"])
def test_field_drop_by_line_doubling_makes_odd_lines_equal_even_lines(
    parity: Literal["top", "bottom"],
) -> None:
    frame = scene(64)
    out, record = degrade(frame, NOTHING.replace(field_drop=FieldDrop(field=parity)), 0)
    arr, src = px(out), px(frame)
    assert np.array_equal(arr[0::2], arr[1::2])
    kept = 0 if parity == "top" else 1
    assert np.array_equal(arr[kept::2], src[kept::2])  # the kept field is untouched
    assert record["steps"][0]["kept"] == parity


def test_field_drop_on_an_odd_height_keeps_the_height() -> None:
    frame = scene(64).crop((0, 0, 64, 63))
    out, _ = degrade(frame, NOTHING.replace(field_drop=FieldDrop(field="bottom")), 0)
    assert out.size == (64, 63)
    assert np.array_equal(px(out)[0:62:2], px(out)[1:62:2])


@pytest.mark.parametrize("parity", ["top", "bottom"])
def test_field_drop_by_interpolation_keeps_the_field_and_rebuilds_between(
    parity: Literal["top", "bottom"],
) -> None:
    frame = scene(64)
    params = NOTHING.replace(field_drop=FieldDrop(field=parity, rebuild="resize"))
    out, _ = degrade(frame, params, 0)
    arr, src = px(out), px(frame)
    kept = 0 if parity == "top" else 1
    assert np.array_equal(arr[kept::2], src[kept::2])
    # a missing line between two kept lines is their average (to rounding)
    y = 3 if kept == 0 else 4
    assert np.abs(arr[y] - (src[y - 1] + src[y + 1]) / 2).max() <= 1
    assert grad_energy(out, 0) < grad_energy(frame, 0)


def test_random_field_depends_on_the_seed() -> None:
    frame = scene(32)
    kept = {
        degrade(frame, NOTHING.replace(field_drop=FieldDrop()), seed)[1]["steps"][0]["kept"]
        for seed in range(12)
    }
    assert kept == {"top", "bottom"}


def _chroma(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("YCbCr"), dtype=np.float64)[..., 1:]


def test_chroma_420_keeps_luma_and_lowers_chroma_detail() -> None:
    frame = scene()
    out, _ = degrade(frame, NOTHING.replace(chroma_420=ChromaSubsampling()), 0)
    assert psnr_y(frame, out) > 42  # luma only moves by 8-bit rounding and gamut clipping
    c_in, c_out = _chroma(frame), _chroma(out)
    chroma_mse = float(np.mean((c_in - c_out) ** 2))
    assert 10 * np.log10(255**2 / chroma_mse) < 35
    detail_in = np.mean(np.diff(c_in, axis=1) ** 2)
    detail_out = np.mean(np.diff(c_out, axis=1) ** 2)
    assert detail_out < 0.5 * detail_in


def test_chroma_420_with_nearest_upsampling_repeats_2x2_blocks() -> None:
    frame = scene(64)
    out, _ = degrade(frame, NOTHING.replace(chroma_420=ChromaSubsampling(upsample="nearest")), 0)
    # Pillow's YCbCr conversion rounds, so compare the chroma planes Pillow itself computes
    chroma = np.asarray(out.convert("YCbCr"), dtype=np.int16)[..., 1:]
    assert np.abs(chroma[0::2, 0::2] - chroma[1::2, 1::2]).max() <= 2


def test_sharpening_overshoots_an_edge_into_halos() -> None:
    arr = np.full((32, 32, 3), 64, dtype=np.uint8)
    arr[:, 16:] = 192
    edge = Image.fromarray(arr)
    out, _ = degrade(edge, NOTHING.replace(sharpen=Sharpen(enabled=True, radius=2, percent=150)), 0)
    y = luma(out)
    assert y.max() > 200  # bright halo beside the edge
    assert y.min() < 56  # dark halo on the other side
    assert y[:, :10].mean() == pytest.approx(64, abs=0.5)  # flat areas are left alone


def test_downscale_gives_the_cutout_size_and_crops_the_box() -> None:
    arr = np.zeros((600, 800, 3), dtype=np.uint8)
    arr[:, 400:] = (200, 30, 30)  # the right half is red
    frame = Image.fromarray(arr)
    params = NOTHING.replace(downscale=Downscale(box=(0.55, 0.1, 0.95, 0.9), size=96))
    out, record = degrade(frame, params, seed=4)
    assert out.size == (64, 96)  # 320 x 480 px box -> long side 96
    assert np.abs(px(out) - np.array([200, 30, 30])).max() <= 1
    step = record["steps"][0]
    assert step["cutout_size"] == [64, 96]
    assert step["oversample"] == 4
    assert all(abs(p) <= 0.5 for p in step["phase"])


def test_downscale_jitter_moves_the_sampling_phase_with_the_seed() -> None:
    frame = scene(512)
    params = NOTHING.replace(downscale=Downscale(size=64))
    a, rec_a = degrade(frame, params, seed=1)
    b, rec_b = degrade(frame, params, seed=2)
    assert rec_a["steps"][0]["phase"] != rec_b["steps"][0]["phase"]
    assert not np.array_equal(px(a), px(b))
    still = params.replace(downscale=Downscale(size=64, jitter=False))
    assert np.array_equal(px(degrade(frame, still, 1)[0]), px(degrade(frame, still, 2)[0]))


def test_downscale_refuses_to_upscale() -> None:
    with pytest.raises(ValueError, match="smaller than the cutout"):
        degrade(scene(50), NOTHING.replace(downscale=Downscale(size=80)), 0)


@pytest.mark.parametrize("name", SEVERITIES)
def test_severities_give_cutouts_of_60_to_100_px(name: str) -> None:
    out, _ = degrade(scene(512), name, seed=0)
    assert 60 <= max(out.size) <= 100


def test_heavier_severity_departs_further_from_the_clean_frame() -> None:
    frame = scene(512)
    scores = []
    for name in SEVERITIES:
        out, _ = degrade(frame, name, seed=0)
        scores.append(psnr_y(out, frame.resize(out.size, Image.Resampling.BOX)))
    assert scores[0] > scores[1] > scores[2]


def test_any_mode_is_accepted() -> None:
    out, _ = degrade(scene(256).convert("L"), "light", seed=0)
    assert out.mode == "RGB"


# -- parameters: JSON round trip and strict errors ------------------------------------------


@pytest.mark.parametrize("name", SEVERITIES)
def test_presets_round_trip_through_json(name: str) -> None:
    params = severity(name)
    assert DegradeParams.from_json(params.to_json()) == params
    assert DegradeParams.from_json(params.to_json(indent=2)).to_dict() == params.to_dict()


_unit = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def _params(draw: st.DrawFn) -> DegradeParams:
    left, right = sorted(draw(st.lists(_unit, min_size=2, max_size=2, unique=True)))
    top, bottom = sorted(draw(st.lists(_unit, min_size=2, max_size=2, unique=True)))
    return DegradeParams(
        name=draw(st.text(max_size=8)),
        optical_blur=OpticalBlur(draw(st.booleans()), draw(st.floats(0, 10))),
        motion_blur=MotionBlur(
            draw(st.booleans()), draw(st.floats(0, 20)), draw(st.floats(-360, 360))
        ),
        downscale=Downscale(
            draw(st.booleans()),
            (left, top, right, bottom),
            draw(st.integers(8, 1024)),
            draw(st.sampled_from(["area", "bicubic", "lanczos"])),
            draw(st.booleans()),
        ),
        sharpen=Sharpen(draw(st.booleans()), draw(st.floats(0.1, 10)), draw(st.integers(0, 500))),
        field_drop=FieldDrop(
            draw(st.booleans()),
            draw(st.sampled_from(["top", "bottom", "random"])),
            draw(st.sampled_from(["double", "resize"])),
        ),
        chroma_420=ChromaSubsampling(
            draw(st.booleans()), draw(st.sampled_from(["nearest", "bilinear"]))
        ),
        video=VideoCompression(
            draw(st.booleans()),
            draw(st.sampled_from(["h264", "mpeg2"])),
            draw(st.floats(1, 100_000)),
            draw(st.integers(1, 16)),
        ),
        jpeg=JpegCompression(draw(st.booleans()), draw(st.integers(1, 100))),
    )


@settings(max_examples=60, deadline=None)
@given(_params())
def test_any_valid_params_round_trip_exactly(params: DegradeParams) -> None:
    assert DegradeParams.from_json(params.to_json()) == params


def test_missing_fields_take_defaults() -> None:
    params = DegradeParams.from_json('{"jpeg": {"enabled": true}}')
    assert params == DegradeParams(jpeg=JpegCompression(enabled=True))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{nope", r"degrade: not valid JSON"),
        ("[1]", r"degrade: expected a JSON object"),
        ('{"video": {"bitrat": 5}}', r"degrade\.video: unknown field\(s\) \['bitrat'\]"),
        ('{"colour": 1}', r"degrade: unknown field\(s\) \['colour'\]"),
        ('{"jpeg": {"quality": "high"}}', r"degrade\.jpeg\.quality: expected an integer"),
        ('{"jpeg": {"quality": 0}}', r"degrade\.jpeg\.quality: must be 1\.\.100"),
        ('{"jpeg": {"enabled": 1}}', r"degrade\.jpeg\.enabled: expected true/false"),
        (
            '{"video": {"codec": "vp9"}}',
            r"degrade\.video\.codec: must be one of \['h264', 'mpeg2'\]",
        ),
        ('{"video": {"bitrate_kbps": 0}}', r"degrade\.video\.bitrate_kbps: must be 1\.\.100000"),
        ('{"downscale": {"box": [0, 0, 1]}}', r"degrade\.downscale\.box: needs 4 numbers"),
        ('{"downscale": {"box": [0.5, 0, 0.2, 1]}}', r"degrade\.downscale\.box: must be fractions"),
        ('{"downscale": {"size": 4}}', r"degrade\.downscale\.size: must be 8\.\.1024"),
        ('{"field_drop": {"rebuild": "weave"}}', r"degrade\.field_drop\.rebuild: must be one of"),
        ('{"optical_blur": {"sigma": -1}}', r"degrade\.optical_blur\.sigma: must be 0\.\.10"),
        ('{"version": 2}', r"degrade\.version: written by a newer fbupscale"),
        ('{"version": "1"}', r"degrade\.version: missing or not an integer"),
    ],
)
def test_bad_params_are_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        DegradeParams.from_json(text)


def test_params_are_frozen() -> None:
    params = severity("light")
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.name = "x"  # type: ignore[misc]


def test_unknown_severity_and_bad_seed_are_refused() -> None:
    with pytest.raises(RequestError, match=r"degrade\.severity: must be one of"):
        severity("extreme")
    with pytest.raises(RequestError, match=r"degrade\.seed"):
        degrade(scene(), "light", seed=-1)


# -- the degrade command --------------------------------------------------------------------


def test_degrade_command_writes_the_cutout_and_its_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "frame.png"
    scene(256).save(src)
    out = tmp_path / "sub" / "cutout.png"
    assert (
        cli_main(["degrade", str(src), "-o", str(out), "--severity", "heavy", "--seed", "4"]) == 0
    )
    line = capsys.readouterr().out
    assert str(out) in line and "heavy" in line and "seed 4" in line
    record = read_degrade_record(out)
    assert record is not None and record["seed"] == 4 and record["severity"] == "heavy"
    expected, _ = degrade(scene(256), "heavy", seed=4)
    with Image.open(out) as written:
        assert np.array_equal(px(written.convert("RGB")), px(expected))


def test_degrade_command_takes_a_params_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "frame.png"
    scene(256).save(src)
    params = NOTHING.replace(downscale=Downscale(size=90, jitter=False))
    pfile = tmp_path / "p.json"
    pfile.write_text(params.to_json())
    out = tmp_path / "c.png"
    assert cli_main(["degrade", str(src), "-o", str(out), "--params", str(pfile), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["output_size"] == [90, 90]
    assert DegradeParams.from_dict(record["params"]) == params


@pytest.mark.parametrize(
    ("extra", "culprit"),
    [
        (["-o", "{tmp}/c.jpg"], "c.jpg"),
        (["-o", "{tmp}/c.png", "--params", "{tmp}/missing.json"], "missing.json"),
        (["-o", "{tmp}/c.png", "--params", "{tmp}/bad.json"], "bad.json"),
        (["-o", "{tmp}/c.png", "--params", "{tmp}/bad.json", "--severity", "light"], "bad.json"),
        (["-o", "{tmp}/c.png", "--seed", "-2"], "--seed"),
    ],
)
def test_degrade_command_errors_are_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], culprit: str
) -> None:
    src = tmp_path / "frame.png"
    scene(64).save(src)
    (tmp_path / "bad.json").write_text('{"jpeg": {"quality": 500}}')
    args = ["degrade", str(src), *(a.replace("{tmp}", str(tmp_path)) for a in extra)]
    assert cli_main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and culprit in err


def test_degrade_command_refuses_a_missing_or_broken_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    for path in (tmp_path / "missing.png", broken):
        assert cli_main(["degrade", str(path), "-o", str(tmp_path / "o.png")]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(path) in err
