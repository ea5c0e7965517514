"""Hostile and damaged sessions: the writer thread survives, the window is always usable,
damaged sessions are listed and rebuilt, rows never lead outside their session, and a relaunch
with a slow restore never duplicates cutouts nor overwrites the operator's edits."""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import test_sessions as base
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from test_images import png_header_only

from fbupscale_gui.state.session import Message
from fbupscale_gui.state.session_writer import SessionWriter
from fbupscale_gui.storage.metadata import CUTOUT_KEY, JSON_KEY
from fbupscale_gui.storage.session_catalogue import last_session, list_sessions, set_last_session
from fbupscale_gui.storage.session_index import INDEX_NAME
from fbupscale_gui.storage.session_reader import read_snapshot

# the fixtures and helpers of the session tests
sessions = base.sessions
settings = base.settings
make_session = base.make_session
cutout_file = base.cutout_file
run_two = base.run_two
wait_idle = base.wait_idle
recorded_session = base.recorded_session


def rewrite_texts(src: Path, dst: Path, **texts: str) -> None:
    """Copy a candidate PNG with some of its text chunks replaced."""
    with Image.open(src) as im:
        im.load()
        chunks = dict(im.text)
        pixels = im.convert("RGB")
    chunks.update(texts)
    info = PngInfo()
    for k, v in chunks.items():
        info.add_text(k, v)
    pixels.save(dst, pnginfo=info)


def set_meta(folder: Path, key: str, value: str) -> None:
    conn = sqlite3.connect(folder / INDEX_NAME)
    with conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    conn.close()


def sql(folder: Path, statement: str, *args: object) -> None:
    conn = sqlite3.connect(folder / INDEX_NAME)
    with conn:
        conn.execute(statement, args)
    conn.close()


# -- item 2: the writer thread never dies; the window is always usable ---------------------


@pytest.mark.parametrize("hostile", ["nested-json", "bomb-cutout", "schema-abc"])
def test_a_hostile_session_never_kills_the_writer_nor_locks_the_window(
    qtbot, make_session, sessions: Path, tmp_path: Path, hostile: str
) -> None:  # type: ignore[no-untyped-def]
    folder = recorded_session(qtbot, make_session, tmp_path)
    first = sorted((folder / "candidates").glob("*.png"))[0]
    orphan = folder / "candidates" / "000007.png"
    if hostile == "nested-json":
        rewrite_texts(first, orphan, **{JSON_KEY: "[" * 50_000 + "]" * 50_000})
    elif hostile == "bomb-cutout":
        rewrite_texts(
            first,
            orphan,
            **{CUTOUT_KEY: base64.b64encode(png_header_only(30_000, 30_000)).decode()},
        )
    else:
        set_meta(folder, "schema_version", "abc")
    set_last_session(folder)
    before = (folder / INDEX_NAME).read_bytes()

    writer = SessionWriter(folder)
    writer.start()
    try:
        assert writer.flush(10)  # the thread is alive and answers
        assert writer._thread.is_alive()
    finally:
        writer.close(10)

    session = make_session()
    messages: list[Message] = []
    session.message.connect(messages.append)
    session.open_session()  # the last one: the hostile session
    assert not session.is_restoring
    text = " ".join(m.text for m in messages)
    if hostile == "schema-abc":
        # damaged: not written to, listed as damaged, a new session takes the work
        assert session.session_path is not None and session.session_path != folder
        assert "'abc'" in text and "free some space" not in text
        assert (folder / INDEX_NAME).read_bytes() == before
        (info,) = [i for i in list_sessions() if i.path == folder]
        assert "schema version" in info.damaged
        assert last_session() == session.session_path
    else:
        # one bad file: skipped and reported, the rest of the session is there
        assert session.session_path == folder
        assert "000007.png" in text
        assert len(session.cutouts) == 2
        assert sum(len(session.candidates.entries(c.id)) for c in session.cutouts.cutouts()) == 2
    # new work is saved
    target = session.session_path
    session.cutouts.add_paths([cutout_file(tmp_path / "more", "c.png", 90)])
    session.run([session.cutouts.cutouts()[-1]])
    wait_idle(qtbot, session)
    assert session.recorder.flush(10)
    assert "c.png" in {c.name for c in read_snapshot(target).cutouts}


# -- item 4: damaged sessions are listed with the reason and rebuilt ------------------------


