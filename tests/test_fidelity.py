"""LR-consistency, the deviation map and heatmap, PSNR/SSIM, ranking and the score command."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageFilter, PngImagePlugin

from fbupscale_gui.cli.fidelity import main as cli_main
from fbupscale_gui.cli.fidelity import read_candidate_info
from fbupscale_gui.core.images import Placement, crop_to_content, standardise
from fbupscale_gui.core.request import Preprocess, ReconstructionRequest
from fbupscale_gui.eval.fidelity import (
    PSNR_CAP_DB,
    content_box,
    deviation_heatmap,
    deviation_map,
    downscale_to_cutout,
    lr_consistency,
    luma,
    psnr_y,
    rank_candidates,
    ssim_y,
)

NEAREST = Image.Resampling.NEAREST


def cutout(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    """A textured cutout: smooth colour fields plus grain, so every block differs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [128 + 90 * np.sin(xx / 5.0 + c) * np.cos(yy / 7.0 - c) for c in (0.0, 1.0, 2.0)],
        axis=-1,
    )
    arr = base + rng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def box_upscale(image: Image.Image, factor: int) -> Image.Image:
    """Each cutout pixel becomes a factor x factor block: BOX-downscaling it gives it back."""
    return image.resize((image.width * factor, image.height * factor), NEAREST)


def move_block(
    image: Image.Image, box: tuple[int, int, int, int], by: tuple[int, int]
) -> Image.Image:
    """Paste the pixels from ``box`` shifted by ``by`` over ``box`` (a displaced patch)."""
    left, top, right, bottom = box
    dx, dy = by
    out = image.copy()
    out.paste(image.crop((left + dx, top + dy, right + dx, bottom + dy)), (left, top))
    return out


# -- PSNR and SSIM --------------------------------------------------------------------------


def test_luma_uses_bt601_weights() -> None:
    image = Image.new("RGB", (2, 1), (255, 0, 0))
    image.putpixel((1, 0), (0, 0, 255))
    assert luma(image).tolist() == [[0.299 * 255, 0.114 * 255]]


def test_psnr_y_of_identical_images_is_the_cap_and_of_a_known_offset_exact() -> None:
    a = cutout()
    assert psnr_y(a, a) == PSNR_CAP_DB
    brighter = Image.fromarray((np.asarray(a, dtype=np.int16).clip(0, 245) + 10).astype(np.uint8))
    darker = a.point(lambda v: min(v, 245))
    assert psnr_y(darker, brighter) == pytest.approx(20 * math.log10(255 / 10))
    assert psnr_y(a, a, cap=60.0) == 60.0


def test_ssim_y_is_one_for_identical_images_and_falls_with_blur() -> None:
    a = cutout(128, 128)
    assert ssim_y(a, a) == pytest.approx(1.0)
    soft = ssim_y(a, a.filter(ImageFilter.GaussianBlur(1)))
    softer = ssim_y(a, a.filter(ImageFilter.GaussianBlur(3)))
    assert 0 < softer < soft < 1


