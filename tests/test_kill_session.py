"""Kill test for the window: SIGKILL the app mid-run, restart, nothing finished is lost.

The app starts offscreen on a private session folder as an operator queues a folder,
``fbupscale-gui resources/samples --engine realesrgan --run-all``, on the five samples. As soon as the session index holds one candidate the process is SIGKILLed, so the
kill always lands mid-run whatever the machine's speed (Real-ESRGAN takes seconds per sample
on a CPU, so later jobs are still queued or running). Then:

* every file under a final name in ``candidates/`` decodes completely, carries its metadata
  and is indexed (a file finished just before the kill is indexed on the next open);
* anything else there is a hidden ``.….tmp`` file, never a final name, and it is gone after
  the restart;
* a new window on the same session folder (the last session) shows every finished candidate
  with its pick, and the jobs that had not finished show as interrupted and can be re-run.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QSettings

from fbupscale_gui.storage.metadata import read_metadata
from fbupscale_gui.storage.session_catalogue import last_session
from fbupscale_gui.storage.session_index import INDEX_NAME
from fbupscale_gui.storage.session_reader import read_snapshot

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples"
FINAL = re.compile(r"^\d{6}\.png$")
TEMP = re.compile(r"^\.\d{6}\.png\..*\.tmp$")
#: A safety net for a hung child, not a timing assertion.
LIMIT_S = 240


def _indexed_candidates(folder: Path) -> int:
    index = folder / INDEX_NAME
    if not index.is_file():
        return 0
    try:
        conn = sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not created yet


def _realesrgan_available() -> bool:
    try:
        from fbupscale_gui.engine.fast.engines import realesrgan_model_files

        realesrgan_model_files()
    except Exception:
        return False
    return True


def _first_candidate(proc: subprocess.Popen[str], sessions: Path, deadline: float) -> Path | None:
    """The session folder once its index holds a candidate (None: the app ended or time ran
    out)."""
    folder: Path | None = None
    while time.monotonic() < deadline and proc.poll() is None:
        folder = last_session(sessions)
        if folder is not None and _indexed_candidates(folder) >= 1:
            return folder
        time.sleep(0.05)
    return folder


def _launch(tmp_path: Path, sessions: Path, stderr: int) -> subprocess.Popen[str]:
    """``fbupscale-gui samples --engine realesrgan --run-all``, offscreen, private folders."""
    env = dict(
        os.environ,
        FBUPSCALE_SESSIONS_DIR=str(sessions),
        FBUPSCALE_CPU_THREADS="1",
        XDG_CONFIG_HOME=str(tmp_path / "config"),  # QSettings of the child
        QT_QPA_PLATFORM="offscreen",
        PYTHONUNBUFFERED="1",
    )
    env.pop("FBUPSCALE_QUIT_WHEN_SHOWN", None)
    code = "import sys; from fbupscale_gui.app import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, str(SAMPLES), "--engine", "realesrgan", "--run-all"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )


@pytest.mark.skipif(not _realesrgan_available(), reason="Real-ESRGAN weights not available")
def test_sigkill_mid_session_loses_nothing_finished(qtbot, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sessions = tmp_path / "sessions"
    proc = _launch(tmp_path, sessions, subprocess.PIPE)
    try:
        deadline = time.monotonic() + LIMIT_S
        folder = _first_candidate(proc, sessions, deadline)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert folder is not None and _indexed_candidates(folder) >= 1, "no candidate in time"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    # -- on disk, as the kill left it
    names = sorted(p.name for p in (folder / "candidates").iterdir())
    finals = [n for n in names if FINAL.match(n)]
    assert finals, names
    assert all(FINAL.match(n) or TEMP.match(n) for n in names), names
    for name in finals:
        with Image.open(folder / "candidates" / name) as im:
            im.load()  # complete: a truncated file raises here
            assert im.size[0] == 1024 or im.size[1] == 1024
        record = read_metadata(folder / "candidates" / name)
        assert record.request.engine == "realesrgan"
    jobs_before = read_snapshot(folder).jobs
    assert len(jobs_before) == 5  # one per sample, all recorded when queued
    assert any(j.state in ("queued", "running") for j in jobs_before)

    # -- restart: a window on the last session
    from fbupscale_gui.state.session import Session
    from fbupscale_gui.state.settings_model import SettingsModel
    from fbupscale_gui.ui.main_window import MainWindow
    from fbupscale_gui.worker.testing import FakeRunner

    monkeypatch.setenv("FBUPSCALE_SESSIONS_DIR", str(sessions))
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    session = Session(SettingsModel(store), runner_factory=FakeRunner)
    window = MainWindow(session)
    window.confirm_on_close = False
    window.show()
    try:
        assert session.open_session()  # no path: the last session
        assert session.session_path == folder
        snap = read_snapshot(folder)
        indexed = {c.file.split("/")[-1] for c in snap.candidates}
        assert set(finals) <= indexed  # every finished candidate is indexed
        leftovers = [p.name for p in (folder / "candidates").iterdir() if TEMP.match(p.name)]
        assert leftovers == []  # cleaned on open
        cutouts = session.cutouts.cutouts()
        assert len(cutouts) == 5
        restored = [e for c in cutouts for e in session.candidates.entries(c.id)]
        assert len(restored) == len(finals)
        for entry in restored:
            assert session.candidates.picked(entry.cutout_id) is not None
        unfinished = [j for j in jobs_before if j.state in ("queued", "running")]
        interrupted = session.jobs.interrupted()
        assert len(interrupted) == len(unfinished) >= 1
        assert {j.state for j in read_snapshot(folder).jobs} <= {"done", "interrupted"}
        assert window.rerun_action.isEnabled()
        assert any("interrupted" in t for t in window.messages.texts())
        # re-run them (the fake runner stands in for the engine here)
        again = window.rerun_interrupted()
        assert len(again) == len(unfinished)
        qtbot.waitUntil(lambda: not session.jobs.is_busy(), timeout=20_000)
        assert all(session.candidates.entries(c.id) for c in cutouts)
        assert not window.rerun_action.isEnabled()
    finally:
        window.close()
        gc.collect()


def _engine_child(pid: int) -> int | None:
    """The engine process the app ``pid`` started (None: not running now)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"fbupscale_gui.host.child" in cmdline:
            return int(entry.name)
    return None


