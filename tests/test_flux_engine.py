"""The two-stage FLUX engine on a tiny random FLUX, through the real offline loading path."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fbupscale_gui.core.errors import (
    Cancelled,
    GpuOutOfMemoryError,
    ModelNotFoundError,
    RequestError,
)
from fbupscale_gui.core.job import Candidate, Progress
from fbupscale_gui.core.request import (
    CONTROLNET_REPO_ID,
    FLUX_REPO_ID,
    CandidateKey,
    LoraParams,
    ModelRef,
    Preprocess,
    ReconstructionRequest,
    SourceRef,
    Stage1Params,
    Stage2Params,
)
from fbupscale_gui.engine import Engine, devices
from fbupscale_gui.engine.devices import Runtime
from fbupscale_gui.engine.testing import TinyFluxFiles, tiny_cutout
from fbupscale_gui.storage.cutouts import make_source

# The cutout is not square (40 x 64), so results are cropped back to a 40 x 64 content box.
CUTOUT_W, CUTOUT_H = 40, 64

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceRef:
    path = tmp_path_factory.mktemp("cutout") / "player.png"
    tiny_cutout(CUTOUT_W, CUTOUT_H, seed=3).save(path)
    return make_source(path)


@pytest.fixture(scope="module")
def request_(tiny_flux: TinyFluxFiles, source: SourceRef) -> ReconstructionRequest:
    """Tiny settings: 64 px, stage 1 4 x 0.75 = 3 steps, stage 2 2 steps, 2 variants, no LoRA."""
    return ReconstructionRequest(
        source=source,
        prompt="a goalkeeper in a green shirt",
        preprocess=Preprocess(size=64),
        stage1=Stage1Params(steps=4, strength=0.75),
        stage2=Stage2Params(steps=2),
        variants=2,
        seed=11,
        flux=ModelRef(path=str(tiny_flux.flux_dir), repo_id=FLUX_REPO_ID),
        controlnet=ModelRef(path=str(tiny_flux.controlnet_dir), repo_id=CONTROLNET_REPO_ID),
        lora=LoraParams(model=None),
    )


def with_lora(req: ReconstructionRequest, path: Path, **kw: Any) -> ReconstructionRequest:
    return req.replace(lora=LoraParams(model=ModelRef(path=str(path)), **kw))


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = Engine()
    yield eng
    eng.release()


def run_all(
    engine: Engine,
    req: ReconstructionRequest,
    events: list[Progress] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> list[Candidate]:
    return list(engine.run(req, events.append if events is not None else None, is_cancelled))


def pixels(c: Candidate) -> np.ndarray:
    return np.asarray(c.image, dtype=np.int16)


def diff(a: Candidate, b: Candidate) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


@pytest.fixture(scope="module")
def full_run(
    engine: Engine, request_: ReconstructionRequest, tiny_flux: TinyFluxFiles
) -> tuple[ReconstructionRequest, list[Candidate], list[Progress]]:
    """One A/B run with the Kohya LoRA on stage 2 (the default), shared by several tests."""
    req = with_lora(request_, tiny_flux.lora_kohya)
    events: list[Progress] = []
    return req, run_all(engine, req, events), events


@pytest.fixture(scope="module")
def plain(request_: ReconstructionRequest) -> list[Candidate]:
    """One variant, no LoRA, on a fresh engine whose transformer never had a LoRA loaded."""
    eng = Engine()
    cands = run_all(eng, request_.replace(variants=1))
    eng.release()
    return cands


# -- shapes, order, progress --------------------------------------------------------------


def test_candidates_come_in_key_order_with_content_shape(full_run: Any) -> None:
    req, cands, _ = full_run
    assert [c.key for c in cands] == req.candidate_keys()
    assert [c.key.label for c in cands[:3]] == ["v0 s1 nolora", "v0 s2 nolora", "v0 s2 lora"]
    for c in cands:
        assert c.image.mode == "RGB"
        assert c.image.size == (CUTOUT_W, CUTOUT_H)  # the square result cropped to the content
        assert c.seed == req.seed_for(c.key.variant)
        assert c.runtime == "cpu fp32 none"
        assert c.request.flux.sha256 and c.request.controlnet.sha256
        assert c.request.lora.model is not None and c.request.lora.model.sha256
    assert set(cands[0].timings) == {"stage1"}
    assert set(cands[1].timings) == {"stage2"}  # its stage-1 result was timed on cands[0]


def test_stage1_starts_from_the_chained_fast_engine(
    engine: Engine,
    request_: ReconstructionRequest,
    plain: list[Candidate],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Plumbing only: tiny random models cannot show whether the faithful start helps."""
    req = request_.replace(
        variants=1, stage1=dataclasses.replace(request_.stage1, start="faithful")
    )
    fast = engine._fast_engine()
    started: list[str] = []
    original = fast.start_square

    def spy(name: str, *args: Any, **kwargs: Any) -> Any:
        started.append(name)
        return original(name, *args, **kwargs)

    monkeypatch.setattr(fast, "start_square", spy)
    cands = run_all(engine, req)
    assert started == ["faithful"]  # once per run, shared by the variant's candidates
    assert [c.key for c in cands] == [c.key for c in plain]
    assert all(c.request.stage1.start == "faithful" for c in cands)
    assert all(c.image.size == (CUTOUT_W, CUTOUT_H) for c in cands)
    assert diff(cands[0], plain[0]) > 0.5  # another start image, another stage-1 result
    again = ReconstructionRequest.from_json(cands[0].request.to_json())
    assert again.stage1.start == "faithful"


