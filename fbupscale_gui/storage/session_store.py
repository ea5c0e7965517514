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
import logging
import math
import os
import re
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import FbError, error_line
from fbupscale_gui.storage.atomic import atomic_write_bytes, clean_stale_temps
from fbupscale_gui.storage.paths import PathEscapeError, contained

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.job import Candidate

__all__ = [
    "INDEX_NAME",
    "SCHEMA_VERSION",
    "SESSIONS_ENV",
    "CandidateRow",
    "CutoutRow",
    "JobRow",
    "SessionDamagedError",
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
    "rebuild_index",
    "rename_session",
    "session_damage",
    "session_name",
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


class SessionDamagedError(SessionError):
    """A session whose index cannot be used as it is (see :func:`session_damage`).

    Nothing is written to it; :func:`rebuild_index` recovers it from its candidate files."""

    def __init__(self, folder: Path, reason: str) -> None:
        super().__init__(f"the session {folder.name} is damaged: {reason}")
        self.folder = folder
        self.reason = reason


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


log = logging.getLogger(__name__)


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
    #: Why the session cannot be opened as it is ("" when it can); see :func:`session_damage`.
    damaged: str = ""


@dataclass
class Snapshot:
    """Everything a session holds, read back in one go (see :func:`read_snapshot`)."""

    info: SessionInfo
    cutouts: list[CutoutRow] = field(default_factory=list)
    jobs: list[JobRow] = field(default_factory=list)
    candidates: list[CandidateRow] = field(default_factory=list)
    picks: dict[str, int] = field(default_factory=dict)
    exported: set[int] = field(default_factory=set)
    #: One line per row that could not be read (the row is skipped or its field dropped).
    problems: list[str] = field(default_factory=list)


# -- folders ------------------------------------------------------------------------------


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40]
    return s or "session"


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the index; ``readonly`` also reads a session in a folder that cannot
    be written (SQLite's WAL mode needs a writable folder, so it is then read as immutable:
    no writer can be at work there)."""
    index = path / INDEX_NAME
    if not readonly:
        conn = sqlite3.connect(index, timeout=10)
    else:
        conn = sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            conn.close()
            if os.access(path, os.W_OK):
                raise
            uri = f"{index.as_uri()}?mode=ro&immutable=1"
            conn = sqlite3.connect(uri, uri=True, timeout=10)
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
        raise SessionError(
            f"cannot create a session in {base}: {error_line(exc, where=False)}"
        ) from None
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
    """Delete a session folder (only one that holds a session, damaged or not). Raises
    SessionError."""
    folder = Path(path)
    if not _is_session_folder(folder):
        raise SessionError(f"{folder}: not a session folder")
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        raise SessionError(f"cannot delete {folder}: {error_line(exc, where=False)}") from None


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
    meta = {str(r["key"]): str(r["value"]) for r in conn.execute("SELECT key, value FROM meta")}
    n_cut = conn.execute("SELECT COUNT(*) FROM cutouts").fetchone()[0]
    n_cand = conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
    try:
        created = float(meta.get("created", "0") or 0)
    except ValueError:
        created = 0.0
    return SessionInfo(
        path=folder,
        name=meta.get("name", folder.name),
        created=created if math.isfinite(created) else 0.0,
        archived=meta.get("archived", "0") == "1",
        cutouts=int(n_cut),
        candidates=int(n_cand),
    )


_TABLES: Final = ("meta", "cutouts", "jobs", "job_events", "candidates", "picks", "exports")
_FOLDER_NAME: Final = re.compile(r"^(\d{8}-\d{6})-(.*)-[0-9a-f]{6}$")


def _holds_work(folder: Path) -> bool:
    """Whether a folder holds session files (a cutout or candidate image)."""
    for sub in ("cutouts", "candidates"):
        with contextlib.suppress(OSError):
            if any(p.suffix == ".png" for p in (folder / sub).iterdir()):
                return True
    return False


def _is_session_folder(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    index = folder / INDEX_NAME
    return index.exists() or index.is_symlink() or _holds_work(folder)


def session_damage(path: str | Path) -> str:
    """Why the session in ``path`` cannot be opened as it is, or "" when it can.

    Damaged: its index missing (while the folder holds images), not a regular file, empty,
    unreadable, failing SQLite's quick check, missing a table, or with a schema version that
    is unreadable or newer than this release reads. A folder without an index or images is a
    new session, not a damaged one. Never raises."""
    folder = Path(path)
    index = folder / INDEX_NAME
    try:
        if index.is_symlink() or (index.exists() and not index.is_file()):
            return f"its index {INDEX_NAME} is not a file"
        if not index.exists():
            return f"its index {INDEX_NAME} is missing" if _holds_work(folder) else ""
        if index.stat().st_size == 0:
            return f"its index {INDEX_NAME} is empty (0 bytes)"
    except OSError as exc:
        return f"its index {INDEX_NAME} cannot be read ({error_line(exc, where=False)})"
    try:
        conn = _connect(folder, readonly=True)
        try:
            tables = {
                str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            missing = [t for t in _TABLES if t not in tables]
            if missing:
                return f"its index lacks the table(s) {', '.join(missing)}"
            check = str(conn.execute("PRAGMA quick_check").fetchone()[0])
            if check != "ok":
                return f"its index is damaged ({check[:200]})"
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return f"its index is unreadable ({exc})"
    if row is None:
        return "its index has no schema version"
    version = str(row[0])
    if not version.isdigit():
        return f"its index has an unreadable schema version {version[:40]!r}"
    if int(version) > SCHEMA_VERSION:
        return (
            f"it was made by a newer fbupscale (session schema {int(version)}; this version "
            f"reads schema {SCHEMA_VERSION}): open it with that version"
        )
    return ""


def _damaged_info(folder: Path, reason: str) -> SessionInfo:
    """What can be said of a damaged session without its index: name and date from the
    folder's name, counts from its image files."""
    match = _FOLDER_NAME.match(folder.name)
    name, created = folder.name, 0.0
    if match:
        name = match.group(2).replace("-", " ") or folder.name
        with contextlib.suppress(ValueError, OverflowError):
            created = time.mktime(time.strptime(match.group(1), "%Y%m%d-%H%M%S"))

    def count(sub: str) -> int:
        try:
            return sum(1 for p in (folder / sub).iterdir() if p.suffix == ".png")
        except OSError:
            return 0

    return SessionInfo(
        folder, name, created, False, count("cutouts"), count("candidates"), damaged=reason
    )