def test_ssim_y_matches_scikit_image() -> None:
    from skimage import metrics

    a = cutout(96, 80, seed=1)
    b = a.filter(ImageFilter.GaussianBlur(1.5)).rotate(2)
    ref = metrics.structural_similarity(
        luma(a),
        luma(b),
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim_y(a, b) == pytest.approx(ref, abs=1e-9)


def test_measures_refuse_images_of_different_sizes() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        psnr_y(cutout(64, 64), cutout(64, 32))
    with pytest.raises(ValueError, match="differ in size"):
        ssim_y(cutout(64, 64), cutout(32, 64))
    with pytest.raises(ValueError, match="at least 11 px"):
        ssim_y(cutout(8, 8), cutout(8, 8))


# -- LR-consistency -------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [1, 4, 16])
def test_an_exact_box_upscale_scores_at_least_50_db(factor: int) -> None:
    small = cutout(60, 100)
    assert lr_consistency(small, box_upscale(small, factor)) >= 50


def test_an_engine_sized_upscale_is_consistent() -> None:
    small = cutout(60, 100)
    candidate = small.resize((614, 1024), NEAREST)  # what the engine makes of 60x100
    assert lr_consistency(small, candidate) > 30
    assert lr_consistency(small, small.resize((614, 1024), Image.Resampling.LANCZOS)) > 30


def test_moving_a_block_lowers_the_score_and_the_map_peaks_there() -> None:
    small = cutout(64, 64)
    exact = box_upscale(small, 16)
    # cutout pixels x 40..47, y 16..23 replaced by their neighbours 9 px to the left
    moved = move_block(exact, (40 * 16, 16 * 16, 48 * 16, 24 * 16), (-9 * 16, 0))
    assert lr_consistency(small, moved) < lr_consistency(small, exact) - 20
    err = deviation_map(small, moved)
    assert err.shape == (64, 64) and err.dtype == np.float32
    peak_y, peak_x = np.unravel_index(int(np.argmax(err)), err.shape)
    assert 16 <= peak_y < 24 and 40 <= peak_x < 48
    outside = np.ones(err.shape, dtype=bool)
    outside[15:25, 39:49] = False  # the block and the 1 px the 3x3 smoothing spreads it
    assert err[outside].max() == 0
    assert err[16:24, 40:48].mean() > 10
    block = np.zeros(err.shape, dtype=bool)
    block[16:24, 40:48] = True
    raw = deviation_map(small, moved, smooth=1)  # unsmoothed: exactly the block
    assert raw[~block].max() == 0 and raw[block].min() > 0


def test_the_heatmap_is_transparent_where_the_candidate_agrees() -> None:
    small = cutout(64, 64)
    moved = move_block(box_upscale(small, 16), (640, 256, 768, 384), (-144, 0))
    heat = deviation_heatmap(small, moved)
    assert heat.mode == "RGBA" and heat.size == moved.size
    alpha = np.asarray(heat)[..., 3]
    assert alpha[256:384, 640:768].mean() > 100
    assert alpha[:200].max() == 0 and alpha[:, :600].max() == 0
    hot = np.asarray(heat)[320, 704]
    assert hot[0] > 200 and hot[2] < 100  # warm colours on the ramp


def test_heatmap_scale_is_fixed_so_candidates_compare() -> None:
    small = cutout(32, 32)
    a = move_block(box_upscale(small, 8), (64, 64, 128, 128), (-40, 0))
    strict = np.asarray(deviation_heatmap(small, a, max_error=8.0))[..., 3]
    lenient = np.asarray(deviation_heatmap(small, a, max_error=200.0))[..., 3]
    assert strict.max() == 255
    assert lenient.max() < strict.max()
    with pytest.raises(ValueError, match="max_error"):
        deviation_heatmap(small, a, max_error=0)
    with pytest.raises(ValueError, match="floor"):
        deviation_heatmap(small, a, floor=40.0, max_error=32.0)
    with pytest.raises(ValueError, match="odd"):
        deviation_map(small, a, smooth=2)


def test_heatmap_floor_hides_small_errors() -> None:
    small = cutout(32, 32)
    # a uniform error of 3 luma levels everywhere: compression-noise sized
    candidate = box_upscale(small.point(lambda v: min(255, v + 3)), 8)
    faint = np.asarray(deviation_heatmap(small, candidate))[..., 3]
    hidden = np.asarray(deviation_heatmap(small, candidate, floor=4.0))[..., 3]
    assert faint.min() > 0 and hidden.max() == 0


def test_a_padded_square_is_cropped_with_its_placement() -> None:
    small = cutout(60, 100)
    square, placement = standardise(small, Preprocess(size=1024, crop_to_content=False))
    assert square.size == (1024, 1024)
    with pytest.raises(ValueError, match="aspect ratio"):
        lr_consistency(small, square)
    assert lr_consistency(small, square, placement) > 30
    # the same content box, however the square is scaled
    half = square.resize((512, 512), Image.Resampling.BOX)
    assert lr_consistency(small, half, placement) > 30
    # an exact padded BOX upscale scores like the cropped one
    exact = Image.new("RGB", (1600, 1600), (0, 0, 0))
    exact.paste(box_upscale(small, 16), (320, 0))
    p = Placement(size=1600, left=320, top=0, width=960, height=1600)
    assert lr_consistency(small, exact, p) >= 50
    heat = deviation_heatmap(small, exact, p)
    assert heat.size == (1600, 1600)
    assert np.asarray(heat)[..., 3].max() == 0  # padding and content both transparent


def test_content_box_matches_crop_to_content() -> None:
    small = cutout(60, 100)
    square, placement = standardise(small, Preprocess(size=1024, crop_to_content=False))
    for side in (1024, 700, 2048):
        scaled = square.resize((side, side))
        box = content_box(scaled.size, placement)
        assert box is not None
        assert scaled.crop(box).size == crop_to_content(scaled, placement).size
    assert content_box((614, 1024), placement) is None  # not square: already cropped
    assert content_box((1024, 1024), None) is None


def test_a_placement_is_ignored_for_an_already_cropped_candidate() -> None:
    small = cutout(60, 100)
    _, placement = standardise(small, Preprocess(size=1024, crop_to_content=False))
    cropped = small.resize((614, 1024), NEAREST)
    assert lr_consistency(small, cropped, placement) == lr_consistency(small, cropped)


def test_downscale_to_cutout_is_the_exact_size() -> None:
    small = cutout(75, 100)
    assert downscale_to_cutout(small, small.resize((768, 1024))).size == (75, 100)


# -- ranking --------------------------------------------------------------------------------


def test_rank_puts_a_corrupted_candidate_last() -> None:
    small = cutout(64, 80)
    exact = box_upscale(small, 12)
    smooth = small.resize(exact.size, Image.Resampling.LANCZOS)
    # a changed "shirt number": a block painted over
    corrupted = smooth.copy()
    corrupted.paste((250, 250, 250), (300, 300, 500, 560))
    ranking = rank_candidates(small, [corrupted, smooth, exact])
    assert [i for i, _ in ranking] == [2, 1, 0]
    scores = [s for _, s in ranking]
    assert scores == sorted(scores, reverse=True)
    assert ranking[0][1] >= 50


def test_rank_accepts_engine_candidates_and_keeps_ties_in_order() -> None:
    small = cutout(32, 32)
    same = box_upscale(small, 4)
    candidates = [SimpleNamespace(image=same), SimpleNamespace(image=same.copy())]
    assert [i for i, _ in rank_candidates(small, candidates)] == [0, 1]


# -- the score command ----------------------------------------------------------------------


def _save(image: Image.Image, path: Path, chunk: object | None = None) -> Path:
    info = PngImagePlugin.PngInfo()
    if chunk is not None:
        info.add_text("fbupscale", chunk if isinstance(chunk, str) else json.dumps(chunk))
    image.save(path, pnginfo=info, compress_level=1)
    return path


def _chunk(seed: int, lora: bool, variant: int = 0, stage: int = 2) -> dict[str, object]:
    return {"key": {"variant": variant, "lora": lora, "stage": stage}, "seed": seed}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    small = cutout(60, 100)
    good = small.resize((614, 1024), Image.Resampling.LANCZOS)
    bad = good.copy()
    bad.paste((255, 255, 255), (200, 300, 420, 620))
    square, _ = standardise(small, Preprocess(size=1024, crop_to_content=False))
    request = ReconstructionRequest(
        engine="lanczos", preprocess=Preprocess(size=1024, crop_to_content=False)
    )
    return {
        "cutout": _save(small, tmp_path / "cutout.png"),
        "bad": _save(bad, tmp_path / "bad.png", _chunk(5, True, variant=0)),
        "good": _save(good, tmp_path / "good.png", _chunk(6, False, variant=1)),
        "square": _save(
            square,
            tmp_path / "square.png",
            {**_chunk(7, False, variant=2), "request": request.to_dict()},
        ),
        "bare": _save(good, tmp_path / "bare.png", "{not json"),
    }


def test_score_json_reads_seed_and_lora_and_ranks_the_corrupted_last(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["score", str(files["cutout"]), str(files["bad"]), str(files["good"])]
    args += [str(files["square"]), str(files["bare"]), "--json"]
    assert cli_main(args) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["candidates"]
    assert [r["path"] for r in rows] == [str(files[k]) for k in ("bad", "good", "square", "bare")]
    assert [(r["seed"], r["lora"], r["variant"]) for r in rows] == [
        (5, True, 0),
        (6, False, 1),
        (7, False, 2),
        (None, None, None),
    ]
    assert rows[0]["rank"] == 4  # the corrupted one is last
    assert rows[2]["geometry"] == "padded"  # its request says: not cropped to content
    assert rows[2]["lr_consistency_db"] > 30
    assert rows[result["best"]]["rank"] == 1
    assert result["best"] != 0
    assert result["cutout"] == {"path": str(files["cutout"]), "width": 60, "height": 100}


def test_score_table_prints_a_row_per_candidate_and_the_best(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["score", str(files["cutout"]), str(files["bad"]), str(files["good"])]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.rstrip().endswith((".png",)) and "dB" not in line]
    assert len(rows) == 2
    bad_row = next(line for line in rows if line.endswith("bad.png"))
    assert bad_row.split()[0] == "2" and " on " in bad_row and " 5 " in bad_row
    assert out[-1].startswith(f"best: {files['good']} (") and "seed 6, LoRA off" in out[-1]


def test_score_assumes_centred_padding_for_a_square_without_request(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Image.open(files["square"]) as square:
        plain = _save(square.convert("RGB"), tmp_path / "plain_square.png")
    assert cli_main(["score", str(files["cutout"]), str(plain), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["candidates"][0]
    assert row["geometry"] == "assumed-centred" and row["lr_consistency_db"] > 30


def test_score_errors_are_one_line_naming_the_file(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wide = _save(Image.new("RGB", (1024, 300)), tmp_path / "wide.png")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    cases = [
        ([str(tmp_path / "missing.png"), str(files["good"])], "missing.png"),
        ([str(files["cutout"]), str(tmp_path / "gone.png")], "gone.png"),
        ([str(files["cutout"]), str(text)], "notes.png"),
        ([str(files["cutout"]), str(wide)], "wide.png"),
    ]
    for paths, culprit in cases:
        assert cli_main(["score", *paths]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and culprit in err


def test_score_reads_what_the_exporter_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import CandidateKey
    from fbupscale_gui.storage import metadata

    small = cutout(60, 100)
    cut = _save(small, tmp_path / "cutout.png")
    candidate = Candidate(
        key=CandidateKey(variant=1, lora=True, stage=2),
        seed=42,
        image=small.resize((614, 1024), Image.Resampling.LANCZOS),
        request=ReconstructionRequest(engine="lanczos"),
    )
    out = metadata.save_candidate(candidate, tmp_path / "v1_lora.png")
    assert cli_main(["score", str(cut), str(out), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["candidates"][0]
    assert (row["seed"], row["lora"], row["variant"], row["stage"]) == (42, True, 1, 2)
    assert row["geometry"] == "content" and row["lr_consistency_db"] > 30


def test_candidate_info_tolerates_missing_and_odd_metadata(tmp_path: Path) -> None:
    odd = _save(cutout(8, 8), tmp_path / "odd.png", {"key": "v0", "seed": "5", "request": 3})
    info = read_candidate_info(odd)
    assert (info.seed, info.lora, info.variant, info.request) == (None, None, None, None)
    none = _save(cutout(8, 8), tmp_path / "none.png")
    assert read_candidate_info(none).seed is None
