"""Where each candidate tile sits: the grid of rows (seeds) and columns (stage, LoRA), and the
ranking by fidelity.

Grid: one row per (run, variant), i.e. per seed; columns are stage 1 (when shown), then
**without LoRA | with LoRA** for the final (stage-2 or fast-engine) results. Tiles are numbered
row by row; keys 1-9 pick by that number. :func:`rank_by_score` orders tiles by
LR-consistency instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from fbupscale_gui.state.candidates import CandidateEntry

__all__ = ["COLUMNS", "Column", "Grid", "Row", "engine_title", "layout_grid", "rank_by_score"]


@dataclass(frozen=True)
class Column:
    title: str
    stage: int
    lora: bool
    always: bool  # shown even when empty


_ENGINE_TITLES: Final = {
    "flux": "FLUX",
    "faithful": "Faithful (waifu2x)",
    "realesrgan": "Real-ESRGAN",
    "lanczos": "Lanczos",
}

COLUMNS: Final = (
    Column("Stage 1", 1, False, False),
    Column("Stage 1 + LoRA", 1, True, False),
    Column("Without LoRA", 2, False, True),
    Column("With LoRA", 2, True, True),
)


def engine_title(engine: str) -> str:
    """``Real-ESRGAN``, ``Lanczos``, ``FLUX`` or a user model's name."""
    if engine.startswith("model:"):
        return engine.split(":", 1)[1]
    return _ENGINE_TITLES.get(engine, engine)


@dataclass(frozen=True)
class Row:
    run: int
    variant: int
    seed: int
    engine: str = "flux"
    #: Whether the grid holds more than one run (only then does the title number it).
    numbered: bool = field(default=True, compare=False)

    @property
    def title(self) -> str:
        # a one-pass engine has no seed worth naming: the row says which engine made it
        what = f"seed {self.seed}" if self.engine == "flux" else engine_title(self.engine)
        return what if self.run == 1 or not self.numbered else f"run {self.run} · {what}"


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
    several = len({e.run for e in entries}) > 1  # a lone later run is not called "run 2"
    rows = sorted(
        {Row(e.run, e.key.variant, e.seed, e.engine, several) for e in entries},
        key=lambda r: (r.run, r.variant),
    )
    present = {(e.key.stage, e.key.lora) for e in entries}
    # The LoRA A/B columns only mean something once a FLUX run is there; a cutout that only
    # went through a fast engine shows one column, not an empty "With LoRA" one.
    ab = any(e.engine == "flux" for e in entries)
    grid.rows = rows
    grid.columns = [
        c
        for c in COLUMNS
        if (c.stage == 2 and c.always and (ab or not c.lora or (2, True) in present))
        or (show_stage1 and (c.stage, c.lora) in present)
    ]
    if not ab:
        # fast engines only: one column, named for the engine(s), never "Without LoRA"
        engines = sorted({engine_title(e.engine) for e in entries})
        title = engines[0] if len(engines) == 1 else "Result"
        grid.columns = [Column(title, 2, False, True)]
    row_index = {(r.run, r.variant): i for i, r in enumerate(rows)}
    col_index = {(c.stage, c.lora): i for i, c in enumerate(grid.columns)}
    for e in entries:
        col = col_index.get((e.key.stage, e.key.lora))
        if col is None:
            continue
        grid.cells[(row_index[(e.run, e.key.variant)], col)] = e
    grid.order = [grid.cells[pos] for pos in sorted(grid.cells)]
    return grid


def rank_by_score(entries: list[CandidateEntry]) -> list[CandidateEntry]:
    """Best LR-consistency first; unscored last; ties keep the given order."""
    indexed = list(enumerate(entries))
    indexed.sort(
        key=lambda item: (
            item[1].lr_consistency is None,
            -(item[1].lr_consistency or 0.0),
            item[0],
        )
    )
    return [e for _i, e in indexed]
