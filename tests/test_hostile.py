"""Hostile inputs, round two: paths escaping their folder, clobbered outputs, resource
exhaustion, tracebacks, file names and messages; and the hostile-input bench's quick tier."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import struct
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_cli import run_cli

from fbupscale_gui.cli import entry as cli
from fbupscale_gui.core.errors import InputImageError, ModelFileError, RequestError
from fbupscale_gui.core.request import ModelRef
from fbupscale_gui.storage import metadata
from fbupscale_gui.storage.atomic import claim_unique
from fbupscale_gui.storage.paths import NotRegularFileError, fit_name, read_regular, shown
from fbupscale_gui.storage.video import parse_position
from fbupscale_gui.storage.weights import locate
from fbupscale_gui.storage.weights_library import LibraryEntry, ModelInfo, ModelLibrary

REPO = Path(__file__).resolve().parents[1]
#: FIFOs, /dev/zero, resource limits and process groups are POSIX.
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX hostile inputs")


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hostile_bench", REPO / "bench/hostile_images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hostile_bench"] = module
    spec.loader.exec_module(module)
    return module


bench = _bench()


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBUPSCALE_CPU_THREADS", "1")
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("FBUPSCALE_MODELS_DIR", str(tmp_path / "models"))


def run_subprocess(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process (what can hang is bounded by a timeout)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "fbupscale_gui.cli", *(str(a) for a in argv)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(err: str, prefix: str = "fbupscale") -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), err
    assert "Traceback" not in err
    return lines[0]


def cutout(folder: Path, name: str = "player.png", colour: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(colour)
    arr = rng.integers(0, 255, (30, 18, 3), dtype=np.uint8)
    path = folder / name
    Image.fromarray(arr).save(path)
    return path


# -- 1. paths in a models index stay inside the folder ----------------------------------------


def _index(root: Path, file: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    entry = {"file": file, "sha256": "0" * 64, "arch": "SPAN", "scale": 2}
    (root / "index.json").write_text(json.dumps({"version": 1, "models": {"x": entry}}))


def _info() -> ModelInfo:
    return ModelInfo("SPAN", "SPAN", 2, 10, 100, 3, 3, ("fp32",))


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_models_remove_never_deletes_outside_the_folder(tmp_path: Path, how: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    root = tmp_path / "models"
    file = {"absolute": str(victim), "dotdot": "../victim.txt", "symlink": "link.pth"}[how]
    _index(root, file)
    if how == "symlink":
        (root / "link.pth").symlink_to(victim)
    index_before = (root / "index.json").read_bytes()
    with pytest.raises(ModelFileError, match="models index entry 'x'"):
        ModelLibrary(root).remove("x")
    assert victim.read_text() == "not yours"
    assert (root / "index.json").read_bytes() == index_before  # nothing changed
    with pytest.raises(ModelFileError, match="models index entry 'x'"):
        ModelLibrary(root).path_of("x")


def test_models_add_replace_never_deletes_outside_the_folder(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    root = tmp_path / "models"
    _index(root, "../victim.txt")
    src = tmp_path / "new.safetensors"
    src.write_bytes(b"weights")
    with pytest.raises(ModelFileError, match="models index entry 'x'"):
        ModelLibrary(root).add(src, lambda p: _info(), name="x", replace=True)
    assert victim.read_text() == "not yours"
    assert not (root / "x.safetensors").exists()


def test_models_remove_cli_names_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("not yours")
    _index(tmp_path / "models", str(victim))
    code, _out, err = run_cli(capsys, "models", "remove", "x")
    assert code == 1 and victim.exists()
    assert "entry 'x'" in one_line(err)


def test_models_remove_and_replace_still_work_inside(tmp_path: Path) -> None:
    root = tmp_path / "models"
    library = ModelLibrary(root)
    src = tmp_path / "a.safetensors"
    src.write_bytes(b"one")
    library.add(src, lambda p: _info(), name="x")
    assert (root / "x.safetensors").read_bytes() == b"one"
    src.write_bytes(b"two")
    library.add(src, lambda p: _info(), name="x", replace=True)
    assert (root / "x.safetensors").read_bytes() == b"two"
    assert isinstance(library.remove("x"), LibraryEntry)
    assert not (root / "x.safetensors").exists()


# -- 3. concurrent runs never clobber each other --------------------------------------------------


def test_claims_are_exclusive(tmp_path: Path) -> None:
    first = claim_unique(tmp_path / "a.png")
    second = claim_unique(tmp_path / "a.png")
    assert (first.name, second.name) == ("a.png", "a-2.png")
    (tmp_path / "b.png").write_bytes(b"kept")
    assert claim_unique(tmp_path / "b.png").name == "b-2.png"
    assert (tmp_path / "b.png").read_bytes() == b"kept"


def test_exclusive_writes_take_a_free_name_and_leave_no_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fbupscale_gui.storage.atomic import atomic_write

    (tmp_path / "a.png").write_bytes(b"kept")
    got = atomic_write(tmp_path / "a.png", lambda fh: fh.write(b"new"), exclusive=True)
    assert got.name == "a-2.png" and got.read_bytes() == b"new"
    assert (tmp_path / "a.png").read_bytes() == b"kept"

    def failing_write(fh: Any) -> None:  # a run killed or failing mid-write
        fh.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="nothing was saved"):
        atomic_write(tmp_path / "b.png", failing_write, exclusive=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-2.png", "a.png"]  # no placeholder

    def no_hard_links(src: Any, dst: Any) -> None:  # e.g. an exFAT export stick
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr("os.link", no_hard_links)
    got = atomic_write(tmp_path / "a.png", lambda fh: fh.write(b"third"), exclusive=True)
    assert got.name == "a-3.png" and got.read_bytes() == b"third"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_run_writing_meanwhile_into_the_same_folder_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While run A renders, run B writes the same names into the same folder."""
    out_dir = tmp_path / "out"
    a = cutout(tmp_path / "a", colour=1)
    b = cutout(tmp_path / "b", colour=2)
    real_save = metadata.save_candidate
    printed_b: list[str] = []

    def save_while_b_runs(candidate: Any, path: Any, **kwargs: Any) -> Path:
        if not printed_b:
            monkeypatch.setattr(metadata, "save_candidate", real_save)
            assert cli.main(["upscale", str(b), "-o", str(out_dir), "--engine", "lanczos"]) == 0
            printed_b.extend(capsys.readouterr().out.splitlines())
        return real_save(candidate, path, **kwargs)

    monkeypatch.setattr(metadata, "save_candidate", save_while_b_runs)
    code, out, err = run_cli(capsys, "upscale", a, "-o", out_dir, "--engine", "lanczos")
    assert code == 0, err
    printed_a = out.splitlines()
    assert len(printed_a) == len(printed_b) == 1
    assert printed_a != printed_b
    files = sorted(out_dir.iterdir())
    assert len(files) == 2
    sources = {metadata.read_metadata(p).request.source.path for p in files}  # type: ignore[union-attr]
    assert sources == {str(a), str(b)}


