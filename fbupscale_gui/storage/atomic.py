"""Atomic file writes: a hidden temporary file in the same folder, flushed, fsynced, renamed.

Every file the application writes goes through this pattern so that a crash, a kill or a full
disk never leaves a partial file under its final name: readers see the old file or the new
one. Temporary files are named ``.<final name>.<8 random>.tmp``; :func:`clean_stale_temps`
removes the ones a crash or a kill left behind. The first atomic write into a folder (per
process) removes that folder's leftovers older than :data:`STALE_TEMP_S`, so every folder the
application writes to is cleaned when it is next written to, and a temporary file another
process is writing right now (fresh) is never touched.

``tempfile.mkstemp`` creates files with mode 0600; :func:`apply_umask` gives them the
permissions an ordinary ``open()`` would (0666 minus the umask). Pure Python.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

__all__ = [
    "STALE_TEMP_S",
    "TEMP_SUFFIX",
    "apply_umask",
    "atomic_write",
    "atomic_write_bytes",
    "claim_unique",
    "clean_stale_temps",
    "clean_stale_temps_once",
    "fsync_dir",
    "is_temp_name",
    "temp_file",
    "write_error",
]

TEMP_SUFFIX: Final = ".tmp"
#: Leftover temporary files not modified for this long are removed from the folders the
#: application writes to (an hour: a writer at work modifies its file far more often, so
#: nothing of a running export, model copy or video is touched).
STALE_TEMP_S: Final = 3600.0
#: ``tempfile.mkstemp`` names: ``.<final name>.<8 random of [a-z0-9_]>.<suffix>``.
_TEMP_NAME: Final = re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}(?P<suffix>\.[a-z]+)$")

_umask_lock = threading.Lock()
_umask_value: int | None = None


def _umask() -> int:
    """The process umask (read once; reading it means setting it, so under a lock)."""
    global _umask_value
    with _umask_lock:
        if _umask_value is None:
            value = os.umask(0o022)
            os.umask(value)
            _umask_value = value
        return _umask_value


def apply_umask(fd: int) -> None:
    """Give a ``mkstemp`` file (0600) the mode ``open()`` would have given it."""
    if hasattr(os, "fchmod"):
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666 & ~_umask())


def is_temp_name(name: str, suffixes: tuple[str, ...] = (TEMP_SUFFIX,)) -> bool:
    """Whether ``name`` is one of our temporary files (``.<name>.<8 random>.tmp``; other
    ``suffixes`` for the names older releases used)."""
    match = _TEMP_NAME.match(name)
    return match is not None and match.group("suffix") in suffixes


def _final_name(temp_name: str) -> str:
    """``.shot.png.k2j3ab_9.tmp`` -> ``shot.png`` (what the temporary file was to become)."""
    match = _TEMP_NAME.match(temp_name)
    return match.group("final") if match else ""


def temp_file(target: Path) -> tuple[int, Path]:
    """A new hidden temporary file next to ``target`` (umask permissions): (fd, path)."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    apply_umask(fd)
    return fd, Path(name)


