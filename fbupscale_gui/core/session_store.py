"""Crash-safe sessions on disk: an SQLite index (WAL) plus PNG images, written as produced.

A session is a folder under :func:`sessions_dir` (``FBUPSCALE_SESSIONS_DIR`` overrides the
user data folder)::

    <session>/session.sqlite        the index (WAL mode, schema version in ``meta``)
    <session>/cutouts/<sha256>.png  each cutout's pixels (content-addressed)
    <session>/candidates/<n>.png    each candidate, with its metadata (core.metadata)

Ordering makes it crash-safe: an image file is written atomically (temporary file, fsync,
rename) *before* the row that names it is committed, so every indexed candidate has a complete
file, and a crash leaves at most a hidden ``.….tmp`` (removed on the next open). Jobs record
their state transitions; a job that was queued or running when the process died is marked
``interrupted`` when the session is opened again.

A :class:`SessionStore` keeps one connection and must be used from one thread (the window's
writer thread); :func:`read_snapshot` opens its own. Pure Python (sqlite3, Pillow).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .atomic import atomic_write_bytes, clean_stale_temps
from .errors import FbError

if TYPE_CHECKING:
    from PIL import Image

    from .job import Candidate

__all__ = [
    "INDEX_NAME",
    "SCHEMA_VERSION",
    "SESSIONS_ENV",
    "CandidateRow",
    "CutoutRow",
    "JobRow",
    "SessionError",
    "SessionInfo",
    "SessionStore",
    "Snapshot",
    "create_session",
    "delete_session",
    "last_session",
    "list_sessions",
    "read_candidate_image",
    "read_info",
    "read_snapshot",
    "rename_session",
    "sessions_dir",
    "set_archived",
    "set_last_session",
]

SESSIONS_ENV: Final = "FBUPSCALE_SESSIONS_DIR"
INDEX_NAME: Final = "session.sqlite"
SCHEMA_VERSION: Final = 1
_LAST: Final = "last-session"
#: Job states; ``interrupted``: queued or running when the process died.
JOB_STATES: Final = ("queued", "running", "done", "failed", "cancelled", "interrupted")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cutouts (
    key TEXT PRIMARY KEY, seq INTEGER NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL,
    file TEXT NOT NULL, scene TEXT NOT NULL DEFAULT '', prompt TEXT NOT NULL DEFAULT '',
    prompt_manual INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, cutout_key TEXT NOT NULL, cutout_name TEXT NOT NULL,
    request TEXT NOT NULL, state TEXT NOT NULL, run INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '', updated REAL NOT NULL,
    replaced_by INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS job_events (
    job_id INTEGER NOT NULL, state TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, cutout_key TEXT NOT NULL,
    run INTEGER NOT NULL, file TEXT NOT NULL, variant INTEGER NOT NULL, lora INTEGER NOT NULL,
    stage INTEGER NOT NULL, seed INTEGER NOT NULL, lr_consistency REAL,
    request TEXT NOT NULL, runtime TEXT NOT NULL DEFAULT '', timings TEXT NOT NULL DEFAULT '{}',
    models TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS picks (cutout_key TEXT PRIMARY KEY, candidate_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS exports (
    id INTEGER PRIMARY KEY, candidate_id INTEGER NOT NULL, path TEXT NOT NULL, at REAL NOT NULL);
"""


class SessionError(FbError):
    """A session folder that cannot be opened, created or changed (names the folder)."""


def sessions_dir() -> Path:
    """Where sessions live: ``FBUPSCALE_SESSIONS_DIR``, else ``<user data>/fbupscale/sessions``."""
    env = os.environ.get(SESSIONS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or os.path.expanduser("~/AppData/Roaming")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "fbupscale" / "sessions"


# -- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CutoutRow:
    key: str  # the cutout's pixel hash (unique in a session)
    name: str
    source_json: str
    file: str  # relative to the session folder
    scene_json: str = ""
    prompt: str = ""
    prompt_manual: bool = False


@dataclass(frozen=True)
class JobRow:
    id: int
    cutout_key: str
    cutout_name: str
    request_json: str
    state: str
    run: int = 0
    error: str = ""
    #: An interrupted job re-run as job ``replaced_by`` no longer shows as interrupted.
    replaced_by: int = 0


@dataclass(frozen=True)
class CandidateRow:
    id: int
    job_id: int
    cutout_key: str
    run: int
    file: str  # relative to the session folder
    variant: int
    lora: bool
    stage: int
    seed: int
    lr_consistency: float | None
    request_json: str
    runtime: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)
    models: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionInfo:
    path: Path
    name: str
    created: float
    archived: bool
    cutouts: int = 0
    candidates: int = 0


@dataclass
class Snapshot:
    """Everything a session holds, read back in one go (see :func:`read_snapshot`)."""

    info: SessionInfo
    cutouts: list[CutoutRow] = field(default_factory=list)
    jobs: list[JobRow] = field(default_factory=list)
    candidates: list[CandidateRow] = field(default_factory=list)
    picks: dict[str, int] = field(default_factory=dict)
    exported: set[int] = field(default_factory=set)


