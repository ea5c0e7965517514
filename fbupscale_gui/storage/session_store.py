"""Crash-safe sessions on disk: the writer. An SQLite index (WAL) plus PNG images, written as
produced (layout: :mod:`fbupscale_gui.storage.session_index`).

Ordering makes it crash-safe: an image file is written atomically (temporary file, fsync,
rename) *before* the row that names it is committed, so every indexed candidate has a complete
file, and a crash leaves at most a hidden ``.….tmp`` (removed on the next open). Jobs record
their state transitions; a job that was queued or running when the process died is marked
``interrupted`` when the session is opened again. A damaged index is rebuilt from the
candidate files' embedded metadata (:func:`rebuild_index`).

A :class:`SessionStore` keeps one connection and must be used from one thread (the window's
writer thread); :func:`~fbupscale_gui.storage.session_reader.read_snapshot` opens its own.
Pure Python (sqlite3, Pillow).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbupscale_gui.core.errors import FbError, error_line
from fbupscale_gui.storage.atomic import atomic_write_bytes, clean_stale_temps
from fbupscale_gui.storage.session_catalogue import (
    read_info,
    session_damage,
    session_name,
    sessions_dir,
)
from fbupscale_gui.storage.session_index import (
    INDEX_NAME,
    JOB_STATES,
    SCHEMA,
    SCHEMA_VERSION,
    CandidateRow,
    CutoutRow,
    JobRow,
    SessionDamagedError,
    SessionError,
    SessionInfo,
)

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.number_check import NumberCheck
    from fbupscale_gui.core.runtime import ResolvedRuntime

__all__ = ["SessionStore", "create_session", "rebuild_index"]


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40]
    return s or "session"


def create_session(name: str = "", root: str | Path | None = None) -> Path:
    """Create a new empty session folder and return it. Raises SessionError."""
    base = Path(root) if root is not None else sessions_dir()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = name.strip() or time.strftime("Session %Y-%m-%d %H:%M")
    folder = base / f"{stamp}-{_slug(label)}-{uuid.uuid4().hex[:6]}"
    try:
        folder.mkdir(parents=True)
        store = SessionStore(folder)
        try:
            store.set_meta("name", label)
        finally:
            store.close()
    except (OSError, sqlite3.Error) as exc:
        raise SessionError(
            f"cannot create a session in {base}: {error_line(exc, where=False)}"
        ) from None
    return folder


def rebuild_index(path: str | Path) -> tuple[SessionInfo, list[str]]:
    """Recover a damaged session: a new index from its candidate files' embedded metadata.

    The old index (file or folder) and its journal are kept beside it as
    ``session.sqlite.damaged-<time>``. Every candidate PNG carries its request and its cutout,
    so cutouts, prompts and candidates come back; picks, job history and export records lived
    only in the index. Returns the session's info and one line per file that could not be
    used (left in place). Raises SessionError."""
    folder = Path(path)
    if not folder.is_dir():
        raise SessionError(f"{folder}: not a session folder")
    name = session_name(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        for suffix in ("", "-wal", "-shm"):
            old = folder / f"{INDEX_NAME}{suffix}"
            if old.exists() or old.is_symlink():
                os.replace(old, folder / f"{INDEX_NAME}.damaged-{stamp}{suffix}")
        store = SessionStore(folder, rebuild=True)
        try:
            store.set_meta("name", name)
            problems = list(store.problems)
        finally:
            store.close()
        return read_info(folder), problems
    except (OSError, sqlite3.Error) as exc:
        raise SessionError(
            f"cannot rebuild the session in {folder}: {error_line(exc, where=False)}"
        ) from None


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class SessionStore:
    """One session's index and images, written as produced. One thread at a time.

    Opening creates the schema if needed, cleans stale temporary files and marks jobs left
    queued or running as ``interrupted``. Write methods raise OSError/sqlite3.Error.
    """

    def __init__(self, path: str | Path, *, rebuild: bool = False) -> None:
        self.path = Path(path)
        reason = session_damage(self.path)
        if reason and not (rebuild and not (self.path / INDEX_NAME).exists()):
            raise SessionDamagedError(self.path, reason)
        (self.path / "cutouts").mkdir(parents=True, exist_ok=True)
        (self.path / "candidates").mkdir(parents=True, exist_ok=True)
        for sub in (self.path, self.path / "cutouts", self.path / "candidates"):
            clean_stale_temps(sub)
        self._conn = sqlite3.connect(self.path / INDEX_NAME, timeout=10, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            c.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (repr(time.time()),))
        #: Writer-side names of rows (see models.session_persist): (kind, token) -> row id.
        self.aliases: dict[tuple[str, int], int] = {}
        #: One line per file the open could not index (left in place, tried again next time).
        self.problems: list[str] = []
        self._adopt_orphans()
        self.interrupted = self._mark_interrupted()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._conn:
            yield self._conn

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    # -- meta

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _adopt_orphans(self) -> None:
        """Index image files that have no row: written just before a crash (file done, row
        not committed), or every file of a session whose index is rebuilt.

        A candidate's embedded metadata holds everything but its job and LR-consistency,
        and its cutout, whose row is made from it when missing. A file that does not read
        back is left out, with a line in :attr:`problems`."""
        known = {int(r[0]) for r in self._conn.execute("SELECT id FROM candidates")}
        for p in sorted((self.path / "candidates").glob("*.png")):
            if not p.stem.isdigit() or int(p.stem) in known:
                continue
            try:
                self._adopt_candidate(p)
            except Exception as exc:  # hostile files: any failure skips this one file
                self.problems.append(f"candidate {p.name}: not indexed ({_describe(exc)})")
        for p in sorted((self.path / "cutouts").glob("*.png")):
            try:
                self._adopt_cutout_file(p)
            except Exception as exc:
                self.problems.append(f"cutout {p.name}: not indexed ({_describe(exc)})")

    def _has_cutout(self, key: str) -> bool:
        return (
            self._conn.execute("SELECT 1 FROM cutouts WHERE key = ?", (key,)).fetchone() is not None
        )

    def _adopt_candidate(self, p: Path) -> None:
        from dataclasses import asdict

        from fbupscale_gui.core.images import image_sha256
        from fbupscale_gui.storage.metadata import read_metadata

        record = read_metadata(p)
        source = record.request.source
        if source is None or not source.sha256:
            raise SessionError("its metadata names no cutout")
        key = source.sha256
        if not self._has_cutout(key):
            cutout = record.cutout
            if cutout is None or image_sha256(cutout) != key:
                raise SessionError("it carries no copy of its cutout")
            self.put_cutout(
                CutoutRow(
                    key,
                    source.name or f"{key[:12]}.png",
                    json.dumps(asdict(source)),
                    f"cutouts/{key}.png",
                    record.request.scene_json,
                    record.request.prompt,
                    _prompt_is_manual(record.request.scene_json, record.request.prompt),
                ),
                cutout,
            )
        run = self._conn.execute(
            "SELECT COALESCE(MAX(run), 1) FROM candidates WHERE cutout_key = ?", (key,)
        ).fetchone()[0]
        with self._tx() as c:
            c.execute(
                "INSERT INTO candidates VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, '{}')",
                (
                    int(p.stem),
                    key,
                    int(run),
                    f"candidates/{p.name}",
                    record.key.variant,
                    int(record.key.lora),
                    record.key.stage,
                    record.seed,
                    record.request.to_json(),
                    record.runtime,
                    json.dumps(dict(record.timings)),
                ),
            )
            _put_details(c, int(p.stem), record.lora_report, record.resolved, record.number_check)

    def _adopt_cutout_file(self, p: Path) -> None:
        """A cutout image without a row (a crash between its file and its row)."""
        from dataclasses import asdict

        from fbupscale_gui.core.images import image_sha256
        from fbupscale_gui.core.request import SourceRef
        from fbupscale_gui.storage.cutouts import load_cutout

        key = p.stem
        if not re.fullmatch(r"[0-9a-f]{64}", key) or self._has_cutout(key):
            return
        image = load_cutout(p)
        if image_sha256(image) != key:
            raise SessionError("its pixels do not match its name")
        source = SourceRef(str(p), key, image.width, image.height, f"{key[:12]}.png")
        self.put_cutout(
            CutoutRow(key, source.name, json.dumps(asdict(source)), f"cutouts/{p.name}"), None
        )

    def _mark_interrupted(self) -> list[int]:
        rows = self._conn.execute(
            "SELECT id FROM jobs WHERE state IN ('queued', 'running')"
        ).fetchall()
        ids = [int(r[0]) for r in rows]
        if ids:
            now = time.time()
            with self._tx() as c:
                for job_id in ids:
                    c.execute(
                        "UPDATE jobs SET state = 'interrupted', updated = ? WHERE id = ?",
                        (now, job_id),
                    )
                    c.execute("INSERT INTO job_events VALUES (?, 'interrupted', ?)", (job_id, now))
        return ids

    # -- writes

    def put_cutout(self, row: CutoutRow, image: Image.Image | None) -> None:
        """Store the cutout's pixels (once) and its row (name, scene, prompt).

        A cutout already in the session keeps its row: the scene and prompt the session
        holds are changed only by :meth:`update_prompt`, never by loading the file again
        (whose sidecar scene may be older than the operator's edits)."""
        target = self.path / row.file
        if image is not None and not target.is_file():
            atomic_write_bytes(target, _png(image.convert("RGB")))
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO cutouts VALUES "
                "(?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM cutouts), ?, ?, ?, ?, ?, ?)",
                (
                    row.key,
                    row.name,
                    row.source_json,
                    row.file,
                    row.scene_json,
                    row.prompt,
                    int(row.prompt_manual),
                ),
            )

    def update_prompt(self, key: str, scene_json: str, prompt: str, manual: bool) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE cutouts SET scene = ?, prompt = ?, prompt_manual = ? WHERE key = ?",
                (scene_json, prompt, int(manual), key),
            )

    def put_job(self, row: JobRow) -> int:
        """Insert or replace a job (``row.id`` 0: a new id); returns its id."""
        now = time.time()
        with self._tx() as c:
            cur = c.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id if row.id > 0 else None,
                    row.cutout_key,
                    row.cutout_name,
                    row.request_json,
                    row.state,
                    row.run,
                    row.error,
                    now,
                    row.replaced_by,
                ),
            )
            job_id = int(cur.lastrowid or row.id)
            c.execute("INSERT INTO job_events VALUES (?, ?, ?)", (job_id, row.state, now))
        return job_id

    def set_job_state(self, job_id: int, state: str, *, run: int = 0, error: str = "") -> None:
        if state not in JOB_STATES:
            raise ValueError(f"unknown job state {state!r}")
        now = time.time()
        with self._tx() as c:
            if run:
                c.execute("UPDATE jobs SET run = ? WHERE id = ?", (run, job_id))
            c.execute(
                "UPDATE jobs SET state = ?, error = ?, updated = ? WHERE id = ?",
                (state, error, now, job_id),
            )
            c.execute("INSERT INTO job_events VALUES (?, ?, ?)", (job_id, state, now))

    def set_replaced(self, job_id: int, by: int) -> None:
        with self._tx() as c:
            c.execute("UPDATE jobs SET replaced_by = ? WHERE id = ?", (by, job_id))

    def put_candidate(
        self, row: CandidateRow, candidate: Candidate, cutout: Image.Image | None
    ) -> int:
        """Write the candidate PNG (atomically, with its metadata), then index it, with the
        candidate's LoRA report, typed runtime and number check.

        ``row.id`` 0 gives it the next id and the file ``candidates/<id>.png``. Returns the id.
        The file is complete before its row exists; a crash in between leaves an unindexed
        file, which the next open indexes from its embedded metadata.
        """

        from fbupscale_gui.storage.metadata import save_candidate

        if row.id <= 0:
            new_id = self._next_candidate_id()
            row = replace(row, id=new_id, file=f"candidates/{new_id:06d}.png")
        save_candidate(candidate, self.path / row.file, cutout=cutout)
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.id,
                    row.job_id,
                    row.cutout_key,
                    row.run,
                    row.file,
                    row.variant,
                    int(row.lora),
                    row.stage,
                    row.seed,
                    row.lr_consistency,
                    row.request_json,
                    row.runtime,
                    json.dumps(dict(row.timings)),
                    json.dumps({k: dict(v) for k, v in row.models.items()}),
                ),
            )
            _put_details(
                c, row.id, candidate.lora_report, candidate.resolved, candidate.number_check
            )
        return row.id

    def _next_candidate_id(self) -> int:
        """One past the highest id indexed or used by a file (an unindexed file keeps its id)."""
        top = int(self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM candidates").fetchone()[0])
        for p in (self.path / "candidates").glob("*.png"):
            if p.stem.isdigit():
                top = max(top, int(p.stem))
        return top + 1

    def set_pick(self, cutout_key: str, candidate_id: int) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO picks VALUES (?, ?)", (cutout_key, candidate_id))

    def add_exports(self, records: list[tuple[int, str]]) -> None:
        now = time.time()
        with self._tx() as c:
            c.executemany(
                "INSERT INTO exports (candidate_id, path, at) VALUES (?, ?, ?)",
                [(cid, path, now) for cid, path in records],
            )


def _describe(exc: BaseException) -> str:
    """One line for an error met reading an untrusted file."""
    if isinstance(exc, RecursionError):
        return "its metadata is nested too deeply"
    if isinstance(exc, MemoryError):
        return "it is too large to read"
    name = type(exc).__name__
    if name == "DecompressionBombError":
        return "an image in it is too large to decode safely"
    if isinstance(exc, FbError):
        return error_line(exc)
    return f"{name}: {error_line(exc, limit=200)}"


def _prompt_is_manual(scene_json: str, prompt: str) -> bool:
    """Whether ``prompt`` was edited by hand (it differs from the scene's generated one)."""
    if not prompt:
        return False
    if not scene_json:
        return True
    from fbupscale_gui.core.scene import Scene

    try:
        return Scene.from_json(scene_json).to_prompt() != prompt
    except (FbError, ValueError, RecursionError):
        return True


def _put_details(
    c: sqlite3.Connection,
    candidate_id: int,
    lora_report: Mapping[str, Any] | None,
    resolved: ResolvedRuntime | None,
    number_check: NumberCheck | None,
) -> None:
    """Record a candidate's details ("" for each it has not), as its metadata has them."""
    c.execute(
        "INSERT OR REPLACE INTO candidate_details VALUES (?, ?, ?, ?)",
        (
            candidate_id,
            json.dumps(dict(lora_report), sort_keys=True) if lora_report else "",
            json.dumps(resolved.to_dict(), sort_keys=True) if resolved is not None else "",
            json.dumps(number_check.to_dict(), sort_keys=True) if number_check is not None else "",
        ),
    )
