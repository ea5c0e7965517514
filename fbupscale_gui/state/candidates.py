"""Candidates per cutout, their grid layout and the one pick per cutout.

Nothing is thrown away: a second run of a cutout adds rows below the first (labelled with the
run number), so an earlier pick stays visible and exportable.

Where each tile sits (rows by seed, columns without | with LoRA) is worked out in
:mod:`~fbupscale_gui.state.candidate_grid`; tiles are numbered row by row and keys 1-9 pick by
that number.

Fidelity: every entry carries its LR-consistency (scored in the engine thread). The store can
order the tiles by it instead (:meth:`CandidateStore.set_sort_by_score`; tiles and keys 1-9
then follow the ranking), and :meth:`CandidateStore.suggest` marks the most faithful final
candidate as *suggested*; the pick changes only when the operator accepts it. A non-exact
speed mode's candidate carries its delta against its exact twin where both are scored
(:meth:`CandidateStore.speed_delta`, :mod:`~fbupscale_gui.state.speed_delta`). Deviation
heatmaps are made on demand off the GUI thread and cached per entry
(:class:`~fbupscale_gui.state.heatmaps.HeatmapCache`).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from fbupscale_gui.core.job import Candidate
from fbupscale_gui.core.number_check import NumberCheck, suggestable
from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
from fbupscale_gui.core.runtime import ResolvedRuntime
from fbupscale_gui.state.candidate_grid import Grid, engine_title, layout_grid, rank_by_score
from fbupscale_gui.state.speed_delta import ScoredRender, SpeedDelta, speed_delta
from fbupscale_gui.worker.engine_thread import ReadyCandidate

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["CandidateEntry", "CandidateStore", "StoredCandidate"]

#: Candidate entries are numbered once, for the life of the process (``CandidateEntry.uid``).
_ENTRY_UIDS = itertools.count(1)

#: "Suggest pick" compares candidates of one engine, the first of these present.
SUGGEST_ENGINES: Final = ("flux", "realesrgan", "faithful", "lanczos")


@dataclass(frozen=True, eq=False)
class StoredCandidate:
    """A candidate read back from a session, before its pixels are decoded.

    Everything but the image comes from the session index; :meth:`load` decodes the
    full-resolution PNG (tens of ms at 1024 px: never in the GUI thread during a restore).
    """

    key: CandidateKey
    seed: int
    request: ReconstructionRequest
    path: Path
    timings: Mapping[str, float] = field(default_factory=dict)
    runtime: str = ""
    lora_report: Mapping[str, Any] | None = None
    resolved: ResolvedRuntime | None = None
    number_check: NumberCheck | None = None

    def load(self) -> Image.Image:
        """The stored full-resolution RGB pixels. Raises SessionError naming the file."""
        from fbupscale_gui.storage import session_reader

        return session_reader.read_candidate_image(self.path)

    def with_image(self, image: Image.Image) -> Candidate:
        return Candidate(
            self.key,
            self.seed,
            image,
            self.request,
            dict(self.timings),
            self.runtime,
            self.lora_report,
            self.resolved,
            self.number_check,
        )


class CandidateEntry:
    """A candidate as the window keeps it: which run it came from, and its images.

    A candidate restored from a session starts without pixels (``thumb`` is a null QImage until
    the session's image loader delivers it): its key, seed and engine come from the index, and
    :attr:`candidate` decodes the stored full-resolution file on first use, in whichever thread
    asks (the export thread, usually), unless the loader got there first.
    """

    def __init__(
        self,
        cutout_id: int,
        run: int,
        candidate: Candidate | None,
        image: QImage | None,
        thumb: QImage,
        lr_consistency: float | None = None,
        models: Mapping[str, Mapping[str, str]] | None = None,
        *,
        stored: StoredCandidate | None = None,
    ) -> None:
        if candidate is None and stored is None:
            raise ValueError("a candidate entry needs its candidate or its stored file")
        #: This entry's own number, never reused (``id()`` is, once an entry is freed).
        self.uid = next(_ENTRY_UIDS)
        self.cutout_id = cutout_id
        self.run = run
        self.thumb = thumb
        #: LR-consistency in dB against the cutout (None: not scored).
        self.lr_consistency = lr_consistency
        #: Models the request does not name, for the export's provenance.
        self.models: Mapping[str, Mapping[str, str]] = dict(models or {})
        self.stored = stored
        self._candidate = candidate
        self._image = image
        self._lock = threading.Lock()

    @property
    def is_loaded(self) -> bool:
        """Whether the full-resolution pixels are in memory."""
        return self._candidate is not None

    @property
    def has_thumb(self) -> bool:
        return not self.thumb.isNull()

    @property
    def candidate(self) -> Candidate:
        """The candidate with its full-resolution image (decoded now if it was not yet).

        Raises SessionError when a restored candidate's file can no longer be read."""
        candidate = self._candidate
        if candidate is None:
            with self._lock:
                if self._candidate is None:
                    assert self.stored is not None
                    self._candidate = self.stored.with_image(self.stored.load())
                candidate = self._candidate
        return candidate

    @property
    def number_check(self) -> NumberCheck | None:
        """The shirt-number verdict the engine gave (None: not checked). A restored entry has
        it from the session index before its pixels are decoded."""
        candidate = self._candidate
        if candidate is not None:
            return candidate.number_check
        return None if self.stored is None else self.stored.number_check

    @property
    def image(self) -> QImage:
        """The full-resolution QImage (made from :attr:`candidate` on first use)."""
        if self._image is None:
            from fbupscale_gui.worker.qimage import pil_to_qimage

            self._image = pil_to_qimage(self.candidate.image)
        return self._image

    def provide(self, image: Image.Image | None, thumb: QImage) -> None:
        """The image loader's result: the decoded pixels (unless already loaded) and the
        tile thumbnail."""
        if image is not None and self.stored is not None:
            with self._lock:
                if self._candidate is None:
                    self._candidate = self.stored.with_image(image)
        self.thumb = thumb

    @property
    def key(self) -> CandidateKey:
        if self._candidate is None and self.stored is not None:
            return self.stored.key
        return self.candidate.key

    @property
    def seed(self) -> int:
        if self._candidate is None and self.stored is not None:
            return self.stored.seed
        return self.candidate.seed

    @property
    def request(self) -> ReconstructionRequest:
        if self._candidate is None and self.stored is not None:
            return self.stored.request
        return self.candidate.request

    @property
    def engine(self) -> str:
        if self._candidate is None and self.stored is not None:
            return self.stored.request.engine
        return self.candidate.request.engine

    @property
    def label(self) -> str:
        """Seed and stage (FLUX), or the engine and its one pass, as every tile shows them."""
        if self.engine != "flux":
            return f"{engine_title(self.engine)} · one pass"
        lora = "LoRA" if self.key.lora else "no LoRA"
        return f"seed {self.seed} · stage {self.key.stage} · {lora}"


class CandidateStore(QObject):
    """All candidates by cutout, and exactly one pick per cutout that has any.

    The first candidate to arrive for a cutout is picked automatically (so a pick always
    exists); the operator changes it with a click or keys 1-9, and a user pick is never
    replaced automatically.
    """

    added = Signal(int, object)  # cutout id, CandidateEntry
    pickChanged = Signal(int)  # cutout id
    showStage1Changed = Signal(bool)
    sortChanged = Signal(bool)  # True: ordered by LR-consistency
    suggestionChanged = Signal(int)  # cutout id
    #: A restored entry's tile image (and pixels) arrived from the session's image loader.
    imageReady = Signal(object)  # CandidateEntry
    #: A restored entry was dropped (its file could not be read).
    removed = Signal(int, object)  # cutout id, CandidateEntry
    #: The window shows this cutout's grid: the image loader decodes its candidates first.
    imagesWanted = Signal(int)  # cutout id
    #: Many entries were added at once (a restore, see :meth:`bulk`): rebuild what shows them.
    reset = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._entries: dict[int, list[CandidateEntry]] = {}
        self._picked: dict[int, CandidateEntry] = {}
        self._runs: dict[int, int] = {}
        self._show_stage1 = True
        self._sort_by_score = False
        self._suggested: dict[int, CandidateEntry] = {}
        self._bulk = 0

    # -- runs and entries -----------------------------------------------------------------

    def new_run(self, cutout_id: int) -> int:
        self._runs[cutout_id] = self._runs.get(cutout_id, 0) + 1
        return self._runs[cutout_id]

    def add(self, cutout_id: int, run: int, ready: ReadyCandidate) -> CandidateEntry:
        entry = CandidateEntry(
            cutout_id,
            run,
            ready.candidate,
            ready.image,
            ready.thumb,
            ready.lr_consistency,
            ready.models,
        )
        self._entries.setdefault(cutout_id, []).append(entry)
        # a suggestion is "the best of what there was": a newcomer may beat it
        self._suggested.pop(cutout_id, None)
        self.added.emit(cutout_id, entry)
        if cutout_id not in self._picked:
            self._picked[cutout_id] = entry
            self.pickChanged.emit(cutout_id)
        return entry

    def restore(self, cutout_id: int, run: int, ready: ReadyCandidate) -> CandidateEntry:
        """Add a candidate read back from the session (its run number as recorded)."""
        entry = self.add(cutout_id, run, ready)
        self._runs[cutout_id] = max(self._runs.get(cutout_id, 0), run)
        return entry

    def restore_stored(
        self,
        cutout_id: int,
        run: int,
        stored: StoredCandidate,
        lr_consistency: float | None,
        models: Mapping[str, Mapping[str, str]],
    ) -> CandidateEntry:
        """Add a candidate read back from the session without decoding its pixels (its tile
        image arrives later, see :meth:`provide_image`)."""
        entry = CandidateEntry(
            cutout_id, run, None, None, QImage(), lr_consistency, models, stored=stored
        )
        self._entries.setdefault(cutout_id, []).append(entry)
        self._suggested.pop(cutout_id, None)
        self._runs[cutout_id] = max(self._runs.get(cutout_id, 0), run)
        if not self._bulk:
            self.added.emit(cutout_id, entry)
        if cutout_id not in self._picked:
            self._picked[cutout_id] = entry
            if not self._bulk:
                self.pickChanged.emit(cutout_id)
        return entry

    @contextlib.contextmanager
    def bulk(self) -> Iterator[None]:
        """Restore many entries with one ``reset`` at the end instead of an ``added`` (and a
        first ``pickChanged``) per entry; :meth:`pick` still signals."""
        self._bulk += 1
        try:
            yield
        finally:
            self._bulk -= 1
            if not self._bulk:
                self.reset.emit()

    def provide_image(
        self, entry: CandidateEntry, image: Image.Image | None, thumb: QImage
    ) -> None:
        """A restored entry's decoded pixels and tile image (from the image loader)."""
        entry.provide(image, thumb)
        if entry in self._entries.get(entry.cutout_id, []):
            self.imageReady.emit(entry)

    def discard(self, entry: CandidateEntry) -> None:
        """Drop a restored entry whose file cannot be read (the first left is picked)."""
        entries = self._entries.get(entry.cutout_id, [])
        if entry not in entries:
            return
        entries.remove(entry)
        if self._suggested.get(entry.cutout_id) is entry:
            del self._suggested[entry.cutout_id]
            self.suggestionChanged.emit(entry.cutout_id)
        self.removed.emit(entry.cutout_id, entry)
        if self._picked.get(entry.cutout_id) is entry:
            del self._picked[entry.cutout_id]
            if entries:
                self._picked[entry.cutout_id] = entries[0]
            self.pickChanged.emit(entry.cutout_id)

    def want_images(self, cutout_id: int) -> None:
        """The window shows ``cutout_id``'s grid (its restored tiles are decoded first)."""
        self.imagesWanted.emit(cutout_id)

    def clear(self) -> None:
        """Forget every candidate and pick (another session is opened)."""
        cutout_ids = set(self._entries) | set(self._picked)
        self._entries.clear()
        self._picked.clear()
        self._runs.clear()
        self._suggested.clear()
        for cutout_id in sorted(cutout_ids):
            self.pickChanged.emit(cutout_id)

    def entries(self, cutout_id: int) -> list[CandidateEntry]:
        return list(self._entries.get(cutout_id, []))

    def speed_delta(self, entry: CandidateEntry) -> SpeedDelta | None:
        """``entry``'s LR-consistency against its ``exact`` twin on the same cutout (None: an
        exact candidate, no twin, or either one unscored)."""
        others = (
            ScoredRender(e.key, e.request, e.lr_consistency)
            for e in self.entries(entry.cutout_id)
            if e is not entry
        )
        return speed_delta(ScoredRender(entry.key, entry.request, entry.lr_consistency), others)

    def grid(self, cutout_id: int) -> Grid:
        return layout_grid(self.entries(cutout_id), self._show_stage1)

    @property
    def show_stage1(self) -> bool:
        return self._show_stage1

    def set_show_stage1(self, show: bool) -> None:
        if show != self._show_stage1:
            self._show_stage1 = show
            self.showStage1Changed.emit(show)

    # -- fidelity: order and suggestion ---------------------------------------------------

    @property
    def sort_by_score(self) -> bool:
        return self._sort_by_score

    def set_sort_by_score(self, on: bool) -> None:
        if on != self._sort_by_score:
            self._sort_by_score = on
            self.sortChanged.emit(on)

    def display_order(self, cutout_id: int) -> list[CandidateEntry]:
        """The tiles as shown and numbered (keys 1-9): grid order, or ranked by score."""
        order = self.grid(cutout_id).order
        return rank_by_score(order) if self._sort_by_score else order

    def suggested(self, cutout_id: int) -> CandidateEntry | None:
        return self._suggested.get(cutout_id)

    def suggestion_pool(self, cutout_id: int) -> list[CandidateEntry]:
        """The candidates "Suggest pick" chooses among: like with like.

        LR-consistency ranks candidates of similar quality (the LoRA and no-LoRA outputs of a
        seed); it cannot rank engines (Lanczos invents nothing and always scores highest). So:
        scored final candidates (stage 2 or a fast engine; stage 1 only if no final one is
        scored) of the most generative engine present, FLUX before Real-ESRGAN before Lanczos.
        """
        shown = self.grid(cutout_id).order
        scored = [e for e in shown if e.lr_consistency is not None]
        final = [e for e in scored if e.key.stage == 2] or scored
        pool = final
        for engine in SUGGEST_ENGINES:
            same = [e for e in final if e.engine == engine]
            if same:
                pool = same
                break
        # never a candidate whose shirt number contradicts the scene while one agrees
        allowed = suggestable([e.number_check for e in pool])
        return [e for e, ok in zip(pool, allowed, strict=True) if ok]

    def suggest(self, cutout_id: int) -> CandidateEntry | None:
        """Mark the most faithful candidate of :meth:`suggestion_pool` as suggested (the pick
        does not change). Returns it, or None when nothing is scored."""
        pool = self.suggestion_pool(cutout_id)
        best = rank_by_score(pool)[0] if pool else None
        if best is None:
            changed = self._suggested.pop(cutout_id, None) is not None
        else:
            changed = self._suggested.get(cutout_id) is not best
            self._suggested[cutout_id] = best
        if changed:
            self.suggestionChanged.emit(cutout_id)
        return best

    def accept_suggestion(self, cutout_id: int) -> CandidateEntry | None:
        """Pick the suggested candidate (the operator's decision); None if there is none."""
        entry = self._suggested.get(cutout_id)
        if entry is not None:
            self.pick(entry)
        return entry

    # -- picks ----------------------------------------------------------------------------

    def picked(self, cutout_id: int) -> CandidateEntry | None:
        return self._picked.get(cutout_id)

    def pick(self, entry: CandidateEntry) -> None:
        if self._picked.get(entry.cutout_id) is not entry:
            self._picked[entry.cutout_id] = entry
            self.pickChanged.emit(entry.cutout_id)

    def pick_index(self, cutout_id: int, index: int) -> CandidateEntry | None:
        """Pick the ``index``-th tile (0-based, row by row); None if there is no such tile."""
        order = self.display_order(cutout_id)
        if not 0 <= index < len(order):
            return None
        self.pick(order[index])
        return order[index]

    def all_picks(self) -> list[CandidateEntry]:
        return list(self._picked.values())
