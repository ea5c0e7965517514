"""The memory plan: fp8 storage with the LoRA A/B intact, the prompt cache, the plan itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.request import (
    CandidateKey,
    LoraParams,
    ModelRef,
    ReconstructionRequest,
    Stage2Params,
)
from fbupscale_gui.engine import Engine
from fbupscale_gui.engine.doctor import plan_lines
from fbupscale_gui.engine.flux.plan import plan
from fbupscale_gui.engine.testing import TinyFluxFiles, save_tiny_gguf, tiny_request

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def request_(tiny_flux: TinyFluxFiles, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tiny_request(
        tiny_flux,
        tmp_path_factory.mktemp("cutout") / "player.png",
        prompt="a defender in a white shirt",
        variants=1,
        seed=3,
    )


def by_key(cands: list[Any]) -> dict[CandidateKey, np.ndarray]:
    return {c.key: np.asarray(c.image, dtype=np.int16) for c in cands}


def test_fp8_storage_keeps_the_lora_ab_and_lora_off_is_bit_identical(
    request_: ReconstructionRequest, tiny_flux: TinyFluxFiles
) -> None:
    import torch

    eng = Engine()
    try:
        native = by_key(list(eng.run(request_.replace(storage="native"), None, None)))
        fp8_req = request_.replace(storage="fp8")
        plain = list(eng.run(fp8_req, None, None))
        assert plain[0].request.storage == "fp8" and "fp8-storage" in plain[0].runtime
        pair = eng.flux.pipelines
        assert pair is not None
        assert pair.transformer.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
        no_lora = by_key(plain)
        off = CandidateKey(0, False, 2)
        assert not np.array_equal(no_lora[off], native[off])  # fp8 storage really applied
        # the LoRA arrives after the cast: the set is reloaded, the LoRA loaded first
        ab_req = fp8_req.replace(
            lora=LoraParams(model=ModelRef(path=str(tiny_flux.lora_diffusers)))
        )
        ab = by_key(list(eng.run(ab_req, None, None)))
        pair = eng.flux.pipelines
        assert pair is not None and pair.fp8_cast
        lora_a = pair.transformer.transformer_blocks[0].attn.to_q.lora_A
        assert next(iter(lora_a.values())).weight.dtype == torch.float32  # LoRA not in fp8
        assert np.array_equal(ab[off], no_lora[off])  # LoRA off: bit-identical to no LoRA
        assert np.abs(ab[CandidateKey(0, True, 2)] - ab[off]).mean() > 1.0  # LoRA on: differs
    finally:
        eng.release()


def test_fp8_storage_is_refused_for_gguf(
    request_: ReconstructionRequest, tiny_flux: TinyFluxFiles, tmp_path: Any
) -> None:
    from diffusers import FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(
        tiny_flux.flux_dir, subfolder="transformer"
    )
    gguf = save_tiny_gguf(transformer, tmp_path / "flux1-dev-Q8_0.gguf")
    req = request_.replace(
        flux=ModelRef(path=str(gguf)),
        flux_base=ModelRef(path=str(tiny_flux.flux_dir)),
        storage="fp8",
    )
    eng = Engine()
    with pytest.raises(RequestError, match="GGUF file stays quantised"):
        list(eng.run(req, None, None))
    eng.release()


def test_the_prompt_is_encoded_once_per_prompt_text(
    request_: ReconstructionRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import FluxImg2ImgPipeline

    calls: list[str] = []
    original = FluxImg2ImgPipeline.encode_prompt

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("prompt") is not None:  # the pipeline call passes embeddings only
            calls.append(kwargs["prompt"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FluxImg2ImgPipeline, "encode_prompt", counting)
    eng = Engine()
    try:
        req = request_.replace(stage2=Stage2Params(enabled=False))
        first = list(eng.run(req, None, None))
        again = list(eng.run(req, None, None))
        assert calls == [req.prompt]
        assert np.array_equal(np.asarray(first[0].image), np.asarray(again[0].image))
        list(eng.run(req.replace(prompt="a goalkeeper diving"), None, None))
        assert calls == [req.prompt, "a goalkeeper diving"]
    finally:
        eng.release()


def test_memory_plan_for_the_cards_operators_have() -> None:
    # 24 GB: bf16 does not fit with the ControlNet, fp8 storage does, without offload
    p24 = plan(24, "bf16")
    assert (p24.storage, p24.memory_mode) == ("fp8", "none") and p24.peak_gib <= 24
    # 48 and 80 GB: the file's own precision, everything resident
    for card in (48, 80):
        p = plan(card, "bf16")
        assert (p.storage, p.memory_mode) == ("native", "none") and p.peak_gib <= card
    # 16 GB: a 4-bit GGUF runs resident; fp8 and Q8_0 need offload but never sequential
    assert plan(16, "Q4_K").memory_mode == "none"
    assert plan(16, "bf16").memory_mode in ("model", "group")
    assert plan(16, "Q8_0").memory_mode in ("model", "group")
    assert plan(4, "bf16").memory_mode == "sequential"
    # an explicit storage is honoured; GGUF is never recast
    assert plan(80, "bf16", storage="fp8").storage == "fp8"
    assert plan(24, "Q8_0").storage == "native"
    lines = plan_lines("bf16")
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "16 GB",
        "24 GB",
        "48 GB",
        "80 GB",
    ]
    assert all("predicted peak" in line for line in lines[1:])


def test_nf4_is_never_planned_without_cuda_and_asking_for_it_is_one_clear_line(
    request_: ReconstructionRequest,
) -> None:
    from fbupscale_gui.core.request import Preprocess

    for card in (4, 8, 16, 24, 48, 80):
        for size in (512, 1024, 2048):
            assert plan(card, "bf16", size=size).storage != "nf4"
    # on a CUDA card with bitsandbytes, 16 GB runs NF4 resident, with its predicted peak
    p16 = plan(16, "bf16", nf4=True)
    assert (p16.storage, p16.memory_mode) == ("nf4", "none") and p16.peak_gib <= 16
    assert plan(24, "bf16", nf4=True).storage == "fp8"  # NF4 only where fp8 does not fit
    row = plan_lines("bf16")[1].strip()
    assert (
        row.startswith("16 GB: transformer nf4") and f"predicted peak {p16.peak_gib:.1f} GiB" in row
    )
    # this machine has no CUDA: asking for NF4 is refused before anything loads
    eng = Engine()
    try:
        with pytest.raises(RequestError) as info:
            list(
                eng.run(request_.replace(storage="nf4", preprocess=Preprocess(size=64)), None, None)
            )
        text = str(info.value)
        assert (
            "\n" not in text and "nf4" in text and "CUDA" in text and "this run is on cpu" in text
        )
        assert eng.flux.pipelines is None
    finally:
        eng.release()


def test_vae_tiling_is_a_recorded_choice_that_reproduces(request_: ReconstructionRequest) -> None:
    from fbupscale_gui.core.request import Preprocess

    # the plan tiles where decoding whole would not fit, never on a large card at 1024 px
    assert plan(8, "bf16", size=4096).vae_tiling and not plan(48, "bf16").vae_tiling
    assert "VAE tiled" in plan(8, "bf16", size=4096).describe()
    # 128 px: the tiny VAE's 64 px tiles really split the image
    req = request_.replace(
        preprocess=Preprocess(size=128), stage2=Stage2Params(enabled=False), variants=1
    )
    eng = Engine()
    try:
        auto = list(eng.run(req, None, None))
        on = list(eng.run(req.replace(vae_tiling="on"), None, None))
        again = list(eng.run(on[0].request.with_only(on[0].key), None, None))
    finally:
        eng.release()
    assert auto[0].request.vae_tiling == "off"  # no memory plan on the CPU: whole
    assert on[0].request.vae_tiling == "on" and "vae-tiled" in on[0].runtime
    a, b = (np.asarray(c[0].image, dtype=np.int16) for c in (auto, on))
    assert np.abs(a - b).mean() > 0  # tiles change pixels...
    assert np.array_equal(np.asarray(again[0].image), np.asarray(on[0].image))  # ...reproducibly
