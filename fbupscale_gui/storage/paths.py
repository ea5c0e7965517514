"""Paths read from untrusted files must stay inside the folder they belong to.

A models-folder index, a session row, a request or a candidate's metadata can be copied
between desks or edited by hand, so every path in them is untrusted input. Before the
application reads, shows, overwrites or deletes such a path it goes through
:func:`contained`, which refuses absolute paths, ``..`` components, drive letters and
symbolic links that lead out of the folder, with a one-line message naming the entry.

Small documents read from such places (a scene, a request, an index) go through
:func:`read_regular`, which reads only a regular file of bounded size: ``/dev/zero``, a FIFO
or a gigabyte file is refused before anything is read, never hung on or loaded.

The application's own folders (sessions, models, cache) follow the platform's conventions,
each with an environment variable that overrides it: :func:`user_dir`. Pure Python.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

from fbupscale_gui.core.errors import FbError

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "NotRegularFileError",
    "PathEscapeError",
    "contained",
    "fit_name",
    "read_regular",
    "shown",
    "user_dir",
]

#: Largest JSON document (scene, request, models index) the application reads.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


class PathEscapeError(FbError, ValueError):
    """A path read from a file would lead outside the folder it belongs to."""


class NotRegularFileError(FbError, ValueError):
    """A document to read is a device, a FIFO or a folder, or larger than its limit."""


def read_regular(path: str | os.PathLike[str], what: str, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    Opened without blocking (a FIFO with no writer would hang a plain ``open``) and checked
    with ``fstat`` on the open file before anything is read. Raises
    :class:`NotRegularFileError` naming ``what`` for anything else, and OSError (with the
    file name) when it cannot be opened or read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "a folder"
                if stat.S_ISDIR(info.st_mode)
                else "a FIFO"
                if stat.S_ISFIFO(info.st_mode)
                else "a device or other special file"
            )
            raise NotRegularFileError(f"{what}: {os.fspath(path)} is {kind}, not a regular file")
        if info.st_size > limit:
            raise NotRegularFileError(
                f"{what}: {os.fspath(path)} is {info.st_size} bytes, over the limit of {limit}"
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1024 * 1024):
            size += len(chunk)
            if size > limit:  # grew while being read
                raise NotRegularFileError(
                    f"{what}: {os.fspath(path)} is over the limit of {limit} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def contained(root: str | os.PathLike[str], rel: str, what: str) -> Path:
    """Return ``root/rel`` resolved, or raise :class:`PathEscapeError` naming ``what``.

    ``rel`` must be a relative path with no ``..`` component, no NUL, no drive or root,
    and after following symbolic links it must still lie inside ``root``. ``what`` names
    the entry for the message, e.g. ``"models index entry 'x4'"``.
    """
    if not isinstance(rel, str) or not rel:
        raise PathEscapeError(f"{what}: the path is empty or not text")
    if "\0" in rel:
        raise PathEscapeError(f"{what}: the path {rel!r} contains a NUL character")
    posix = PurePosixPath(rel.replace("\\", "/"))
    win = PureWindowsPath(rel)
    if posix.is_absolute() or win.drive or win.root:
        raise PathEscapeError(
            f"{what}: refused the absolute path {rel!r}; only names inside {root} are allowed"
        )
    if ".." in posix.parts:
        raise PathEscapeError(f"{what}: refused {rel!r}, which leads out of {root} through '..'")
    base = Path(root).resolve()
    target = (base / posix).resolve()
    if target != base and base not in target.parents:
        raise PathEscapeError(f"{what}: {rel!r} leads out of {root} through a symbolic link")
    return target


#: Bytes of a name kept free for what writers add: a ``-NNN`` suffix against clashes and the
#: hidden temporary name ``.<name>.<8 random>.tmp`` of an atomic write.
_NAME_RESERVE = 24


def _name_max(folder: str | os.PathLike[str]) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def fit_name(stem: str, tail: str, folder: str | os.PathLike[str] = ".") -> str:
    """``stem + tail``, with ``stem`` shortened so the name fits ``folder``'s name limit.

    The limit counts bytes (UTF-8), and room is kept for a ``-NNN`` suffix and an atomic
    write's temporary name. A shortened stem is cut at a character boundary and ends with
    ``~`` and 8 hex digits of the full stem's hash, so different long names stay different.
    """
    budget = max(16, _name_max(folder) - _NAME_RESERVE) - len(tail.encode("utf-8"))
    if len(stem.encode("utf-8", "surrogateescape")) <= budget:
        return stem + tail
    digest = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    keep = max(1, budget - 9)
    cut = stem.encode("utf-8", "surrogateescape")[:keep].decode("utf-8", "ignore")
    return f"{cut}~{digest}{tail}"


def shown(text: object) -> str:
    """``text`` safe for one line of a terminal: control characters (newline, ESC...) and
    undecodable bytes of a file name are written as escapes such as ``\\n`` or ``\\x1b``."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in value
    )


def user_dir(kind: Literal["data", "cache"], env: str, *sub: str) -> Path:
    """An fbupscale folder for this user: ``$env`` when set, else ``<base>/fbupscale/<sub>``.

    ``<base>`` is the platform's folder of that ``kind``: for data ``%APPDATA%``,
    ``~/Library/Application Support`` or ``$XDG_DATA_HOME`` (``~/.local/share``); for the
    cache ``%LOCALAPPDATA%``, ``~/Library/Caches`` or ``$XDG_CACHE_HOME`` (``~/.cache``).
    Nothing is created here."""
    override = os.environ.get(env, "").strip()
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        name, default = (
            ("APPDATA", "~/AppData/Roaming")
            if kind == "data"
            else ("LOCALAPPDATA", "~/AppData/Local")
        )
        base = os.environ.get(name) or os.path.expanduser(default)
    elif sys.platform == "darwin":
        base = os.path.expanduser(
            "~/Library/Application Support" if kind == "data" else "~/Library/Caches"
        )
    else:
        name, default = (
            ("XDG_DATA_HOME", "~/.local/share")
            if kind == "data"
            else ("XDG_CACHE_HOME", "~/.cache")
        )
        base = os.environ.get(name) or os.path.expanduser(default)
    return Path(base, "fbupscale", *sub)
