"""Recording the session as it is produced, and filling the models from a restored one.

:class:`SessionRecorder` connects the session's models to the
:class:`~fbupscale_gui.state.session_writer.SessionWriter` (which row each cutout/candidate is)
and restores a :class:`~fbupscale_gui.state.session_restore.Restored` snapshot: cutouts,
candidates (without their pixels) and picks at once.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Final

from PySide6.QtCore import QObject, Signal, Slot

from fbupscale_gui.core.errors import FbError
from fbupscale_gui.state.session_restore import Restored
from fbupscale_gui.state.session_writer import (
    AddExportsOp,
    JobStateOp,
    Op,
    PutCandidateOp,
    PutCutoutOp,
    PutJobOp,
    ReadMetaOp,
    ReplacedOp,
    SessionWriter,
    SetMetaOp,
    SetPickOp,
    UpdatePromptOp,
)
from fbupscale_gui.storage.session_index import CandidateRow, CutoutRow, JobRow

if TYPE_CHECKING:
    from fbupscale_gui.state.candidates import CandidateEntry, CandidateStore
    from fbupscale_gui.state.cutouts import Cutout, CutoutsModel, LoadReport
    from fbupscale_gui.state.job_queue import Job, JobQueue
    from fbupscale_gui.state.parameters import Parameters

__all__ = ["PARAMS_KEY", "SessionRecorder"]

#: The index's ``meta`` key of the session's Advanced parameters.
PARAMS_KEY: Final = "params"

#: Names for rows not written yet (process-wide, so never reused across sessions).
_TOKENS: Final = itertools.count(1)


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


class SessionRecorder(QObject):
    """Records what the session's models produce into the current session folder.

    Each cutout, request, job transition, candidate, pick, export and change of the
    Advanced parameters is queued to the :class:`SessionWriter` the moment it happens.
    :meth:`apply` fills the models from a :class:`Restored` snapshot without recording it
    again.
    """

    failed = Signal(str)
    recovered = Signal()

    def __init__(
        self,
        cutouts: CutoutsModel,
        candidates: CandidateStore,
        jobs: JobQueue,
        params: Parameters,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._cutouts = cutouts
        self._candidates = candidates
        self._jobs = jobs
        self._params = params
        self.writer: SessionWriter | None = None
        self._restoring = False
        # Rows are named by tokens: a restored row by minus its id, a new one by a positive
        # number the writer maps to the id it gets (the GUI thread never waits for an id).
        self._job_ids: dict[int, int] = {}  # Job.id -> token
        self._cand_ids: dict[int, int] = {}  # entry uid -> token
        self._interrupted_rows: dict[int, int] = {}  # Job.id of an interrupted job -> token
        self._prompts: dict[str, tuple[str, str, bool]] = {}  # last recorded, per cutout key
        cutouts.loaded.connect(self._on_loaded)
        jobs.jobQueued.connect(self._on_queued)
        jobs.jobStarted.connect(self._on_started)
        jobs.jobEnded.connect(self._on_ended)
        jobs.candidateReady.connect(self._on_candidate)
        candidates.pickChanged.connect(self._on_pick)
        params.changed.connect(self._on_params)

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
        writer.start()  # connected first: a failed open is reported, not lost
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

    def read_params(self) -> str | None:
        """The Advanced parameters saved in the session (None: none saved, or no session).
        Waits for the writer (call it off the GUI thread)."""
        writer = self.writer
        if writer is None:
            return None
        saved = ReadMetaOp(PARAMS_KEY)
        writer.submit(saved)
        writer.flush()
        return saved.value

    # -- restoring -----------------------------------------------------------------------

    def apply(self, restored: Restored) -> tuple[list[Job], set[int]]:
        """Fill the (empty) models from ``restored``. Returns the interrupted jobs and the
        ``uid`` of the entries that were exported."""
        from fbupscale_gui.core.request import ReconstructionRequest
        from fbupscale_gui.core.scene import Scene

        snap = restored.snapshot
        by_key: dict[str, Cutout] = {}
        by_row: dict[int, CandidateEntry] = {}
        interrupted: list[Job] = []
        exported: set[int] = set()
        self._restoring = True
        try:
            restored.problems.extend(self._params.restore(restored.params))
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
                    self._cand_ids[entry.uid] = -crow.id
                    by_row[crow.id] = entry
                    if crow.id in snap.exported:
                        exported.add(entry.uid)
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
            self._submit(ReplacedOp(row, new_row))

    # -- recording -----------------------------------------------------------------------

    @Slot(object)
    def _on_loaded(self, report: LoadReport) -> None:
        for cutout in report.added:
            row = cutout_row(cutout)
            self._prompts[row.key] = (row.scene_json, row.prompt, row.prompt_manual)
            self._submit(PutCutoutOp(row, cutout.image.copy()))

    def record_cutout(self, cutout: Cutout) -> None:
        """The cutout's scene or prompt may have changed: record it if it did."""
        row = cutout_row(cutout)
        state = (row.scene_json, row.prompt, row.prompt_manual)
        if self._prompts.get(row.key) == state:
            return
        self._prompts[row.key] = state
        self._submit(UpdatePromptOp(row.key, *state))

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
        self._submit(PutJobOp(token, job_row(job, key, "queued")))

    @Slot(object)
    def _on_started(self, job: Job) -> None:
        row_id = self._job_ids.get(job.id)
        if row_id is not None:
            self._submit(JobStateOp(row_id, "running", job.run, ""))

    @Slot(object)
    def _on_ended(self, job: Job) -> None:
        row_id = self._job_ids.get(job.id)
        if row_id is not None:
            self._submit(JobStateOp(row_id, job.state.value, job.run, job.error_message))

    @Slot(object, object)
    def _on_candidate(self, job: Job, entry: CandidateEntry) -> None:
        row_id = self._job_ids.get(job.id)
        key = self._cutout_key(entry.cutout_id)
        if row_id is None or key is None or self.writer is None:
            return
        cid = next(_TOKENS)
        self._cand_ids[entry.uid] = cid
        self._submit(PutCandidateOp(cid, row_id, candidate_row(key, entry), entry, job.cutout))
        picked = self._candidates.picked(entry.cutout_id)
        if picked is entry:  # the first candidate is picked before it is recorded
            self._submit(SetPickOp(key, cid))

    @Slot(int)
    def _on_pick(self, cutout_id: int) -> None:
        entry = self._candidates.picked(cutout_id)
        key = self._cutout_key(cutout_id)
        if entry is None or key is None:
            return
        known = self._cand_ids.get(entry.uid)
        if known is not None:
            self._submit(SetPickOp(key, known))

    @Slot()
    def _on_params(self) -> None:
        self._submit(SetMetaOp(PARAMS_KEY, self._params.to_json()))

    def record_exports(self, entries: list[CandidateEntry], paths: list[Path]) -> None:
        records = []
        for entry, path in zip(entries, paths, strict=False):
            known = self._cand_ids.get(entry.uid)
            if known is not None:
                records.append((known, str(path)))
        if records:
            self._submit(AddExportsOp(records))
