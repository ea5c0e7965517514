"""The window with its engine in a child process: crash isolation through the session, and the
window's process never loading torch, diffusers or ncnn (modules and memory maps)."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QSettings

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.messages import EngineCrashed
from fbupscale_gui.core.request import ReconstructionRequest
from fbupscale_gui.state.job_queue import JobState
from fbupscale_gui.state.session import Message, Session
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.storage.session_reader import read_snapshot

pytestmark = pytest.mark.slow  # every test runs an engine child process

ROOT = Path(__file__).resolve().parents[1]
FAKE = "fbupscale_gui.worker.testing:FakeRunner"
WAIT_MS = 30_000  # a safety net, not a timing assertion


@pytest.fixture
def session(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FBUPSCALE_SESSIONS_DIR", str(tmp_path / "sessions"))
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    made = Session(
        SettingsModel(store),
        engine_factory=FAKE,
        engine_kwargs={"steps": 40, "step_s": 0.05},
    )
    yield made
    made.shutdown(20_000)
    gc.collect()


def test_sigkill_of_the_engine_keeps_the_window_its_candidates_and_the_queue(
    qtbot, session: Session, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    assert session.open_session()
    folder = session.session_path
    assert folder is not None
    path = tmp_path / "cutout.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(path)
    session.cutouts.add_paths([path])
    (cutout,) = session.cutouts.cutouts()
    messages: list[Message] = []
    session.message.connect(messages.append)
    request = session.build_request(cutout).replace(engine="flux", variants=3)
    job = session.jobs.enqueue(cutout.id, cutout.name, request)
    second = session.jobs.enqueue(cutout.id, cutout.name, request.replace(variants=1))
    qtbot.waitUntil(lambda: job.candidates >= 1, timeout=WAIT_MS)
    link = session.engine_link
    pid = link.process.pid  # type: ignore[union-attr]
    assert pid is not None and pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    qtbot.waitUntil(lambda: job.state is JobState.FAILED, timeout=WAIT_MS)
    assert isinstance(job.error, EngineCrashed) and "SIGKILL" in job.error_message
    kept = job.candidates
    assert 1 <= kept < len(request.candidate_keys())
    assert len(session.candidates.entries(cutout.id)) == kept  # intact, shown
    offer = [m for m in messages if m.retry is job]
    assert offer and offer[0].retry_label == "Re-run" and "SIGKILL" in offer[0].text
    # the queue goes on in a fresh engine process
    qtbot.waitUntil(lambda: second.state is JobState.DONE, timeout=WAIT_MS)
    assert link.process.pid != pid  # type: ignore[union-attr]
    # the interrupted job re-runs as it was
    again = session.retry(offer[0])
    assert again is not None and again.request == job.request
    qtbot.waitUntil(lambda: again.state is JobState.DONE, timeout=WAIT_MS)
    assert again.candidates == len(request.candidate_keys())
    session.recorder.close()  # everything queued is written
    snap = read_snapshot(folder)
    states = {j.id: (j.state, j.error) for j in snap.jobs}
    assert any(s == "failed" and "SIGKILL" in e for s, e in states.values())
    files = sorted(p.name for p in (folder / "candidates").iterdir())
    assert len(snap.candidates) == len(files) == kept + second.candidates + again.candidates
    assert not [n for n in files if n.endswith(".tmp")]  # no partial candidate file


_SCRIPT = """
import json, os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from PySide6.QtWidgets import QApplication
from PySide6.QtCore import QSettings
app = QApplication([])
from PIL import Image
from fbupscale_gui.state.job_queue import JobState
from fbupscale_gui.state.session import Session
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.ui.main_window import MainWindow
session = Session(SettingsModel(QSettings(sys.argv[1], QSettings.Format.IniFormat)))
window = MainWindow(session)
window.show()
path = sys.argv[2]
Image.new("RGB", (16, 16), (20, 160, 60)).save(path)
session.cutouts.add_paths([path])
(cutout,) = session.cutouts.cutouts()
job = session.jobs.enqueue(cutout.id, cutout.name, session.build_request(cutout).replace(engine=sys.argv[3]))
while job.state in (JobState.QUEUED, JobState.RUNNING):
    app.processEvents()
    session.jobs.thread().msleep(10)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "diffusers", "ncnn", "spandrel") or m.startswith("fbupscale_gui.engine"))
with open("/proc/self/maps") as maps:
    mapped = sorted({line.split()[-1] for line in maps if any(k in line for k in ("torch", "ncnn", "diffusers"))})
child = session.engine_link.process.pid
window.confirm_on_close = False
window.close()
session.shutdown(20000)
print(json.dumps({"state": job.state.value, "error": job.error_message, "candidates": job.candidates, "heavy": heavy, "mapped": mapped, "child": child, "me": os.getpid()}))
"""


def _engine() -> str:
    try:
        from fbupscale_gui.engine.fast.engines import realesrgan_model_files

        realesrgan_model_files()
    except Exception:
        return "lanczos"
    return "realesrgan"


def test_the_window_process_never_loads_the_engine(tmp_path: Path) -> None:
    engine = _engine()
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "s.ini"), str(tmp_path / "c.png"), engine],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, FBUPSCALE_SESSIONS_DIR=str(tmp_path / "sessions")),
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["state"] == "done", result["error"]
    assert result["candidates"] == 1
    assert result["child"] != result["me"]  # it ran in the engine process
    assert result["heavy"] == []
    assert result["mapped"] == []


def test_an_engine_error_arrives_typed_and_the_engine_lives(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    session = Session(SettingsModel(store))  # the real engine, in its process
    try:
        job = session.jobs.enqueue(0, "nothing", ReconstructionRequest(engine="lanczos"))
        qtbot.waitUntil(lambda: job.state is JobState.FAILED, timeout=WAIT_MS)
        assert isinstance(job.error, RequestError) and "names no cutout" in job.error_message
        assert not job.crashed and session.engine_link.is_running()
    finally:
        session.shutdown(20_000)


def test_the_cancel_grace_period_is_a_setting(session: Session) -> None:
    from fbupscale_gui.core.settings import Settings, SettingsError

    link = session.engine_link
    assert link.grace_s == 10.0  # type: ignore[union-attr]
    session.settings.update(cancel_grace_s=3)
    assert link.grace_s == 3.0  # type: ignore[union-attr]
    with pytest.raises(SettingsError, match="cancel_grace_s"):
        Settings.defaults().replace(cancel_grace_s=0)
    assert Settings.from_mapping({"cancel_grace_s": "abc"}).cancel_grace_s == 10.0
    assert Settings.from_mapping({"engine_prewarm": "false"}).engine_prewarm is False
