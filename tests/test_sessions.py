"""Sessions: everything written as produced (the Advanced parameters too), reopened intact,
interrupted jobs, full disk.

A fake runner makes candidates; the session folder is a private temporary one (conftest sets
``FBUPSCALE_SESSIONS_DIR``; these tests use their own folders besides).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import shutil
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QSettings

from fbupscale_gui.core.job import Candidate
from fbupscale_gui.core.request import LoraParams, ModelRef, ReconstructionRequest, Stage1Params
from fbupscale_gui.state.job_queue import JobState
from fbupscale_gui.state.parameters import Parameters, ParamValues, default_values
from fbupscale_gui.state.session import Message, Session
from fbupscale_gui.state.session_persist import PARAMS_KEY
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.storage import metadata
from fbupscale_gui.storage.atomic import atomic_write_bytes, clean_stale_temps
from fbupscale_gui.storage.session_catalogue import list_sessions
from fbupscale_gui.storage.session_index import INDEX_NAME, SCHEMA_VERSION
from fbupscale_gui.storage.session_reader import read_snapshot
from fbupscale_gui.storage.session_store import SessionStore, create_session
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


def recorded_session(qtbot, make_session, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """A session with two cutouts and one candidate each, written and closed."""
    first = make_session()
    first.open_session()
    folder = first.session_path
    assert folder is not None
    run_two(first, tmp_path)
    wait_idle(qtbot, first)
    assert first.recorder.flush(10)
    first.shutdown(10_000)
    return folder


# -- core: the store -----------------------------------------------------------------------


def test_store_schema_wal_and_interrupted_on_reopen(tmp_path: Path) -> None:
    from fbupscale_gui.storage.session_index import JobRow

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
    leftover = folder / "candidates" / ".000001.png.abc12_3x.tmp"
    leftover.write_bytes(b"partial")
    keep = folder / "candidates" / "notes.txt"
    keep.write_text("mine")
    SessionStore(folder).close()
    assert not leftover.exists()
    assert keep.exists()


def test_export_folder_cleanup_only_touches_old_own_temps(tmp_path: Path) -> None:
    old_ours = tmp_path / ".shot_01.png.k2j3m9q_.tmp"
    new_ours = tmp_path / ".shot_02.png.zz99a0b1.tmp"
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
        from fbupscale_gui.storage import atomic

        atomic._umask_value = None  # read again under this umask
        path = atomic_write_bytes(tmp_path / "f.bin", b"data")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    finally:
        os.umask(old)
        atomic._umask_value = None


def test_candidate_files_are_not_0600(tmp_path: Path) -> None:
    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
    from fbupscale_gui.storage import atomic

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


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(
            "read-only",
            marks=pytest.mark.skipif(
                os.geteuid() == 0, reason="root writes into read-only folders (see the next case)"
            ),
        ),
        "file in the way",  # fails for root too, so it runs where CI runs (as root)
    ],
)
def test_session_folder_that_cannot_be_written_is_reported(
    qtbot, make_session, sessions: Path, tmp_path: Path, block: str
) -> None:  # type: ignore[no-untyped-def]
    folder = create_session("ro")
    subfolders = (folder / "candidates", folder / "cutouts")
    for p in subfolders:
        if block == "read-only":
            p.mkdir(exist_ok=True)
        else:  # a file where the session expects a folder
            shutil.rmtree(p, ignore_errors=True)
            p.write_bytes(b"not a folder")
    session = make_session()
    messages: list[Message] = []
    session.message.connect(messages.append)
    if block == "read-only":
        for p in (*subfolders, folder):
            p.chmod(0o555)
        (folder / INDEX_NAME).chmod(0o444)
    try:
        session.open_session(folder)
        run_two(session, tmp_path)
        wait_idle(qtbot, session)
        session.recorder.flush(10)
        qtbot.waitUntil(lambda: any(m.level == "error" for m in messages), timeout=5000)
        assert any(str(folder) in m.text for m in messages if m.level == "error")
        assert len(session.candidates.all_picks()) == 2  # the window keeps everything
    finally:
        for p in (folder, *subfolders):
            if p.is_dir():
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
    folder = recorded_session(qtbot, make_session, tmp_path)
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


# -- restoring a large session: structure first, pixels in the background -------------------


def build_stored_session(
    root: Path, tmp_path: Path, n_cutouts: int = 3, per_cutout: int = 3
) -> tuple[Path, dict[int, bytes], dict[str, int]]:
    """A session written by the store itself: per cutout one real Lanczos candidate (variant 0,
    reproducible) and ``per_cutout - 1`` 1024 px synthetic ones; the pick is the last one.

    Returns the folder, the stored pixels by candidate id, and the picked id by cutout key."""
    import json
    from dataclasses import asdict

    import numpy as np

    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
    from fbupscale_gui.engine import Engine
    from fbupscale_gui.storage.cutouts import make_source
    from fbupscale_gui.storage.session_catalogue import set_last_session
    from fbupscale_gui.storage.session_index import CandidateRow, CutoutRow, JobRow

    folder = create_session("big", root)
    store = SessionStore(folder)
    engine = Engine()
    stored: dict[int, bytes] = {}
    picks: dict[str, int] = {}
    yy, xx = np.mgrid[0:1024, 0:1024]
    try:
        for c in range(n_cutouts):
            path = cutout_file(tmp_path / "in", f"c{c}.png", 10 * c)
            cutout = Image.open(path).convert("RGB")
            source = make_source(path, cutout)
            row = CutoutRow(
                source.sha256, path.name, json.dumps(asdict(source)), f"cutouts/{source.sha256}.png"
            )
            store.put_cutout(row, cutout)
            request = ReconstructionRequest(engine="lanczos", source=source)
            job = store.put_job(JobRow(0, source.sha256, path.name, request.to_json(), "done", 1))
            (real,) = list(engine.run(request))
            for v in range(per_cutout):
                if v == 0:
                    cand = real
                else:
                    arr = np.stack([(xx * v + c) % 256, (yy + 40 * v) % 256, (xx ^ yy) % 256], -1)
                    image = Image.fromarray(arr.astype(np.uint8))
                    cand = Candidate(CandidateKey(v, False, 2), 100 + v, image, request)
                crow = CandidateRow(
                    0, job, source.sha256, 1, "", cand.key.variant, cand.key.lora, cand.key.stage,
                    cand.seed, 30.0 + v, request.to_json(),
                )  # fmt: skip
                cid = store.put_candidate(crow, cand, cutout)
                stored[cid] = cand.image.convert("RGB").tobytes()
            store.set_pick(source.sha256, cid)
            picks[source.sha256] = cid
    finally:
        engine.release()
        store.close()
    set_last_session(folder)
    return folder, stored, picks


def test_restore_lists_everything_first_and_decodes_candidates_off_the_gui_thread(
    qtbot, make_session, sessions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from PIL import ImageFile

    from fbupscale_gui.storage import session_reader

    folder, stored, _picks = build_stored_session(sessions, tmp_path)
    decoded: list[tuple[str, Path]] = []  # (thread, file) of each candidate decode
    loads: list[tuple[str, str]] = []  # (thread, file) of every PNG pixel load
    real_read = session_reader.read_candidate_image
    real_load = ImageFile.ImageFile.load

    def read_spy(path):  # type: ignore[no-untyped-def]
        decoded.append((threading.current_thread().name, Path(path)))
        return real_read(path)

    def load_spy(self):  # type: ignore[no-untyped-def]
        loads.append((threading.current_thread().name, str(getattr(self, "filename", ""))))
        return real_load(self)

    monkeypatch.setattr(session_reader, "read_candidate_image", read_spy)
    monkeypatch.setattr(ImageFile.ImageFile, "load", load_spy)
    session = make_session()
    images_done: list[bool] = []
    session.imagesRestored.connect(lambda: images_done.append(True))
    session.open_session(folder)

    # the structure is there at once: every cutout, every candidate, every pick
    cutouts = session.cutouts.cutouts()
    assert [c.name for c in cutouts] == ["c0.png", "c1.png", "c2.png"]
    entries = [e for c in cutouts for e in session.candidates.entries(c.id)]
    assert len(entries) == len(stored) == 9
    assert [e.seed for e in session.candidates.entries(cutouts[0].id)][1:] == [101, 102]
    for c in cutouts:
        picked = session.candidates.picked(c.id)
        assert picked is session.candidates.entries(c.id)[-1]
        assert picked is not None and picked.lr_consistency == 32.0
    assert session.images_pending

    with qtbot.waitSignal(session.imagesRestored, timeout=20_000):
        pass
    assert images_done and not session.images_pending
    main = threading.main_thread().name
    assert len(decoded) == len(stored)  # each candidate decoded once
    assert all(thread != main for thread, _p in decoded)
    assert not [f for thread, f in loads if thread == main and "candidates" in f]
    for e in entries:
        assert e.is_loaded and e.has_thumb
        assert max(e.thumb.width(), e.thumb.height()) <= 240
    by_uid = {e.uid: e for e in entries}
    by_id = {-tok: by_uid[uid] for uid, tok in session.recorder._cand_ids.items()}
    for cid, pixels in stored.items():
        assert by_id[cid].candidate.image.tobytes() == pixels
        assert by_id[cid].image.width() == 1024


def test_a_restored_candidate_is_its_stored_full_resolution_image_on_demand(
    qtbot, make_session, sessions: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder, stored, _picks = build_stored_session(sessions, tmp_path, n_cutouts=1)
    session = make_session()
    session.open_session(folder)
    entry = session.candidates.entries(session.cutouts.at(0).id)[1]
    # asked for before the loader delivered it: decoded now, the stored pixels
    if not entry.is_loaded:
        assert not entry.has_thumb
    assert entry.candidate.image.size == (1024, 1024)
    assert entry.candidate.image.tobytes() in set(stored.values())
    with qtbot.waitSignal(session.imagesRestored, timeout=20_000):
        pass
    assert entry.has_thumb
    assert entry.candidate.image.tobytes() in set(stored.values())


@pytest.mark.parametrize("background", [False, True])
def test_export_after_restore_is_the_stored_candidate_and_reproduces(
    qtbot, make_session, sessions: Path, tmp_path: Path, background: bool
) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    from fbupscale_gui.engine import Engine

    folder, stored, _picks = build_stored_session(sessions, tmp_path, n_cutouts=2)
    session = make_session()
    session.open_session(folder)
    cutouts = session.cutouts.cutouts()
    # pick the real Lanczos candidates (variant 0), then export at once, before the images
    # of the restore have arrived
    for c in cutouts:
        session.candidates.pick(session.candidates.entries(c.id)[0])
    out = tmp_path / f"exports-{background}"
    if background:
        with qtbot.waitSignal(session.exported, timeout=20_000) as blocker:
            session.export_in_background(folder=out)
        paths = blocker.args[0]
    else:
        paths = session.export(folder=out)
    assert len(paths) == 2
    first_ids = sorted(stored)[:: len(stored) // 2]  # variant 0 of each cutout
    for path, cid in zip(sorted(paths), first_ids, strict=True):
        exported = Image.open(path).convert("RGB")
        assert exported.tobytes() == stored[cid]  # pixel-identical to the stored candidate
        record = metadata.read_metadata(path)
        engine = Engine()
        try:
            (again,) = list(engine.run(record.request.with_only(record.key)))
        finally:
            engine.release()
        assert np.array_equal(np.asarray(again.image.convert("RGB")), np.asarray(exported))
    with qtbot.waitSignal(session.imagesRestored, timeout=20_000):
        pass


def test_a_candidate_file_damaged_after_open_is_dropped_with_a_message(
    qtbot, make_session, sessions: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder, stored, _picks = build_stored_session(sessions, tmp_path, n_cutouts=1)
    last = max(stored)  # the pick
    target = folder / "candidates" / f"{last:06d}.png"
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 3])  # the header reads, the pixels do not
    session = make_session()
    messages: list[Message] = []
    session.message.connect(messages.append)
    session.open_session(folder)
    cutout = session.cutouts.at(0)
    assert len(session.candidates.entries(cutout.id)) == 3
    with qtbot.waitSignal(session.imagesRestored, timeout=20_000):
        pass
    entries = session.candidates.entries(cutout.id)
    assert len(entries) == 2 and all(e.has_thumb for e in entries)
    assert session.candidates.picked(cutout.id) is entries[0]
    assert any(target.name in m.text and m.level == "warning" for m in messages)


def _lora_session(tmp_path: Path) -> tuple[Path, Candidate, Image.Image, dict[str, object]]:
    """A session holding one FLUX LoRA candidate as the engine hands it back: with its LoRA
    report, typed runtime and number check."""
    from dataclasses import asdict

    from fbupscale_gui.core.number_check import NumberCheck, NumberReading
    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
    from fbupscale_gui.core.runtime import ResolvedRuntime
    from fbupscale_gui.storage.cutouts import make_source
    from fbupscale_gui.storage.session_index import CandidateRow, CutoutRow

    path = cutout_file(tmp_path / "in", "keeper.png", 40)
    cutout = Image.open(path).convert("RGB")
    source = make_source(path, cutout)
    request = ReconstructionRequest(engine="flux", variants=1, source=source)
    report: dict[str, object] = {"file": "football.safetensors", "left_out": ["x"], "scale": 0.8}
    candidate = Candidate(
        CandidateKey(0, True, 2), 7, Image.new("RGB", (64, 96), (9, 99, 199)), request,
        {"stage1": 1.5}, "cuda:0 bf16", report,
        ResolvedRuntime("cuda:0", "bf16", "model", "torch", "2.13.0", "0.36.0"),
        NumberCheck("agrees", (9,), (NumberReading("9", 0.97),), "9 read as the scene says"),
    )  # fmt: skip
    folder = create_session("lora", root=tmp_path / "sessions")
    store = SessionStore(folder)
    try:
        store.put_cutout(
            CutoutRow(source.sha256, source.name, json.dumps(asdict(source)),
                      f"cutouts/{source.sha256}.png"),
            cutout,
        )  # fmt: skip
        store.put_candidate(
            CandidateRow(0, 1, source.sha256, 1, "", 0, True, 2, 7, None,
                         request.to_json(), candidate.runtime),
            candidate,
            cutout,
        )  # fmt: skip
    finally:
        store.close()
    return folder, candidate, cutout, report


def test_restore_then_export_keeps_the_lora_report_and_typed_runtime(tmp_path: Path) -> None:
    from fbupscale_gui.core.export import ExportItem
    from fbupscale_gui.state.session_restore import load_restored
    from fbupscale_gui.storage.export import export_candidates
    from fbupscale_gui.storage.metadata import JSON_KEY, read_metadata

    folder, candidate, cutout, report = _lora_session(tmp_path)
    (restored,) = load_restored(read_snapshot(folder)).candidates
    again = restored.stored.with_image(restored.stored.load())
    assert again.lora_report == report
    assert again.resolved == candidate.resolved and again.number_check == candidate.number_check
    (out,) = export_candidates(
        [ExportItem(again, "keeper.png", cutout)], tmp_path / "out", "{cutout}.png", match="m"
    )
    with Image.open(out) as im:
        payload = json.loads(im.text[JSON_KEY])  # type: ignore[attr-defined]
    assert payload["lora"] == report
    assert read_metadata(out).resolved == candidate.resolved
    assert read_metadata(out).number_check == candidate.number_check


def test_a_session_without_candidate_details_still_loads(tmp_path: Path) -> None:
    """A session written before the details were recorded (no such table) reads as before;
    opening it for writing adds the table, and a damaged detail is dropped with a line."""
    folder, _candidate, _cutout, _report = _lora_session(tmp_path)
    with contextlib.closing(sqlite3.connect(folder / INDEX_NAME)) as conn, conn:
        conn.execute("DROP TABLE candidate_details")
    snap = read_snapshot(folder)
    assert len(snap.candidates) == 1 and not snap.problems
    assert snap.candidates[0].lora_report is None and snap.candidates[0].resolved is None
    SessionStore(folder).close()  # the older session opened by this release
    with contextlib.closing(sqlite3.connect(folder / INDEX_NAME)) as conn, conn:
        conn.execute(
            "INSERT INTO candidate_details VALUES (?, '[1]', '{\"device\": 5}', '')",
            (snap.candidates[0].id,),
        )
    snap = read_snapshot(folder)
    assert len(snap.candidates) == 1 and snap.candidates[0].lora_report is None
    assert len(snap.problems) == 2 and all("details dropped" in p for p in snap.problems)


def test_a_rebuilt_index_keeps_the_candidate_details(tmp_path: Path) -> None:
    from fbupscale_gui.storage.session_store import rebuild_index

    folder, candidate, _cutout, report = _lora_session(tmp_path)
    (folder / INDEX_NAME).write_bytes(b"")  # damaged: rebuilt from the candidate files
    rebuild_index(folder)
    (row,) = read_snapshot(folder).candidates
    assert row.lora_report == report and row.resolved == candidate.resolved
    assert row.number_check == candidate.number_check


# -- the Advanced parameters: built from the model, saved with the session ----------------

#: Not the defaults in any field the request records.
CUSTOM = ReconstructionRequest(
    variants=2,
    seed=41,
    stage1=Stage1Params(strength=0.5, steps=20, guidance=3.0),
    lora=LoraParams(model=ModelRef(path="/m/football.safetensors"), scale=0.7, ab=False),
    memory_mode="group",
    speed="fast",
)


def one_cutout(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "a.png"
    Image.new("RGB", (48, 48), (30, 120, 40)).save(path)
    return path


def test_run_builds_requests_from_the_model_alone(qtbot, make_session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    session: Session = make_session()
    session.engine.set_engine("flux")  # the variants and the LoRA ride on a FLUX request
    session.cutouts.add_paths([one_cutout(tmp_path / "in")])
    session.params.set_from(CUSTOM)
    (job,) = session.run(session.cutouts.cutouts())
    request = job.request
    assert (request.variants, request.seed, request.stage1) == (2, 41, CUSTOM.stage1)
    assert request.lora.model == ModelRef(path="/m/football.safetensors")
    assert (request.memory_mode, request.speed) == ("group", "fast")
    qtbot.waitUntil(lambda: not session.jobs.is_busy(), timeout=20_000)

    messages: list[Message] = []
    session.message.connect(messages.append)
    session.params.set("seed", None)  # what an emptied seed field leaves
    assert session.run(session.cutouts.cutouts()) == []
    assert messages[-1].level == "error"
    assert messages[-1].text == "a.png: cannot run: seed: enter a seed (a whole number)"


def test_settings_lora_and_memory_mode_reach_the_requests(make_session, settings) -> None:  # type: ignore[no-untyped-def]
    session: Session = make_session()
    settings.update(lora_path="/m/l.safetensors", memory_mode="model")
    values = session.params.values
    assert (values.lora_path, values.memory_mode) == ("/m/l.safetensors", "model")
    assert values == default_values(settings.settings)


def test_parameters_are_saved_with_the_session_and_restored(
    qtbot,  # type: ignore[no-untyped-def]
    make_session,
    sessions: Path,
    tmp_path: Path,
) -> None:
    first: Session = make_session()
    first.open_session()
    folder = first.session_path
    assert folder is not None
    first.params.set_from(CUSTOM)
    first.params.set("seed", None)  # kept as entered
    saved = first.params.values
    assert saved != default_values(first.settings.settings)
    assert first.recorder.flush(10)
    first.shutdown(10_000)

    second: Session = make_session()
    assert second.params.values == default_values(second.settings.settings)
    second.open_session(folder)
    assert second.params.values == saved
    # another session has its own (a new one: the defaults), and switching back restores these
    second.new_session("other")
    assert second.params.values == default_values(second.settings.settings)
    second.params.set("variants", 9)
    second.open_session(folder)
    assert second.params.values == saved
    second.params.set("seed", 3)
    assert second.recorder.flush(10)
    store = SessionStore(folder)
    try:
        assert '"seed": 3' in (store.meta(PARAMS_KEY) or "")
    finally:
        store.close()


def test_an_older_session_without_parameters_opens_with_the_defaults(
    make_session,  # type: ignore[no-untyped-def]
    sessions: Path,
) -> None:
    older = create_session("before parameters were saved")
    session: Session = make_session()
    session.params.set_from(CUSTOM)
    session.open_session(older)
    assert session.params.values == default_values(session.settings.settings)


def test_damaged_saved_parameters_open_with_the_defaults(make_session, sessions: Path) -> None:  # type: ignore[no-untyped-def]
    folder = create_session("damaged parameters")
    store = SessionStore(folder)
    store.set_meta(PARAMS_KEY, '{"version": 1, "values": {"variants": "x", "steps1": 30}}')
    store.close()
    session: Session = make_session()
    messages: list[Message] = []
    session.message.connect(messages.append)
    session.open_session(folder)
    expected: ParamValues = default_values(session.settings.settings).replace(steps1=30)
    assert session.params.values == expected  # the readable field kept, the other defaulted
    (said,) = [m for m in messages if "could not be read" in m.text]  # shown, not swallowed
    assert said.level == "warning" and "parameters.variants: expected an integer" in said.text


def test_the_panel_shows_the_reopened_sessions_parameters(  # type: ignore[no-untyped-def]
    make_window, sessions: Path
) -> None:
    folder = create_session("with parameters")
    store = SessionStore(folder)
    saved = Parameters()
    saved.set_from(CUSTOM)
    store.set_meta(PARAMS_KEY, saved.to_json())
    store.close()
    window = make_window(engine="flux")
    window.session.open_session(folder)
    panel = window.params
    assert panel._variants.value() == 2 and panel._seed.text() == "41"
    assert panel._s1_steps.value() == 20 and panel._lora_path.text() == "/m/football.safetensors"
    assert panel._memory.currentData() == "group" and panel._speed.currentData() == "fast"
    assert "changed" in panel.summary()


@pytest.mark.parametrize("size", [96, 512])  # a tile enlarges a small candidate, shrinks a big one
def test_a_restored_tile_has_the_live_tiles_pixels(
    qtbot, make_session, sessions: Path, tmp_path: Path, size: int
) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtGui import QImage

    def pixels(thumb: QImage) -> tuple[int, int, bytes]:
        rgb = thumb.convertToFormat(QImage.Format.Format_RGB888)
        return rgb.width(), rgb.height(), bytes(rgb.constBits())[: rgb.sizeInBytes()]

    first = make_session(FakeRunner(steps=1, size=size))
    first.open_session()
    folder = first.session_path
    assert folder is not None
    run_two(first, tmp_path)
    wait_idle(qtbot, first)
    live = {
        c.name: [pixels(e.thumb) for e in first.candidates.entries(c.id)]
        for c in first.cutouts.cutouts()
    }
    assert all(live.values())
    assert first.recorder.flush(10)
    first.shutdown(10_000)

    again = make_session()
    with qtbot.waitSignal(again.imagesRestored, timeout=20_000):
        assert again.open_session(folder)
    restored = {
        c.name: [pixels(e.thumb) for e in again.candidates.entries(c.id)]
        for c in again.cutouts.cutouts()
    }
    assert restored == live
    assert all(w == 240 or h == 240 for tiles in live.values() for w, h, _ in tiles)