def test_square_output_without_crop(engine: Engine, request_: ReconstructionRequest) -> None:
    req = request_.replace(preprocess=Preprocess(size=64, crop_to_content=False), variants=1)
    cands = run_all(engine, req)
    assert [c.image.size for c in cands] == [(64, 64), (64, 64)]


def test_progress_counts_every_denoising_step(full_run: Any) -> None:
    _, cands, events = full_run
    steps = [e for e in events if e.stage in ("stage1", "stage2")]
    # 2 variants x (one shared stage-1 run of 3 steps + two stage-2 runs of 2 steps)
    assert steps[-1].job_total == 2 * 3 + 4 * 2
    assert [e.job_step for e in steps] == list(range(1, 15))
    assert {e.total for e in steps if e.stage == "stage1"} == {3}
    assert {e.total for e in steps if e.stage == "stage2"} == {2}
    assert {e.candidates for e in events} == {len(cands)}
    assert [e.candidate for e in steps if e.stage == "stage2"] == [1, 1, 2, 2, 4, 4, 5, 5]
    assert events[0].stage == "load"


def test_progress_total_matches_diffusers_rounding_of_strength(
    engine: Engine, full_run: Any
) -> None:
    req, _, _ = full_run
    # 10 x 0.29 = 2.9000000000000004 and 10 - int(10 - 2.9...) = 3 steps, not int(2.9...) = 2
    odd = req.replace(stage1=Stage1Params(steps=10, strength=0.29)).with_only(
        CandidateKey(0, False, 1)
    )
    events: list[Progress] = []
    run_all(engine, odd, events)
    steps = [e for e in events if e.stage == "stage1"]
    assert len(steps) == steps[-1].total == steps[-1].job_total == odd.stage1.effective_steps


# -- determinism and reproduction ---------------------------------------------------------


def test_same_request_same_pixels_other_seed_other_pixels(
    engine: Engine, request_: ReconstructionRequest, plain: list[Candidate]
) -> None:
    req = request_.replace(variants=1)
    first = plain  # from another engine: loading is deterministic too
    again = run_all(engine, req)
    assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(first, again, strict=True))
    other = run_all(engine, req.replace(seed=12))
    assert diff(first[1], other[1]) > 1.0


def test_variants_differ(full_run: Any) -> None:
    _, cands, _ = full_run
    by_key = {c.key: c for c in cands}
    assert diff(by_key[CandidateKey(0, False, 2)], by_key[CandidateKey(1, False, 2)]) > 1.0


@pytest.mark.parametrize(
    "key", [CandidateKey(1, False, 1), CandidateKey(1, True, 2), CandidateKey(0, False, 2)]
)
def test_only_renders_one_candidate_pixel_identical(
    engine: Engine, full_run: Any, key: CandidateKey
) -> None:
    req, cands, _ = full_run
    events: list[Progress] = []
    (single,) = run_all(engine, req.with_only(key), events)
    expected = next(c for c in cands if c.key == key)
    assert single.key == key
    assert np.array_equal(pixels(single), pixels(expected))
    steps = [e for e in events if e.stage != "load"]
    assert steps[-1].job_total == (3 if key.stage == 1 else 3 + 2)
    assert set(single.timings) == ({"stage1"} if key.stage == 1 else {"stage1", "stage2"})


