"""FLUX from the files operators have: BFL/ComfyUI single files, fp8, GGUF, ComfyUI trees."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fbupscale_gui.core.errors import ModelNotFoundError
from fbupscale_gui.core.request import (
    CONTROLNET_REPO_ID,
    FLUX_REPO_ID,
    ModelRef,
    ReconstructionRequest,
    SourceRef,
)
from fbupscale_gui.engine import Engine
from fbupscale_gui.engine.testing import (
    TinyFluxFiles,
    save_tiny_gguf,
    save_tiny_transformer_file,
    tiny_cutout,
    tiny_request,
)
from fbupscale_gui.storage.cutouts import make_source
from fbupscale_gui.storage.provenance import model_hashes
from fbupscale_gui.storage.weight_files import describe_file, discover_models_root

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def transformer(tiny_flux: TinyFluxFiles) -> Any:
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel.from_pretrained(tiny_flux.flux_dir, subfolder="transformer")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, transformer: Any) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flux_files")
    return {
        "bfl": save_tiny_transformer_file(transformer, root / "flux1-dev.safetensors"),
        "comfy": save_tiny_transformer_file(transformer, root / "flux1-dev.sft", layout="comfy"),
        "fp8_scaled": save_tiny_transformer_file(
            transformer,
            root / "flux1-dev-fp8-scaled.safetensors",
            layout="comfy",
            quant="fp8_scaled",
        ),
        "gguf": save_tiny_gguf(transformer, root / "flux1-dev-Q8_0.gguf"),
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SourceRef:
    path = tmp_path_factory.mktemp("cutout") / "player.png"
    tiny_cutout(40, 64, seed=3).save(path)
    return make_source(path)


@pytest.fixture(scope="module")
def request_(tiny_flux: TinyFluxFiles, source: SourceRef) -> ReconstructionRequest:
    return tiny_request(tiny_flux, source.path, variants=1, seed=11)


@pytest.fixture()
def engine() -> Iterator[Engine]:
    eng = Engine()
    yield eng
    eng.release()


def render(engine: Engine, req: ReconstructionRequest) -> list[Any]:
    return list(engine.run(req, None, None))


def from_file(req: ReconstructionRequest, path: Path, base: Path) -> ReconstructionRequest:
    return req.replace(
        flux=ModelRef(path=str(path), repo_id=FLUX_REPO_ID), flux_base=ModelRef(path=str(base))
    )


@pytest.fixture(scope="module")
def folder_run(request_: ReconstructionRequest) -> list[Any]:
    eng = Engine()
    out = list(eng.run(request_, None, None))
    eng.release()
    return out


@pytest.mark.parametrize("layout", ["bfl", "comfy"])
def test_single_file_renders_pixel_identical_to_the_folder(
    engine: Engine,
    request_: ReconstructionRequest,
    files: dict[str, Path],
    tiny_flux: TinyFluxFiles,
    folder_run: list[Any],
    layout: str,
) -> None:
    cands = render(engine, from_file(request_, files[layout], tiny_flux.flux_dir))
    assert [c.key for c in cands] == [c.key for c in folder_run]
    for a, b in zip(cands, folder_run, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image)), a.key.label
    flux = cands[0].request.flux
    assert flux.format == f"safetensors-{layout}" and flux.quant == "fp32"
    assert len(flux.sha256) == 64
    assert cands[0].request.flux_base is not None and len(cands[0].request.flux_base.sha256) == 64
    hashes = model_hashes(cands[0].request)
    assert hashes["flux"]["format"] == f"safetensors-{layout}" and "flux_base" in hashes


def test_fp8_scaled_applies_its_scale_keys(
    transformer: Any, files: dict[str, Path], tiny_flux: TinyFluxFiles
) -> None:
    import torch
    from safetensors.torch import load_file

    from fbupscale_gui.engine.flux.files import load_transformer_file

    desc = describe_file(files["fp8_scaled"])
    assert (desc.layout, desc.quant) == ("comfy", "fp8_scaled")
    model, _ = load_transformer_file(
        files["fp8_scaled"], torch.float32, config_dir=tiny_flux.flux_dir
    )
    want = transformer.state_dict()["transformer_blocks.0.attn.to_q.weight"]
    got = model.state_dict()["transformer_blocks.0.attn.to_q.weight"]
    # fp8 e4m3 keeps 3 mantissa bits: within 1/16 of each weight, far from the raw fp8 values
    assert torch.allclose(got, want, rtol=0.07, atol=want.abs().max().item() / 64)
    raw = load_file(str(files["fp8_scaled"]))
    unscaled = raw["model.diffusion_model.double_blocks.0.img_attn.qkv.weight"].float()
    assert unscaled.abs().max() > 50 * want.abs().max()  # what ignoring the scales would load


def test_gguf_q8_0_runs_and_is_deterministic(
    engine: Engine,
    request_: ReconstructionRequest,
    files: dict[str, Path],
    tiny_flux: TinyFluxFiles,
    folder_run: list[Any],
) -> None:
    req = from_file(request_, files["gguf"], tiny_flux.flux_dir)
    first = render(engine, req)
    pair = engine.flux.pipelines
    assert pair is not None
    assert type(pair.transformer.transformer_blocks[0].attn.to_q).__name__ == "GGUFLinear"
    engine.release()
    again = render(engine, req)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    flux = first[0].request.flux
    assert (flux.format, flux.quant) == ("gguf-bfl", "Q8_0")
    # quantised, so close to the full-precision result but not equal to it
    a, b = (np.asarray(c.image, dtype=np.int16) for c in (first[-1], folder_run[-1]))
    assert 0 < np.abs(a - b).mean() < 40


def test_single_file_without_base_names_every_missing_part(
    engine: Engine, request_: ReconstructionRequest, files: dict[str, Path]
) -> None:
    req = request_.replace(flux=ModelRef(path=str(files["bfl"]), repo_id=FLUX_REPO_ID))
    with pytest.raises(ModelNotFoundError) as info:
        render(engine, req)
    text = str(info.value)
    for part in ("CLIP-L tokenizer", "T5 tokenizer (spiece.model)", "T5-XXL text encoder", "VAE"):
        assert part in text
    assert "hf download black-forest-labs/FLUX.1-dev" in text and "--flux-base" in text


def test_base_without_t5_tokenizer_names_exactly_that(
    engine: Engine,
    request_: ReconstructionRequest,
    files: dict[str, Path],
    tiny_flux: TinyFluxFiles,
    tmp_path: Path,
) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_flux.flux_dir, base, ignore=shutil.ignore_patterns("transformer"))
    shutil.rmtree(base / "tokenizer_2")
    with pytest.raises(ModelNotFoundError) as info:
        render(engine, from_file(request_, files["bfl"], base))
    text = str(info.value)
    assert f"T5 tokenizer (spiece.model) in {base / 'tokenizer_2'}/" in text
    assert "CLIP-L tokenizer" not in text and "VAE" not in text.split("missing:")[1].split(".")[0]


def test_a_comfyui_tree_with_extra_model_paths_is_discovered(tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    for sub in ("diffusion_models", "vae", "text_encoders", "loras"):
        (comfy / "models" / sub).mkdir(parents=True)
    (comfy / "models" / "diffusion_models" / "flux1-dev-fp8.safetensors").write_bytes(b"x")
    (comfy / "models" / "diffusion_models" / "sd15.safetensors").write_bytes(b"x")
    (comfy / "models" / "vae" / "ae.safetensors").write_bytes(b"x")
    (comfy / "models" / "text_encoders" / "clip_l.safetensors").write_bytes(b"x")
    (comfy / "models" / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors").write_bytes(b"x")
    forge = tmp_path / "forge" / "models"
    (forge / "unet").mkdir(parents=True)
    (forge / "unet" / "flux1-dev-Q8_0.gguf").write_bytes(b"x")
    (forge / "Lora").mkdir()
    (forge / "Lora" / "football.safetensors").write_bytes(b"x")
    (forge / "ControlNet").mkdir()
    (forge / "ControlNet" / "flux-upscaler.safetensors").write_bytes(b"x")
    (comfy / "extra_model_paths.yaml").write_text(
        "forge:\n"
        f"  base_path: {tmp_path / 'forge'}\n"
        "  unet: models/unet\n"
        "  loras: |\n    models/Lora\n    models/missing\n"
        "  controlnet: models/ControlNet\n"
        "  unknown_kind: whatever\n",
        encoding="utf-8",
    )
    found = discover_models_root(comfy)
    assert [p.name for p in found.transformers] == [
        "flux1-dev-fp8.safetensors",
        "flux1-dev-Q8_0.gguf",
    ]
    assert [p.name for p in found.vaes] == ["ae.safetensors"]
    assert [p.name for p in found.clip_l] == ["clip_l.safetensors"]
    assert [p.name for p in found.t5] == ["t5xxl_fp8_e4m3fn.safetensors"]
    assert [p.name for p in found.loras] == ["football.safetensors"]
    assert [p.name for p in found.controlnets] == ["flux-upscaler.safetensors"]
    assert any("extra_model_paths.yaml" in n for n in found.notes)


def test_schema_3_requests_read_as_exact_folder_requests() -> None:
    data = json.loads(ReconstructionRequest().to_json())
    data["version"] = 3
    for key in ("speed", "flux_base", "storage"):
        del data[key]
    for ref in ("flux", "controlnet"):
        del data[ref]["format"], data[ref]["quant"]
    old = ReconstructionRequest.from_dict(data)
    assert old.speed == "exact" and old.flux_base is None and old.version == 5
    assert old.storage == "native"


def test_doctor_reports_a_models_root_and_the_plan_for_its_file(
    files: dict[str, Path], tmp_path: Path
) -> None:
    from fbupscale_gui.engine.doctor import report

    unet = tmp_path / "models" / "unet"
    unet.mkdir(parents=True)
    shutil.copy(files["gguf"], unet / "flux1-dev-Q8_0.gguf")
    text = report(flux=ModelRef(path=str(unet / "flux1-dev-Q8_0.gguf")), models_root=tmp_path)
    assert f"transformer: {unet / 'flux1-dev-Q8_0.gguf'}" in text
    assert "Memory plan (Q8_0 transformer" in text
    assert "VAE: none found" in text


def test_controlnet_from_one_file_renders_like_its_folder(
    engine: Engine,
    request_: ReconstructionRequest,
    tiny_flux: TinyFluxFiles,
    folder_run: list[Any],
    tmp_path: Path,
) -> None:
    import shutil as sh

    file = tmp_path / "controlnet" / "flux-upscaler.safetensors"
    file.parent.mkdir()
    sh.copy(tiny_flux.controlnet_dir / "diffusion_pytorch_model.safetensors", file)
    req = request_.replace(controlnet=ModelRef(path=str(file), repo_id=CONTROLNET_REPO_ID))
    cands = render(engine, req)
    for a, b in zip(cands, folder_run, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image)), a.key.label
    assert cands[-1].request.controlnet.format == "safetensors-controlnet"