# -- 7. resource exhaustion -------------------------------------------------------------------


def test_read_regular_refuses_devices_fifos_and_large_files(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match="FIFO"):
        read_regular(fifo, "scene file")
    with pytest.raises(NotRegularFileError, match="device"):
        read_regular("/dev/zero", "scene file")
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(1000)
    with pytest.raises(NotRegularFileError, match="1000 bytes"):
        read_regular(big, "scene file", limit=999)
    assert read_regular(big, "scene file", limit=1000) == b"\0" * 1000


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_scene_must_be_a_regular_file(tmp_path: Path, kind: str) -> None:
    scene = Path(kind)
    if kind == "fifo":
        scene = tmp_path / "scene.json"
        os.mkfifo(scene)
    src = cutout(tmp_path / "in")
    done = run_subprocess(
        "upscale", src, "-o", tmp_path / "o", "--engine", "lanczos", "--scene", scene, cwd=tmp_path
    )
    assert done.returncode == 1
    assert "not a regular file" in one_line(done.stderr)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "nested"])
def test_hostile_models_index_is_refused(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "models"
    root.mkdir()
    index = root / "index.json"
    if kind == "fifo":
        os.mkfifo(index)
    elif kind == "dev-zero":
        index.symlink_to("/dev/zero")
    else:
        index.write_text('{"version": 1, "models": ' + bench._deep_json() + "}")
    done = run_subprocess("models", "--dir", root, "list", cwd=tmp_path)
    assert done.returncode == 1
    assert str(index) in one_line(done.stderr, "fbupscale models: error:")


def test_zip_bomb_pth_is_refused_before_decompressing(tmp_path: Path) -> None:
    from fbupscale_gui.engine.sr.safe_weights import check_zip_sizes

    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("archive/data/0", b"\0" * (32 * 1024 * 1024))  # about 32 KB packed
    assert path.stat().st_size < 1024 * 1024
    with pytest.raises(ModelFileError, match="zip bomb") as info:
        check_zip_sizes(path)
    assert str(path) in str(info.value)


def test_models_add_zip_bomb_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bomb.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("archive/data/0", b"\0" * (32 * 1024 * 1024))
    code, _out, err = run_cli(capsys, "models", "add", path)
    assert code == 1
    assert "zip bomb" in one_line(err)
    assert not (tmp_path / "models").exists()


def _candidate_with(tmp_path: Path, **texts: str) -> Path:
    return bench._rewrite_texts(bench._candidate(tmp_path), tmp_path / "hostile.png", **texts)


@pytest.mark.parametrize("side", [12000, 30000])
def test_embedded_cutout_size_is_checked_before_decoding(tmp_path: Path, side: int) -> None:
    encoded = base64.b64encode(bench._big_png(side)).decode("ascii")
    path = _candidate_with(tmp_path, **{"fbupscale-cutout": encoded})
    with pytest.raises(InputImageError, match=r"embedded cutout.*(not a cutout|bomb)"):
        metadata.read_metadata(path)


# -- 8. one-line messages instead of tracebacks ---------------------------------------------------


@pytest.mark.parametrize("command", ["reproduce", "score"])
def test_deeply_nested_metadata_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = _candidate_with(tmp_path, fbupscale=bench._deep_json())
    if command == "reproduce":
        code, _out, err = run_cli(capsys, "reproduce", path, "-o", tmp_path / "again.png")
        assert code == 1 and "nested too deeply" in one_line(err)
    else:
        code, out, err = run_cli(capsys, "score", tmp_path / "cutout.png", path)
        assert code == 0 and "Traceback" not in err and str(path) in out


def test_reproduce_with_a_bomb_cutout_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encoded = base64.b64encode(bench._big_png(30000)).decode("ascii")
    path = _candidate_with(tmp_path, **{"fbupscale-cutout": encoded})
    code, _out, err = run_cli(capsys, "reproduce", path, "-o", tmp_path / "again.png")
    assert code == 1 and "embedded cutout" in one_line(err)


def test_nested_safetensors_header_is_refused(tmp_path: Path) -> None:
    from fbupscale_gui.engine.sr.safe_weights import check_safetensors_header

    header = b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    path = tmp_path / "nested.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(ModelFileError, match="not a valid safetensors file"):
        check_safetensors_header(path)


def test_text_file_named_pth_is_refused(tmp_path: Path) -> None:
    from fbupscale_gui.engine.sr.safe_weights import load_state_dict

    path = tmp_path / "notes.pth"
    path.write_text("this is a text file, not weights\n" * 10)
    with pytest.raises(ModelFileError, match=r"notes\.pth"):
        load_state_dict(path)


def test_models_add_symlink_to_a_device_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "link.pth"
    link.symlink_to("/dev/zero")
    code, _out, err = run_cli(capsys, "models", "add", link)
    assert code == 1 and "not a regular file" in one_line(err)


def test_model_folder_asking_for_custom_code_is_refused(tmp_path: Path) -> None:
    flux = tmp_path / "FLUX.1-dev"
    flux.mkdir()
    (flux / "pipeline.py").write_text("import os\nos.system('touch pwned')\n")
    index = {"_class_name": ["pipeline", "EvilPipeline"], "_diffusers_version": "0.32.0"}
    (flux / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFileError, match="custom code"):
        locate(ModelRef(path=str(flux)), "flux", compute_fingerprint=False)
    index = {"_class_name": "FluxPipeline", "vae": ["evil_module", "Vae"]}
    (flux / "model_index.json").write_text(json.dumps(index))
    (flux / "vae").mkdir()
    with pytest.raises(ModelFileError, match="vae from 'evil_module'"):
        locate(ModelRef(path=str(flux)), "flux", compute_fingerprint=False)
    index = {"_class_name": "FluxPipeline", "vae": ["diffusers", "AutoencoderKL"]}
    (flux / "model_index.json").write_text(json.dumps(index))
    assert locate(ModelRef(path=str(flux)), "flux", compute_fingerprint=False).path == flux


@pytest.mark.parametrize("text", ["1e308", "99999999:00", "1e300:00:00"])
def test_absurd_times_are_refused(text: str) -> None:
    with pytest.raises(RequestError, match="position"):
        parse_position(text, 25)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    return bench._clip(folder)


def test_video_cut_and_upscale_with_absurd_times(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fbupscale_gui.cli.video import main

    argv = ["video", "cut", str(clip), "--time", "1e308", "--rect", "0,0,8,8", "-o"]
    assert main([*argv, str(tmp_path / "c.png")]) == 1
    assert "position" in one_line(capsys.readouterr().err, "fbupscale video cut: error:")
    argv = ["video", "upscale", str(clip), "--end", "1e308", "--engine", "lanczos", "-q", "-o"]
    assert main([*argv, str(tmp_path / "o.mp4")]) == 1
    assert "position" in one_line(capsys.readouterr().err, "fbupscale video upscale: error:")
    assert sorted(tmp_path.iterdir()) == []  # no placeholder left behind


# -- 9. file names ----------------------------------------------------------------------------


@pytest.mark.parametrize("stem", ["p" * 240, "é" * 120])
def test_long_input_names_are_shortened_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stem: str
) -> None:
    folder = tmp_path / "in"
    cutout(folder, f"{stem}.png", 1)
    cutout(folder, "zz-next.png", 2)
    code, out, err = run_cli(capsys, "upscale", folder, "-o", tmp_path / "o", "--engine", "lanczos")
    assert code == 0, err
    written = [Path(line) for line in out.splitlines()]
    assert len(written) == 2 and all(p.is_file() for p in written)
    (long,) = [p.name for p in written if not p.name.startswith("zz-next")]
    assert long.endswith("_lanczos.png")
    assert "~" in long and len(long.encode()) <= 255 - 24


def test_fit_name_keeps_short_names_and_separates_long_ones() -> None:
    assert fit_name("player", "_v0.png") == "player_v0.png"
    a, b = fit_name("x" * 300 + "a", ".png"), fit_name("x" * 300 + "b", ".png")
    assert a != b and a.endswith(".png") and len(a.encode()) <= 231


def test_one_bad_cutout_never_stops_the_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    cutout(folder, "a.png", 1)
    cutout(folder, "b.png", 2)
    real_save = metadata.save_candidate

    def fail_first(candidate: Any, path: Any, **kwargs: Any) -> Path:
        if Path(path).name.startswith("a_"):
            raise OSError(5, "Input/output error", str(path))
        return real_save(candidate, path, **kwargs)

    monkeypatch.setattr(metadata, "save_candidate", fail_first)
    code, out, err = run_cli(capsys, "upscale", folder, "-o", tmp_path / "o", "--engine", "lanczos")
    assert code == 1
    assert [Path(line).name for line in out.splitlines()] == ["b_lanczos.png"]
    assert "a_lanczos.png: Input/output error" in err
    assert "1 of 2 cutouts failed" in err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["b_lanczos.png"]


def test_control_characters_in_names_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    cutout(folder, "two\nlines.png", 1)
    cutout(folder, "\x1b[31mred.png", 2)
    code, out, err = run_cli(capsys, "upscale", folder, "-o", tmp_path / "o", "--engine", "lanczos")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 and "\x1b" not in out + err
    assert any(line.endswith("two\\nlines_lanczos.png") for line in lines)
    assert len(list((tmp_path / "o").iterdir())) == 2
    assert shown("a\x1bb") == "a\\x1bb" and shown("Müller") == "Müller"


# -- 10. messages -----------------------------------------------------------------------------


def test_full_disk_names_the_file_and_how_much_was_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fbupscale_gui.storage import atomic

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    src = cutout(tmp_path / "in")
    code, _out, err = run_cli(capsys, "upscale", src, "-o", tmp_path / "o", "--engine", "lanczos")
    assert code == 1
    line = err.splitlines()[0]
    target = tmp_path / "o" / "player_lanczos.png"
    assert line.startswith(f"fbupscale: error: {target}: No space left on device after ")
    assert "bytes had been written" in line
    assert list((tmp_path / "o").iterdir()) == []  # neither a partial file nor a placeholder


def test_video_upscale_into_a_folder_names_that_folder(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fbupscale_gui.cli.video import main

    folder = tmp_path / "exists"
    folder.mkdir()
    argv = ["video", "upscale", str(clip), "--end", "2f", "--engine", "lanczos", "-q"]
    assert main([*argv, "-o", str(folder)]) == 1
    line = one_line(capsys.readouterr().err, "fbupscale video upscale: error:")
    assert f"-o {folder}: is a folder" in line and "exists-2" not in line
    assert list(tmp_path.iterdir()) == [folder] and list(folder.iterdir()) == []


def test_truncated_mp4_says_it_wrote_fewer_frames(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fbupscale_gui.cli.video import main

    short = tmp_path / "short.mp4"
    data = clip.read_bytes()
    short.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "o.mp4"
    assert main(["video", "upscale", str(short), "--engine", "lanczos", "-q", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "fewer than the header" in err and "(50 frames)" in err
    assert out.is_file()


def test_two_video_cuts_never_share_a_name(clip: Path, tmp_path: Path) -> None:
    from fbupscale_gui.cli.video import main

    argv = ["video", "cut", str(clip), "--time", "2f", "--rect", "0,0,16,16", "-o"]
    threads = [
        threading.Thread(target=main, args=([*argv, str(tmp_path / "c.png")],)) for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c-2.png", "c-3.png", "c.png"]


# -- the bench's quick tier -------------------------------------------------------------------


@pytest.mark.slow  # child processes
def test_hostile_bench_quick_tier_handles_everything() -> None:
    """Every quick case of the surfaces this release hardens ends in a clear message."""
    rows = bench.run(fast=True, surfaces=("images", "cli", "models", "video", "sessions"))
    assert len(rows) >= 20
    bad = [(r.surface, r.name, r.outcome, r.detail) for r in rows if r.outcome != "handled"]
    assert bad == []
