"""The session's writer thread: every write to a session folder, off the GUI thread.

:class:`SessionWriter` owns one plain thread and a FIFO of write operations on a
:class:`~fbupscale_gui.storage.session_store.SessionStore` (which lives in that thread): cutout
pixels, requests, job state transitions, candidate PNGs (tens of ms each at 1024 px), picks
and export records. The GUI thread only queues; it never writes a file. A failed write (full
disk, read-only folder) is reported once by the ``failed`` signal (queued to the GUI thread)
naming the folder; the window's state is untouched, and later writes are tried again.

The write operations are plain callables (one class each) that carry exactly the data they
write; :class:`~fbupscale_gui.state.session_persist.SessionRecorder` makes them.
"""

from __future__ import annotations

import errno
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from PySide6.QtCore import QObject, Signal

from fbupscale_gui.core.errors import FbError, error_line
from fbupscale_gui.storage.session_index import CandidateRow, CutoutRow, JobRow, SessionDamagedError
from fbupscale_gui.storage.session_store import SessionStore

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.state.candidates import CandidateEntry

__all__ = [
    "AddExportsOp",
    "JobStateOp",
    "Op",
    "PutCandidateOp",
    "PutCutoutOp",
    "PutJobOp",
    "ReadMetaOp",
    "ReplacedOp",
    "SessionWriter",
    "SetMetaOp",
    "SetPickOp",
    "UpdatePromptOp",
    "write_error_text",
]

log = logging.getLogger(__name__)

Op = Callable[[SessionStore], object]
_STOP: Final = object()


def write_error_text(folder: Path, exc: BaseException) -> str:
    """One clear sentence for a failed session write, naming the folder."""
    text = str(exc).lower().replace("-", "")
    full = isinstance(exc, sqlite3.Error) and "full" in text
    readonly = isinstance(exc, sqlite3.Error) and "readonly" in text
    if isinstance(exc, OSError):
        full = exc.errno == errno.ENOSPC
        readonly = exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    if full:
        why = "the disk is full"
    elif readonly:
        why = "the folder is read-only"
    else:  # anything but a disk or database problem is a bug: say so
        why = error_line(exc, where=False, unexpected=not isinstance(exc, sqlite3.Error))
    if not isinstance(exc, OSError | sqlite3.OperationalError) and not full and not readonly:
        # not a disk problem: space or permissions would not help
        return (
            f"Could not save the session to {folder}: {why}. Your work is kept in this "
            "window; export the picks now, or start a new session (File ▸ Sessions)."
        )
    return (
        f"Could not save the session to {folder}: {why}. Your work is kept in this window; "
        "free some space (or fix the folder) and it is saved again with the next change, "
        "or export the picks now."
    )


