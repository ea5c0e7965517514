"""Hostile and damaged session folders: how many were tried, and how each was handled.

Builds a small real session (two cutouts, one candidate each) in a temporary folder, copies it
once per case, damages the copy, and then does what the window does with it: the writer
thread's open (:class:`~fbupscale_gui.storage.session_store.SessionStore`), the sessions list,
and the restore (``read_snapshot`` + ``load_restored``), each case in a thread with a time
limit. One row per case:

* ``damaged``: refused for writing and listed as damaged with the reason (recoverable);
* ``opened``: opened, with the bad rows or files skipped and reported (how many);
* ``CRASH``: an exception escaped; ``HUNG``: no answer within the limit; ``ESCAPED``: a file
  outside the session was shown as its own; ``VANISHED``: missing from the sessions list;
  ``HIDDEN``: candidate files neither shown nor reported.

    .venv/bin/python bench/hostile_sessions.py      # exit status 1 if anything was not handled
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fbupscale_gui.core.images import image_sha256
from fbupscale_gui.core.job import Candidate
from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest, SourceRef
from fbupscale_gui.state.session_restore import load_restored
from fbupscale_gui.storage import session_index
from fbupscale_gui.storage.metadata import CUTOUT_KEY, JSON_KEY
from fbupscale_gui.storage.session_catalogue import last_session, list_sessions
from fbupscale_gui.storage.session_index import (
    INDEX_NAME,
    CandidateRow,
    CutoutRow,
    JobRow,
    SessionError,
)
from fbupscale_gui.storage.session_reader import read_snapshot
from fbupscale_gui.storage.session_store import SessionStore, create_session

LIMIT_S = 30.0
#: Refused as damaged (earlier releases had no such refusal: any SessionError counts there).
DAMAGED = getattr(session_index, "SessionDamagedError", SessionError)
Damage = Callable[[Path], None]


def _template(root: Path) -> Path:
    folder = create_session("template", root=root)
    store = SessionStore(folder)
    try:
        for i, colour in enumerate(((200, 30, 30), (30, 30, 200))):
            cutout = Image.new("RGB", (40, 64), colour)
            key = image_sha256(cutout)
            source = SourceRef(str(folder / f"c{i}.png"), key, 40, 64, f"c{i}.png")
            store.put_cutout(
                CutoutRow(key, source.name, json.dumps(asdict(source)), f"cutouts/{key}.png"),
                cutout,
            )
            request = ReconstructionRequest(engine="lanczos", source=source)
            job = store.put_job(JobRow(0, key, source.name, request.to_json(), "done", 1))
            image = cutout.resize((160, 256))
            cand = Candidate(CandidateKey(0, False, 1), 7, image, request)
            row = CandidateRow(0, job, key, 1, "", 0, False, 1, 7, 30.0, request.to_json())
            store.put_candidate(row, cand, cutout)
    finally:
        store.close()
    return folder


def _sql(statement: str, *args: object) -> Damage:
    def damage(folder: Path) -> None:
        conn = sqlite3.connect(folder / INDEX_NAME)
        with conn:
            conn.execute(statement, args)
        conn.close()

    return damage


def _orphan(**texts: str) -> Damage:
    """An unindexed candidate file: the first one, with some text chunks replaced."""

    def damage(folder: Path) -> None:
        src = sorted((folder / "candidates").glob("*.png"))[0]
        with Image.open(src) as im:
            im.load()
            chunks = {**im.text, **texts}
            pixels = im.convert("RGB")
        info = PngInfo()
        for k, v in chunks.items():
            info.add_text(k, v)
        pixels.save(folder / "candidates" / "000077.png", pnginfo=info)

    return damage


def _index(data: Callable[[bytes], bytes | None]) -> Damage:
    def damage(folder: Path) -> None:
        index = folder / INDEX_NAME
        new = data(index.read_bytes())
        index.unlink()
        if new is not None:
            index.write_bytes(new)

    return damage


def _index_folder(folder: Path) -> None:
    (folder / INDEX_NAME).unlink()
    (folder / INDEX_NAME).mkdir()


def _outside(column: str, value: str) -> Damage:
    """A row naming a real image outside the session (``{root}``: the sessions folder)."""

    def damage(folder: Path) -> None:
        shutil.copy(sorted((folder / "candidates").glob("*.png"))[0], folder.parent / "x.png")
        table = "cutouts" if column == "cutout" else "candidates"
        where = "" if column == "cutout" else " WHERE id = 1"
        _sql(f"UPDATE {table} SET file = ?{where}", value.format(root=folder.parent))(folder)

    return damage


def _last(name: str) -> Damage:
    def damage(folder: Path) -> None:
        (folder.parent / "last-session").write_text(name)

    return damage


def _bomb() -> str:
    """A PNG declaring 30000 x 30000 pixels (a few bytes: Pillow refuses it before decoding)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    head = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


