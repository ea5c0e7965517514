"""Speed modes on the tiny FLUX: First Block Cache on stage 1 only, regional compile."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from fbupscale_gui.core.request import (
    CandidateKey,
    ReconstructionRequest,
    Stage2Params,
)
from fbupscale_gui.engine import Engine
from fbupscale_gui.engine.flux import speed as flux_speed
from fbupscale_gui.engine.testing import TinyFluxFiles, tiny_request

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def request_(tiny_flux: TinyFluxFiles, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tiny_request(
        tiny_flux,
        tmp_path_factory.mktemp("cutout") / "player.png",
        prompt="a striker in a red shirt",
        variants=2,
        seed=7,
    )


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = Engine()
    yield eng
    eng.release()


@pytest.fixture()
def skip_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """A threshold no residual change reaches: every step after a run's first is skipped."""
    monkeypatch.setattr(flux_speed, "FBC_THRESHOLD", 1e9)


def render(engine: Engine, req: ReconstructionRequest) -> list[Any]:
    return list(engine.run(req, None, None))


def count_tail_calls(engine: Engine) -> list[int]:
    """Counts real computations of the transformer's last block (the part First Block Cache
    skips). The block's own pre-hooks fire even when the cache skips it, so count a layer
    inside it, which only runs when the block really computes."""
    pair = engine.flux.pipelines
    assert pair is not None
    calls = [0]

    def hook(*_: Any) -> None:
        calls[0] += 1

    pair.transformer.single_transformer_blocks[-1].proj_out.register_forward_pre_hook(hook)
    return calls


@pytest.mark.usefixtures("skip_everything")
def test_fast_skips_cached_stage1_steps_and_never_stage2_steps(
    engine: Engine, request_: ReconstructionRequest
) -> None:
    stage1_only = request_.replace(stage2=Stage2Params(enabled=False))
    exact = render(engine, stage1_only)  # loads the pipelines
    calls = count_tail_calls(engine)
    render(engine, stage1_only)
    assert calls[0] == 2 * 3  # exact: every step of both variants
    calls[0] = 0
    fast = render(engine, stage1_only.replace(speed="fast"))
    # one full step per run (the state is reset per run), every later step skipped
    assert calls[0] == 2 * 1
    assert not np.array_equal(np.asarray(fast[0].image), np.asarray(exact[0].image))
    calls[0] = 0
    render(engine, request_.replace(speed="fast"))
    # stage 1: 1 per variant; stage 2 (ControlNet residuals): all 2 steps of 2 variants
    assert calls[0] == 2 * 1 + 2 * 2
    assert not engine.flux.pipelines.transformer.is_cache_enabled  # type: ignore[union-attr]


@pytest.mark.usefixtures("skip_everything")
def test_fast_candidates_reproduce_pixel_identically(
    engine: Engine, request_: ReconstructionRequest
) -> None:
    req = request_.replace(speed="fast")
    batch = render(engine, req)
    assert batch[0].request.speed == "fast"
    for key in (CandidateKey(1, False, 1), CandidateKey(1, False, 2)):
        (alone,) = render(engine, req.with_only(key))
        (inside,) = [c for c in batch if c.key == key]
        assert np.array_equal(np.asarray(alone.image), np.asarray(inside.image)), key.label


def test_fast_at_the_real_threshold_runs_and_reproduces(
    engine: Engine, request_: ReconstructionRequest
) -> None:
    req = request_.replace(speed="fast", variants=1)
    a, b = render(engine, req), render(engine, req)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(np.asarray(x.image), np.asarray(y.image))


def test_compiled_compiles_the_repeated_blocks_once_and_only_for_compiled(
    request_: ReconstructionRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from diffusers import FluxTransformer2DModel

    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(tmp_path))
    compiled: list[Any] = []
    monkeypatch.setattr(
        FluxTransformer2DModel,
        "compile_repeated_blocks",
        lambda self, **kw: compiled.append((self, kw)),
    )
    eng = Engine()
    try:
        req = request_.replace(variants=1, stage2=Stage2Params(enabled=False))
        render(eng, req.replace(speed="compiled"))
        render(eng, req.replace(speed="compiled"))
        assert len(compiled) == 1 and compiled[0][1] == {"fullgraph": True}
        assert (tmp_path / "torch-compile").is_dir()
        first = eng.flux.pipelines.transformer  # type: ignore[union-attr]
        render(eng, req)  # exact: a fresh, uncompiled transformer
        assert eng.flux.pipelines.transformer is not first  # type: ignore[union-attr]
        assert len(compiled) == 1
    finally:
        eng.release()


def test_fast_mag_skips_cached_stage1_steps_after_its_retention_and_never_stage2(
    engine: Engine, request_: ReconstructionRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MagCache skips whole steps (from the first block): with a threshold nothing reaches,
    a 3-step stage 1 computes its first step (the 20 % retention rounds to 1) and skips the
    other 2; stage 2 stays uncached; the state is reset per run, so a candidate reproduces."""
    monkeypatch.setattr(flux_speed, "MAG_THRESHOLD", 1e9)
    stage1_only = request_.replace(stage2=Stage2Params(enabled=False))
    exact = render(engine, stage1_only)
    calls = count_tail_calls(engine)
    mag = render(engine, stage1_only.replace(speed="fast-mag"))
    assert calls[0] == 2 * 1
    assert mag[0].request.speed == "fast-mag" and "fast-mag" in mag[0].runtime
    assert not np.array_equal(np.asarray(mag[0].image), np.asarray(exact[0].image))
    calls[0] = 0
    both = render(engine, request_.replace(speed="fast-mag"))
    assert calls[0] == 2 * 1 + 2 * 2
    assert not engine.flux.pipelines.transformer.is_cache_enabled  # type: ignore[union-attr]
    key = CandidateKey(1, False, 2)
    (alone,) = render(engine, request_.replace(speed="fast-mag").with_only(key))
    (inside,) = [c for c in both if c.key == key]
    assert np.array_equal(np.asarray(alone.image), np.asarray(inside.image))


def test_mag_ratios_follow_the_img2img_tail_of_the_schedule() -> None:
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

    config = flux_speed._cache_config("fast-mag", 80, 60)
    assert config.num_inference_steps == 60 and len(config.mag_ratios) == 60
    assert float(config.mag_ratios[-1]) == float(FLUX_MAG_RATIOS[-1])  # the last step's ratio
    assert float(config.mag_ratios[0]) != float(FLUX_MAG_RATIOS[0])  # not the first step's