@pytest.mark.skipif(not _realesrgan_available(), reason="Real-ESRGAN weights not available")
def test_run_all_survives_the_engine_process_killed_after_the_first_candidate(
    tmp_path: Path,
) -> None:
    """``fbupscale-gui samples --run-all --engine realesrgan``; the engine process is killed
    after the first candidate: the window lives on, the job that was running records why, and
    every other cutout still gets its candidate (the engine restarts)."""
    sessions = tmp_path / "sessions"
    proc = _launch(tmp_path, sessions, subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + LIMIT_S
        folder = _first_candidate(proc, sessions, deadline)
        assert folder is not None and _indexed_candidates(folder) >= 1, "no candidate in time"
        child = _engine_child(proc.pid)
        assert child is not None
        os.kill(child, signal.SIGKILL)  # mid-job: the next sample started with the first's end

        def ended() -> list[str]:
            return [j.state for j in read_snapshot(folder).jobs]

        while time.monotonic() < deadline and proc.poll() is None:
            states = ended()
            if len(states) == 5 and all(s in ("done", "failed") for s in states):
                break
            time.sleep(0.2)
        assert proc.poll() is None  # the window lives on
        jobs = read_snapshot(folder).jobs
        failed = [j for j in jobs if j.state == "failed"]
        assert len(failed) == 1 and "SIGKILL" in failed[0].error, [(j.state, j.error) for j in jobs]
        assert sum(j.state == "done" for j in jobs) == 4
        assert _indexed_candidates(folder) == 4  # every other cutout got its candidate
        assert _engine_child(proc.pid) not in (None, child)  # restarted
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
