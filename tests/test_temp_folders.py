"""The window leaves nothing in the system temporary folder, even when it is killed, and
removes the ``fbupscale-gui-XXXXXX`` folders that earlier releases left there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml

ROOT = Path(__file__).resolve().parents[1]
#: A safety net for a hung child, not a timing assertion.
LIMIT_S = 120


def _legacy(
    temp: Path, name: str, *, files: tuple[str, ...] = ("check.png",), age_s: float
) -> Path:
    folder = temp / name
    folder.mkdir()
    for f in files:
        (folder / f).write_bytes(b"x")
    then = time.time() - age_s
    os.utime(folder, (then, then))
    return folder


def test_a_killed_window_leaves_no_temporary_folder(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    _legacy(temp, "fbupscale-gui-aB3dE9", age_s=3600)  # left by a killed earlier window
    sessions = tmp_path / "sessions"
    env = dict(
        os.environ,
        TMPDIR=str(temp),
        FBUPSCALE_SESSIONS_DIR=str(sessions),
        FBUPSCALE_CACHE_DIR=str(tmp_path / "cache"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        QT_QPA_PLATFORM="offscreen",
    )
    env.pop("FBUPSCALE_QUIT_WHEN_SHOWN", None)
    code = "import sys; from fbupscale_gui.app import main; sys.exit(main([]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + LIMIT_S
        # the last session is remembered once the window is built and its session open
        while not (sessions / "last-session").is_file() and proc.poll() is None:
            assert time.monotonic() < deadline, "the window did not open in time"
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in temp.iterdir() if p.name.startswith("fbupscale-gui-")] == []
    assert list((tmp_path / "cache" / "theme").glob("check-*.png"))  # in the app's cache


def test_only_stale_check_mark_folders_are_removed(tmp_path: Path) -> None:
    from fbupscale_gui.ui.theme import clean_stale_icon_dirs

    stale = _legacy(tmp_path, "fbupscale-gui-Zz0001", age_s=3600)
    fresh = _legacy(tmp_path, "fbupscale-gui-Zz0002", age_s=0)  # a window starting now
    other = _legacy(tmp_path, "fbupscale-gui-Zz0003", files=("check.png", "a.txt"), age_s=3600)
    unrelated = _legacy(tmp_path, "fbupscale-gui-data", files=(), age_s=3600)
    assert clean_stale_icon_dirs(tmp_path) == 1
    assert not stale.exists()
    assert fresh.exists() and other.exists() and unrelated.exists()