# -- LoRA A/B -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_lora_on_differs_and_off_equals_no_lora_loaded(
    engine: Engine,
    request_: ReconstructionRequest,
    tiny_flux: TinyFluxFiles,
    plain: list[Candidate],
    fmt: str,
) -> None:
    lora_file = tiny_flux.lora_kohya if fmt == "kohya" else tiny_flux.lora_diffusers
    req = request_.replace(variants=1)
    ab = run_all(engine, with_lora(req, lora_file))
    keys = [c.key for c in ab]
    assert keys == [CandidateKey(0, False, 1), CandidateKey(0, False, 2), CandidateKey(0, True, 2)]
    s1, s2_off, s2_on = ab
    assert np.array_equal(pixels(s1), pixels(plain[0]))  # stage 1 runs without the LoRA
    assert np.array_equal(pixels(s2_off), pixels(plain[1]))  # bit-identical, not merely close
    assert diff(s2_on, s2_off) > 1.0


def test_lora_on_stage1_gives_two_stage1_results(
    engine: Engine, request_: ReconstructionRequest, tiny_flux: TinyFluxFiles
) -> None:
    req = with_lora(request_.replace(variants=1), tiny_flux.lora_diffusers, stages=("stage1",))
    cands = run_all(engine, req)
    assert [c.key.label for c in cands] == [
        "v0 s1 nolora",
        "v0 s1 lora",
        "v0 s2 nolora",
        "v0 s2 lora",
    ]
    assert diff(cands[0], cands[1]) > 1.0
    # stage 2 runs without the LoRA here, but from a different stage-1 result
    assert diff(cands[2], cands[3]) > 0.5


def test_lora_loaded_once_per_file(
    engine: Engine, request_: ReconstructionRequest, tiny_flux: TinyFluxFiles
) -> None:
    req = with_lora(
        request_.replace(variants=1, stage2=Stage2Params(enabled=False)),
        tiny_flux.lora_kohya,
        stages=("stage1",),
    )
    run_all(engine, req)
    pair = engine.flux.pipelines
    assert pair is not None
    before = {n: id(m) for n, m in pair.transformer.named_modules() if "lora_A" in n}
    run_all(engine, req)
    after = {n: id(m) for n, m in pair.transformer.named_modules() if "lora_A" in n}
    assert before and before == after  # toggled, not reloaded
    assert not any("lora" in n for n, _ in pair.stage2.controlnet.named_modules())


# -- module sharing -----------------------------------------------------------------------


def test_stage2_shares_every_module_with_stage1(engine: Engine, full_run: Any) -> None:
    pair = engine.flux.pipelines
    assert pair is not None and pair.stage2 is not None
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "scheduler"):
        assert getattr(pair.stage2, name) is getattr(pair.stage1, name), name


def test_shared_modules_keep_a_16_bit_dtype(tiny_flux: TinyFluxFiles) -> None:
    import torch

    from fbupscale_gui.engine.flux.pipelines import load_pipelines

    pair = load_pipelines(
        tiny_flux.flux_dir, tiny_flux.controlnet_dir, Runtime("cpu", "bf16", "none")
    )
    assert pair.stage2 is not None
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pair.stage2, name)
        assert module is getattr(pair.stage1, name)
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}, name
    assert pair.stage2.controlnet.dtype == torch.bfloat16


@pytest.mark.parametrize("mode", ["model", "group"])
def test_offload_modes_move_between_the_two_pipelines(
    monkeypatch: pytest.MonkeyPatch, full_run: Any, mode: str
) -> None:
    """The offload code runs on CPU too (onload device = CPU): accelerate hooks move between the
    pipelines sharing modules, the ControlNet and the LoRA join an already offloaded pipeline,
    and the pixels match mode "none" (within one level: CPU kernels may take other paths for
    tensors placed differently in memory)."""
    full_req, full, _ = full_run
    req = full_req.replace(variants=1)
    reference = full[:3]  # variant 0 does not depend on how many variants there are
    monkeypatch.setattr(devices, "resolve_runtime", lambda *a: Runtime("cpu", "fp32", mode))
    eng = Engine()
    run_all(eng, req.replace(stage2=Stage2Params(enabled=False), lora=LoraParams(model=None)))
    cands = run_all(eng, req)
    assert [c.runtime for c in cands] == [f"cpu fp32 {mode}"] * 3
    for got, want in zip(cands, reference, strict=True):
        assert np.abs(pixels(got) - pixels(want)).max() <= 1, got.key.label
    assert diff(cands[2], cands[1]) > 1.0  # the LoRA still switches
    pair = eng.flux.pipelines
    assert pair is not None and pair.stage2 is not None
    if mode == "model":
        assert pair.hooks_owner is pair.stage2
        assert hasattr(pair.stage2.controlnet, "_hf_hook")
    else:
        assert len(pair.grouped) == 5  # vae, both text encoders, transformer, controlnet
    eng.release()


