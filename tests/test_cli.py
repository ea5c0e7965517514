"""The ``fbupscale`` command line: upscale, reproduce, doctor, errors and exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from PIL import Image

from fbupscale_gui.cli import entry as cli
from fbupscale_gui.cli import render, upscale
from fbupscale_gui.core.errors import Cancelled
from fbupscale_gui.core.images import image_sha256
from fbupscale_gui.core.request import FAITHFUL_MODEL, CandidateKey
from fbupscale_gui.core.scene import Scene
from fbupscale_gui.storage.metadata import read_metadata

if TYPE_CHECKING:
    from fbupscale_gui.engine.testing import TinyFluxFiles

REPO = Path(__file__).resolve().parents[1]


def cutout_image(width: int = 18, height: int = 30, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([x * 12 % 256, y * 8 % 256, (x * y) % 256], axis=-1) + rng.integers(
        0, 30, (height, width, 3)
    )
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


@pytest.fixture
def cutout(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "player.png"
    path.parent.mkdir()
    cutout_image().save(path)
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FBUPSCALE_CPU_THREADS", "1")  # shared test cores: no OpenMP spinning
    cache = tmp_path / "cache"
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(cache))
    return cache


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


# -- light start-up ----------------------------------------------------------------------------


@pytest.mark.slow
def test_help_is_instant_and_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from fbupscale_gui.cli import main\n"
        "try:\n"
        "    main(['upscale', '--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0\n"
        "heavy = ('torch', 'diffusers', 'transformers', 'ncnn', 'cv2', 'PySide6', 'tqdm')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "--engine" in out.stdout


@pytest.mark.slow
def test_python_dash_m_runs_the_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fbupscale_gui", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert "upscale" in out.stdout and "reproduce" in out.stdout and "doctor" in out.stdout


# -- subcommand modules -------------------------------------------------------------------------


def _with_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, source: str, **extra: Any
) -> None:
    """Register a subcommand whose module (in ``tmp_path``) holds ``source``."""
    (tmp_path / f"fbupscale_test_{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    command = cli._Command(name, f"fbupscale_test_{name}", "add_parser", **extra)
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, command))


@pytest.mark.parametrize("argv", [["--help"], ["doctor"], ["upscale", "x.png", "-o", "out"]])
def test_a_broken_subcommand_module_fails_loudly(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
) -> None:
    _with_command(
        monkeypatch, tmp_path, "broken", "from fbupscale_gui.core.request import NoSuchName\n"
    )
    code, out, err = run_cli(capsys, *argv)
    assert code == 1 and out == ""
    (line,) = err.splitlines()
    assert "'broken' command" in line and "fbupscale_test_broken" in line and "NoSuchName" in line


def test_a_missing_internal_module_is_not_an_optional_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fbupscale_gui.cli.lora", None)  # import fails
    code, out, err = run_cli(capsys, "--help")
    assert code == 1 and "lora" not in out
    assert "fbupscale_gui.cli.lora" in err and "Traceback" not in err


def test_a_missing_optional_extra_keeps_the_command_and_says_what_to_install(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray Serve not installed
    _with_command(
        monkeypatch, tmp_path, "needsray", "import ray\n", extra="serve", packages=("ray",)
    )
    code, out, _err = run_cli(capsys, "--help")
    assert code == 0 and "serve" in out and "needsray" in out
    for argv in (["serve", "--port", "9"], ["needsray", "--anything"]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 1 and out == ""
        assert "pip install 'fbupscale-gui[serve]'" in err and "Traceback" not in err
    code, _out, err = run_cli(capsys, "doctor", "--bogus")
    assert code == 2 and "unrecognized arguments: --bogus" in err


# -- usage errors: exit 2 --------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        ["--engine", "bogus"],
        ["--size", "100"],
        ["--variants", "0"],
        ["--lora-stages", "stage3"],
        ["--engine", "lanczos", "--lora", "football.safetensors"],
        ["--prompt", "a", "--scene", "scene.json"],
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path, extra: list[str]
) -> None:
    code, out, err = run_cli(capsys, "upscale", cutout, "-o", tmp_path / "out", *extra)
    assert code == 2
    assert out == ""
    assert "error:" in err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_missing_output_is_a_usage_error(capsys: pytest.CaptureFixture[str], cutout: Path) -> None:
    code, _out, err = run_cli(capsys, "upscale", cutout)
    assert code == 2 and "-o" in err


# -- errors: exit 1, one line naming the file ------------------------------------------------


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("fbupscale: error: ")
    return lines[0]


def test_missing_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _out, err = run_cli(capsys, "upscale", tmp_path / "ghost.png", "-o", tmp_path / "o")
    assert code == 1
    assert "ghost.png" in _one_error_line(err)


def test_corrupt_input_fails_before_any_work(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    bad = cutout.parent / "zz_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    code, out, err = run_cli(
        capsys, "upscale", cutout.parent, "-o", tmp_path / "o", "--engine", "lanczos"
    )
    assert code == 1
    assert "zz_broken.png" in _one_error_line(err)
    assert out == "" and not (tmp_path / "o").exists()


def test_empty_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _out, err = run_cli(capsys, "upscale", tmp_path / "empty", "-o", tmp_path / "o")
    assert code == 1 and "empty" in _one_error_line(err)


def test_missing_flux_model(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    code, _out, err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--flux", tmp_path / "no-flux"
    )
    assert code == 1
    assert "no-flux" in _one_error_line(err)


def test_broken_scene_file(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    scene = tmp_path / "scene.json"
    scene.write_text("{broken")
    code, _out, err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "lanczos", "--scene", scene
    )
    assert code == 1 and "scene.json" in _one_error_line(err)


def test_reproduce_needs_fbupscale_metadata(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    code, _out, err = run_cli(capsys, "reproduce", cutout, "-o", tmp_path / "r.png")
    assert code == 1
    assert "player.png: no fbupscale metadata" in _one_error_line(err)


# -- upscale ----------------------------------------------------------------------------------


def test_upscale_folder_with_lanczos_never_overwrites(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    cutout_image(30, 20, seed=1).convert("RGB").save(cutout.parent / "keeper.jpg", quality=95)
    (cutout.parent / "notes.txt").write_text("not an image")
    out_dir = tmp_path / "out"
    code, out, err = run_cli(
        capsys, "upscale", cutout.parent, "-o", out_dir, "--engine", "lanczos", "--size", "256"
    )
    assert code == 0, err
    written = [Path(line) for line in out.splitlines()]
    assert [p.name for p in written] == [
        "keeper_lanczos.png",
        "player_lanczos.png",
    ]
    record = read_metadata(out_dir / "player_lanczos.png")
    assert record.request.engine == "lanczos"
    assert record.request.source is not None and record.request.source.name == "player.png"
    assert record.cutout is not None
    assert image_sha256(record.cutout) == record.request.source.sha256
    with Image.open(written[1]) as im:
        assert im.size == (154, 256)
    before = {p: p.read_bytes() for p in written}

    code, out, _err = run_cli(
        capsys,
        "upscale",
        cutout,
        "-o",
        out_dir,
        "--engine",
        "lanczos",
        "--size",
        "256",
        "--seed",
        "5",
    )
    assert code == 0
    assert [Path(line).name for line in out.splitlines()] == ["player_lanczos-2.png"]
    assert all(p.read_bytes() == data for p, data in before.items())


@pytest.mark.parametrize(
    ("engine", "key", "name"),
    [
        ("flux", CandidateKey(variant=1, lora=True, stage=1), "player_v1_s1_lora_seed6.png"),
        ("flux", CandidateKey(variant=0, lora=False, stage=2), "player_v0_s2_nolora_seed6.png"),
        ("lanczos", CandidateKey(variant=0, lora=False, stage=2), "player_lanczos.png"),
        ("realesrgan", CandidateKey(variant=0, lora=False, stage=2), "player_realesrgan.png"),
        ("ncnn:srmd-n3", CandidateKey(variant=0, lora=False, stage=2), "player_ncnn_srmd-n3.png"),
        ("model:span2x", CandidateKey(variant=0, lora=False, stage=2), "player_span2x.png"),
    ],
)
def test_output_names_claim_only_what_the_engine_has(
    tmp_path: Path, engine: str, key: CandidateKey, name: str
) -> None:
    """A one-pass engine has no seed, stage or LoRA: its file name claims none (as an export's
    name does), and names the engine as an export does."""
    from fbupscale_gui.cli.common import output_name
    from fbupscale_gui.core.export import ExportItem, candidate_fields, plan_names
    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import ModelRef, ReconstructionRequest

    sr_model = ModelRef(path="span2x") if engine.startswith("model:") else None
    request = ReconstructionRequest(engine=engine, sr_model=sr_model)
    candidate = Candidate(key=key, seed=6, image=cutout_image(), request=request)
    assert output_name("player", candidate, tmp_path) == name
    fields = candidate_fields(candidate)
    if engine == "flux":
        assert f"_{fields['stage']}_{fields['lora']}_seed{fields['seed']}" in name
    else:  # named exactly as the default export template names it (no match name)
        assert not any(claim in name for claim in ("seed", "lora", "_s1", "_s2"))
        template = "{cutout}_{engine}_{seed}_{lora}"
        item = ExportItem(candidate, "player.png")
        assert plan_names([item], tmp_path, template, match="")[0].name == name


def test_loading_notes_are_shown(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    rgba = cutout.with_name("alpha.png")
    img = cutout_image().convert("RGBA")
    img.putalpha(128)
    img.save(rgba)
    code, _out, err = run_cli(
        capsys, "upscale", rgba, "-o", tmp_path / "o", "--engine", "lanczos", "--size", "64"
    )
    assert code == 0
    assert any("note:" in line and "alpha.png" in line for line in err.splitlines())


@pytest.mark.slow  # a real engine run
def test_default_engine_falls_back_to_faithful_with_a_note(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    code, out, err = run_cli(capsys, "upscale", cutout, "-o", tmp_path / "o", "--size", "128")
    assert code == 0, err
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "faithful" in notes[0]
    record = read_metadata(Path(out.strip()))
    assert record.request.engine == "faithful"
    assert record.runtime == f"cpu ncnn fp32 {FAITHFUL_MODEL}"
    assert record.key == CandidateKey(variant=0, lora=False, stage=2)


@pytest.mark.parametrize(
    ("given", "stored"),
    [("faithful", "faithful"), pytest.param("sharp", "realesrgan", marks=pytest.mark.slow)],
)
def test_upscale_with_the_named_fast_engines(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path, given: str, stored: str
) -> None:
    code, out, err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--size", "128", "--engine", given
    )
    assert code == 0, err
    record = read_metadata(Path(out.strip()))
    assert record.request.engine == stored
    assert max(Image.open(out.strip()).size) == 128


def test_chain_is_recorded_and_checked(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    args = cli.build_parser().parse_args(
        ["upscale", str(cutout), "-o", str(tmp_path), "--chain", "faithful"]
    )
    assert upscale._template_request(args).stage1.start == "faithful"
    code, _out, err = run_cli(capsys, "upscale", cutout, "-o", tmp_path, "--chain", "flux")
    assert code == 2 and "--chain" in err


def test_scene_file_becomes_the_prompt(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    scene = Scene(action="Two players are contesting possession of the ball")
    scene_file = tmp_path / "scene.json"
    scene_file.write_text(scene.to_json())
    code, out, err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "lanczos",
        "--size", "64", "--scene", scene_file,
    )  # fmt: skip
    assert code == 0, err
    request = read_metadata(Path(out.strip())).request
    assert request.prompt == scene.to_prompt()
    assert Scene.from_json(request.scene_json) == scene


# -- reproduce --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["lanczos", "realesrgan"])
def test_reproduce_is_pixel_identical(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path, engine: str
) -> None:
    code, out, err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", engine, "--size", "128"
    )
    assert code == 0, err
    first = Path(out.strip())
    target = tmp_path / "again.png"
    code, out, err = run_cli(capsys, "reproduce", first, "-o", target)
    assert code == 0, err
    assert Path(out.strip()) == target
    assert pixels(target) == pixels(first)
    assert "identical" in err
    again = read_metadata(target)
    assert again.request == read_metadata(first).request
    assert again.key == read_metadata(first).key


def test_reproduce_names_each_runtime_field_that_differs_today(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    import dataclasses

    from fbupscale_gui.core.runtime import ResolvedRuntime
    from fbupscale_gui.storage.metadata import save_candidate

    code, out, err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "lanczos", "--size", "128"
    )
    assert code == 0, err
    first = Path(out.strip())
    record = read_metadata(first)
    assert record.resolved == ResolvedRuntime("cpu", "uint8", "none", "pillow")
    assert "differs" not in err
    # the same candidate, as if rendered on a GPU with torch
    from fbupscale_gui.core.job import Candidate

    with Image.open(first) as im:
        image = im.convert("RGB")
    gpu = ResolvedRuntime("cuda:0", "bf16", "model", "torch", "2.13.0", "0.36.0")
    moved = tmp_path / "gpu.png"
    candidate = Candidate(record.key, record.seed, image, record.request, resolved=gpu)
    save_candidate(dataclasses.replace(candidate, runtime="cuda:0 bf16 model"), moved)
    code, out, err = run_cli(capsys, "reproduce", moved, "-o", tmp_path / "again.png")
    assert code == 0, err
    assert "today's runtime differs" in err
    assert "device: cuda:0 -> cpu" in err and "backend: torch -> pillow" in err
    assert "torch_version: 2.13.0 -> (none)" in err


@pytest.mark.parametrize("how", ["moved", "changed"])
def test_reproduce_uses_the_embedded_cutout(
    capsys: pytest.CaptureFixture[str],
    cutout: Path,
    tmp_path: Path,
    private_cache: Path,
    how: str,
) -> None:
    code, out, err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "lanczos", "--size", "128"
    )
    assert code == 0, err
    first = Path(out.strip())
    if how == "moved":
        cutout.rename(cutout.with_name("elsewhere.png"))
    else:
        cutout_image(seed=9).save(cutout)
    code, out, err = run_cli(capsys, "reproduce", first, "-o", tmp_path / "r.png")
    assert code == 0, err
    assert "using the embedded cutout" in err
    assert pixels(tmp_path / "r.png") == pixels(first)
    source = read_metadata(tmp_path / "r.png").request.source
    assert source is not None and Path(source.path).parent == private_cache / "cutouts"
    assert source.name == "player.png"


def test_reproduce_without_source_or_embedded_cutout(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    from fbupscale_gui.storage import metadata

    code, out, _err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "lanczos", "--size", "64"
    )
    first = Path(out.strip())
    record = read_metadata(first)
    stripped = tmp_path / "stripped.png"
    from fbupscale_gui.core.job import Candidate

    with Image.open(first) as im:
        image = im.convert("RGB")
    metadata.save_candidate(
        Candidate(key=record.key, seed=record.seed, image=image, request=record.request),
        stripped,
    )
    cutout.unlink()
    code, _out, err = run_cli(capsys, "reproduce", stripped, "-o", tmp_path / "r.png")
    assert code == 1
    line = _one_error_line(err)
    assert "stripped.png" in line and "no embedded cutout" in line


def test_reproduce_compares_against_the_pixels_before_a_visible_badge(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.storage import metadata

    _code, out, _err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "lanczos", "--size", "64"
    )
    first = Path(out.strip())
    record = read_metadata(first)
    with Image.open(first) as im:
        clean = im.convert("RGB")
    badged = clean.copy()
    badged.paste((0, 0, 0), (20, 50, 38, 64))
    exported = metadata.save_candidate(
        Candidate(key=record.key, seed=record.seed, image=badged, request=record.request),
        tmp_path / "export.png",
        cutout=record.cutout,
        provenance={"badge": {"applied": True, "text": "Upscaled"}, "pixels_sha256": pixels(first)},
    )
    code, _out, err = run_cli(capsys, "reproduce", exported, "-o", tmp_path / "r.png")
    assert code == 0 and "identical to export.png" in err
    assert pixels(tmp_path / "r.png") == pixels(first)


def test_reproduce_never_overwrites(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    _code, out, _err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "lanczos", "--size", "64"
    )
    target = tmp_path / "r.png"
    target.write_bytes(b"keep me")
    code, out2, _err = run_cli(capsys, "reproduce", out.strip(), "-o", target)
    assert code == 0
    assert Path(out2.strip()) == tmp_path / "r-2.png"
    assert target.read_bytes() == b"keep me"


# -- Ctrl-C -----------------------------------------------------------------------------------


class _InterruptingEngine:
    """Sends the process a SIGINT mid-run, then behaves like the engine: checks and cancels."""

    def __init__(self) -> None:
        self.saw_cancel = False

    def run(self, request: Any, on_progress: Any, is_cancelled: Any) -> Iterator[Any]:
        os.kill(os.getpid(), signal.SIGINT)
        # the engine runs beside the main thread, which handles the signal: poll, as it does
        for _ in range(500):
            if is_cancelled():
                break
            time.sleep(0.01)
        self.saw_cancel = is_cancelled()
        if self.saw_cancel:
            raise Cancelled()
        yield from ()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_first_ctrl_c_cancels_cleanly_with_130(
    capsys: pytest.CaptureFixture[str],
    cutout: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _InterruptingEngine()
    monkeypatch.setattr(render, "make_engine", lambda: fake)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the suite runs in the background
    code, out, err = run_cli(capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "lanczos")
    assert code == 130
    assert fake.saw_cancel
    assert "cancelled" in err and "Traceback" not in err
    assert out == ""
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is restored


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_one_cancel_flag_for_ctrl_c_and_sigterm(capsys: pytest.CaptureFixture[str]) -> None:
    from fbupscale_gui.cli.common import CancelFlag

    before_int, before_term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with CancelFlag().installed("frame") as flag:
        assert not flag()
        os.kill(os.getpid(), signal.SIGINT)
        assert flag()  # the first Ctrl-C cancels after the current frame...
        with pytest.raises(KeyboardInterrupt):  # ...the second quits at once
            os.kill(os.getpid(), signal.SIGINT)
    assert "cancelling after the current frame" in capsys.readouterr().err
    outer = CancelFlag()
    with CancelFlag(outer).on_sigterm() as flag:
        assert not flag()
        outer.event.set()  # follows the caller's flag
        assert flag()
    with CancelFlag().on_sigterm() as flag:
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag()
    assert signal.getsignal(signal.SIGINT) is before_int
    assert signal.getsignal(signal.SIGTERM) is before_term


def test_keyboard_interrupt_exits_130(
    capsys: pytest.CaptureFixture[str],
    cutout: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Quitting:
        def run(self, *args: Any) -> Iterator[Any]:
            raise KeyboardInterrupt
            yield  # pragma: no cover

    monkeypatch.setattr(render, "make_engine", Quitting)
    code, _out, err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--engine", "lanczos"
    )
    assert code == 130 and "interrupted" in err and "Traceback" not in err


# -- doctor -----------------------------------------------------------------------------------


def test_doctor_prints_the_report(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from fbupscale_gui.engine import doctor

    seen: dict[str, Any] = {}

    def fake_report(**kwargs: Any) -> str:
        seen.update(kwargs)
        return "all good"

    monkeypatch.setattr(doctor, "report", fake_report)
    code, out, _err = run_cli(capsys, "doctor", "--flux", tmp_path / "flux")
    assert code == 0 and out.strip() == "all good"
    assert seen["flux"].path == str(tmp_path / "flux")


# -- FLUX, on the tiny test models -----------------------------------------------------------


@pytest.mark.slow
def test_flux_upscale_and_reproduce_one_candidate(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path, tiny_flux: TinyFluxFiles
) -> None:
    out_dir = tmp_path / "flux-out"
    code, out, err = run_cli(
        capsys, "upscale", cutout, "-o", out_dir, "--engine", "flux",
        "--flux", tiny_flux.flux_dir, "--controlnet", tiny_flux.controlnet_dir,
        "--lora", tiny_flux.lora_diffusers, "--size", "64", "--steps1", "4", "--steps2", "2",
        "--variants", "2",
    )  # fmt: skip
    assert code == 0, err
    names = [Path(line).name for line in out.splitlines()]
    assert names == [
        "player_v0_s1_nolora_seed5.png",
        "player_v0_s2_nolora_seed5.png",
        "player_v0_s2_lora_seed5.png",
        "player_v1_s1_nolora_seed6.png",
        "player_v1_s2_nolora_seed6.png",
        "player_v1_s2_lora_seed6.png",
    ]
    chosen = out_dir / "player_v1_s2_lora_seed6.png"
    record = read_metadata(chosen)
    assert record.key == CandidateKey(variant=1, lora=True, stage=2)
    assert record.request.lora.model is not None and record.request.lora.model.sha256
    assert record.request.flux.sha256 and record.request.controlnet.sha256
    assert json.loads(record.request.to_json())["seed"] == 5
    assert pixels(chosen) != pixels(out_dir / "player_v1_s2_nolora_seed6.png")

    code, out, err = run_cli(capsys, "reproduce", chosen, "-o", tmp_path / "again.png")
    assert code == 0, err
    assert pixels(tmp_path / "again.png") == pixels(chosen)


@pytest.mark.slow
def test_flux_from_a_comfyui_tree_fast_and_reproduced(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path, tiny_flux: TinyFluxFiles
) -> None:
    from diffusers import FluxTransformer2DModel

    from fbupscale_gui.engine.testing import save_tiny_transformer_file

    root = tmp_path / "ComfyUI" / "models"
    transformer = FluxTransformer2DModel.from_pretrained(
        tiny_flux.flux_dir, subfolder="transformer"
    )
    file = save_tiny_transformer_file(
        transformer, root / "diffusion_models" / "flux1-dev.safetensors", layout="comfy"
    )
    out_dir = tmp_path / "flux-out"
    code, _out, err = run_cli(
        capsys, "upscale", cutout, "-o", out_dir, "--engine", "flux",
        "--models-root", root.parent, "--flux-base", tiny_flux.flux_dir,
        "--controlnet", tiny_flux.controlnet_dir, "--size", "64", "--steps1", "4",
        "--steps2", "2", "--variants", "2", "--speed", "fast",
    )  # fmt: skip
    assert code == 0, err
    assert f"FLUX transformer from the models root: {file}" in err
    chosen = out_dir / "player_v1_s2_nolora_seed6.png"
    record = read_metadata(chosen)
    flux = record.request.flux
    assert (flux.path, flux.format, flux.quant) == (str(file), "safetensors-comfy", "fp32")
    assert record.request.speed == "fast" and record.request.flux_base is not None
    assert record.request.storage == "native"  # auto, resolved on this CPU
    assert "fast" in record.runtime
    code, _out, err = run_cli(capsys, "reproduce", chosen, "-o", tmp_path / "again.png")
    assert code == 0, err
    assert pixels(tmp_path / "again.png") == pixels(chosen)


def test_models_root_without_a_flux_file_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], cutout: Path, tmp_path: Path
) -> None:
    (tmp_path / "models" / "unet").mkdir(parents=True)
    code, _out, err = run_cli(
        capsys, "upscale", cutout, "-o", tmp_path / "o", "--models-root", tmp_path
    )
    assert (
        code == 2 and "no FLUX transformer file" in err and str(tmp_path / "models" / "unet") in err
    )
