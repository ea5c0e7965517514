"""Candidates per cutout, their grid layout and the one pick per cutout.

Nothing is thrown away: a second run of a cutout adds rows below the first (labelled with the
run number), so an earlier pick stays visible and exportable.

Grid: one row per (run, variant), i.e. per seed; columns are stage 1 (when shown), then
**without LoRA | with LoRA** for the final (stage-2 or fast-engine) results. Tiles are numbered
row by row; keys 1-9 pick by that number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from fbupscale_gui.core.job import Candidate
from fbupscale_gui.core.request import CandidateKey
from fbupscale_gui.worker.engine_thread import ReadyCandidate

__all__ = ["COLUMNS", "CandidateEntry", "CandidateStore", "Column", "Grid", "Row", "layout_grid"]


@dataclass(frozen=True)
class Column:
    title: str
    stage: int
    lora: bool
    always: bool  # shown even when empty


COLUMNS: Final = (
    Column("Stage 1", 1, False, False),
    Column("Stage 1 + LoRA", 1, True, False),
    Column("Without LoRA", 2, False, True),
    Column("With LoRA", 2, True, True),
)


@dataclass(eq=False)
class CandidateEntry:
    """A candidate as the window keeps it: which run it came from, and its images."""

    cutout_id: int
    run: int
    candidate: Candidate
    image: QImage
    thumb: QImage

    @property
    def key(self) -> CandidateKey:
        return self.candidate.key

    @property
    def seed(self) -> int:
        return self.candidate.seed

    @property
    def engine(self) -> str:
        return self.candidate.request.engine

    @property
    def label(self) -> str:
        """Seed and stage, as every tile shows them."""
        if self.engine != "flux":
            return f"seed {self.seed} · {self.engine} (1 stage)"
        lora = "LoRA" if self.key.lora else "no LoRA"
        return f"seed {self.seed} · stage {self.key.stage} · {lora}"


@dataclass(frozen=True)
class Row:
    run: int
    variant: int
    seed: int

    @property
    def title(self) -> str:
        return f"seed {self.seed}" if self.run == 1 else f"run {self.run} · seed {self.seed}"


@dataclass
class Grid:
    """Where each entry sits. ``order`` numbers tiles row by row (index 0 is key 1)."""

    rows: list[Row] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    cells: dict[tuple[int, int], CandidateEntry] = field(default_factory=dict)
    order: list[CandidateEntry] = field(default_factory=list)

    def position(self, entry: CandidateEntry) -> tuple[int, int] | None:
        for pos, e in self.cells.items():
            if e is entry:
                return pos
        return None


def layout_grid(entries: list[CandidateEntry], show_stage1: bool = True) -> Grid:
    """Rows by (run, variant), columns from :data:`COLUMNS`."""
    grid = Grid()
    rows = sorted(
        {Row(e.run, e.key.variant, e.seed) for e in entries}, key=lambda r: (r.run, r.variant)
    )
    present = {(e.key.stage, e.key.lora) for e in entries}
    grid.rows = rows
    grid.columns = [
        c
        for c in COLUMNS
        if (c.stage == 2 and c.always) or (show_stage1 and (c.stage, c.lora) in present)
    ]
    row_index = {(r.run, r.variant): i for i, r in enumerate(rows)}
    col_index = {(c.stage, c.lora): i for i, c in enumerate(grid.columns)}
    for e in entries:
        col = col_index.get((e.key.stage, e.key.lora))
        if col is None:
            continue
        grid.cells[(row_index[(e.run, e.key.variant)], col)] = e
    grid.order = [grid.cells[pos] for pos in sorted(grid.cells)]
    return grid


class CandidateStore(QObject):
    """All candidates by cutout, and exactly one pick per cutout that has any.

    The first candidate to arrive for a cutout is picked automatically (so a pick always
    exists); the operator changes it with a click or keys 1-9, and a user pick is never
    replaced automatically.
    """

    added = Signal(int, object)  # cutout id, CandidateEntry
    pickChanged = Signal(int)  # cutout id
    showStage1Changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._entries: dict[int, list[CandidateEntry]] = {}
        self._picked: dict[int, CandidateEntry] = {}
        self._runs: dict[int, int] = {}
        self._show_stage1 = True

    # -- runs and entries -----------------------------------------------------------------

    def new_run(self, cutout_id: int) -> int:
        self._runs[cutout_id] = self._runs.get(cutout_id, 0) + 1
        return self._runs[cutout_id]

    def add(self, cutout_id: int, run: int, ready: ReadyCandidate) -> CandidateEntry:
        entry = CandidateEntry(cutout_id, run, ready.candidate, ready.image, ready.thumb)
        self._entries.setdefault(cutout_id, []).append(entry)
        self.added.emit(cutout_id, entry)
        if cutout_id not in self._picked:
            self._picked[cutout_id] = entry
            self.pickChanged.emit(cutout_id)
        return entry

    def entries(self, cutout_id: int) -> list[CandidateEntry]:
        return list(self._entries.get(cutout_id, []))

    def grid(self, cutout_id: int) -> Grid:
        return layout_grid(self.entries(cutout_id), self._show_stage1)

    @property
    def show_stage1(self) -> bool:
        return self._show_stage1

    def set_show_stage1(self, show: bool) -> None:
        if show != self._show_stage1:
            self._show_stage1 = show
            self.showStage1Changed.emit(show)

    # -- picks ----------------------------------------------------------------------------

    def picked(self, cutout_id: int) -> CandidateEntry | None:
        return self._picked.get(cutout_id)

    def pick(self, entry: CandidateEntry) -> None:
        if self._picked.get(entry.cutout_id) is not entry:
            self._picked[entry.cutout_id] = entry
            self.pickChanged.emit(entry.cutout_id)

    def pick_index(self, cutout_id: int, index: int) -> CandidateEntry | None:
        """Pick the ``index``-th tile (0-based, row by row); None if there is no such tile."""
        order = self.grid(cutout_id).order
        if not 0 <= index < len(order):
            return None
        self.pick(order[index])
        return order[index]

    def all_picks(self) -> list[CandidateEntry]:
        return list(self._picked.values())
