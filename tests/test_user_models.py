"""User SR models end to end: the request schema, the engine dispatch, the CLI and the window.

Models are random-weight SPAN 2x networks built from spandrel's own class and saved as
safetensors (like tests/test_sr_models.py), added to a private models folder.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fbupscale_gui.cli import entry as cli
from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.images import image_sha256
from fbupscale_gui.core.request import (
    SCHEMA_VERSION,
    CandidateKey,
    ModelRef,
    Preprocess,
    ReconstructionRequest,
)
from fbupscale_gui.engine import Engine
from fbupscale_gui.engine.sr.detect import inspect_model
from fbupscale_gui.engine.sr.spandrel_import import import_spandrel
from fbupscale_gui.state.job_queue import JobState
from fbupscale_gui.storage.cutouts import make_source
from fbupscale_gui.storage.metadata import read_metadata
from fbupscale_gui.storage.provenance import model_hashes
from fbupscale_gui.storage.weights_library import ModelLibrary
from fbupscale_gui.ui.main_window import MainWindow
from fbupscale_gui.ui.models_dialog import ModelsDialog

import_spandrel()


def span_file(path: Path, seed: int = 1, channels: int = 16) -> Path:
    from safetensors.torch import save_file
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(seed)
    net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=channels, upscale=2).eval()
    state = {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def cutout_image(width: int = 24, height: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB")


class _Payload:
    """Unpickling this would create ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelLibrary:
    """The user's models folder (FBUPSCALE_MODELS_DIR), private to the test."""
    monkeypatch.setenv("FBUPSCALE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("FBUPSCALE_CPU_THREADS", "1")
    return ModelLibrary()


# -- the request ------------------------------------------------------------------------------


def test_model_request_validates_and_round_trips() -> None:
    ref = ModelRef(path="/models/span2x.safetensors", sha256="ab" * 32)
    request = ReconstructionRequest(engine="model:span2x", sr_model=ref, variants=3)
    assert request.version == SCHEMA_VERSION >= 2
    again = ReconstructionRequest.from_json(request.to_json())
    assert again == request and again.sr_model == ref
    # one candidate, like the other fast engines, and with_only keeps it
    assert request.candidate_keys() == [CandidateKey(0, False, 2)]
    only = request.with_only(CandidateKey(0, False, 2))
    assert ReconstructionRequest.from_json(only.to_json()) == only

    with pytest.raises(RequestError, match=r"^sr_model: .*needs the model's file"):
        ReconstructionRequest(engine="model:span2x")
    with pytest.raises(RequestError, match=r"^sr_model: only applies"):
        ReconstructionRequest(engine="lanczos", sr_model=ref)
    for bad in ("model:", "span2x", "esrgan", ""):
        with pytest.raises(RequestError, match=r"^engine: must be one of .*model:NAME"):
            ReconstructionRequest(engine=bad)


def test_a_version_1_request_still_loads() -> None:
    data = ReconstructionRequest(engine="realesrgan", seed=9).to_dict()
    data.pop("sr_model")  # schema 1 had no such field
    data["version"] = 1
    request = ReconstructionRequest.from_json(json.dumps(data))
    assert request.version == SCHEMA_VERSION
    assert request.engine == "realesrgan" and request.seed == 9 and request.sr_model is None


def test_a_newer_request_names_the_version_not_a_field() -> None:
    data = ReconstructionRequest().to_dict()
    data["version"] = SCHEMA_VERSION + 1
    data["field_from_the_future"] = 1
    with pytest.raises(RequestError, match="written by a newer fbupscale"):
        ReconstructionRequest.from_dict(data)


# -- the engine -------------------------------------------------------------------------------


@pytest.mark.slow  # a real engine run
def test_engine_runs_a_library_model_reproducibly(tmp_path: Path, library: ModelLibrary) -> None:
    entry = library.add(span_file(tmp_path / "span2x.safetensors"), inspect_model)
    cutout_path = tmp_path / "player.png"
    cutout = cutout_image()
    cutout.save(cutout_path)
    request = ReconstructionRequest(
        engine=f"model:{entry.name}",
        sr_model=library.ref(entry.name),
        source=make_source(cutout_path, cutout),
        preprocess=Preprocess(size=256),
        variants=3,
    )
    engine = Engine(library=library)
    try:
        (candidate,) = list(engine.run(request))
        assert candidate.key == CandidateKey(0, False, 2)
        assert candidate.image.size == (154, 256)  # 24x40 -> content box of a 256 square
        assert "SPAN" in candidate.runtime
        (again,) = list(Engine(library=library).run(request.with_only(candidate.key)))
        assert image_sha256(again.image) == image_sha256(candidate.image)
        # a changed model file is refused, not silently rendered with other weights
        changed = request.replace(sr_model=ModelRef(path=request.sr_model.path, sha256="0" * 64))  # type: ignore[union-attr]
        engine.release()
        with pytest.raises(Exception, match="changed since the request was made"):
            list(engine.run(changed))
    finally:
        engine.release()
    assert engine._sr is None  # released


def test_realesrgan_goes_through_torch_only_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def on_cuda(device: str) -> str:
        asked.append(device)
        return "cuda:0"

    engine = Engine(device_of=on_cuda)
    assert engine.realesrgan_on_torch(ReconstructionRequest(engine="realesrgan"))
    assert not engine.realesrgan_on_torch(ReconstructionRequest(engine="realesrgan", device="cpu"))
    assert not engine.realesrgan_on_torch(ReconstructionRequest(engine="lanczos"))
    assert asked == ["auto"]  # a CPU-pinned or non-Real-ESRGAN request never asks
    assert not Engine(device_of=lambda _d: "cpu").realesrgan_on_torch(
        ReconstructionRequest(engine="realesrgan")
    )

    # the run takes the torch path on CUDA (the converted model itself is tested elsewhere)
    taken: list[str] = []
    monkeypatch.setattr(
        Engine, "_realesrgan_torch", lambda self, req, *a: taken.append(req.engine) or "torch"
    )
    path = Path(__file__).resolve().parents[1] / "resources" / "samples"
    sample = next(p for p in sorted(path.iterdir()) if p.suffix == ".png")
    with Image.open(sample) as im:
        source = make_source(sample, im.convert("RGB"))
    request = ReconstructionRequest(engine="realesrgan", source=source)
    assert list(engine.run(request)) == ["torch"] and taken == ["realesrgan"]


# -- the CLI ----------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def pixels(path: Path) -> str:
    with Image.open(path) as im:
        return image_sha256(im.convert("RGB"))


def test_cli_models_add_list_remove(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, library: ModelLibrary
) -> None:
    src = span_file(tmp_path / "2x Live Action.safetensors")
    code, out, err = run_cli(capsys, "models", "add", src, "--licence", "CC BY-NC-SA 4.0")
    assert code == 0, err
    assert "added 2x-Live-Action: SPAN" in out and "--engine model:2x-Live-Action" in out
    code, out, _ = run_cli(capsys, "models", "list")
    assert code == 0 and out.startswith("2x-Live-Action") and "SPAN 2x" in out
    assert "CC BY-NC-SA 4.0" in out

    evil = tmp_path / "evil.pth"
    torch.save({"w": _Payload(tmp_path / "ran")}, str(evil))
    code, out, err = run_cli(capsys, "models", "add", evil)
    assert code == 1 and err.count("\n") == 1 and "refused" in err
    assert not (tmp_path / "ran").exists()
    assert [e.name for e in library.entries()] == ["2x-Live-Action"]

    code, out, err = run_cli(capsys, "models", "remove", "2x-Live-Action")
    assert code == 0 and "removed 2x-Live-Action" in out
    assert library.entries() == []


@pytest.mark.slow  # a real engine run
def test_cli_upscale_with_a_model_and_reproduce(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, library: ModelLibrary
) -> None:
    library.add(span_file(tmp_path / "span.safetensors"), inspect_model, name="span2x")
    cutout = tmp_path / "in" / "player.png"
    cutout.parent.mkdir()
    cutout_image().save(cutout)
    code, out, err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "model:span2x", "--size", "128"
    )
    assert code == 0, err
    (first,) = [Path(line) for line in out.split()]
    assert first.name == "player_span2x.png"
    record = read_metadata(first)
    assert record.request.engine == "model:span2x"
    assert record.request.sr_model == library.ref("span2x")
    hashes = model_hashes(record.request)
    assert hashes == {
        "sr_model": {"ref": record.request.sr_model.path, "sha256": library.get("span2x").sha256}
    }  # type: ignore[union-attr]

    target = tmp_path / "again.png"
    code, out, err = run_cli(capsys, "reproduce", first, "-o", target)
    assert code == 0, err
    assert pixels(target) == pixels(first) and "identical" in err

    # a model file given by path works too, and records its hash
    code, out, err = run_cli(
        capsys,
        "upscale",
        cutout,
        "-o",
        tmp_path / "p",
        "--engine",
        f"model:{tmp_path / 'span.safetensors'}",
        "--size",
        "128",
    )
    assert code == 0, err
    assert pixels(Path(out.strip())) == pixels(first)