def cases() -> list[tuple[str, Damage]]:
    nested = "[" * 50_000 + "]" * 50_000
    return [
        ("unindexed candidate, deeply nested metadata", _orphan(**{JSON_KEY: nested})),
        ("unindexed candidate, bomb as embedded cutout", _orphan(**{CUTOUT_KEY: _bomb()})),
        ("meta.schema_version = 'abc'", _sql("UPDATE meta SET value='abc' WHERE key='schema_version'")),
        ("schema from the future", _sql("UPDATE meta SET value='9' WHERE key='schema_version'")),
        ("0-byte index", _index(lambda _b: b"")),
        ("deleted index", _index(lambda _b: None)),
        ("index replaced by a folder", _index_folder),
        ("garbage index", _index(lambda _b: b"garbage " * 500)),
        ("truncated index", _index(lambda b: b[:1500])),
        ("candidate row: text seed", _sql("UPDATE candidates SET seed='abc' WHERE id=1")),
        ("candidate row: nested timings", _sql("UPDATE candidates SET timings=? WHERE id=1", '{"a":{"b":[1]}}')),
        ("candidate row: deeply nested request", _sql("UPDATE candidates SET request=? WHERE id=1", nested)),
        ("candidate row: absolute file", _outside("candidate", "{root}/x.png")),
        ("candidate row: ../x.png", _outside("candidate", "../x.png")),
        ("cutout row: ../x.png", _outside("cutout", "../x.png")),
        ("cutout row: nested source", _sql("UPDATE cutouts SET source=?", nested)),
        ("last-session = ../../..", _last("../../..")),
    ]  # fmt: skip


def probe(root: Path, folder: Path) -> tuple[str, str]:
    """What the window would do with ``folder``: (outcome, detail)."""
    problems: list[str] = []
    try:
        store = SessionStore(folder)
    except DAMAGED as exc:
        listed = {i.path: i for i in list_sessions(root)}
        if folder not in listed or not getattr(listed[folder], "damaged", ""):
            return "VANISHED", "refused but not listed as damaged"
        return "damaged", getattr(exc, "reason", str(exc))
    problems += getattr(store, "problems", [])
    store.close()
    if folder not in {i.path for i in list_sessions(root)}:
        return "VANISHED", "not in the sessions list"
    restored = load_restored(read_snapshot(folder))
    problems += restored.problems
    files = len(list((folder / "candidates").glob("*.png")))
    if len(restored.candidates) + len(problems) < files:
        return "HIDDEN", f"{files} candidate files, {len(restored.candidates)} shown, no word why"
    inside = folder.resolve()
    for c in restored.candidates:
        if inside not in Path(c.stored.path).resolve().parents:
            return "ESCAPED", f"shows {c.stored.path}"
    last = last_session(root)
    if last is not None and root.resolve() not in last.resolve().parents:
        return "ESCAPED", f"last session {last}"
    shown = f"{len(restored.cutouts)} cutouts, {len(restored.candidates)} candidates"
    return "opened", f"{shown}; {len(problems)} skipped: {'; '.join(problems)[:90]}"


def main() -> int:
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="fbupscale-hostile-sessions-") as tmp:
        template = _template(Path(tmp) / "template")
        for n, (name, damage) in enumerate(cases()):
            root = Path(tmp) / f"case{n:02d}"
            folder = root / template.name
            shutil.copytree(template, folder)
            result: list[tuple[str, str]] = []
            started = time.perf_counter()

            def run(
                root: Path = root,
                folder: Path = folder,
                damage: Damage = damage,
                result: list[tuple[str, str]] = result,
            ) -> None:
                try:
                    damage(folder)
                    result.append(probe(root, folder))
                except Exception as exc:
                    result.append(("CRASH", f"{type(exc).__name__}: {str(exc)[:100]}"))

            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            worker.join(LIMIT_S)
            outcome, detail = result[0] if result else ("HUNG", f"no answer in {LIMIT_S:.0f} s")
            ms = f"{(time.perf_counter() - started) * 1000:.0f}"
            rows.append((name, outcome, ms, detail))
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'outcome':<8} {'ms':>6}  detail")
    for name, outcome, ms, detail in rows:
        print(f"{name:<{width}}  {outcome:<8} {ms:>6}  {detail[:110]}")
    kinds = ("CRASH", "HUNG", "ESCAPED", "VANISHED", "HIDDEN")
    count = {k: sum(r[1] == k for r in rows) for k in kinds}
    handled = len(rows) - sum(count.values())
    print(
        f"\n{len(rows)} hostile sessions tried, {handled} handled, {count['CRASH']} crashed, "
        f"{count['HUNG']} hung, {count['ESCAPED']} escaped, {count['VANISHED']} vanished, "
        f"{count['HIDDEN']} hidden"
    )
    return 0 if handled == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