def _damage(folder: Path, how: str) -> None:
    index = folder / INDEX_NAME
    for extra in ("-wal", "-shm"):
        Path(f"{index}{extra}").unlink(missing_ok=True)
    if how == "zero-bytes":
        index.write_bytes(b"")
    elif how == "deleted":
        index.unlink()
    elif how == "folder":
        index.unlink()
        index.mkdir()
    elif how == "garbage":
        index.write_bytes(b"not a database at all " * 200)
    elif how == "truncated":
        index.write_bytes(index.read_bytes()[:1500])
    elif how == "future-schema":
        set_meta(folder, "schema_version", "7")


@pytest.mark.parametrize(
    "how", ["zero-bytes", "deleted", "folder", "garbage", "truncated", "future-schema"]
)
def test_a_damaged_session_is_listed_with_its_reason_and_rebuilt(
    qtbot, make_session, sessions: Path, tmp_path: Path, how: str
) -> None:  # type: ignore[no-untyped-def]
    folder = recorded_session(qtbot, make_session, tmp_path)
    # the operator's prompt edit: the candidates' metadata carries the prompt of their run
    snap = read_snapshot(folder)
    prompts = {c.name: c.prompt for c in snap.cutouts}
    _damage(folder, how)
    set_last_session(folder)

    listed = {i.path: i for i in list_sessions()}
    assert folder in listed  # never disappears
    info = listed[folder]
    assert info.damaged and info.candidates == 2
    if how == "future-schema":
        assert "newer fbupscale" in info.damaged and "space" not in info.damaged

    session = make_session()
    messages: list[Message] = []
    session.message.connect(messages.append)
    session.open_session()
    assert session.session_path != folder  # new work never goes into the damaged folder
    assert any(m.details == str(folder) and "damaged" in m.text for m in messages)
    assert sorted(p.name for p in (folder / "candidates").iterdir()) == sorted(
        f"{c.id:06d}.png" for c in snap.candidates
    )  # nothing adopted into it, nothing lost

    assert session.rebuild_session(folder)
    assert session.session_path == folder
    assert sorted(c.name for c in session.cutouts.cutouts()) == ["a.png", "b.png"]
    for c in session.cutouts.cutouts():
        assert len(session.candidates.entries(c.id)) == 1
        assert c.prompt == prompts[c.name]
    info = next(i for i in list_sessions() if i.path == folder)
    assert not info.damaged and (info.cutouts, info.candidates) == (2, 2)
    assert list(folder.glob(f"{INDEX_NAME}.damaged-*")) or how == "deleted"