def test_cli_unknown_model_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, library: ModelLibrary
) -> None:
    cutout = tmp_path / "player.png"
    cutout_image().save(cutout)
    code, out, err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "model:nope"
    )
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "'nope'" in err and "fbupscale models list" in err
    code, _out, err = run_cli(capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "x")
    assert code == 2 and "model:NAME_OR_PATH" in err
    assert not (tmp_path / "o").exists()


# -- the window -------------------------------------------------------------------------------


@pytest.fixture
def window(make_window, tmp_path: Path, library: ModelLibrary) -> MainWindow:  # type: ignore[no-untyped-def]
    # the real engine, in its process
    return make_window(runner_factory=None, export_dir=str(tmp_path / "exports"))  # type: ignore[no-any-return]


@pytest.mark.slow  # its window starts the real engine child process
def test_models_dialog_adds_refuses_and_removes(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, tmp_path: Path, library: ModelLibrary
) -> None:
    window.open_models()
    dialog = window.models_dialog
    assert isinstance(dialog, ModelsDialog) and dialog.isVisible()
    assert dialog.entries() == [] and "No models yet" in dialog.empty.text()

    dialog.licence.setText("CC BY-NC-SA 4.0")
    dialog.add_file(span_file(tmp_path / "2xLiveActionV1_SPAN.safetensors"))
    qtbot.waitUntil(lambda: len(dialog.entries()) == 1, timeout=60_000)
    name, arch, scale, params, size, precisions, licence = dialog.row_texts(0)
    assert (name, arch, scale) == ("2xLiveActionV1_SPAN", "SPAN", "2x")
    assert params.endswith((" k", " M")) and size.endswith(("KB", "MB"))
    assert "fp32" in precisions and licence == "CC BY-NC-SA 4.0"
    assert "Added 2xLiveActionV1_SPAN" in dialog.status.text()
    # the engine list follows the library
    combo = window.engine_combo
    index = combo.findData("model:2xLiveActionV1_SPAN")
    assert index >= 0 and combo.itemText(index) == "SPAN 2x · 2xLiveActionV1_SPAN"

    index_before = (library.root / "index.json").read_bytes()
    files_before = sorted(p.name for p in library.root.iterdir())
    bad_files = {
        "payload.pth": lambda p: torch.save({"w": _Payload(tmp_path / "ran")}, str(p)),
        "header.safetensors": lambda p: p.write_bytes((10**12).to_bytes(8, "little") + b"{}"),
        "notes.pth": lambda p: p.write_bytes(pickle.dumps({"not": "a model"})),
    }
    for file_name, make in bad_files.items():
        path = tmp_path / file_name
        make(path)
        dialog.add_file(path)
        qtbot.waitUntil(lambda: dialog.status.text().startswith("Not added"), timeout=60_000)
        text = dialog.status.text()
        assert "\n" not in text and str(path.name) in text, text
        assert [e.name for e in dialog.entries()] == ["2xLiveActionV1_SPAN"]
        assert (library.root / "index.json").read_bytes() == index_before
        assert sorted(p.name for p in library.root.iterdir()) == files_before
        dialog.status.clear()
    assert not (tmp_path / "ran").exists()
    assert window.messages.texts() == [] or not any(
        "Not added" in t or "refused" in t for t in window.messages.texts()
    )

    dialog.confirm_remove = False
    dialog.table.topLevelItem(0).setSelected(True)  # type: ignore[union-attr]
    dialog.remove_selected()
    assert dialog.entries() == [] and library.entries() == []
    assert combo.findData("model:2xLiveActionV1_SPAN") == -1


