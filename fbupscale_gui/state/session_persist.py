"""Writing the session to disk as it is produced, off the GUI thread, and reading it back.

:class:`SessionWriter` owns one plain thread and a FIFO of write operations on a
:class:`~fbupscale_gui.storage.session_store.SessionStore` (which lives in that thread): cutout
pixels, requests, job state transitions, candidate PNGs (tens of ms each at 1024 px), picks
and export records. The GUI thread only queues; it never writes a file. A failed write (full
disk, read-only folder) is reported once by the ``failed`` signal (queued to the GUI thread)
naming the folder; the window's state is untouched, and later writes are tried again.

:class:`SessionRecorder` connects the session's models to the writer (which row each
cutout/candidate is) and restores a :class:`~fbupscale_gui.storage.session_reader.Snapshot`:
cutouts, candidates (without their pixels) and picks at once; :class:`ImageLoader` then decodes
the candidates' PNGs in its own thread (a 1024 px PNG takes tens of ms: 200 of them would hold
the window for seconds), and a candidate asked for before that is decoded on first use.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from PySide6.QtCore import QObject, Signal, Slot

from fbupscale_gui.core.errors import FbError
from fbupscale_gui.storage.session_index import CandidateRow, CutoutRow, JobRow, SessionDamagedError
from fbupscale_gui.storage.session_reader import Snapshot
from fbupscale_gui.storage.session_store import SessionStore

if TYPE_CHECKING:
    from PIL import Image
    from PySide6.QtGui import QImage

    from fbupscale_gui.core.request import SourceRef
    from fbupscale_gui.state.candidates import CandidateEntry, CandidateStore, StoredCandidate
    from fbupscale_gui.state.cutouts import Cutout, CutoutsModel, LoadReport
    from fbupscale_gui.state.job_queue import Job, JobQueue

__all__ = [
    "ImageLoader",
    "Restored",
    "RestoredCandidate",
    "SessionRecorder",
    "SessionWriter",
    "load_restored",
    "tile_thumbnail",
    "write_error_text",
]

log = logging.getLogger(__name__)

Op = Callable[[SessionStore], object]
#: Names for rows not written yet (process-wide, so never reused across sessions).
_TOKENS: Final = itertools.count(1)
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
    elif isinstance(exc, OSError):
        why = exc.strerror or str(exc)
    else:
        why = str(exc) or type(exc).__name__
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

    failed = Signal(str)  # a message naming the folder (once until a write succeeds again)
    recovered = Signal()
    opened = Signal(object)  # list[int]: job ids marked interrupted by the open

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
        if store is not None:
            self.opened.emit(list(store.interrupted))
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
                self._report(exc)
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


# -- rows from the window's objects (GUI thread, cheap) ------------------------------------


def cutout_row(cutout: Cutout) -> CutoutRow:
    from dataclasses import asdict

    return CutoutRow(
        key=cutout.source.sha256,
        name=cutout.name,
        source_json=json.dumps(asdict(cutout.source)),
        file=f"cutouts/{cutout.source.sha256}.png",
        scene_json=cutout.scene.to_json() if cutout.scene is not None else "",
        prompt=cutout.prompt,
        prompt_manual=cutout.prompt_manual,
    )


def job_row(job: Job, cutout_key: str, state: str) -> JobRow:
    """The row of a new job; its id is given by the index."""
    return JobRow(
        id=0,
        cutout_key=cutout_key,
        cutout_name=job.cutout_name,
        request_json=job.request.to_json(),
        state=state,
        run=job.run,
    )


def candidate_row(cutout_key: str, entry: CandidateEntry) -> CandidateRow:
    """The row of a new candidate; its id, file and job id are filled in the writer."""
    c = entry.candidate
    return CandidateRow(
        id=0,
        job_id=0,
        cutout_key=cutout_key,
        run=entry.run,
        file="",
        variant=c.key.variant,
        lora=c.key.lora,
        stage=c.key.stage,
        seed=c.seed,
        lr_consistency=entry.lr_consistency,
        request_json=c.request.to_json(),
        runtime=c.runtime,
        timings=dict(c.timings),
        models={k: dict(v) for k, v in entry.models.items()},
    )


# -- restoring (reading runs in a worker thread) -------------------------------------------


@dataclass(frozen=True, eq=False)
class RestoredCandidate:
    """A candidate's index row and what its entry needs, its pixels not decoded yet."""

    row: CandidateRow
    stored: StoredCandidate