def fsync_dir(folder: Path) -> None:
    """Make a rename durable where the platform allows opening a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_error(exc: OSError, target: Path, tmp: Path) -> OSError:
    """``exc`` (a failed write, e.g. a full disk) restated to name ``target`` and how many
    bytes had reached the temporary file; call it before the temporary file is removed."""
    try:
        written = f"{tmp.stat().st_size} bytes"
    except OSError:
        written = "an unknown number of bytes"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return OSError(
        exc.errno,
        f"{reason} after {written} had been written; nothing was saved under this name",
        str(target),
    )


def _link_unique(tmp: Path, first: Path, limit: int = 10_000) -> Path:
    """Give the finished ``tmp`` the first free name of ``first``, ``stem-2.suffix``...

    A hard link fails when the name exists, so claiming the name and publishing the complete
    file are one atomic step: two runs never share a name, and a killed run leaves no empty
    or partial file under one. Where the file system has no hard links, the name is claimed
    exclusively and then replaced by the file.
    """
    candidate = first
    for i in range(2, limit + 2):
        try:
            os.link(tmp, candidate)
        except FileExistsError:
            candidate = first.with_name(f"{first.stem}-{i}{first.suffix}")
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            claimed = claim_unique(candidate, limit=limit)
            os.replace(tmp, claimed)
            return claimed
        tmp.unlink()
        return candidate
    raise FileExistsError(17, f"no free name after {limit} tries", str(first))


def _publish(tmp: Path, target: Path, exclusive: bool) -> Path:
    """Give the finished, fsynced ``tmp`` its final name (see :func:`atomic_write`)."""
    if exclusive:
        target = _link_unique(tmp, target)
    else:
        os.replace(tmp, target)
    fsync_dir(target.parent)
    return target


def atomic_write(
    path: str | Path, write: Callable[[IO[bytes]], object], *, exclusive: bool = False
) -> Path:
    """Write ``path`` atomically with ``write(fh)``; raises OSError, leaving nothing partial.

    A failed write (a full disk) raises an OSError naming ``path`` and how much was written;
    anything ``write`` raises removes the temporary file and propagates. With ``exclusive``
    an existing file is never replaced: the finished file takes the first free name of
    ``path``, ``stem-2.suffix``... (see :func:`_link_unique`), which is returned. The first
    write into a folder removes its stale leftovers (:func:`clean_stale_temps_once`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps_once(target.parent)
    fd, tmp = temp_file(target)
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise write_error(exc, target, tmp) from None
        return _publish(tmp, target, exclusive)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def claim_unique(path: str | Path, *, limit: int = 10_000) -> Path:
    """Create ``path`` (or ``stem-2.suffix``, ``stem-3.suffix``...) as an empty file, exclusively.

    Exclusive creation is atomic, so two processes writing into one folder never get the same
    name: each later replaces its own placeholder with the finished file (an atomic write),
    and never an existing file. Raises OSError (naming the path) when none can be created.
    """
    first = Path(path)
    candidate = first
    for i in range(2, limit + 2):
        try:
            fd = os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            candidate = first.with_name(f"{first.stem}-{i}{first.suffix}")
            continue
        os.close(fd)
        return candidate
    raise FileExistsError(17, f"no free name after {limit} tries", str(first))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(data))


def clean_stale_temps(
    folder: str | Path,
    *,
    older_than_s: float = 0.0,
    final_suffixes: tuple[str, ...] = (),
    temp_suffixes: tuple[str, ...] = (TEMP_SUFFIX,),
) -> list[Path]:
    """Remove our hidden ``.<name>.<8 random>.tmp`` leftovers in ``folder`` older than
    ``older_than_s``.

    Only names :func:`is_temp_name` accepts (with ``temp_suffixes``: also the names older
    releases used) are touched; with ``final_suffixes`` only those whose final name ends with
    one of them. Use ``older_than_s`` > 0 in folders another process may be writing to right
    now. Returns what was removed; errors are ignored (a read-only folder keeps its leftovers).
    """
    root = Path(folder)
    removed: list[Path] = []
    now = time.time()
    try:
        for p in root.iterdir():
            if not is_temp_name(p.name, temp_suffixes) or not p.is_file():
                continue
            if final_suffixes and not _final_name(p.name).lower().endswith(final_suffixes):
                continue
            with contextlib.suppress(OSError):
                if older_than_s <= 0 or now - p.stat().st_mtime > older_than_s:
                    p.unlink()
                    removed.append(p)
    except OSError:
        pass
    return removed


_cleaned_lock = threading.Lock()
_cleaned: set[str] = set()


def clean_stale_temps_once(folder: str | Path) -> None:
    """:func:`clean_stale_temps` of leftovers older than :data:`STALE_TEMP_S`, the first
    time this process writes into ``folder`` (later writes cost nothing)."""
    key = os.path.abspath(folder)
    with _cleaned_lock:
        if key in _cleaned:
            return
        _cleaned.add(key)
    clean_stale_temps(folder, older_than_s=STALE_TEMP_S)
