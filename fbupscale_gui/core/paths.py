"""Paths read from untrusted files must stay inside the folder they belong to.

A models-folder index, a session row, a request or a candidate's metadata can be copied
between desks or edited by hand, so every path in them is untrusted input. Before the
application reads, shows, overwrites or deletes such a path it goes through
:func:`contained`, which refuses absolute paths, ``..`` components, drive letters and
symbolic links that lead out of the folder, with a one-line message naming the entry.
Pure Python; no I/O besides resolving links.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import FbError

__all__ = ["PathEscapeError", "contained"]


class PathEscapeError(FbError, ValueError):
    """A path read from a file would lead outside the folder it belongs to."""


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