@dataclass(frozen=True, eq=False)
class RestoredCutout:
    row: CutoutRow
    source: SourceRef
    image: Image.Image
    qimage: QImage


@dataclass
class Restored:
    """A snapshot with its cutouts decoded and its candidates checked (not decoded); what could
    not be read is in ``problems``."""

    snapshot: Snapshot
    cutouts: list[RestoredCutout]
    candidates: list[RestoredCandidate]
    problems: list[str]


def load_restored(snapshot: Snapshot) -> Restored:
    """Decode the cutouts of ``snapshot`` (small) and check its candidates (thread-safe).

    A candidate's file is only opened to check that it is a readable image (its header, well
    under a millisecond); its full-resolution pixels are decoded later by an
    :class:`ImageLoader`, or on first use. A missing or damaged file, a row whose file lies
    outside the session folder, or a row that does not parse skips that item with a line in
    ``problems``.
    """
    from PIL import Image as PilImage

    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest, SourceRef
    from fbupscale_gui.state.candidates import StoredCandidate
    from fbupscale_gui.storage.cutouts import load_cutout
    from fbupscale_gui.storage.paths import PathEscapeError, contained
    from fbupscale_gui.worker.qimage import pil_to_qimage

    folder = snapshot.info.path
    out = Restored(snapshot, [], [], list(snapshot.problems))
    for row in snapshot.cutouts:
        # the session's own copy of the pixels, named by their hash, stands in for a bad row
        own = f"cutouts/{row.key}.png" if re.fullmatch(r"[0-9a-f]{64}", row.key) else None
        try:
            try:
                path = contained(folder, row.file, f"cutout {row.name}")
            except PathEscapeError as exc:
                if own is None or not (folder / own).is_file():
                    raise
                out.problems.append(f"{exc}; its copy in the session is shown")
                path = folder / own
            image = load_cutout(path)
        except Exception as exc:  # untrusted rows and files: skip this one, say why
            out.problems.append(_problem(f"cutout {row.name}", exc))
            continue
        try:
            source = _source_from_json(row.source_json, row.key, path)
        except Exception as exc:
            out.problems.append(_problem(f"cutout {row.name}: source", exc))
            source = SourceRef(str(path), row.key, image.width, image.height, row.name)
        out.cutouts.append(RestoredCutout(row, source, image, pil_to_qimage(image)))
    known = {c.row.key for c in out.cutouts}
    requests: dict[str, ReconstructionRequest] = {}  # a job's candidates share its request
    for cand in snapshot.candidates:
        if cand.cutout_key not in known:
            continue
        try:
            path = contained(folder, cand.file, f"candidate row {cand.id}")
            with PilImage.open(path) as im:  # the header only
                if im.width <= 0 or im.height <= 0:
                    raise ValueError("empty image")
            request = requests.get(cand.request_json) or ReconstructionRequest.from_json(
                cand.request_json
            )
            requests[cand.request_json] = request
            key = CandidateKey(cand.variant, cand.lora, cand.stage)
        except Exception as exc:
            out.problems.append(_problem(f"candidate {Path(cand.file).name}", exc))
            continue
        stored = StoredCandidate(
            key, cand.seed, request, path, dict(cand.timings), cand.runtime,
            cand.lora_report, cand.resolved, cand.number_check,
        )  # fmt: skip
        out.candidates.append(RestoredCandidate(cand, stored))
    return out


def _problem(what: str, exc: BaseException) -> str:
    from fbupscale_gui.storage.paths import PathEscapeError

    if isinstance(exc, PathEscapeError):
        return str(exc)  # names the row already
    if isinstance(exc, RecursionError):
        return f"{what}: nested too deeply to read"
    if isinstance(exc, FbError | OSError | ValueError):
        return f"{what}: {exc}"
    return f"{what}: {type(exc).__name__}: {exc}"


def tile_thumbnail(image: Image.Image) -> QImage:
    """A candidate's tile image (fits THUMB_SIDE), made from its full-resolution pixels."""
    from fbupscale_gui.worker.engine_thread import THUMB_SIDE
    from fbupscale_gui.worker.qimage import pil_to_qimage

    small = image.copy()
    small.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return pil_to_qimage(small)