@pytest.mark.slow
def test_a_run_with_a_user_model_yields_a_tile(  # type: ignore[no-untyped-def]
    qtbot, window: MainWindow, tmp_path: Path, library: ModelLibrary
) -> None:
    library.add(span_file(tmp_path / "span.safetensors"), inspect_model, name="span2x")
    window.session.sr_models.refresh()  # e.g. after `fbupscale models add`
    combo = window.engine_combo
    combo.setCurrentIndex(combo.findData("model:span2x"))
    assert window.session.engine.engine == "model:span2x"
    assert window.session.settings.settings.engine == "model:span2x"

    path = tmp_path / "keeper.png"
    cutout_image(40, 64, seed=3).save(path)
    window.session.cutouts.add_paths([path])
    base = window.session.build_request(window.session.cutouts.at(0))
    window.session.params.set_from(base.replace(preprocess=Preprocess(size=256)))
    (job,) = window.run_selected()
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=120_000)
    assert job.state is JobState.DONE, window.messages.texts()
    assert job.request.sr_model == library.ref("span2x")
    tile = window.candidates.tile_at(0, 0)
    assert tile is not None and tile.entry.key == CandidateKey(0, False, 2)
    assert max(tile.entry.candidate.image.size) == 256
    assert "SPAN" in tile.entry.candidate.runtime

    # removing the selected model falls back to the default preview
    window.session.sr_models.remove("span2x")
    assert window.session.engine.engine == "faithful"
    assert combo.currentData() == "faithful"
