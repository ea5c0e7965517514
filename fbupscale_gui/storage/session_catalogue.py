"""The catalogue of sessions: where they live, which exist, their names, and whether each
can be opened (:func:`session_damage`); renaming, archiving, deleting, and the one to reopen.

Sessions live in :func:`sessions_dir` (``FBUPSCALE_SESSIONS_DIR`` overrides the user data
folder), one folder each (layout: :mod:`fbupscale_gui.storage.session_index`). Nothing here
opens a session for writing; that is :class:`~fbupscale_gui.storage.session_store.SessionStore`.
Pure Python (sqlite3).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import sqlite3
import time
from dataclasses import replace
from pathlib import Path
from typing import Final

from fbupscale_gui.core.errors import error_line
from fbupscale_gui.storage.atomic import atomic_write_bytes
from fbupscale_gui.storage.paths import PathEscapeError, contained, user_dir
from fbupscale_gui.storage.session_index import (
    INDEX_NAME,
    SCHEMA_VERSION,
    TABLES,
    SessionError,
    SessionInfo,
    connect_index,
    index_info,
)

__all__ = [
    "SESSIONS_ENV",
    "delete_session",
    "last_session",
    "list_sessions",
    "read_info",
    "rename_session",
    "session_damage",
    "session_name",
    "sessions_dir",
    "set_archived",
    "set_last_session",
]

SESSIONS_ENV: Final = "FBUPSCALE_SESSIONS_DIR"
_LAST: Final = "last-session"


def sessions_dir() -> Path:
    """Where sessions live: ``FBUPSCALE_SESSIONS_DIR``, else ``<user data>/fbupscale/sessions``."""
    return user_dir("data", SESSIONS_ENV, "sessions")


log = logging.getLogger(__name__)


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
        conn = connect_index(folder, readonly=True)
        try:
            return index_info(conn, folder)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise SessionError(f"{folder}: unreadable session index ({exc})") from None


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
        conn = connect_index(folder, readonly=True)
        try:
            tables = {
                str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            missing = [t for t in TABLES if t not in tables]
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
