"""Atomic writes leave nothing partial, and every folder the application writes to loses the
temporary files a crash or a kill left there, while a temporary file another process is
writing right now (fresh) is never touched."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
import test_lora_dataset
from PIL import Image

from fbupscale_gui.core.errors import ModelFileError
from fbupscale_gui.core.scene import Kit
from fbupscale_gui.storage.atomic import STALE_TEMP_S, atomic_write, is_temp_name
from fbupscale_gui.storage.kits import KitPreset, save_kits
from fbupscale_gui.storage.lora_dataset_files import build_dataset
from fbupscale_gui.storage.weights_library import ModelInfo, ModelLibrary

ROOT = Path(__file__).resolve().parents[1]
#: A safety net for a hung child, not a timing assertion.
LIMIT_S = 60


def _info(path: Path) -> ModelInfo:
    return ModelInfo("SPAN", "SPAN", 2, 10, path.stat().st_size, 3, 3, ("fp32",))


def _leftovers(folder: Path, final: str) -> tuple[Path, Path]:
    """An old temporary file (a crash, hours ago) and a fresh one (a writer at work now)."""
    folder.mkdir(parents=True, exist_ok=True)
    old = folder / f".{final}.k2j3m9q_.tmp"
    fresh = folder / f".{final}.zz99a0b1.tmp"
    old.write_bytes(b"partial")
    fresh.write_bytes(b"being written")
    then = os.path.getmtime(old) - STALE_TEMP_S - 60
    os.utime(old, (then, then))
    return old, fresh


def test_temp_names_are_only_our_own() -> None:
    assert is_temp_name(".shot.png.k2j3m9q_.tmp")
    assert not is_temp_name(".shot.png.k2j3.tmp")  # not mkstemp's 8 random characters
    assert not is_temp_name(".editor-swap.tmp")
    assert not is_temp_name("shot.png.k2j3m9q_.tmp")  # not hidden
    assert not is_temp_name(".x4.abcdefgh.part")
    assert is_temp_name(".x4.abcdefgh.part", (".tmp", ".part"))


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def fail(fh: object) -> None:
        raise RuntimeError("encoder bug")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.png", fail)
    assert list(tmp_path.iterdir()) == []


def _kill_during_copy(src: Path, root: Path) -> None:
    """``models add`` in a child process killed (no clean-up runs) half-way through the copy."""
    code = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        from fbupscale_gui.storage import weights_library as lib

        real_hash = lib.file_sha256

        def dying_copy(src, copy_to=None):
            if copy_to is None:
                return real_hash(src)
            copy_to.write(Path(src).read_bytes()[:100])
            copy_to.flush()
            os._exit(9)  # as SIGKILL: no finally, no clean-up

        lib.file_sha256 = dying_copy
        info = lib.ModelInfo("SPAN", "SPAN", 2, 10, 1, 3, 3, ("fp32",))
        lib.ModelLibrary(sys.argv[2]).add(sys.argv[1], lambda p: info, name="big")
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(src), str(root)], env=env, timeout=LIMIT_S, check=False
    )
    assert proc.returncode == 9


@pytest.mark.slow  # a child process
@pytest.mark.parametrize("how", ["add", "list"])
def test_a_killed_model_copy_is_removed_by_the_next_add_or_listing(
    tmp_path: Path, how: str
) -> None:
    root = tmp_path / "models"
    src = tmp_path / "big.safetensors"
    src.write_bytes(os.urandom(4096))
    _kill_during_copy(src, root)
    left = [p for p in root.iterdir() if is_temp_name(p.name)]
    assert len(left) == 1 and left[0].name.startswith(".big.safetensors.")
    assert 0 < left[0].stat().st_size < 4096  # the half-written copy
    then = left[0].stat().st_mtime - STALE_TEMP_S - 60  # the crash was a while ago
    os.utime(left[0], (then, then))
    legacy = root / ".old.abcdefgh.part"  # what earlier releases left
    legacy.write_bytes(b"x")
    os.utime(legacy, (then, then))
    fresh = root / ".other.safetensors.zz99a0b1.tmp"  # another process copying right now
    fresh.write_bytes(b"being written")
    library = ModelLibrary(root)
    if how == "add":
        second = tmp_path / "small.safetensors"
        second.write_bytes(b"weights")
        library.add(second, _info, name="small")
    else:
        assert library.entries() == []
    assert not left[0].exists() and not legacy.exists()
    assert fresh.exists()


def test_a_model_changing_during_its_copy_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fbupscale_gui.storage import weights_library

    root = tmp_path / "models"
    src = tmp_path / "a.safetensors"
    src.write_bytes(b"weights")
    real_hash = weights_library.file_sha256

    def copy_after_a_change(source: Path, copy_to: IO[bytes] | None = None) -> str:
        if copy_to is not None:
            source.write_bytes(b"changed")  # another program rewrites the file meanwhile
        return real_hash(source, copy_to)

    monkeypatch.setattr(weights_library, "file_sha256", copy_after_a_change)
    with pytest.raises(ModelFileError, match="changed while it was being copied"):
        ModelLibrary(root).add(src, _info, name="a")
    assert list(root.iterdir()) == []  # no model, no index, no temporary file


def _write_kits(folder: Path) -> None:
    save_kits((KitPreset("Club A", Kit("red", "white")),), folder / "kits.json")


def _store_cutout(folder: Path) -> None:
    from fbupscale_gui.storage.store import store_cutout

    store_cutout(Image.new("RGB", (16, 16), (1, 2, 3)))


def _lora_dataset(folder: Path) -> None:
    frames = test_lora_dataset._frames(folder.parent / "frames")
    build_dataset(frames, folder)


#: A writer and the folder (under the test's folder) it writes into.
WRITERS: dict[str, tuple[Callable[[Path], None], str]] = {
    "kits": (_write_kits, "config"),
    "cutout store": (_store_cutout, "cache/cutouts"),
    "LoRA dataset": (_lora_dataset, "dataset"),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_writer_removes_old_leftovers_and_keeps_fresh_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    write, sub = WRITERS[writer]
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / sub
    old, fresh = _leftovers(folder, "x.png")
    other = folder / ".editor-swap.tmp"  # not ours, however old
    other.write_bytes(b"x")
    os.utime(other, (1, 1))
    write(folder)
    assert not old.exists()
    assert fresh.exists() and other.exists()
