"""User SR models: safe loading, detection, refusal of unusable files, SPAN fusing, the engine,
the models library and ``fbupscale models``.

Models are built with random weights from spandrel's own architecture classes, saved the way
users receive them (.safetensors, .pth), and loaded back through the product's code paths.
"""

from __future__ import annotations

import builtins
import json
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fbupscale_gui.cli import models as cli_models
from fbupscale_gui.core.errors import Cancelled, ModelNotFoundError, RequestError
from fbupscale_gui.core.images import crop_to_content, standardise
from fbupscale_gui.core.job import Progress
from fbupscale_gui.core.request import Preprocess, ReconstructionRequest
from fbupscale_gui.engine.sr import network as sr_network
from fbupscale_gui.engine.sr.detect import inspect_model
from fbupscale_gui.engine.sr.engine import SrModelEngine, model_spec
from fbupscale_gui.engine.sr.network import load_model, resolve_precision
from fbupscale_gui.engine.sr.safe_weights import check_safetensors_header, load_state_dict
from fbupscale_gui.engine.sr.span_fuse import fuse_span
from fbupscale_gui.engine.sr.spandrel_import import import_spandrel
from fbupscale_gui.storage.weights_library import (
    INDEX_NAME,
    ModelFileError,
    ModelInfo,
    ModelLibrary,
    file_sha256,
)

REPO = Path(__file__).resolve().parents[1]
spandrel = import_spandrel()


def _span(channels: int = 16, scale: int = 2) -> torch.nn.Module:
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(1)
    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=channels, upscale=scale).eval()


def _compact(scale: int = 2, channels: int = 3) -> torch.nn.Module:
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(2)
    return Compact(
        num_in_ch=channels, num_out_ch=channels, num_feat=16, num_conv=2, upscale=scale
    ).eval()


#: Small instances of the architectures fbupscale documents, with the name spandrel reports.
ARCHS: dict[str, tuple[str, Callable[[], torch.nn.Module]]] = {
    "SPAN": ("SPAN", _span),
    "Compact": ("RealESRGAN Compact", _compact),
}


def _more_archs() -> dict[str, tuple[str, Callable[[], torch.nn.Module]]]:
    from spandrel.architectures.DAT import DAT
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.OmniSR import OmniSR
    from spandrel.architectures.RealCUGAN import UpCunet2x
    from spandrel.architectures.SwinIR import SwinIR

    return {
        "ESRGAN": ("ESRGAN", lambda: ESRGAN(num_filters=16, num_blocks=2, scale=2)),
        "SwinIR": (
            "SwinIR",
            lambda: SwinIR(
                embed_dim=12,
                depths=[2],
                num_heads=[2],
                window_size=8,
                upscale=2,
                upsampler="pixelshuffledirect",
                img_size=32,
            ),
        ),
        "HAT": (
            "HAT",
            lambda: HAT(
                embed_dim=12,
                depths=[2],
                num_heads=[2],
                window_size=8,
                upscale=2,
                img_size=32,
                num_feat=16,
                squeeze_factor=3,
            ),
        ),
        "DAT": (
            "DAT",
            lambda: DAT(
                embed_dim=16, depth=[2], num_heads=[2], split_size=[4, 8], upscale=2, img_size=32
            ),
        ),
        "OmniSR": ("OmniSR", lambda: OmniSR(num_feat=16, up_scale=2, window_size=8)),
        "RealCUGAN": ("RealCUGAN", lambda: UpCunet2x()),
    }


ARCHS.update(_more_archs())


def save(net: torch.nn.Module | dict[str, torch.Tensor], path: Path) -> Path:
    state = net if isinstance(net, dict) else net.state_dict()
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    return path