def session_name(path: str | Path) -> str:
    """A session's display name, from its index or, when that is unreadable, its folder."""
    folder = Path(path)
    try:
        return read_info(folder).name
    except (SessionError, OSError):
        return _damaged_info(folder, "").name


def list_sessions(root: str | Path | None = None) -> list[SessionInfo]:
    """Every session, newest first; a damaged one is listed with ``damaged`` saying why."""
    base = Path(root) if root is not None else sessions_dir()
    out: list[SessionInfo] = []
    try:
        folders = [p for p in base.iterdir() if _is_session_folder(p)]
    except OSError:
        return out
    for folder in folders:
        reason = session_damage(folder)
        if not reason:
            try:
                out.append(read_info(folder))
                continue
            except SessionError as exc:
                reason = str(exc)
        info = _damaged_info(folder, reason)
        out.append(replace(info, name=session_name(folder)))
    out.sort(key=lambda i: (i.created, i.path.name), reverse=True)
    return out


def last_session(root: str | Path | None = None) -> Path | None:
    """The session opened last, if it still exists (damaged or not: opening it says so).

    The name in ``last-session`` is untrusted: one that leads outside ``root`` is refused."""
    base = Path(root) if root is not None else sessions_dir()
    try:
        name = (base / _LAST).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        contained(base, name, f"{base / _LAST}")
    except PathEscapeError as exc:
        log.warning("%s", exc)
        return None
    folder = base / name
    return folder if _is_session_folder(folder) else None


