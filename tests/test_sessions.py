"""Sessions: everything written as produced, reopened intact, interrupted jobs, full disk.

A fake runner makes candidates; the session folder is a private temporary one (conftest sets
``FBUPSCALE_SESSIONS_DIR``; these tests use their own folders besides).
"""

from __future__ import annotations

import errno
import gc
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QSettings

from fbupscale_gui.core import metadata
from fbupscale_gui.core.atomic import atomic_write_bytes, clean_stale_temps
from fbupscale_gui.core.session_store import (
    INDEX_NAME,
    SCHEMA_VERSION,
    SessionStore,
    create_session,
    list_sessions,
    read_snapshot,
)
from fbupscale_gui.models.jobs import JobState
from fbupscale_gui.models.session import Message, Session
from fbupscale_gui.models.settings_model import SettingsModel
from fbupscale_gui.worker.testing import FakeRunner


@pytest.fixture
def sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "sessions"
    monkeypatch.setenv("FBUPSCALE_SESSIONS_DIR", str(root))
    return root


@pytest.fixture
def settings(tmp_path: Path) -> SettingsModel:
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    model = SettingsModel(store)
    model.update(export_dir=str(tmp_path / "exports"), engine="lanczos")
    return model


@pytest.fixture
def make_session(qtbot, settings: SettingsModel) -> Iterator[object]:  # type: ignore[no-untyped-def]
    made: list[Session] = []

    def make(runner: FakeRunner | None = None) -> Session:
        r = runner or FakeRunner(steps=1)
        session = Session(settings, runner_factory=lambda: r)
        made.append(session)
        return session

    yield make
    for s in made:
        s.shutdown(10_000)
        assert not s.engine_thread.is_running()
    gc.collect()


def cutout_file(folder: Path, name: str, colour: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    img = Image.new("RGB", (48, 48), (30 + colour, 120, 40))
    img.putpixel((3, 5), (250, 250, 250))
    img.save(path)
    return path


def wait_idle(qtbot, session: Session) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: not session.jobs.is_busy(), timeout=20_000)


def run_two(session: Session, tmp_path: Path) -> None:
    """Two cutouts, one job each (Lanczos: one candidate per job)."""
    session.cutouts.add_paths(
        [cutout_file(tmp_path / "in", "a.png"), cutout_file(tmp_path / "in", "b.png", 40)]
    )
    session.run(session.cutouts.cutouts())


# -- core: the store -----------------------------------------------------------------------


def test_store_schema_wal_and_interrupted_on_reopen(tmp_path: Path) -> None:
    from fbupscale_gui.core.session_store import JobRow

    folder = create_session("Derby", root=tmp_path)
    store = SessionStore(folder)
    store.put_job(JobRow(1, "k", "a.png", "{}", "queued"))
    store.put_job(JobRow(2, "k", "b.png", "{}", "queued"))
    store.set_job_state(2, "running", run=1)
    store.put_job(JobRow(3, "k", "c.png", "{}", "queued"))
    store.set_job_state(3, "done")
    assert store.meta("schema_version") == str(SCHEMA_VERSION)
    mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode.lower() == "wal"
    # killed: no close
    again = SessionStore(folder)
    assert sorted(again.interrupted) == [1, 2]
    snap = read_snapshot(folder)
    assert [j.state for j in snap.jobs] == ["interrupted", "interrupted", "done"]
    events = again._conn.execute("SELECT state FROM job_events WHERE job_id = 2").fetchall()
    assert [e[0] for e in events] == ["queued", "running", "interrupted"]
    assert snap.info.name == "Derby"
    again.close()
    store.close()


def test_store_open_removes_stale_temporary_files(tmp_path: Path) -> None:
    folder = create_session("x", root=tmp_path)
    leftover = folder / "candidates" / ".000001.png.abc123.tmp"
    leftover.write_bytes(b"partial")
    keep = folder / "candidates" / "notes.txt"
    keep.write_text("mine")
    SessionStore(folder).close()
    assert not leftover.exists()
    assert keep.exists()


def test_export_folder_cleanup_only_touches_old_own_temps(tmp_path: Path) -> None:
    old_ours = tmp_path / ".shot_01.png.k2j3.tmp"
    new_ours = tmp_path / ".shot_02.png.zz99.tmp"
    other = tmp_path / ".editor-swap.tmp"
    for p in (old_ours, new_ours, other):
        p.write_bytes(b"x")
    os.utime(old_ours, (1, 1))
    os.utime(other, (1, 1))
    removed = clean_stale_temps(tmp_path, older_than_s=3600, final_suffixes=(".png", ".jpg"))
    assert removed == [old_ours]
    assert new_ours.exists() and other.exists()