class SessionWriter(QObject):
    """A writer thread for one session folder. Signals arrive in the GUI thread.

    The thread starts with :meth:`start`, once the caller has connected the signals: a
    failure to open the folder is reported the moment the thread starts, and a signal emitted
    before its connection exists reaches nobody."""

    #: A message naming the folder: a disk or database problem once until a write succeeds
    #: again, a bug in a write every time.
    failed = Signal(str)
    recovered = Signal()

    def __init__(self, path: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = Path(path)
        self._queue: queue.Queue[object] = queue.Queue()
        self._failing = False
        #: Why the session could not be opened (set in the writer thread before anything
        #: queued runs, so it is known after :meth:`flush`); None: it opened.
        self.open_error: BaseException | None = None
        #: Files the open could not index (skipped, see SessionStore.problems).
        self.open_problems: list[str] = []
        self._thread = threading.Thread(
            target=self._loop, name="fbupscale-session-writer", daemon=True
        )

    def start(self) -> None:
        """Start the writer thread (connect :attr:`failed` first)."""
        self._thread.start()

    def submit(self, op: Op) -> None:
        """Queue ``op(store)`` to run in the writer thread, in order."""
        self._queue.put(op)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is written (or failed). False on timeout, or
        at once when the writer thread is gone."""
        done = threading.Event()
        self._queue.put(done)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not done.wait(0.2):
            if not self._thread.is_alive():
                return done.is_set()
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what is queued, close the index and end the thread (joined)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _open(self) -> SessionStore | None:
        try:
            store = SessionStore(self.path)
        except SessionDamagedError as exc:
            # reported by the restore (which starts a new session); nothing is written here
            log.warning("cannot open session %s: %s", self.path, exc)
            self.open_error = exc
            return None
        except Exception as exc:  # the thread must outlive any file it is given
            log.warning("cannot open session %s: %s", self.path, exc, exc_info=True)
            self.open_error = exc
            self._report(exc)
            return None
        self.open_error = None
        self.open_problems = list(store.problems)
        return store

    def _loop(self) -> None:
        store = self._open()
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if isinstance(item, threading.Event):
                item.set()
                continue
            if store is None:
                if isinstance(self.open_error, SessionDamagedError):
                    continue  # never write into a damaged session
                store = self._open()
                if store is None:
                    continue
            try:
                item(store)  # type: ignore[operator]
            except (OSError, sqlite3.Error, FbError) as exc:
                log.warning("session write failed in %s: %s", self.path, exc)
                self._report(exc)
            except Exception as exc:  # a bug in one write must not stop the others
                log.exception("session write failed in %s", self.path)
                # shown every time: unlike a full disk, it does not wait for a write to succeed
                self.failed.emit(write_error_text(self.path, exc))
            else:
                # only a file written again proves the disk is back (index rows are tiny)
                if self._failing and getattr(item, "writes_file", False):
                    self._failing = False
                    self.recovered.emit()
        if store is not None:
            store.close()

    def _report(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            self.failed.emit(write_error_text(self.path, exc))


# -- write operations (callables run in the writer thread) ---------------------------------
# Plain classes rather than lambdas, so each carries exactly the data it writes.


@dataclass(frozen=True, eq=False)
class PutCutoutOp:
    row: CutoutRow
    image: Image.Image
    writes_file = True

    def __call__(self, store: SessionStore) -> None:
        store.put_cutout(self.row, self.image)


@dataclass(frozen=True)
class UpdatePromptOp:
    key: str
    scene_json: str
    prompt: str
    manual: bool

    def __call__(self, store: SessionStore) -> None:
        store.update_prompt(self.key, self.scene_json, self.prompt, self.manual)


def _resolve(store: SessionStore, kind: str, token: int) -> int | None:
    """The row id of a token: minus a restored row's id, or what the writer recorded."""
    return -token if token < 0 else store.aliases.get((kind, token))


@dataclass(frozen=True)
class PutJobOp:
    token: int
    row: JobRow

    def __call__(self, store: SessionStore) -> None:
        store.aliases[("job", self.token)] = store.put_job(self.row)


@dataclass(frozen=True)
class JobStateOp:
    token: int
    state: str
    run: int
    error: str

    def __call__(self, store: SessionStore) -> None:
        row_id = _resolve(store, "job", self.token)
        if row_id is not None:
            store.set_job_state(row_id, self.state, run=self.run, error=self.error)


@dataclass(frozen=True)
class ReplacedOp:
    token: int
    by: int

    def __call__(self, store: SessionStore) -> None:
        row_id = _resolve(store, "job", self.token)
        by = _resolve(store, "job", self.by)
        if row_id is not None and by is not None:
            store.set_replaced(row_id, by)


@dataclass(frozen=True, eq=False)
class PutCandidateOp:
    token: int
    job_token: int
    row: CandidateRow
    entry: CandidateEntry
    cutout: Image.Image | None
    writes_file = True

    def __call__(self, store: SessionStore) -> None:
        from dataclasses import replace

        row = replace(self.row, job_id=_resolve(store, "job", self.job_token) or 0)
        store.aliases[("cand", self.token)] = store.put_candidate(
            row, self.entry.candidate, self.cutout
        )


@dataclass(frozen=True)
class SetPickOp:
    key: str
    token: int

    def __call__(self, store: SessionStore) -> None:
        row_id = _resolve(store, "cand", self.token)
        if row_id is not None:  # None: that candidate could not be written
            store.set_pick(self.key, row_id)


@dataclass(frozen=True)
class AddExportsOp:
    records: list[tuple[int, str]]

    def __call__(self, store: SessionStore) -> None:
        rows = [(_resolve(store, "cand", t), path) for t, path in self.records]
        store.add_exports([(r, path) for r, path in rows if r is not None])


@dataclass(frozen=True)
class SetMetaOp:
    """Write one ``meta`` value of the index (e.g. the session's Advanced parameters)."""

    key: str
    value: str

    def __call__(self, store: SessionStore) -> None:
        store.set_meta(self.key, self.value)


class ReadMetaOp:
    """Read one ``meta`` value of the index into :attr:`value` (None: not there); the reader
    waits for it with :meth:`SessionWriter.flush`."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.value: str | None = None

    def __call__(self, store: SessionStore) -> None:
        self.value = store.meta(self.key)
