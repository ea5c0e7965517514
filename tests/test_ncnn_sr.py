"""The wheel models (waifu2x, Real-CUGAN, SRMD) on ncnn: reference output, tiles, progress, cancel.

The reference is the models' documented processing written out plainly: the whole image padded
once (edge or reflect by the model's pre-padding, rounded up to its alignment), one ``extract``
of the output blob, the padding cropped away, ``x 255 + 0.5`` truncated; 2x models run twice.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fbupscale_gui.core.errors import Cancelled, RequestError
from fbupscale_gui.core.job import Progress
from fbupscale_gui.core.request import (
    FAITHFUL_MODEL,
    Preprocess,
    ReconstructionRequest,
    Stage1Params,
)
from fbupscale_gui.engine.fast import engines as fast
from fbupscale_gui.engine.fast.engines import FastEngine
from fbupscale_gui.engine.fast.ncnn_sr import (
    SRMD_DEGRADATION,
    VARIANTS,
    NcnnModel,
    Variant,
    import_ncnn,
    model_files,
    variant,
)

ROOT = Path(__file__).resolve().parent.parent


def _available(name: str) -> bool:
    try:
        model_files(VARIANTS[name])
    except Exception:
        return False
    return True


needs = pytest.mark.skipif(
    not all(_available(n) for n in (FAITHFUL_MODEL, "realcugan-se-conservative", "srmd-n3")),
    reason="wheel model files not installed (scripts/setup.sh installs them)",
)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth shapes plus noise: structure for the networks to work on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(xx / 3.1 + seed),
            128 + 100 * np.cos(yy / 4.3),
            128 + 60 * np.sin((xx + yy) / 5.0),
        ],
        axis=-1,
    )
    base += rng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def reference_pass(v: Variant, net: object, rgb8: np.ndarray) -> np.ndarray:
    """One untiled run with the reference programs' processing, written plainly."""
    ncnn = import_ncnn()
    h, w = rgb8.shape[:2]
    p, s = v.prepad, v.scale
    ah, aw = math.ceil(h / v.align) * v.align, math.ceil(w / v.align) * v.align
    x = rgb8.astype(np.float32) / np.float32(255.0)
    x = np.pad(x, ((p, p + ah - h), (p, p + aw - w), (0, 0)), mode=v.pad_mode)
    planes = [x[..., c] for c in range(3)]
    if v.family == "srmd":
        extra = [*SRMD_DEGRADATION] + ([v.noise / 255.0] if v.noise is not None else [])
        planes += [np.full(x.shape[:2], value, np.float32) for value in extra]
    data = np.ascontiguousarray(np.stack(planes), dtype=np.float32)
    ex = net.create_extractor()  # type: ignore[attr-defined]
    ex.input(v.in_blob, ncnn.Mat(data))
    ret, out = ex.extract(v.out_blob)
    assert ret == 0
    y = np.array(out)
    off_y = (y.shape[1] - ah * s) // 2 if y.shape[1] > ah * s else 0
    off_x = (y.shape[2] - aw * s) // 2 if y.shape[2] > aw * s else 0
    y = y[:, off_y : off_y + h * s, off_x : off_x + w * s]
    if v.residual:
        src = x[p : p + h, p : p + w].transpose(2, 0, 1)
        y = y + src.repeat(s, axis=1).repeat(s, axis=2)
    return np.clip(np.floor(y * 255.0 + 0.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def reference(name: str, image: Image.Image) -> np.ndarray:
    """The variant's network runs (no Lanczos mix: the fast engine adds that)."""
    v = variant(name)
    model = NcnnModel(v, num_threads=1, tile=0)
    rgb8 = np.asarray(image, dtype=np.uint8)
    for _ in range(v.passes):
        rgb8 = reference_pass(v, model._net, rgb8)
    return rgb8


@needs
@pytest.mark.parametrize(
    "name",
    [
        FAITHFUL_MODEL,
        "waifu2x-cunet-n0",
        "realcugan-se-conservative",
        "realcugan-pro-no-denoise",
        "srmd-n3",
        "srmdnf",
    ],
)
def test_engine_matches_the_plain_reference_within_one_level(name: str) -> None:
    image = photo(27, 21, seed=1)  # odd sizes: alignment padding on both axes
    model = NcnnModel(variant(name), num_threads=1, tile=16)
    ours = np.asarray(model.upscale(image), dtype=np.int16)
    ref = reference(name, image).astype(np.int16)
    factor = variant(name).factor
    assert ours.shape == (21 * factor, 27 * factor, 3)
    assert np.abs(ours - ref).max() <= 1


@needs
@pytest.mark.parametrize("name", ["waifu2x-photo-n2", "srmd-n3"])
def test_tiles_are_seamless(name: str) -> None:
    image = photo(40, 34, seed=2)
    tiled = NcnnModel(variant(name), num_threads=1, tile=12)
    whole = NcnnModel(variant(name), num_threads=1, tile=0)
    assert len(tiled.tiles(40, 34)) > 4 and len(whole.tiles(40, 34)) == 1
    a = np.asarray(tiled.upscale(image), dtype=np.int16)
    b = np.asarray(whole.upscale(image), dtype=np.int16)
    assert np.abs(a - b).max() <= 1


def test_pooling_models_run_untiled() -> None:
    v = variant("realcugan-se-conservative")
    assert not v.tiled and v.passes == 1
    assert variant("realcugan-pro-conservative").passes == 2
    assert variant("waifu2x-cunet-n2").passes == 2 and variant("srmd-n0").passes == 1
    faithful = variant(FAITHFUL_MODEL)  # one 2x run, mixed with Lanczos by the fast engine
    assert faithful.passes == 1 and faithful.factor == 2 and 0 < faithful.lanczos_mix < 1


def test_unknown_model_is_a_request_error() -> None:
    with pytest.raises(RequestError, match="unknown ncnn model"):
        variant("waifu2x-nope")
    with pytest.raises(RequestError, match="engine"):
        ReconstructionRequest(engine="ncnn:")


@needs
def test_progress_within_a_tile_and_cancel_within_one_tile() -> None:
    model = NcnnModel(variant("waifu2x-photo-n2"), num_threads=1, tile=0)
    image = photo(24, 24)
    steps: list[tuple[int, int]] = []
    model.upscale(image, lambda d, t: steps.append((d, t)))
    total = steps[-1][1]
    runs = model.runs(24, 24)
    assert runs == 2  # one tile per pass
    assert [d for d, _ in steps] == list(range(1, total + 1))
    assert total == runs * model.steps_per_run and model.steps_per_run > 3

    seen: list[int] = []
    flag = {"cancel": False}

    def on_step(done: int, _total: int) -> None:
        seen.append(done)
        if done == 2:
            flag["cancel"] = True  # asked in the middle of the first tile

    with pytest.raises(Cancelled):
        model.upscale(image, on_step, lambda: flag["cancel"])
    assert seen == [1, 2]  # stopped at the very next step, inside the same tile


@needs
def test_realesrgan_reports_progress_inside_one_tile_and_cancels_there() -> None:
    engine = FastEngine(num_threads=1)
    image = photo(20, 16)
    trunk, tail = engine.tiles(20, 16)
    assert len(trunk) == 1 and len(tail) == 1
    events: list[Progress] = []
    engine.upscale_x4(image, events.append)
    assert len(events) >= fast.TRUNK_STEPS  # not 0 % then 100 %
    assert [e.job_step for e in events] == list(range(1, len(events) + 1))
    assert events[-1].job_step == events[-1].job_total

    got: list[Progress] = []
    with pytest.raises(Cancelled):
        engine.upscale_x4(image, got.append, lambda: len(got) >= 3)
    assert len(got) == 3 and "trunk tile 1/1" in got[-1].message


@needs
def test_fast_engine_runs_faithful_and_names_its_model() -> None:
    candidate = FastEngine(num_threads=1).run(
        ReconstructionRequest(engine="faithful"), photo(30, 20)
    )
    assert candidate.image.size == (1024, 683)
    assert candidate.runtime.endswith(FAITHFUL_MODEL)
    assert fast.weights_file("faithful")[0] == FAITHFUL_MODEL  # type: ignore[index]
    assert fast.weights_file("sharp") is None and fast.weights_file("lanczos") is None


@needs
def test_faithful_is_the_model_averaged_with_lanczos() -> None:
    engine = FastEngine(num_threads=1)
    cut = photo(30, 20)
    pre = Preprocess(size=128)
    model = np.asarray(
        engine.ncnn_model(FAITHFUL_MODEL).upscale(cut).resize((128, 85), Image.Resampling.LANCZOS),
        np.float32,
    )
    lanczos = np.asarray(engine.enlarge("lanczos", pre, cut)[0], np.float32)
    faithful = np.asarray(engine.enlarge("faithful", pre, cut)[0], np.float32)
    assert faithful.shape == lanczos.shape == model.shape
    assert np.abs(faithful - (model + lanczos) / 2).max() <= 1.0


@needs
def test_stage1_start_square_has_the_lanczos_geometry() -> None:
    engine = FastEngine(num_threads=1)
    pre = Preprocess(size=128)
    cut = photo(30, 20)
    a, pa = engine.start_square("lanczos", cut, pre)
    b, pb = engine.start_square("faithful", cut, pre)
    assert a.size == b.size == (128, 128) and pa == pb
    assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean() > 0.5


def test_aliases_and_stage1_start_in_the_request() -> None:
    assert ReconstructionRequest(engine="sharp").engine == "realesrgan"
    req = ReconstructionRequest(stage1=Stage1Params(start="sharp"))
    assert req.stage1.start == "realesrgan"
    assert ReconstructionRequest.from_json(req.to_json()) == req
    with pytest.raises(RequestError, match=r"stage1\.start"):
        Stage1Params(start="flux")


def test_schema_2_requests_migrate_to_a_lanczos_start() -> None:
    data = ReconstructionRequest(engine="realesrgan").to_dict()
    data["version"] = 2
    del data["stage1"]["start"]
    old = ReconstructionRequest.from_dict(data)
    assert old.stage1.start == "lanczos" and old.version >= 3


@pytest.mark.slow
@needs
def test_no_torch_after_a_faithful_job_in_a_fresh_process(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    photo(32, 24).save(path)
    code = textwrap.dedent(
        f"""
        import sys
        from fbupscale_gui.storage.cutouts import make_source
        from fbupscale_gui.core.request import ReconstructionRequest
        from fbupscale_gui.engine import Engine
        req = ReconstructionRequest(engine="faithful", source=make_source({str(path)!r}))
        cands = list(Engine().run(req))
        assert cands[0].image.size == (1024, 768), cands[0].image.size
        print("torch" in sys.modules, "diffusers" in sys.modules)
        """
    )
    env = {"PYTHONPATH": str(ROOT), "FBUPSCALE_CPU_THREADS": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_cuda_question_does_not_import_torch_without_an_nvidia_gpu() -> None:
    code = (
        "import sys\n"
        "from fbupscale_gui.engine import devices\n"
        "if devices.nvidia_gpu_count() == 0:\n"
        "    assert devices.resolve_runtime('auto', 'auto', 'auto').device == 'cpu'\n"
        "    print('torch' in sys.modules)\n"
        "else:\n"
        "    print(False)\n"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@needs
def test_nan_from_a_wheel_model_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from fbupscale_gui.core.errors import RenderError
    from fbupscale_gui.engine.fast import ncnn_sr as ncnn_sr

    real = ncnn_sr.extract_in_steps

    def overflowing(*args: object, **kwargs: object) -> np.ndarray:
        out = real(*args, **kwargs)  # type: ignore[arg-type]
        out[0, out.shape[1] // 2, out.shape[2] // 2] = np.nan
        return out

    monkeypatch.setattr(ncnn_sr, "extract_in_steps", overflowing)
    with pytest.raises(RenderError, match="NaN"):
        NcnnModel(variant("srmd-n3"), num_threads=1).upscale(photo(16, 16))