def image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], -1)
    arr = arr + rng.normal(0, 20, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


# -- spandrel without torchvision ----------------------------------------------------------


def test_spandrel_imports_without_torchvision() -> None:
    import importlib.util

    assert "torchvision" not in sys.modules
    assert importlib.util.find_spec("torchvision") is None  # the placeholder hook is gone
    from spandrel.architectures.LaMa.__arch import LaMa as lama_module

    with pytest.raises(ModelFileError, match="needs torchvision"):
        lama_module.rotate(torch.zeros(1, 3, 4, 4), 0.0)
    assert "LaMa" in spandrel.MAIN_REGISTRY  # the registry is complete


@pytest.mark.slow
def test_engine_modules_import_light() -> None:
    code = (
        "import sys\n"
        "import fbupscale_gui.engine.sr.engine, fbupscale_gui.engine.fast.tiling\n"
        "import fbupscale_gui.engine.sr.safe_weights, fbupscale_gui.engine.sr.detect\n"
        "import fbupscale_gui.engine.sr.convert_ncnn, fbupscale_gui.storage.weights_library\n"
        "import fbupscale_gui.cli.models\n"
        "heavy = [m for m in ('torch', 'spandrel', 'torchvision') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# -- loading and detection -----------------------------------------------------------------


@pytest.mark.slow  # every architecture built and run
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_architectures_detect_and_run(arch: str, tmp_path: Path) -> None:
    name, make = ARCHS[arch]
    path = save(make(), tmp_path / f"{arch}.safetensors")
    info = inspect_model(path)
    assert (info.arch, info.scale, info.input_channels, info.output_channels) == (name, 2, 3, 3)
    model = load_model(path, precision="fp32")
    out = model(torch.rand(1, 3, 20, 24))
    assert out.shape == (1, 3, 40, 48)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("arch", [pytest.param("SPAN", marks=pytest.mark.slow), "Compact"])
def test_round_trip(arch: str, suffix: str, tmp_path: Path) -> None:
    name, make = ARCHS[arch]
    net = make()
    path = save(net, tmp_path / f"m{suffix}")
    info = inspect_model(path)
    assert info.arch == name and info.scale == 2
    assert info.params == sum(p.numel() for p in net.parameters())
    assert info.size_bytes == path.stat().st_size
    assert info.precisions[0] == "fp32" and set(info.precisions) <= {"fp32", "fp16", "bf16"}
    assert info.purpose == "SR"
    assert name in info.summary and "2x" in info.summary

    x = torch.rand(1, 3, 18, 22)
    expected = spandrel.MAIN_REGISTRY.load(dict(net.state_dict()))(x)
    exact = load_model(path, precision="fp32", channels_last=False)
    assert torch.equal(exact(x), expected)
    model = load_model(path, precision="fp32")  # default layout (channels_last for SPAN)
    assert torch.allclose(model(x), expected, atol=1e-5, rtol=0)
    upscaled = model.upscale(image(30, 20))
    assert upscaled.size == (60, 40) and upscaled.mode == "RGB"


class _Payload:
    """Unpickling this creates a marker file: the payload a hostile .pth would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (str(self.marker), "w"))


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle-2", "raw-pickle-5"])
def test_pickle_payload_is_refused_and_never_runs(container: str, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pth"
    state = {"conv.weight": torch.zeros(4, 3, 3, 3), "hook": _Payload(marker)}
    if container == "torch-zip":
        torch.save(state, str(path))
    else:
        path.write_bytes(pickle.dumps(state, protocol=int(container[-1])))
    assert not marker.exists()
    for attempt in (load_state_dict, inspect_model, load_model):
        with pytest.raises(ModelFileError, match="refused") as err:
            attempt(path)
        assert "evil.pth" in str(err.value)
    assert not marker.exists()


def test_plain_pth_with_nested_params_loads(tmp_path: Path) -> None:
    net = _compact()
    path = tmp_path / "nested.pth"
    torch.save({"params_ema": net.state_dict(), "iter": 5}, str(path))
    assert inspect_model(path).arch == "RealESRGAN Compact"


def test_safetensors_huge_header_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}" + b"\0" * 64)
    with pytest.raises(ModelFileError, match="header length"):
        check_safetensors_header(path)
    with pytest.raises(ModelFileError, match="header length"):
        inspect_model(path)


def test_safetensors_tensor_outside_file_refused(tmp_path: Path) -> None:
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [1024, 1024], "data_offsets": [0, 4 * 1024 * 1024]}}
    ).encode()
    path = tmp_path / "lying.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(ModelFileError, match="does not fit"):
        inspect_model(path)


@pytest.mark.parametrize(
    ("payload", "suffix", "match"),
    [
        (b"", ".safetensors", "too short"),
        (b"not a model at all, just text", ".safetensors", "header length"),
        (b"PK\x03\x04 truncated zip", ".pth", "not a readable PyTorch"),
        (b"whatever", ".onnx", "unsupported model file type"),
    ],
)
def test_files_that_are_not_models_refused(
    payload: bytes, suffix: str, match: str, tmp_path: Path
) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(payload)
    with pytest.raises(ModelFileError, match=match):
        inspect_model(path)


def test_unknown_architecture_refused(tmp_path: Path) -> None:
    path = save({"some.weight": torch.zeros(3, 3)}, tmp_path / "unknown.safetensors")
    with pytest.raises(ModelFileError, match="not a model architecture"):
        inspect_model(path)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: _compact(scale=1), "scale-1 restoration model"),
        (lambda: _compact(channels=1), "only RGB"),
    ],
)
def test_models_not_for_upscaling_refused(
    make: Callable[[], torch.nn.Module], match: str, tmp_path: Path
) -> None:
    path = save(make(), tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match=match) as err:
        inspect_model(path)
    assert "RGB super-resolution model of scale 2x or more" in str(err.value)


def test_denoiser_refused(tmp_path: Path) -> None:
    from spandrel.architectures.DnCNN import DnCNN

    path = save(DnCNN(in_nc=3, out_nc=3), tmp_path / "dncnn.pth")
    with pytest.raises(ModelFileError, match="DnCNN is a scale-1 restoration model"):
        inspect_model(path)


# -- SPAN fusing and precision -------------------------------------------------------------


def test_span_fuse_once_is_bit_identical_and_fuses_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = _span(channels=24)
    reference = spandrel.MAIN_REGISTRY.load(dict(net.state_dict())).eval()
    x = torch.rand(1, 3, 20, 16)
    expected = reference(x)

    path = save(net, tmp_path / "span.safetensors")
    model = load_model(path, precision="fp32", channels_last=False)
    assert model.fused == 2 + 6 * 3  # conv_1, conv_2 and three per block
    calls = 0
    original = type(next(m for m in model.descriptor.model.modules() if hasattr(m, "eval_conv")))

    def counting(self: Any) -> None:
        nonlocal calls
        calls += 1

    monkeypatch.setattr(original, "update_params", counting)
    out = model(x)
    assert calls == 0  # nothing is re-fused per call
    assert torch.equal(out, expected)


def test_fuse_span_leaves_other_models_alone() -> None:
    assert fuse_span(_compact()) == 0


def _info(*precisions: str) -> ModelInfo:
    return ModelInfo("SPAN", "SPAN", 2, 10, 10, 3, 3, ("fp32", *precisions))


def test_cpu_bf16_only_with_native_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sr_network, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert not sr_network.cpu_bf16_supported()
    assert resolve_precision("auto", "cpu", _info("fp16", "bf16")) == "fp32"
    monkeypatch.setattr(sr_network, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert sr_network.cpu_bf16_supported()
    assert resolve_precision("auto", "cpu", _info("fp16", "bf16")) == "bf16"
    assert resolve_precision("auto", "cpu", _info("fp16")) == "fp32"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not sr_network.cpu_bf16_supported()


def test_explicit_precision_must_be_supported() -> None:
    assert resolve_precision("fp32", "cpu", _info()) == "fp32"
    with pytest.raises(RequestError, match="does not run in bf16"):
        resolve_precision("bf16", "cpu", _info("fp16"))


def test_bf16_model_runs_close_to_fp32(tmp_path: Path) -> None:
    path = save(_compact(), tmp_path / "c.safetensors")
    x = torch.rand(1, 3, 16, 16)
    ref = load_model(path, precision="fp32")(x)
    low = load_model(path, precision="bf16")
    assert low.precision == "bf16" and "bf16" in low.runtime
    assert float((low(x) - ref).abs().max()) < 0.05


# -- the engine ----------------------------------------------------------------------------


def test_engine_run_matches_fast_engine_geometry(tmp_path: Path) -> None:
    from fbupscale_gui.engine.fast.engines import FastEngine

    model = load_model(save(_compact(), tmp_path / "c.safetensors"), precision="fp32")
    cutout = image(60, 100)
    engine = SrModelEngine(library=ModelLibrary(tmp_path / "lib"))
    for crop in (True, False):
        pre = Preprocess(size=256, crop_to_content=crop)
        request = ReconstructionRequest(engine="lanczos", preprocess=pre)
        events: list[Progress] = []
        candidate = engine.run(request, cutout, events.append, model=model)
        baseline = FastEngine().run(request, cutout)
        assert candidate.image.size == baseline.image.size
        assert candidate.runtime == model.runtime
        assert events and events[-1].job_step == events[-1].job_total

    # content: the model's 2x output taken straight to the target size
    pre = Preprocess(size=256)
    up = model.upscale(cutout)
    square, placement = standardise(up, pre)
    expected = np.asarray(crop_to_content(square, placement))
    got = np.asarray(
        engine.run(
            ReconstructionRequest(engine="lanczos", preprocess=pre), cutout, model=model
        ).image
    )
    assert np.array_equal(got, expected)


def test_engine_cancels_between_tiles(tmp_path: Path) -> None:
    model = load_model(save(_compact(), tmp_path / "c.safetensors"), precision="fp32")
    polls = 0
    tiles_done: list[int] = []

    def cancel_after_three_tiles() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3  # polled once before each tile

    big = image(600, 300)  # 6 tiles of 256 px
    with pytest.raises(Cancelled):
        SrModelEngine().upscale(
            big, model, lambda p: tiles_done.append(p.step), cancel_after_three_tiles
        )
    assert tiles_done == [1, 2, 3]
    with pytest.raises(Cancelled):
        SrModelEngine().run(
            ReconstructionRequest(engine="lanczos"), big, None, lambda: True, model=model
        )


def test_engine_resolves_library_names_and_paths(tmp_path: Path) -> None:
    library = ModelLibrary(tmp_path / "lib")
    src = save(_compact(), tmp_path / "tiny-compact.safetensors")
    entry = library.add(src, inspect_model, name="tiny")
    engine = SrModelEngine(library=library)
    by_name = engine.model("tiny")
    assert by_name.sha256 == entry.sha256 and by_name.path == library.root / entry.file
    assert engine.model("tiny") is by_name  # cached
    by_path = engine.model(str(src))
    assert by_path.info.arch == "RealESRGAN Compact"
    with pytest.raises(ModelNotFoundError, match="tiny"):
        engine.model("nope")

    req = SimpleNamespace(engine="model:tiny")
    assert model_spec(req) == ("tiny", "")  # type: ignore[arg-type]
    ref = SimpleNamespace(path="tiny", repo_id="", sha256=entry.sha256)
    assert model_spec(SimpleNamespace(engine="model:x", sr_model=ref)) == ("tiny", entry.sha256)  # type: ignore[arg-type]
    with pytest.raises(RequestError, match="model:NAME_OR_PATH"):
        model_spec(ReconstructionRequest(engine="lanczos"))


# -- the library and the CLI ---------------------------------------------------------------


def test_library_add_list_remove(tmp_path: Path) -> None:
    library = ModelLibrary(tmp_path / "lib")
    assert library.entries() == []
    src = save(_span(), tmp_path / "2x SPAN (test).safetensors")
    entry = library.add(src, inspect_model, licence="CC BY-NC-SA 4.0")
    assert entry.name == "2x-SPAN-test" and entry.arch == "SPAN" and entry.scale == 2
    assert entry.sha256 == file_sha256(src) == file_sha256(library.root / entry.file)
    index = json.loads((library.root / INDEX_NAME).read_text())
    assert index["models"]["2x-SPAN-test"]["licence"] == "CC BY-NC-SA 4.0"
    assert [e.name for e in ModelLibrary(library.root).entries()] == ["2x-SPAN-test"]
    ref = library.ref("2x-SPAN-test")
    assert ref.sha256 == entry.sha256 and Path(ref.path) == (library.root / entry.file).resolve()
    assert library.ref(str(src)).sha256 == entry.sha256  # a file outside the library

    with pytest.raises(ModelFileError, match="already in the library"):
        library.add(src, inspect_model, name="again")
    with pytest.raises(ModelFileError, match="already in the library"):
        library.add(save(_compact(), tmp_path / "c.pth"), inspect_model, name="2x-SPAN-test")

    removed = library.remove("2x-SPAN-test")
    assert removed.sha256 == entry.sha256
    assert not (library.root / entry.file).exists() and library.entries() == []
    with pytest.raises(ModelNotFoundError):
        library.remove("2x-SPAN-test")


def test_library_refusal_changes_nothing(tmp_path: Path) -> None:
    library = ModelLibrary(tmp_path / "lib")
    library.add(save(_compact(), tmp_path / "ok.safetensors"), inspect_model)
    before = sorted(p.name for p in library.root.iterdir())
    index_before = (library.root / INDEX_NAME).read_bytes()
    bad = save(_compact(scale=1), tmp_path / "denoise.safetensors")
    with pytest.raises(ModelFileError, match="scale-1"):
        library.add(bad, inspect_model)
    assert sorted(p.name for p in library.root.iterdir()) == before
    assert (library.root / INDEX_NAME).read_bytes() == index_before


def test_library_folder_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBUPSCALE_MODELS_DIR", str(tmp_path / "env-models"))
    assert ModelLibrary().root == tmp_path / "env-models"


def test_corrupt_index_is_reported_not_replaced(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    (root / INDEX_NAME).write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        ModelLibrary(root).entries()
    assert (root / INDEX_NAME).read_text() == "{not json"


def test_cli_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = str(tmp_path / "lib")
    src = save(_span(), tmp_path / "span.pth")
    assert cli_models.main(["--dir", lib, "add", str(src), "--name", "span2x"]) == 0
    assert "added span2x: SPAN" in capsys.readouterr().out
    assert cli_models.main(["--dir", lib, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["models"]["span2x"]["arch"] == "SPAN"
    evil = tmp_path / "evil.pth"
    torch.save({"x": _Payload(tmp_path / "ran")}, str(evil))
    assert cli_models.main(["--dir", lib, "add", str(evil)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused" in err and not (tmp_path / "ran").exists()
    assert cli_models.main(["--dir", lib, "remove", "span2x"]) == 0
    assert cli_models.main(["--dir", lib, "list"]) == 0
    assert "no models" in capsys.readouterr().out


def test_a_model_that_outputs_nan_is_refused_not_saved_black(tmp_path: Path) -> None:
    from fbupscale_gui.core.errors import RenderError

    net = _compact()
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    model = load_model(save(net, tmp_path / "nan.safetensors"), precision="fp32")
    with pytest.raises(RenderError, match="NaN or infinite"):
        model.upscale(image(30, 20))
