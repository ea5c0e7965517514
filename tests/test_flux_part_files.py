"""FLUX's VAE, text encoders and tokenizers from ComfyUI single files, no diffusers folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fbupscale_gui.core.errors import ModelFileError, ModelNotFoundError
from fbupscale_gui.core.request import (
    FLUX_REPO_ID,
    FluxParts,
    ModelRef,
    ReconstructionRequest,
)
from fbupscale_gui.engine import Engine
from fbupscale_gui.engine.flux import files as flux_files
from fbupscale_gui.engine.flux import part_files as flux_part_files
from fbupscale_gui.engine.testing import TinyFluxFiles, save_tiny_transformer_file, tiny_request
from fbupscale_gui.engine.testing_parts import config_only_copy, save_tiny_comfy_parts
from fbupscale_gui.storage.provenance import model_hashes
from fbupscale_gui.storage.weight_files import discover_models_root

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def comfy(tiny_flux: TinyFluxFiles, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ComfyUI install holding the tiny FLUX as single files (no diffusers folder)."""
    from diffusers import FluxTransformer2DModel

    root = tmp_path_factory.mktemp("ComfyUI")
    save_tiny_comfy_parts(tiny_flux.flux_dir, root)
    transformer = FluxTransformer2DModel.from_pretrained(
        tiny_flux.flux_dir, subfolder="transformer"
    )
    save_tiny_transformer_file(
        transformer, root / "models" / "diffusion_models" / "flux1-dev.safetensors"
    )
    return root


@pytest.fixture()
def tiny_configs(tiny_flux: TinyFluxFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app ships FLUX.1-dev's configs; for the tiny model it ships the tiny ones."""
    configs = config_only_copy(tiny_flux.flux_dir, tmp_path / "configs")
    for module in (flux_files, flux_part_files):
        monkeypatch.setattr(module, "shipped_flux_config_dir", lambda: configs)
    return configs


@pytest.fixture()
def engine() -> Iterator[Engine]:
    eng = Engine()
    yield eng
    eng.release()


def parts_request(tiny_flux: TinyFluxFiles, comfy: Path, tmp_path: Path) -> ReconstructionRequest:
    found = discover_models_root(comfy)
    req = tiny_request(tiny_flux, tmp_path / "player.png", variants=1, seed=11)
    return req.replace(
        flux=ModelRef(path=str(found.transformers[0]), repo_id=FLUX_REPO_ID),
        parts=FluxParts(
            vae=ModelRef(path=str(found.vaes[0])),
            text_encoder=ModelRef(path=str(found.clip_l[0])),
            text_encoder_2=ModelRef(path=str(found.t5[0])),
            tokenizer=ModelRef(path=str(found.tokenizers["tokenizer"])),
            tokenizer_2=ModelRef(path=str(found.tokenizers["tokenizer_2"])),
        ),
    )


@pytest.mark.usefixtures("tiny_configs")
def test_comfyui_single_files_render_pixel_identical_to_the_folder(
    engine: Engine, tiny_flux: TinyFluxFiles, comfy: Path, tmp_path: Path
) -> None:
    req = parts_request(tiny_flux, comfy, tmp_path)
    assert req.flux_base is None
    files_run = list(engine.run(req, None, None))
    engine.release()
    folder = ModelRef(path=str(tiny_flux.flux_dir), repo_id=FLUX_REPO_ID)
    folder_run = list(engine.run(req.replace(flux=folder, parts=FluxParts()), None, None))
    assert [c.key for c in files_run] == [c.key for c in folder_run]
    for a, b in zip(files_run, folder_run, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image)), a.key.label
    parts = files_run[0].request.parts
    assert parts.vae is not None and parts.vae.format == "safetensors-vae"
    assert parts.text_encoder is not None and parts.text_encoder.format == "safetensors-clip_l"
    assert parts.text_encoder_2 is not None and parts.text_encoder_2.quant == "fp32"
    assert all(len(ref.sha256) == 64 for ref in parts.given().values())
    assert {"vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"} <= set(
        model_hashes(files_run[0].request)
    )
    # the recorded request reads back and names the same files
    again = ReconstructionRequest.from_json(files_run[0].request.to_json())
    assert again.parts == parts