class ImageLoader(QObject):
    """Decodes restored candidates in one plain thread, the wanted cutout's first.

    Each decoded candidate comes back with its tile thumbnail by ``decoded`` (queued to the
    GUI thread, which only hands them to the entry): the GUI thread never decodes a PNG.
    An entry already decoded on demand (an export) only gets its thumbnail made.
    """

    decoded = Signal(int, object, object, object)  # generation, entry, PIL image | None, QImage
    failed = Signal(int, object, str)  # generation, entry, message
    finished = Signal(int)  # generation

    def __init__(
        self, generation: int, entries: list[CandidateEntry], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.generation = generation
        self._pending = list(entries)
        self._lock = threading.Lock()
        self._wanted: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="fbupscale-session-images", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def want(self, cutout_id: int | None) -> None:
        """Decode ``cutout_id``'s candidates next."""
        with self._lock:
            self._wanted = cutout_id

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the image being decoded (its result is not delivered); joined."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _next(self) -> CandidateEntry | None:
        with self._lock:
            if not self._pending:
                return None
            wanted = self._wanted
            index = next((i for i, e in enumerate(self._pending) if e.cutout_id == wanted), 0)
            return self._pending.pop(index)

    def _loop(self) -> None:
        while not self._stop.is_set():
            entry = self._next()
            if entry is None:
                break
            try:
                if entry.is_loaded:
                    image = None
                    thumb = tile_thumbnail(entry.candidate.image)
                else:
                    assert entry.stored is not None
                    image = entry.stored.load()
                    thumb = tile_thumbnail(image)
            except FbError as exc:
                self.failed.emit(self.generation, entry, str(exc))
                continue
            except Exception as exc:  # a bug with one file must not stop the others
                log.exception("restoring a candidate image failed")
                self.failed.emit(self.generation, entry, str(exc))
                continue
            if self._stop.is_set():
                break
            self.decoded.emit(self.generation, entry, image, thumb)
        self.finished.emit(self.generation)


class SessionRecorder(QObject):
    """Records what the session's models produce into the current session folder.

    Each cutout, request, job transition, candidate, pick and export is queued to the
    :class:`SessionWriter` the moment it happens. :meth:`apply` fills the models from a
    :class:`Restored` snapshot without recording it again.
    """

    failed = Signal(str)
    recovered = Signal()

    def __init__(
        self,
        cutouts: CutoutsModel,
        candidates: CandidateStore,
        jobs: JobQueue,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._cutouts = cutouts
        self._candidates = candidates
        self._jobs = jobs
        self.writer: SessionWriter | None = None
        self._restoring = False
        # Rows are named by tokens: a restored row by minus its id, a new one by a positive
        # number the writer maps to the id it gets (the GUI thread never waits for an id).
        self._job_ids: dict[int, int] = {}  # Job.id -> token
        self._cand_ids: dict[int, tuple[CandidateEntry, int]] = {}  # id(entry) -> (entry, token)
        self._interrupted_rows: dict[int, int] = {}  # Job.id of an interrupted job -> token
        self._prompts: dict[str, tuple[str, str, bool]] = {}  # last recorded, per cutout key
        cutouts.loaded.connect(self._on_loaded)
        jobs.jobQueued.connect(self._on_queued)
        jobs.jobStarted.connect(self._on_started)
        jobs.jobEnded.connect(self._on_ended)
        jobs.candidateReady.connect(self._on_candidate)
        candidates.pickChanged.connect(self._on_pick)

    @property
    def path(self) -> Path | None:
        return None if self.writer is None else self.writer.path

    # -- opening and closing -------------------------------------------------------------

    def start(self, path: Path) -> SessionWriter:
        """Start writing to ``path`` (the previous writer must be closed)."""
        self.close()
        writer = SessionWriter(path, self)
        writer.failed.connect(self._on_failed)
        writer.recovered.connect(self._on_recovered)
        writer.start()
        self.writer = writer
        self._job_ids.clear()
        self._cand_ids.clear()
        self._interrupted_rows.clear()
        self._prompts.clear()
        return writer

    def close(self) -> None:
        """Write what is queued and end the writer thread."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
            writer.failed.disconnect(self._on_failed)
            writer.recovered.disconnect(self._on_recovered)
            writer.deleteLater()

    def flush(self, timeout: float | None = None) -> bool:
        return True if self.writer is None else self.writer.flush(timeout)

    @Slot(str)
    def _on_failed(self, text: str) -> None:
        self.failed.emit(text)

    @Slot()
    def _on_recovered(self) -> None:
        self.recovered.emit()

    def _submit(self, op: Op) -> None:
        if self.writer is not None and not self._restoring:
            self.writer.submit(op)

    # -- restoring -----------------------------------------------------------------------

    def apply(self, restored: Restored) -> tuple[list[Job], set[int]]:
        """Fill the (empty) models from ``restored``. Returns the interrupted jobs and the
        ``id()`` of the entries that were exported."""
        from fbupscale_gui.core.request import ReconstructionRequest
        from fbupscale_gui.core.scene import Scene

        snap = restored.snapshot
        by_key: dict[str, Cutout] = {}
        by_row: dict[int, CandidateEntry] = {}
        interrupted: list[Job] = []
        exported: set[int] = set()
        self._restoring = True
        try:
            for rc in restored.cutouts:
                row = rc.row
                scene = None
                if row.scene_json:
                    try:
                        scene = Scene.from_json(row.scene_json)
                    except (FbError, ValueError, RecursionError):
                        restored.problems.append(f"cutout {row.name}: scene ignored")
                self._prompts[row.key] = (row.scene_json, row.prompt, row.prompt_manual)
                by_key[row.key] = self._cutouts.add_restored(
                    row.name, rc.source, rc.image, rc.qimage, scene, row.prompt, row.prompt_manual
                )
            with self._candidates.bulk():
                for cand in restored.candidates:
                    crow = cand.row
                    cutout = by_key.get(crow.cutout_key)
                    if cutout is None:
                        continue
                    entry = self._candidates.restore_stored(
                        cutout.id, crow.run, cand.stored, crow.lr_consistency, dict(crow.models)
                    )
                    self._cand_ids[id(entry)] = (entry, -crow.id)
                    by_row[crow.id] = entry
                    if crow.id in snap.exported:
                        exported.add(id(entry))
                for cutout_key, cand_id in snap.picks.items():
                    picked = by_row.get(cand_id)
                    if picked is not None and cutout_key in by_key:
                        self._candidates.pick(picked)
            for jrow in snap.jobs:
                if jrow.state not in ("interrupted", "queued", "running") or jrow.replaced_by:
                    continue
                cutout = by_key.get(jrow.cutout_key)
                if cutout is None:
                    continue
                try:
                    request = ReconstructionRequest.from_json(jrow.request_json)
                except (FbError, ValueError, RecursionError) as exc:
                    restored.problems.append(f"job for {jrow.cutout_name}: {exc}")
                    continue
                job = self._jobs.add_interrupted(
                    cutout.id, jrow.cutout_name, request, cutout=cutout.image.copy()
                )
                self._interrupted_rows[job.id] = -jrow.id
                interrupted.append(job)
        finally:
            self._restoring = False
        return interrupted, exported

    def rerun(self, old: Job, new: Job) -> None:
        """``new`` re-runs the interrupted ``old``: it no longer shows as interrupted."""
        row = self._interrupted_rows.pop(old.id, None)
        new_row = self._job_ids.get(new.id)
        if row is not None and new_row is not None:
            self._submit(_Replaced(row, new_row))

    # -- recording -----------------------------------------------------------------------

    @Slot(object)
    def _on_loaded(self, report: LoadReport) -> None:
        for cutout in report.added:
            row = cutout_row(cutout)
            self._prompts[row.key] = (row.scene_json, row.prompt, row.prompt_manual)
            self._submit(_PutCutout(row, cutout.image.copy()))

    def record_cutout(self, cutout: Cutout) -> None:
        """The cutout's scene or prompt may have changed: record it if it did."""
        row = cutout_row(cutout)
        state = (row.scene_json, row.prompt, row.prompt_manual)
        if self._prompts.get(row.key) == state:
            return
        self._prompts[row.key] = state
        self._submit(_UpdatePrompt(row.key, *state))

    def _cutout_key(self, cutout_id: int) -> str | None:
        try:
            return self._cutouts.by_id(cutout_id).source.sha256
        except KeyError:
            return None

    @Slot(object)
    def _on_queued(self, job: Job) -> None:
        key = self._cutout_key(job.cutout_id)
        if job.task is not None or key is None or self.writer is None or self._restoring:
            return  # task jobs (video batches, model checks) are not part of a session
        token = next(_TOKENS)
        self._job_ids[job.id] = token
        self._submit(_PutJob(token, job_row(job, key, "queued")))

    @Slot(object)
    def _on_started(self, job: Job) -> None:
        row_id = self._job_ids.get(job.id)
        if row_id is not None:
            self._submit(_JobState(row_id, "running", job.run, ""))

    @Slot(object)
    def _on_ended(self, job: Job) -> None:
        row_id = self._job_ids.get(job.id)
        if row_id is not None:
            self._submit(_JobState(row_id, job.state.value, job.run, job.error_message))

    @Slot(object, object)
    def _on_candidate(self, job: Job, entry: CandidateEntry) -> None:
        row_id = self._job_ids.get(job.id)
        key = self._cutout_key(entry.cutout_id)
        if row_id is None or key is None or self.writer is None:
            return
        cid = next(_TOKENS)
        self._cand_ids[id(entry)] = (entry, cid)
        self._submit(_PutCandidate(cid, row_id, candidate_row(key, entry), entry, job.cutout))
        picked = self._candidates.picked(entry.cutout_id)
        if picked is entry:  # the first candidate is picked before it is recorded
            self._submit(_SetPick(key, cid))

    @Slot(int)
    def _on_pick(self, cutout_id: int) -> None:
        entry = self._candidates.picked(cutout_id)
        key = self._cutout_key(cutout_id)
        if entry is None or key is None:
            return
        known = self._cand_ids.get(id(entry))
        if known is not None and known[0] is entry:
            self._submit(_SetPick(key, known[1]))

    def record_exports(self, entries: list[CandidateEntry], paths: list[Path]) -> None:
        records = []
        for entry, path in zip(entries, paths, strict=False):
            known = self._cand_ids.get(id(entry))
            if known is not None and known[0] is entry:
                records.append((known[1], str(path)))
        if records:
            self._submit(_AddExports(records))


def _source_from_json(text: str, key: str, copy: Path) -> SourceRef:
    """The cutout's source; the session's copy of the pixels when the original file is gone.

    Raises ValueError for a row that does not describe this cutout."""
    from fbupscale_gui.core.request import SourceRef

    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("its source is not a JSON object")
    try:
        source = SourceRef(**{k: data[k] for k in ("path", "sha256", "width", "height", "name")})
    except (KeyError, TypeError) as exc:
        raise ValueError(f"its source is incomplete ({exc})") from None
    if not isinstance(source.path, str) or source.sha256 != key:
        raise ValueError("its source does not match the cutout")
    if not Path(source.path).is_file():
        source = SourceRef(str(copy), source.sha256, source.width, source.height, source.name)
    return source


# -- write operations (callables run in the writer thread) ---------------------------------
# Plain classes rather than lambdas, so each carries exactly the data it writes.


@dataclass(frozen=True, eq=False)
class _PutCutout:
    row: CutoutRow
    image: Image.Image
    writes_file = True

    def __call__(self, store: SessionStore) -> None:
        store.put_cutout(self.row, self.image)


@dataclass(frozen=True)
class _UpdatePrompt:
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
class _PutJob:
    token: int
    row: JobRow

    def __call__(self, store: SessionStore) -> None:
        store.aliases[("job", self.token)] = store.put_job(self.row)


@dataclass(frozen=True)
class _JobState:
    token: int
    state: str
    run: int
    error: str

    def __call__(self, store: SessionStore) -> None:
        row_id = _resolve(store, "job", self.token)
        if row_id is not None:
            store.set_job_state(row_id, self.state, run=self.run, error=self.error)


@dataclass(frozen=True)
class _Replaced:
    token: int
    by: int

    def __call__(self, store: SessionStore) -> None:
        row_id = _resolve(store, "job", self.token)
        by = _resolve(store, "job", self.by)
        if row_id is not None and by is not None:
            store.set_replaced(row_id, by)


@dataclass(frozen=True, eq=False)
class _PutCandidate:
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
class _SetPick:
    key: str
    token: int

    def __call__(self, store: SessionStore) -> None:
        row_id = _resolve(store, "cand", self.token)
        if row_id is not None:  # None: that candidate could not be written
            store.set_pick(self.key, row_id)


@dataclass(frozen=True)
class _AddExports:
    records: list[tuple[int, str]]

    def __call__(self, store: SessionStore) -> None:
        rows = [(_resolve(store, "cand", t), path) for t, path in self.records]
        store.add_exports([(r, path) for r, path in rows if r is not None])