def set_last_session(path: str | Path) -> None:
    """Remember ``path`` as the session to reopen (atomically; errors are ignored)."""
    folder = Path(path)
    with contextlib.suppress(OSError):
        atomic_write_bytes(folder.parent / _LAST, folder.name.encode("utf-8"))


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
        self._conn.executescript(_SCHEMA)
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            c.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (repr(time.time()),))
        #: Writer-side names of rows (see models.session_persist): (kind, token) -> row id.
        self.aliases: dict[tuple[str, int], int] = {}
        #: One line per file the open could not index (left in place, tried again next time).
        self.problems: list[str] = []
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
        """Index image files that have no row: written just before a crash (file done, row
        not committed), or every file of a session whose index is rebuilt.

        A candidate's embedded metadata holds everything but its job and LR-consistency,
        and its cutout, whose row is made from it when missing. A file that does not read
        back is left out, with a line in :attr:`problems`."""
        known = {int(r[0]) for r in self._conn.execute("SELECT id FROM candidates")}
        adopted: list[int] = []
        for p in sorted((self.path / "candidates").glob("*.png")):
            if not p.stem.isdigit() or int(p.stem) in known:
                continue
            try:
                self._adopt_candidate(p)
            except Exception as exc:  # hostile files: any failure skips this one file
                self.problems.append(f"candidate {p.name}: not indexed ({_describe(exc)})")
                continue
            adopted.append(int(p.stem))
        for p in sorted((self.path / "cutouts").glob("*.png")):
            try:
                self._adopt_cutout_file(p)
            except Exception as exc:
                self.problems.append(f"cutout {p.name}: not indexed ({_describe(exc)})")
        return adopted

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

    def _adopt_cutout_file(self, p: Path) -> None:
        """A cutout image without a row (a crash between its file and its row)."""
        from dataclasses import asdict

        from fbupscale_gui.core.images import image_sha256, load_cutout
        from fbupscale_gui.core.request import SourceRef

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

    def next_ids(self) -> tuple[int, int]:
        """The next free job id and candidate id (the window numbers rows before writing)."""
        job = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM jobs").fetchone()[0]
        cand = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM candidates").fetchone()[0]
        return int(job) + 1, int(cand) + 1

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
        """Write the candidate PNG (atomically, with its metadata), then index it.

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
    """Read a whole session index (its own connection; any thread). Raises SessionError.

    A row that does not read back (a text where a number belongs) is skipped, and an
    unreadable informational field (timings, model hashes) dropped, each with a line in
    ``problems``: one bad row never hides the rest of the session."""
    folder = Path(path)
    try:
        conn = _connect(folder, readonly=True)
    except sqlite3.Error as exc:
        raise SessionError(f"{folder}: cannot open the session index ({exc})") from None
    try:
        snap = Snapshot(_info(conn, folder))
        for r in conn.execute("SELECT * FROM cutouts ORDER BY seq"):
            try:
                snap.cutouts.append(
                    CutoutRow(
                        _text(r["key"]),
                        _text(r["name"]),
                        _text(r["source"]),
                        _text(r["file"]),
                        _text(r["scene"]),
                        _text(r["prompt"]),
                        bool(_integer(r["prompt_manual"])),
                    )
                )
            except (TypeError, ValueError) as exc:
                snap.problems.append(f"cutout row {_shown(r['name'])}: skipped ({exc})")
        for r in conn.execute("SELECT * FROM jobs ORDER BY id"):
            try:
                snap.jobs.append(
                    JobRow(
                        _integer(r["id"]),
                        _text(r["cutout_key"]),
                        _text(r["cutout_name"]),
                        _text(r["request"]),
                        _text(r["state"]),
                        _integer(r["run"]),
                        _text(r["error"]),
                        _integer(r["replaced_by"]),
                    )
                )
            except (TypeError, ValueError) as exc:
                snap.problems.append(f"job row {_shown(r['id'])}: skipped ({exc})")
        for r in conn.execute("SELECT * FROM candidates ORDER BY id"):
            try:
                row = CandidateRow(
                    id=_integer(r["id"]),
                    job_id=_integer(r["job_id"]),
                    cutout_key=_text(r["cutout_key"]),
                    run=_integer(r["run"]),
                    file=_text(r["file"]),
                    variant=_integer(r["variant"]),
                    lora=bool(_integer(r["lora"])),
                    stage=_integer(r["stage"]),
                    seed=_integer(r["seed"]),
                    lr_consistency=_score(r["lr_consistency"]),
                    request_json=_text(r["request"]),
                    runtime=_text(r["runtime"]),
                )
            except (TypeError, ValueError) as exc:
                snap.problems.append(f"candidate row {_shown(r['id'])}: skipped ({exc})")
                continue
            timings = _json_obj(r["timings"])
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in timings.values()
            ):
                snap.problems.append(f"candidate row {row.id}: unreadable timings dropped")
                timings = {}
            models = _json_obj(r["models"])
            if not all(
                isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
                for v in models.values()
            ):
                snap.problems.append(f"candidate row {row.id}: unreadable model hashes dropped")
                models = {}
            snap.candidates.append(replace(row, timings=timings, models=models))
        for r in conn.execute("SELECT cutout_key, candidate_id FROM picks"):
            with contextlib.suppress(TypeError, ValueError):
                snap.picks[_text(r["cutout_key"])] = _integer(r["candidate_id"])
        for r in conn.execute("SELECT candidate_id FROM exports"):
            with contextlib.suppress(TypeError, ValueError):
                snap.exported.add(_integer(r[0]))
        return snap
    except sqlite3.Error as exc:
        raise SessionError(f"{folder}: unreadable session index ({exc})") from None
    finally:
        conn.close()


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, found {_shown(value)}")
    return value


def _integer(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected a whole number, found {_shown(value)}")
    return value


def _score(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a score in dB, found {_shown(value)}")
    return float(value)


def _shown(value: object) -> str:
    """A value from an untrusted row, short enough for a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
        raise SessionError(f"candidate {target.name}: {error_line(exc, where=False)}") from None


def _json_obj(text: object) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}") if isinstance(text, str | bytes) else {}
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}