def test_atomic_files_get_the_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        from fbupscale_gui.core import atomic

        atomic._umask_value = None  # read again under this umask
        path = atomic_write_bytes(tmp_path / "f.bin", b"data")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old)
        atomic._umask_value = None


def test_candidate_files_are_not_0600(tmp_path: Path) -> None:
    from fbupscale_gui.core import atomic
    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest

    atomic._umask_value = None
    umask = os.umask(0o022)
    os.umask(umask)
    cand = Candidate(
        CandidateKey(0, False), 1, Image.new("RGB", (8, 8)), ReconstructionRequest(engine="lanczos")
    )
    path = metadata.save_candidate(cand, tmp_path / "c.png")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


# -- the window's session ------------------------------------------------------------------


def test_everything_is_written_as_produced_and_reopens_intact(
    qtbot, make_session, sessions: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    first = make_session()
    assert first.open_session()
    folder = first.session_path
    assert folder is not None and folder.parent == sessions
    run_two(first, tmp_path)
    wait_idle(qtbot, first)
    a, _b = first.cutouts.cutouts()
    first.run([a])  # a second run of a: two candidates, rows run 1 and run 2
    wait_idle(qtbot, first)
    a.prompt, a.prompt_manual = "keeper in a green kit", True
    first.note_cutout_changed(a)
    second_a = first.candidates.entries(a.id)[1]
    first.candidates.pick(second_a)
    assert first.recorder.flush(10)

    # on disk before any exit: cutouts, jobs, candidates (complete files), the pick
    snap = read_snapshot(folder)
    assert [c.name for c in snap.cutouts] == ["a.png", "b.png"]
    assert [j.state for j in snap.jobs] == ["done", "done", "done"]
    assert len(snap.candidates) == 3
    for row in snap.candidates:
        record = metadata.read_metadata(folder / row.file)
        assert record.seed == row.seed
    pixels = {r.id: Image.open(folder / r.file).convert("RGB").tobytes() for r in snap.candidates}
    first.shutdown(10_000)

    again = make_session()
    again.open_session(folder)
    assert [c.name for c in again.cutouts.cutouts()] == ["a.png", "b.png"]
    ra, rb = again.cutouts.cutouts()
    assert ra.prompt == "keeper in a green kit" and ra.prompt_manual
    entries = again.candidates.entries(ra.id)
    assert len(entries) == 2 and len(again.candidates.entries(rb.id)) == 1
    assert again.candidates.picked(ra.id) is entries[1]
    assert entries[1].seed == second_a.seed
    restored = {e.candidate.image.tobytes() for e in entries}
    assert restored <= set(pixels.values())
    assert again.jobs.interrupted() == []
    # a new run of a restored cutout is run 2 (rows below the first)
    again.run([ra])
    wait_idle(qtbot, again)
    assert {e.run for e in again.candidates.entries(ra.id)} == {1, 2, 3}


def test_interrupted_jobs_show_and_can_be_rerun(
    qtbot, make_session, sessions: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    first = make_session(FakeRunner(steps=1, gate=gate))
    first.open_session()
    folder = first.session_path
    assert folder is not None
    with qtbot.waitSignal(first.jobs.jobStarted, timeout=10_000):
        run_two(first, tmp_path)
    assert first.recorder.flush(10)
    # "crash": stop recording, then stop the thread (what it does now is never recorded)
    first.recorder.close()
    gate.set()
    first.shutdown(10_000)
    snap = read_snapshot(folder)
    assert sorted(j.state for j in snap.jobs) == ["queued", "running"]

    second = make_session(FakeRunner(steps=1))
    messages: list[Message] = []
    second.message.connect(messages.append)
    second.open_session(folder)
    interrupted = second.jobs.interrupted()
    assert len(interrupted) == 2
    assert all(j.state is JobState.INTERRUPTED for j in interrupted)
    offer = [m for m in messages if m.rerun]
    assert len(offer) == 1 and "interrupted" in offer[0].text
    assert offer[0].retry_label == "Re-run interrupted"
    assert read_snapshot(folder).jobs[0].state == "interrupted"

    second.retry(offer[0])
    wait_idle(qtbot, second)
    assert second.jobs.interrupted() == []
    assert all(len(second.candidates.entries(c.id)) == 1 for c in second.cutouts.cutouts())
    assert second.recorder.flush(10)
    second.shutdown(10_000)

    third = make_session()
    third.open_session(folder)
    assert third.jobs.interrupted() == []  # re-run: no longer offered
    assert sum(len(third.candidates.entries(c.id)) for c in third.cutouts.cutouts()) == 2


def test_gui_thread_never_writes_a_candidate_png(
    qtbot, make_session, sessions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    writers: list[str] = []
    real = metadata.save_candidate

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        writers.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(metadata, "save_candidate", spy)
    session = make_session()
    session.open_session()
    run_two(session, tmp_path)
    wait_idle(qtbot, session)
    assert session.recorder.flush(10)
    assert len(writers) == 2
    assert threading.main_thread().name not in writers
    assert set(writers) == {"fbupscale-session-writer"}


@pytest.mark.parametrize(
    ("err", "why"),
    [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "the folder is read-only")],
)
def test_full_disk_gives_one_message_and_keeps_the_work(
    qtbot, make_session, sessions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err, why
) -> None:  # type: ignore[no-untyped-def]
    def full(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(metadata, "save_candidate", full)
    session = make_session()
    messages: list[Message] = []
    session.message.connect(messages.append)
    session.open_session()
    folder = session.session_path
    run_two(session, tmp_path)
    wait_idle(qtbot, session)
    assert session.recorder.flush(10)
    qtbot.waitUntil(lambda: any(m.level == "error" for m in messages), timeout=5000)
    errors = [m for m in messages if m.level == "error"]
    assert len(errors) == 1  # two failed writes, one message
    assert str(folder) in errors[0].text and why in errors[0].text
    # the window keeps everything
    assert sum(len(session.candidates.entries(c.id)) for c in session.cutouts.cutouts()) == 2
    assert len(session.candidates.all_picks()) == 2
    # nothing half-written under a final name
    assert list((folder / "candidates").iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_session_folder_is_reported(
    qtbot, make_session, sessions: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = create_session("ro")
    for p in (folder, folder / "candidates", folder / "cutouts"):
        p.mkdir(exist_ok=True)
    session = make_session()
    messages: list[Message] = []
    session.message.connect(messages.append)
    for p in (folder / "candidates", folder / "cutouts", folder):
        p.chmod(0o555)
    (folder / INDEX_NAME).chmod(0o444)
    try:
        session.open_session(folder)
        run_two(session, tmp_path)
        wait_idle(qtbot, session)
        session.recorder.flush(10)
        qtbot.waitUntil(lambda: any(m.level == "error" for m in messages), timeout=5000)
        assert any(str(folder) in m.text for m in messages if m.level == "error")
        assert len(session.candidates.all_picks()) == 2
    finally:
        for p in (folder, folder / "candidates", folder / "cutouts"):
            p.chmod(0o755)


def test_sessions_are_listed_renamed_archived_and_deleted(
    qtbot, make_session, sessions: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    session = make_session(FakeRunner(steps=1, gate=gate))
    assert session.new_session("Saturday")
    current = session.session_path
    other = create_session("Friday")
    assert {i.name for i in list_sessions()} == {"Saturday", "Friday"}
    assert session.rename_session(other, "Friday night")
    assert session.archive_session(other)
    info = {i.name: i for i in list_sessions()}
    assert info["Friday night"].archived
    # the current session cannot be deleted (or left) while a job runs
    run_two(session, tmp_path)
    assert not session.delete_session(current)
    assert not session.open_session(other)
    assert current is not None and current.exists()
    gate.set()
    wait_idle(qtbot, session)
    assert session.delete_session(other)
    assert not other.exists()
    assert session.delete_session(current)
    assert not current.exists()
    assert session.session_path is not None and session.session_path != current
    assert len(session.cutouts) == 0


def test_a_candidate_file_written_just_before_a_crash_is_indexed_on_open(
    qtbot, make_session, sessions: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Killed between the file's rename and its row's commit: the next open indexes it
    from its embedded metadata, and new candidates never reuse its id."""
    first = make_session()
    first.open_session()
    folder = first.session_path
    assert folder is not None
    run_two(first, tmp_path)
    wait_idle(qtbot, first)
    assert first.recorder.flush(10)
    first.shutdown(10_000)
    snap = read_snapshot(folder)
    row = snap.candidates[0]
    orphan = folder / "candidates" / "000042.png"
    record = metadata.read_metadata(folder / row.file)
    from fbupscale_gui.core.job import Candidate

    with Image.open(folder / row.file) as im:
        pixels = im.convert("RGB")
    metadata.save_candidate(
        Candidate(record.key, 99, pixels, record.request, runtime="fake"), orphan
    )

    again = make_session()
    again.open_session(folder)
    snap = read_snapshot(folder)
    assert 42 in {c.id for c in snap.candidates}
    cutout = again.cutouts.cutouts()[0]
    assert 99 in {e.seed for e in again.candidates.entries(cutout.id)}
    again.run([cutout])
    wait_idle(qtbot, again)
    assert again.recorder.flush(10)
    assert max(c.id for c in read_snapshot(folder).candidates) == 43