def test_auto_memory_mode_sticks_to_the_loaded_pipelines(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, full_run: Any
) -> None:
    req, _, _ = full_run
    key = CandidateKey(0, False, 1)
    run_all(engine, req.with_only(key))
    pair = engine.flux.pipelines
    # the loaded pipelines now hold VRAM, so a fresh look at free memory picks a lighter mode
    monkeypatch.setattr(devices, "resolve_runtime", lambda *a: Runtime("cpu", "fp32", "group"))
    (cand,) = run_all(engine, req.with_only(key))
    assert cand.runtime == "cpu fp32 none"
    assert engine.flux.pipelines is pair  # not reloaded


def test_a_model_that_changed_since_the_request_is_flagged(engine: Engine, full_run: Any) -> None:
    req, _, _ = full_run
    stale = req.replace(flux=dataclasses.replace(req.flux, sha256="0" * 64))
    (cand,) = run_all(engine, stale.with_only(CandidateKey(0, False, 1)))
    assert "FLUX differs from the request's" in cand.runtime
    assert cand.request.flux.sha256 != "0" * 64  # the candidate records what really ran


# -- cancel -------------------------------------------------------------------------------


def test_cancel_mid_stage2_keeps_finished_candidates_only(engine: Engine, full_run: Any) -> None:
    req, reference, _ = full_run
    events: list[Progress] = []
    delivered: list[Candidate] = []
    # cancel after the first denoising step of the first stage-2 run
    with pytest.raises(Cancelled):
        for cand in engine.run(
            req, events.append, lambda: any(e.stage == "stage2" for e in events)
        ):
            delivered.append(cand)
    assert [c.key for c in delivered] == [CandidateKey(0, False, 1)]
    assert np.array_equal(pixels(delivered[0]), pixels(reference[0]))
    assert [e.step for e in events if e.stage == "stage2"] == [1]  # stopped inside the stage
    # the engine is still usable, and its LoRA state was not left behind
    again = run_all(engine, req.with_only(CandidateKey(0, False, 2)))
    assert np.array_equal(pixels(again[0]), pixels(reference[1]))


def test_cancel_mid_stage1_of_second_variant(engine: Engine, full_run: Any) -> None:
    req, _, _ = full_run
    events: list[Progress] = []
    delivered: list[Candidate] = []

    def cancelled() -> bool:
        return any(e.stage == "stage1" and e.candidate == 3 and e.step == 2 for e in events)

    with pytest.raises(Cancelled):
        for cand in engine.run(req, events.append, cancelled):
            delivered.append(cand)
    assert [c.key.variant for c in delivered] == [0, 0, 0]


def test_cancel_before_start_runs_nothing(engine: Engine, full_run: Any) -> None:
    req, _, _ = full_run
    with pytest.raises(Cancelled):
        next(engine.run(req, None, lambda: True))


@pytest.mark.parametrize("step", [1, 2], ids=["loading-flux", "loading-controlnet"])
def test_cancel_during_model_load_leaves_the_engine_usable(full_run: Any, step: int) -> None:
    """Cancel while the pipelines load (a fresh engine, so they really load): the engine
    stops after that loading step, before any denoising, and the next run works."""
    req, reference, _ = full_run
    fresh = Engine()
    try:
        events: list[Progress] = []

        def cancelled() -> bool:
            return any(e.stage == "load" and e.step == step for e in events)

        with pytest.raises(Cancelled):
            next(fresh.run(req, events.append, cancelled))
        assert [e.step for e in events if e.stage == "load"] == list(range(step + 1))
        assert not any(e.stage in ("stage1", "stage2") for e in events)
        again = run_all(fresh, req.with_only(CandidateKey(0, False, 2)))
        assert np.array_equal(pixels(again[0]), pixels(reference[1]))
    finally:
        fresh.release()


# -- errors -------------------------------------------------------------------------------


def test_request_without_source_is_refused(engine: Engine, request_: ReconstructionRequest) -> None:
    with pytest.raises(RequestError, match="source"):
        next(engine.run(request_.replace(source=None)))


def test_missing_model_names_repo_and_folders(
    request_: ReconstructionRequest, tmp_path: Path
) -> None:
    eng = Engine(search_dirs=(tmp_path,))
    req = request_.replace(flux=ModelRef(repo_id=FLUX_REPO_ID))
    with pytest.raises(ModelNotFoundError) as err:
        next(eng.run(req))
    message = str(err.value)
    assert FLUX_REPO_ID in message
    assert str(tmp_path / "FLUX.1-dev") in message
    assert "hf download" in message