# -- folders ------------------------------------------------------------------------------


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40]
    return s or "session"


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    index = path / INDEX_NAME
    if readonly:
        conn = sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True, timeout=10)
    else:
        conn = sqlite3.connect(index, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


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
        raise SessionError(f"cannot create a session in {base}: {_why(exc)}") from None
    return folder


def _set_meta(path: str | Path, key: str, value: str) -> None:
    folder = Path(path)
    if not (folder / INDEX_NAME).is_file():
        raise SessionError(f"{folder}: not a session folder")
    try:
        conn = sqlite3.connect(folder / INDEX_NAME, timeout=10)
        try:
            with conn:
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise SessionError(f"cannot change the session in {folder}: {exc}") from None


def rename_session(path: str | Path, name: str) -> None:
    """Give a session a new display name (the folder keeps its name). Raises SessionError."""
    label = name.strip()
    if not label:
        raise SessionError("a session needs a name")
    _set_meta(path, "name", label)


def set_archived(path: str | Path, archived: bool) -> None:
    """Archive (hide from the default list) or restore a session. Raises SessionError."""
    _set_meta(path, "archived", "1" if archived else "0")


def delete_session(path: str | Path) -> None:
    """Delete a session folder (only one that holds a session index). Raises SessionError."""
    folder = Path(path)
    if not (folder / INDEX_NAME).is_file():
        raise SessionError(f"{folder}: not a session folder")
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        raise SessionError(f"cannot delete {folder}: {_why(exc)}") from None


def read_info(path: str | Path) -> SessionInfo:
    """A session's name, creation time, archived flag and counts. Raises SessionError."""
    folder = Path(path)
    try:
        conn = _connect(folder, readonly=True)
        try:
            return _info(conn, folder)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise SessionError(f"{folder}: unreadable session index ({exc})") from None


def _info(conn: sqlite3.Connection, folder: Path) -> SessionInfo:
    meta = {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM meta")}
    n_cut = conn.execute("SELECT COUNT(*) FROM cutouts").fetchone()[0]
    n_cand = conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
    return SessionInfo(
        path=folder,
        name=meta.get("name", folder.name),
        created=float(meta.get("created", "0") or 0),
        archived=meta.get("archived", "0") == "1",
        cutouts=int(n_cut),
        candidates=int(n_cand),
    )


def list_sessions(root: str | Path | None = None) -> list[SessionInfo]:
    """All readable sessions, newest first (unreadable folders are skipped)."""
    base = Path(root) if root is not None else sessions_dir()
    out: list[SessionInfo] = []
    try:
        folders = [p for p in base.iterdir() if (p / INDEX_NAME).is_file()]
    except OSError:
        return out
    for folder in folders:
        with contextlib.suppress(SessionError):
            out.append(read_info(folder))
    out.sort(key=lambda i: (i.created, i.path.name), reverse=True)
    return out


def last_session(root: str | Path | None = None) -> Path | None:
    """The session opened last, if it still exists."""
    base = Path(root) if root is not None else sessions_dir()
    try:
        name = (base / _LAST).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    folder = base / name
    return folder if name and (folder / INDEX_NAME).is_file() else None


def set_last_session(path: str | Path) -> None:
    """Remember ``path`` as the session to reopen (atomically; errors are ignored)."""
    folder = Path(path)
    with contextlib.suppress(OSError):
        atomic_write_bytes(folder.parent / _LAST, folder.name.encode("utf-8"))


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


# -- the store ----------------------------------------------------------------------------


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class SessionStore:
    """One session's index and images, written as produced. One thread at a time.

    Opening creates the schema if needed, cleans stale temporary files and marks jobs left
    queued or running as ``interrupted``. Write methods raise OSError/sqlite3.Error.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        (self.path / "cutouts").mkdir(parents=True, exist_ok=True)
        (self.path / "candidates").mkdir(parents=True, exist_ok=True)
        for sub in (self.path, self.path / "cutouts", self.path / "candidates"):
            clean_stale_temps(sub)
        self._conn = sqlite3.connect(self.path / INDEX_NAME, timeout=10, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        version = self.meta("schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            self._conn.close()
            raise SessionError(
                f"{self.path}: made by a newer fbupscale (schema {version} > {SCHEMA_VERSION})"
            )
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            c.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (repr(time.time()),))
        #: Writer-side names of rows (see models.session_persist): (kind, token) -> row id.
        self.aliases: dict[tuple[str, int], int] = {}
        self.adopted = self._adopt_orphans()
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

    def _adopt_orphans(self) -> list[int]:
        """Index candidate files written just before a crash (file done, row not committed).

        Everything but the job and the LR-consistency is in the file's embedded metadata;
        a file that does not read back is left out (and reported by id)."""
        from .errors import InputImageError, RequestError
        from .metadata import read_metadata

        known = {int(r[0]) for r in self._conn.execute("SELECT id FROM candidates")}
        adopted: list[int] = []
        for p in sorted((self.path / "candidates").glob("*.png")):
            if not p.stem.isdigit() or int(p.stem) in known:
                continue
            try:
                record = read_metadata(p)
            except (InputImageError, RequestError, OSError):
                continue
            key = record.request.source.sha256 if record.request.source is not None else ""
            if not key:
                continue
            run = self._conn.execute(
                "SELECT COALESCE(MAX(run), 1) FROM candidates WHERE cutout_key = ?", (key,)
            ).fetchone()[0]
            cid = int(p.stem)
            with self._tx() as c:
                c.execute(
                    "INSERT INTO candidates VALUES (?, 0, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, '{}')",
                    (
                        cid,
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
            adopted.append(cid)
        return adopted

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

    def next_ids(self) -> tuple[int, int]:
        """The next free job id and candidate id (the window numbers rows before writing)."""
        job = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()[0]
        cand = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM candidates").fetchone()[0]
        return int(job) + 1, int(cand) + 1

    # -- writes

    def put_cutout(self, row: CutoutRow, image: Image.Image | None) -> None:
        """Store the cutout's pixels (once) and its row (name, scene, prompt)."""
        target = self.path / row.file
        if image is not None and not target.is_file():
            atomic_write_bytes(target, _png(image.convert("RGB")))
        with self._tx() as c:
            seq = c.execute("SELECT seq FROM cutouts WHERE key = ?", (row.key,)).fetchone()
            if seq is None:
                seq = c.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM cutouts").fetchone()
            c.execute(
                "INSERT OR REPLACE INTO cutouts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.key,
                    int(seq[0]),
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
        """Write the candidate PNG (atomically, with its metadata), then index it.

        ``row.id`` 0 gives it the next id and the file ``candidates/<id>.png``. Returns the id.
        The file is complete before its row exists; a crash in between leaves an unindexed
        file, which the next open indexes from its embedded metadata.
        """
        from dataclasses import replace

        from .metadata import save_candidate

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


def read_snapshot(path: str | Path) -> Snapshot:
    """Read a whole session index (its own connection; any thread). Raises SessionError."""
    folder = Path(path)
    try:
        conn = _connect(folder, readonly=True)
    except sqlite3.Error as exc:
        raise SessionError(f"{folder}: cannot open the session index ({exc})") from None
    try:
        snap = Snapshot(_info(conn, folder))
        for r in conn.execute("SELECT * FROM cutouts ORDER BY seq"):
            snap.cutouts.append(
                CutoutRow(
                    r["key"],
                    r["name"],
                    r["source"],
                    r["file"],
                    r["scene"],
                    r["prompt"],
                    bool(r["prompt_manual"]),
                )
            )
        for r in conn.execute("SELECT * FROM jobs ORDER BY id"):
            snap.jobs.append(
                JobRow(
                    int(r["id"]),
                    r["cutout_key"],
                    r["cutout_name"],
                    r["request"],
                    r["state"],
                    int(r["run"]),
                    r["error"],
                    int(r["replaced_by"]),
                )
            )
        for r in conn.execute("SELECT * FROM candidates ORDER BY id"):
            snap.candidates.append(
                CandidateRow(
                    id=int(r["id"]),
                    job_id=int(r["job_id"]),
                    cutout_key=r["cutout_key"],
                    run=int(r["run"]),
                    file=r["file"],
                    variant=int(r["variant"]),
                    lora=bool(r["lora"]),
                    stage=int(r["stage"]),
                    seed=int(r["seed"]),
                    lr_consistency=r["lr_consistency"],
                    request_json=r["request"],
                    runtime=r["runtime"],
                    timings=_json_obj(r["timings"]),
                    models=_json_obj(r["models"]),
                )
            )
        snap.picks = {
            r["cutout_key"]: int(r["candidate_id"])
            for r in conn.execute("SELECT cutout_key, candidate_id FROM picks")
        }
        snap.exported = {int(r[0]) for r in conn.execute("SELECT candidate_id FROM exports")}
        return snap
    except sqlite3.Error as exc:
        raise SessionError(f"{folder}: unreadable session index ({exc})") from None
    finally:
        conn.close()


def read_candidate_image(path: str | Path) -> Image.Image:
    """Decode a stored candidate PNG at full resolution, as RGB (any thread).

    The one place a session's candidate pixels are decoded. Raises SessionError naming the
    file when it is missing, truncated or not an image (Pillow's size limits stay on)."""
    from PIL import Image as PilImage

    target = Path(path)
    try:
        with PilImage.open(target) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, ValueError, PilImage.DecompressionBombError) as exc:
        raise SessionError(f"candidate {target.name}: {_why(exc)}") from None


def _json_obj(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