def test_fp8_t5_is_upcast_on_load_and_fp8_scaled_applies_its_scales(
    tiny_flux: TinyFluxFiles, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import T5EncoderModel

    configs = config_only_copy(tiny_flux.flux_dir, tmp_path / "configs")
    ref = T5EncoderModel.from_pretrained(tiny_flux.flux_dir, subfolder="text_encoder_2")
    key = "encoder.block.0.layer.0.SelfAttention.q.weight"
    want = ref.state_dict()[key]
    paths = save_tiny_comfy_parts(tiny_flux.flux_dir, tmp_path / "fp8", t5_quant="fp8")
    assert paths["text_encoder_2"].name == "t5xxl_fp8_e4m3fn.safetensors"
    model = flux_part_files.load_t5_file(paths["text_encoder_2"], torch.float32, configs)
    got = model.state_dict()[key]
    assert got.dtype == torch.float32
    assert torch.equal(got, want.to(torch.float8_e4m3fn).float())  # fp8 values, upcast
    assert not torch.equal(got, want)
    scaled = save_tiny_comfy_parts(tiny_flux.flux_dir, tmp_path / "scaled", t5_quant="fp8_scaled")
    model = flux_part_files.load_t5_file(scaled["text_encoder_2"], torch.float32, configs)
    got = model.state_dict()[key]
    # e4m3 keeps 3 mantissa bits: within 1/16 of each weight, far from the raw fp8 values
    assert torch.allclose(got, want, rtol=0.07, atol=want.abs().max().item() / 64)
    raw = load_file(str(scaled["text_encoder_2"]))[key].float()
    assert raw.abs().max() > 50 * want.abs().max()  # what ignoring the scales would load


def test_a_clip_file_that_does_not_fit_the_config_is_refused(
    tiny_flux: TinyFluxFiles, comfy: Path
) -> None:
    """The shipped FLUX.1-dev config (12 heads) cannot split the tiny CLIP's width 32."""
    import torch

    clip = comfy / "models" / "text_encoders" / "clip_l.safetensors"
    with pytest.raises(ModelFileError, match="does not split into the config's 12 heads"):
        flux_part_files.load_clip_file(clip, torch.float32)


@pytest.mark.usefixtures("tiny_configs")
def test_missing_tokenizers_are_named_with_where_to_get_them(
    engine: Engine, tiny_flux: TinyFluxFiles, comfy: Path, tmp_path: Path
) -> None:
    req = parts_request(tiny_flux, comfy, tmp_path)
    req = req.replace(parts=FluxParts(**{**req.parts.given(), "tokenizer_2": None}))
    with pytest.raises(ModelNotFoundError) as info:
        list(engine.run(req, None, None))
    text = str(info.value)
    assert "T5 tokenizer (spiece.model) in <base>/tokenizer_2/" in text
    assert "comfy/text_encoders/t5_tokenizer/" in text and "--tokenizers" in text
    assert "CLIP-L tokenizer" not in text and "VAE" not in text.split("Where")[0]


def test_a_comfyui_install_supplies_its_tokenizers(comfy: Path, tmp_path: Path) -> None:
    found = discover_models_root(comfy / "models")
    assert found.tokenizers == {
        "tokenizer": comfy / "comfy" / "sd1_tokenizer",
        "tokenizer_2": comfy / "comfy" / "text_encoders" / "t5_tokenizer",
    }
    bare = tmp_path / "bare"
    shutil.copytree(comfy / "models", bare / "models")
    assert discover_models_root(bare).tokenizers == {}


def test_schema_4_requests_read_with_vae_tiling_off() -> None:
    import json

    data = json.loads(ReconstructionRequest().to_json())
    data["version"] = 4
    del data["parts"], data["vae_tiling"]
    old = ReconstructionRequest.from_dict(data)
    assert old.version == 5 and old.vae_tiling == "off" and old.parts == FluxParts()


@pytest.mark.usefixtures("tiny_configs")
def test_cli_runs_a_whole_comfyui_install_and_reproduces(
    capsys: pytest.CaptureFixture[str],
    tiny_flux: TinyFluxFiles,
    comfy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No diffusers folder at all: transformer, VAE, CLIP-L, T5 and tokenizers all come from
    the ComfyUI install, and ``reproduce`` renders the exported candidate pixel-identically."""
    from fbupscale_gui.cli import entry as cli
    from fbupscale_gui.core.images import image_sha256
    from fbupscale_gui.engine.testing import tiny_cutout
    from fbupscale_gui.storage.metadata import read_metadata

    monkeypatch.setenv("FBUPSCALE_CPU_THREADS", "1")
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(tmp_path / "cache"))
    cutout = tmp_path / "in" / "player.png"
    cutout.parent.mkdir()
    tiny_cutout(40, 64, seed=3).save(cutout)
    out = tmp_path / "out"
    code = cli.main(
        [
            "upscale", str(cutout), "-o", str(out), "--engine", "flux",
            "--models-root", str(comfy), "--controlnet", str(tiny_flux.controlnet_dir),
            "--size", "64", "--steps1", "4", "--steps2", "2", "--variants", "1",
        ]
    )  # fmt: skip
    _out, err = capsys.readouterr()
    assert code == 0, err
    chosen = sorted(out.glob("player_v0_s2_*.png"))[0]
    record = read_metadata(chosen)
    parts = record.request.parts
    assert record.request.flux_base is None and record.request.vae_tiling == "off"
    assert parts.vae is not None and parts.vae.path == str(comfy / "models/vae/ae.safetensors")
    assert parts.tokenizer_2 is not None and parts.tokenizer_2.path.endswith("t5_tokenizer")
    code = cli.main(["reproduce", str(chosen), "-o", str(tmp_path / "again.png")])
    _out, err = capsys.readouterr()
    assert code == 0, err
    with Image.open(tmp_path / "again.png") as a, Image.open(chosen) as b:
        assert image_sha256(a.convert("RGB")) == image_sha256(b.convert("RGB"))
    # doctor names what the install holds, tokenizers included
    assert cli.main(["doctor", "--models-root", str(comfy)]) == 0
    text, _err = capsys.readouterr()
    assert f"T5 tokenizer: {comfy / 'comfy' / 'text_encoders' / 't5_tokenizer'}" in text


def test_cli_parts_for_a_folder_are_a_usage_error(
    capsys: pytest.CaptureFixture[str], tiny_flux: TinyFluxFiles, comfy: Path, tmp_path: Path
) -> None:
    from fbupscale_gui.cli import entry as cli
    from fbupscale_gui.engine.testing import tiny_cutout

    cutout = tmp_path / "player.png"
    tiny_cutout(40, 64, seed=3).save(cutout)
    with pytest.raises(SystemExit) as info:
        cli.main(
            [
                "upscale", str(cutout), "-o", str(tmp_path / "o"),
                "--flux", str(tiny_flux.flux_dir),
                "--vae", str(comfy / "models" / "vae" / "ae.safetensors"),
            ]
        )  # fmt: skip
    code = info.value.code
    _out, err = capsys.readouterr()
    assert code == 2 and "apply to a single-file --flux" in err


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_part_files_load_in_half_precision_as_their_folder_does(
    tiny_flux: TinyFluxFiles, comfy: Path, tmp_path: Path, dtype_name: str
) -> None:
    """Same tensors and dtypes as ``from_pretrained(torch_dtype=...)`` (T5's ``wo`` stays
    fp32 in float16, as transformers keeps it)."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, T5EncoderModel

    dtype = getattr(torch, dtype_name)
    configs = config_only_copy(tiny_flux.flux_dir, tmp_path / "configs")
    files = discover_models_root(comfy)
    for component, file, loader, cls in (
        ("vae", files.vaes[0], flux_part_files.load_vae_file, AutoencoderKL),
        ("text_encoder", files.clip_l[0], flux_part_files.load_clip_file, CLIPTextModel),
        ("text_encoder_2", files.t5[0], flux_part_files.load_t5_file, T5EncoderModel),
    ):
        got = loader(file, dtype, configs).state_dict()
        want = cls.from_pretrained(  # type: ignore[attr-defined]
            tiny_flux.flux_dir, subfolder=component, torch_dtype=dtype
        ).state_dict()
        assert set(got) == set(want), component
        for name, tensor in got.items():
            assert tensor.dtype == want[name].dtype and torch.equal(tensor, want[name]), name


def test_the_window_takes_the_parts_from_a_comfyui_install_in_the_base_field(
    tiny_flux: TinyFluxFiles, comfy: Path, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from fbupscale_gui.core.settings import Settings
    from fbupscale_gui.state.session import base_request

    found = discover_models_root(comfy)
    cutout = SimpleNamespace(prompt="", scene=None, source=None)
    settings = Settings(flux_dir=str(found.transformers[0]), flux_base_dir=str(comfy))
    request = base_request(cutout, "flux", settings)  # type: ignore[arg-type]
    assert request.flux_base is None
    assert request.parts == parts_request(tiny_flux, comfy, tmp_path).parts
    # a diffusers base folder stays the base, parts empty
    folder = Settings(flux_dir=str(found.transformers[0]), flux_base_dir=str(tiny_flux.flux_dir))
    request = base_request(cutout, "flux", folder)  # type: ignore[arg-type]
    assert request.flux_base is not None and request.parts == FluxParts()


def test_a_missing_config_is_named_exactly(comfy: Path, tmp_path: Path) -> None:
    import torch

    empty = tmp_path / "configs"
    empty.mkdir()
    vae = comfy / "models" / "vae" / "ae.safetensors"
    with pytest.raises(ModelFileError) as info:
        flux_part_files.load_vae_file(vae, torch.float32, empty)
    assert str(info.value) == f"{empty / 'vae'}/config.json: the vae config is missing"


def test_doctor_checks_the_part_files_given_on_their_own(
    capsys: pytest.CaptureFixture[str], comfy: Path, tmp_path: Path
) -> None:
    from fbupscale_gui.cli import entry as cli

    vae = comfy / "models" / "vae" / "ae.safetensors"
    assert cli.main(["doctor", "--vae", str(vae), "--tokenizers", str(tmp_path)]) == 0
    text, _err = capsys.readouterr()
    assert f"VAE: {vae} (path)" in text
    assert (
        f"T5 tokenizer: NOT FOUND — T5 tokenizer not found offline. Searched: {tmp_path}." in text
    )
    assert "comfy/text_encoders/t5_tokenizer/" in text.split("T5 tokenizer: NOT FOUND")[1]