def test_one_bad_row_is_skipped_and_reported_not_the_whole_session(
    qtbot, make_session, sessions: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = recorded_session(qtbot, make_session, tmp_path)
    ids = [c.id for c in read_snapshot(folder).candidates]
    sql(folder, "UPDATE candidates SET seed = 'abc' WHERE id = ?", ids[0])
    sql(folder, "UPDATE candidates SET timings = ? WHERE id = ?", '{"a": {"b": [1]}}', ids[1])
    session = make_session()
    messages: list[Message] = []
    session.message.connect(messages.append)
    session.open_session(folder)
    assert session.session_path == folder
    assert len(session.cutouts) == 2
    entries = [e for c in session.cutouts.cutouts() for e in session.candidates.entries(c.id)]
    assert len(entries) == 1  # the row with the text seed is skipped, the other kept
    text = " ".join(m.text for m in messages if m.level == "warning")
    assert f"candidate row {ids[0]}" in text and f"candidate row {ids[1]}" in text


# -- item 5: rows and last-session never lead outside the session ---------------------------


def test_rows_and_last_session_pointing_outside_are_refused(
    qtbot, make_session, sessions: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = recorded_session(qtbot, make_session, tmp_path)
    snap = read_snapshot(folder)
    outside = tmp_path / "elsewhere.png"
    shutil.copy(folder / snap.candidates[0].file, outside)
    sql(folder, "UPDATE candidates SET file = ? WHERE id = ?", str(outside), snap.candidates[0].id)
    sql(
        folder,
        "UPDATE candidates SET file = ? WHERE id = ?",
        "../../../x.png",
        snap.candidates[1].id,
    )
    session = make_session()
    messages: list[Message] = []
    session.message.connect(messages.append)
    session.open_session(folder)
    entries = [e for c in session.cutouts.cutouts() for e in session.candidates.entries(c.id)]
    assert entries == []
    text = " ".join(m.text for m in messages)
    assert f"candidate row {snap.candidates[0].id}" in text and "absolute path" in text
    assert "'..'" in text

    # last-session leading out of the sessions folder, to a folder that holds an index
    nested = tmp_path / "a" / "b" / "sessions"
    nested.mkdir(parents=True)
    shutil.copy(folder / INDEX_NAME, tmp_path / "a" / INDEX_NAME)
    for name in ("../..", "../../..", str(tmp_path / "a")):
        (nested / "last-session").write_text(name)
        assert last_session(nested) is None


# -- issue 9 A: a slow restore never duplicates cutouts nor overwrites the operator's edits -


def test_a_relaunch_with_a_slow_restore_keeps_one_copy_and_the_operators_edits(
    qtbot, qapp, make_session, sessions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import qasync

    from fbupscale_gui.core.scene import Scene
    from fbupscale_gui.storage import session_reader

    samples = tmp_path / "samples"
    a = cutout_file(samples, "a.png")
    cutout_file(samples, "b.png", 40)
    sidecar_scene = Scene(action="A sample action")
    (samples / "a.scene.json").write_text(sidecar_scene.to_json())

    # the first run: a.png with the operator's scene and hand-edited prompt, a candidate, a pick
    first = make_session()
    first.open_session()
    folder = first.session_path
    first.cutouts.add_paths([a])
    cutout = first.cutouts.at(0)
    cutout.scene = Scene(action="An edited action")
    cutout.prompt, cutout.prompt_manual = "hand-edited prompt", True
    first.note_cutout_changed(cutout)
    first.run([cutout])
    wait_idle(qtbot, first)
    assert first.recorder.flush(10)
    first.shutdown(10_000)  # as after a crash, the session is what is on disk

    # the relaunch: `fbupscale-gui samples`, the restore slower than decoding the folder
    session = make_session()
    real_read = session_reader.read_snapshot
    release = threading.Event()

    def slow_read(path):  # type: ignore[no-untyped-def]
        # wait until the folder load has been decoded (added, or held for the restore)
        release.wait(10)
        return real_read(path)

    monkeypatch.setattr(session_reader, "read_snapshot", slow_read)

    def loaded() -> bool:
        return len(session.cutouts) > 0 or bool(getattr(session, "_pending_loads", None))

    loop = qasync.QEventLoop(qapp)
    pool = ThreadPoolExecutor(max_workers=2)
    loop.set_default_executor(pool)
    asyncio.set_event_loop(loop)

    async def relaunch() -> None:
        session.open_session()
        session.load([samples])
        while not loaded():
            await asyncio.sleep(0.01)
        release.set()
        while session.is_restoring or session.images_pending or len(session.cutouts) < 2:
            await asyncio.sleep(0.01)
        assert session.recorder.flush(10)

    try:
        loop.run_until_complete(asyncio.wait_for(relaunch(), 30))
    finally:
        release.set()
        pool.shutdown(wait=True)
        asyncio.set_event_loop(None)
        loop.close()

    assert session.session_path == folder
    names = [c.name for c in session.cutouts.cutouts()]
    assert sorted(names) == ["a.png", "b.png"]  # never twice
    restored = next(c for c in session.cutouts.cutouts() if c.name == "a.png")
    assert restored.prompt == "hand-edited prompt" and restored.prompt_manual
    assert restored.scene is not None and "An edited action" in restored.scene.to_json()
    assert len(session.candidates.entries(restored.id)) == 1
    # on disk too: the sidecar never overwrote the session's scene and prompt
    rows = {c.name: c for c in read_snapshot(folder).cutouts}
    assert rows["a.png"].prompt == "hand-edited prompt" and rows["a.png"].prompt_manual
    assert "An edited action" in rows["a.png"].scene_json
    assert "A sample action" not in rows["a.png"].scene_json
    # the quit dialog's count is the picks the list shows
    shown = [c for c in session.cutouts.cutouts() if session.candidates.picked(c.id) is not None]
    assert len(session.unexported_picks()) == len(shown) == 1


# -- the hostile-sessions bench, in the test run --------------------------------------------


@pytest.mark.slow
def test_the_hostile_sessions_bench_handles_every_case() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "bench" / "hostile_sessions.py")],
        cwd=root,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-2000:]
    assert out.returncode == 0, summary
    assert "0 crashed, 0 hung, 0 escaped, 0 vanished, 0 hidden" in summary


def test_a_folder_that_cannot_be_opened_is_reported_even_when_the_thread_is_quick(
    qtbot, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The writer's open failure is emitted as its thread starts; the thread starts only once
    the signal is connected, so the message cannot be emitted to nobody (it was, under load)."""
    folder = tmp_path / "blocked"
    folder.mkdir()
    (folder / "cutouts").write_bytes(b"a file where the session expects a folder")
    writer = SessionWriter(folder)
    time.sleep(0.3)  # a thread started by the constructor would have failed by now
    texts: list[str] = []
    writer.failed.connect(texts.append)
    writer.start()
    try:
        qtbot.waitUntil(lambda: bool(texts), timeout=10_000)
        assert str(folder) in texts[0]
    finally:
        writer.close(10)