def test_out_of_memory_becomes_a_retry_hint(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, full_run: Any
) -> None:
    import torch

    req, _, _ = full_run
    runner = engine.flux

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        yield  # pragma: no cover

    monkeypatch.setattr(devices, "resolve_runtime", lambda *a: Runtime("cuda:0", "bf16", "model"))
    monkeypatch.setattr(runner, "_run", boom)
    with pytest.raises(GpuOutOfMemoryError) as err:
        next(engine.run(req))
    assert (err.value.mode, err.value.next_mode) == ("model", "group")
    assert runner.pipelines is None  # released, so the retry can load in the lighter mode


# -- devices and memory modes -------------------------------------------------------------


def test_memory_mode_thresholds() -> None:
    gib = devices.GIB
    assert devices.pick_memory_mode(80 * gib, "bf16") == "none"
    assert (
        devices.pick_memory_mode(int(devices.MODEL_OFFLOAD_MIN_FREE_GIB * gib), "bf16") == "model"
    )
    assert devices.pick_memory_mode(20 * gib, "bf16") == "group"
    assert devices.pick_memory_mode(8 * gib, "bf16") == "sequential"
    assert devices.pick_memory_mode(40 * gib, "fp32") == "group"  # fp32 needs twice the room
    assert [devices.next_lighter_mode(m) for m in devices.MEMORY_MODES_LIGHTER] == [
        "model",
        "group",
        "sequential",
        None,
    ]


def test_offload_modes_fall_back_on_cpu() -> None:
    assert devices.resolve_runtime("cpu", "auto", "auto").label == "cpu fp32 none"
    rt = devices.resolve_runtime("cpu", "bf16", "group")
    assert (rt.memory_mode, rt.precision) == ("none", "bf16")
    assert "needs CUDA" in rt.label


def test_unavailable_cuda_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_cuda_available", lambda: False)
    with pytest.raises(RequestError, match="CUDA"):
        devices.resolve_runtime("cuda", "auto", "auto")


# -- dispatch and import weight -----------------------------------------------------------


def test_fast_engines_are_dispatched_and_created_once(
    monkeypatch: pytest.MonkeyPatch, request_: ReconstructionRequest
) -> None:
    from fbupscale_gui.engine.fast import engines as fast

    made: list[object] = []

    class StubFast:
        def __init__(self) -> None:
            made.append(self)

        def run(self, request: Any, cutout: Any, on_progress: Any, is_cancelled: Any) -> Candidate:
            return Candidate(CandidateKey(0, False, 2), 0, cutout, request, {"fast": 0.0}, "stub")

    monkeypatch.setattr(fast, "FastEngine", StubFast)
    eng = Engine()
    req = request_.replace(engine="lanczos")
    for _ in range(2):
        (cand,) = list(eng.run(req))
        assert cand.image.size == (CUTOUT_W, CUTOUT_H)
    assert len(made) == 1


def test_importing_the_engine_does_not_import_torch() -> None:
    code = (
        "import sys, fbupscale_gui.engine, fbupscale_gui.storage.weights; "
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "print(*bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, f"imported: {done.stdout} {done.stderr}"


def test_doctor_reports_models_and_cpu_mode(tiny_flux: TinyFluxFiles, tmp_path: Path) -> None:
    from fbupscale_gui.engine.doctor import report

    text = report(search_dirs=(tiny_flux.flux_dir.parent,))
    assert f"FLUX.1-dev: {tiny_flux.flux_dir} (search-dir)" in text
    assert "Memory mode (auto): none" in text
    missing = report(search_dirs=(tmp_path,))
    assert f"NOT FOUND — FLUX.1-dev model folder ({FLUX_REPO_ID}) not found offline" in missing
    assert str(tmp_path / "FLUX.1-dev") in missing


def test_free_memory_leaves_collection_to_a_host_that_switched_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The window disables automatic GC so Qt objects die in the GUI thread only: the engine
    thread must not run the cyclic collector behind its back."""
    import gc

    from fbupscale_gui.engine import devices

    calls: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(1) or 0)
    was_enabled = gc.isenabled()
    try:
        gc.disable()
        devices.free_memory()
        assert calls == []
        gc.enable()
        devices.free_memory()
        assert calls == [1]
    finally:
        (gc.enable if was_enabled else gc.disable)()
