"""Pane 3: the candidates grid (rows = seeds, columns = without | with LoRA, stage 1 too) and
the compare view under it.

Click a tile: compare it against the cutout, Lanczos-upscaled to the same size. Ctrl+click a
second tile: compare the two candidates. Double-click, the tile's Pick button or keys 1-9:
pick. Exactly one tile per cutout carries the amber "PICKED" border.

Fidelity: every tile shows its LR-consistency in dB (how well the candidate, shrunk back to the
cutout's size, matches the cutout). "Sort by fidelity" ranks the tiles by it (keys 1-9 follow
the ranking); "Suggest pick" (S) marks the most faithful final candidate with a dashed blue
"SUGGESTED" border and shows it in the compare view; the pick changes only when the operator
accepts (Shift+S, or the tile's Pick button). The compare view's Heatmap toggle (H) shows where
the compared candidate departs from the cutout; heatmaps are made off the GUI thread, once.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QImage
from PySide6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.eval.scoring import LR_TOOLTIP, format_db
from fbupscale_gui.state.candidates import CandidateEntry, CandidateStore
from fbupscale_gui.state.cutouts import Cutout
from fbupscale_gui.state.heatmaps import HeatmapCache
from fbupscale_gui.state.speed_delta import score_text
from fbupscale_gui.ui import theme
from fbupscale_gui.ui.candidate_tile import TILE_SIDE, CandidateTile, number_boxes
from fbupscale_gui.ui.compare_view import CompareView
from fbupscale_gui.ui.theme import set_style_property
from fbupscale_gui.ui.widgets import ElidedLabel, empty_layout, hint_label
from fbupscale_gui.worker.qimage import pil_to_qimage

__all__ = ["CandidateTile", "CandidatesPanel", "number_boxes"]


class CandidatesPanel(QWidget):
    """The grid for the current cutout, and the compare view."""

    compareChanged = Signal(str)

    def __init__(self, store: CandidateStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self._cutout: Cutout | None = None
        self._tiles: list[CandidateTile] = []
        self._compared: CandidateEntry | None = None
        self._upscaled: dict[tuple[int, int, int], QImage] = {}
        self._min_lr_db = 0.0
        self._compare_text = ""
        self.heatmaps = HeatmapCache(self)

        self.title = QLabel("Candidates")
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.stage1_box = QCheckBox("Show stage 1")
        self.stage1_box.setChecked(store.show_stage1)
        self.stage1_box.setToolTip("Show the stage-1 (img2img) results as their own column")
        self.stage1_box.toggled.connect(store.set_show_stage1)
        self.sort_box = QCheckBox("Sort by fidelity")
        self.sort_box.setChecked(store.sort_by_score)
        self.sort_box.setToolTip(
            "Order the tiles by LR-consistency, most faithful first (keys 1-9 follow). "
            "Off: rows by seed (FLUX: columns without | with LoRA).\n\n" + LR_TOOLTIP
        )
        self.sort_box.toggled.connect(store.set_sort_by_score)
        self.suggest_action = QAction("Suggest pick", self)
        self.suggest_action.setShortcut("S")
        self.suggest_action.setToolTip(
            "Mark the most faithful candidate (best LR-consistency) as suggested (S). "
            "The pick does not change until you accept it."
        )
        self.suggest_action.triggered.connect(self.suggest)
        self.accept_action = QAction("Accept suggestion", self)
        self.accept_action.setShortcut("Shift+S")
        self.accept_action.setToolTip("Pick the suggested candidate (Shift+S)")
        self.accept_action.triggered.connect(self.accept_suggestion)
        for action in (self.suggest_action, self.accept_action):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            self.addAction(action)
        self.suggest_button = QPushButton("Suggest pick")
        self.suggest_button.setToolTip(self.suggest_action.toolTip())
        self.suggest_button.clicked.connect(self.suggest_action.trigger)
        self.accept_button = QPushButton("Accept")
        self.accept_button.setToolTip(self.accept_action.toolTip())
        self.accept_button.clicked.connect(self.accept_action.trigger)
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.sort_box)
        header.addWidget(self.suggest_button)
        header.addWidget(self.accept_button)
        header.addWidget(self.stage1_box)
        self.note = hint_label()
        self.note.hide()

        self.empty = hint_label(
            "No candidates yet. Select a cutout, describe the scene and press Run (Ctrl+R)."
        )
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)

        self._grid_host = QWidget()
        # Tiles: a quiet border, the accent only for the pick (the theme's meaning of amber).
        # Suggested: a dashed blue border, never the accent (the pick's colour).
        self._grid_host.setStyleSheet(
            f"QFrame#candidateTile {{ border: 1px solid {theme.BORDER}; border-radius: 4px; }}"
            f'QFrame#candidateTile[suggested="true"] {{ border: 2px dashed {theme.LINK}; }}'
            f'QFrame#candidateTile[picked="true"] {{ border: 3px solid {theme.ACCENT}; }}'
        )
        self._grid = QGridLayout(self._grid_host)
        self._grid.setContentsMargins(4, 4, 4, 4)
        self._grid.setHorizontalSpacing(8)
        self._grid.setVerticalSpacing(8)
        self._grid.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.grid_scroll = QScrollArea()
        self.grid_scroll.setWidgetResizable(True)
        self.grid_scroll.setWidget(self._grid_host)

        grid_box = QWidget()
        # one full row: header, tile, caption, score, suggested mark, button
        grid_box.setMinimumHeight(TILE_SIDE + 190)
        grid_layout = QVBoxLayout(grid_box)
        grid_layout.setContentsMargins(0, 0, 0, 0)
        grid_layout.addLayout(header)
        grid_layout.addWidget(self.note)
        grid_layout.addWidget(self.empty)
        grid_layout.addWidget(self.grid_scroll, 1)

        self.compare_label = ElidedLabel("")
        set_style_property(self.compare_label, "role", "hint")
        self.compare = CompareView()
        compare_box = QWidget()
        compare_layout = QVBoxLayout(compare_box)
        compare_layout.setContentsMargins(0, 0, 0, 0)
        compare_layout.addWidget(self.compare_label)
        compare_layout.addWidget(self.compare, 1)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(grid_box)
        split.addWidget(compare_box)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([TILE_SIDE + 230, 400])
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(split)

        store.added.connect(self._on_added)
        store.imageReady.connect(self._on_image_ready)
        store.removed.connect(self._on_removed)
        store.reset.connect(self._on_reset)
        store.pickChanged.connect(self._on_pick_changed)
        store.showStage1Changed.connect(self._on_show_stage1)
        store.sortChanged.connect(self._on_sort_changed)
        store.suggestionChanged.connect(self._on_suggestion_changed)
        self.compare.heatmapToggled.connect(self._on_heatmap_toggled)
        self.heatmaps.ready.connect(self._on_heatmap_ready)
        self.rebuild()

    # -- binding --------------------------------------------------------------------------

    def set_cutout(self, cutout: Cutout | None) -> None:
        self._cutout = cutout
        self._compared = None
        self.compare.clear()
        self.compare_label.setText("")
        self._compare_text = ""
        self.note.hide()
        if cutout is not None:
            self._store.want_images(cutout.id)  # its restored tiles are decoded first
        self.rebuild()

    def set_min_lr_db(self, min_lr_db: float) -> None:
        """The export threshold (0: off): tiles scoring below it say so."""
        self._min_lr_db = float(min_lr_db)
        for tile in self._tiles:
            tile.set_min_lr_db(self._min_lr_db)

    @Slot(object)
    def apply_settings(self, settings: object) -> None:
        """Follow the settings' export threshold (connect to ``SettingsModel.changed``)."""
        self.set_min_lr_db(float(getattr(settings, "export_min_lr_db", 0.0) or 0.0))

    def tiles(self) -> list[CandidateTile]:
        return list(self._tiles)

    def tile_at(self, row: int, column: int) -> CandidateTile | None:
        item = self._grid.itemAtPosition(row + 1, column + 1)  # +1: headers
        widget = item.widget() if item is not None else None
        return widget if isinstance(widget, CandidateTile) else None

    def column_titles(self) -> list[str]:
        if self._cutout is None:
            return []
        return [c.title for c in self._store.grid(self._cutout.id).columns]

    def _on_added(self, cutout_id: int, _entry: CandidateEntry) -> None:
        if self._cutout is not None and cutout_id == self._cutout.id:
            self.note.hide()  # a new candidate voids the suggestion
            self.rebuild()

    def _on_image_ready(self, entry: CandidateEntry) -> None:
        for tile in self._tiles:
            if tile.entry is entry:
                tile.set_thumb(entry.thumb)

    def _on_reset(self) -> None:
        if self._cutout is not None:
            self.note.hide()
            self.rebuild()

    def _on_removed(self, cutout_id: int, _entry: CandidateEntry) -> None:
        if self._cutout is not None and cutout_id == self._cutout.id:
            self.rebuild()

    def _on_pick_changed(self, cutout_id: int) -> None:
        if self._cutout is None or cutout_id != self._cutout.id:
            return
        picked = self._store.picked(cutout_id)
        if self.note.isVisible() and self.note.text().startswith(("Suggested:", "Picked the")):
            self._show_note(self._suggestion_note())  # the note follows the pick
        for tile in self._tiles:
            tile.set_picked(tile.entry is picked)
        self._update_fidelity_actions()

    def _on_show_stage1(self, show: bool) -> None:
        self.stage1_box.setChecked(show)
        self.rebuild()

    @Slot(bool)
    def _on_sort_changed(self, on: bool) -> None:
        self.sort_box.setChecked(on)
        self.rebuild()

    @Slot(int)
    def _on_suggestion_changed(self, cutout_id: int) -> None:
        if self._cutout is None or cutout_id != self._cutout.id:
            return
        suggested = self._store.suggested(cutout_id)
        for tile in self._tiles:
            tile.set_suggested(tile.entry is suggested)
        self._update_fidelity_actions()

    # -- suggestion -----------------------------------------------------------------------

    def suggest(self) -> CandidateEntry | None:
        """Mark the most faithful candidate of the current cutout and compare it; no pick."""
        cutout = self._cutout
        if cutout is None:
            return None
        best = self._store.suggest(cutout.id)
        if best is None:
            self._show_note("Nothing to suggest: no candidate of this cutout has a score yet.")
            return None
        self._show_note(self._suggestion_note())
        self.compare_entry(best)
        return best

    def _suggestion_note(self) -> str:
        """What the suggestion is and how it stands against the pick, as of now."""
        cutout = self._cutout
        best = self._store.suggested(cutout.id) if cutout is not None else None
        if cutout is None or best is None:
            return ""
        pool = self._store.suggestion_pool(cutout.id)
        picked = self._store.picked(cutout.id)
        tail = (
            "It is your pick."
            if picked is best
            else "Your pick is another candidate: accept with Shift+S or the tile's Pick button."
        )
        return (
            f"Suggested: {best.label} — LR-consistency {format_db(best.lr_consistency)}, "
            f"the best of {len(pool)} {best.engine} candidate(s). {tail}"
        )

    def accept_suggestion(self) -> CandidateEntry | None:
        if self._cutout is None:
            return None
        entry = self._store.accept_suggestion(self._cutout.id)
        if entry is not None:
            self._show_note(f"Picked the suggestion: {entry.label}.")
        return entry

    def _show_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def _update_fidelity_actions(self) -> None:
        cutout = self._cutout
        scored = cutout is not None and any(
            e.lr_consistency is not None for e in self._store.entries(cutout.id)
        )
        suggested = self._store.suggested(cutout.id) if cutout is not None else None
        acceptable = (
            suggested is not None
            and cutout is not None
            and self._store.picked(cutout.id) is not suggested
        )
        self.suggest_action.setEnabled(scored)
        self.suggest_button.setEnabled(scored)
        self.accept_action.setEnabled(acceptable)
        self.accept_button.setEnabled(acceptable)

    def rebuild(self) -> None:
        empty_layout(self._grid)
        self._tiles = []
        cutout = self._cutout
        entries = self._store.entries(cutout.id) if cutout is not None else []
        self.title.setText(f"Candidates — {cutout.name}" if cutout is not None else "Candidates")
        self.empty.setVisible(not entries)
        self.grid_scroll.setVisible(bool(entries))
        # stage 1 exists only for FLUX: a fast engine's cutout shows no such switch
        self.stage1_box.setVisible(any(e.engine == "flux" for e in entries))
        self._update_fidelity_actions()
        if cutout is None or not entries:
            return
        grid = self._store.grid(cutout.id)
        picked = self._store.picked(cutout.id)
        suggested = self._store.suggested(cutout.id)
        order = self._store.display_order(cutout.id)
        number = {id(e): i + 1 for i, e in enumerate(order)}

        def add_tile(entry: CandidateEntry, row: int, column: int) -> None:
            tile = CandidateTile(
                entry,
                number[id(entry)],
                min_lr_db=self._min_lr_db,
                speed_delta=self._store.speed_delta(entry),
            )
            tile.set_picked(entry is picked)
            tile.set_suggested(entry is suggested)
            tile.clicked.connect(self._on_tile_clicked)
            tile.pickRequested.connect(self._store.pick)
            self._grid.addWidget(tile, row, column)
            self._tiles.append(tile)

        if self._store.sort_by_score:
            # ranked: row by row, as wide as the normal grid; captions say seed, stage, LoRA
            width = max(len(grid.columns), 2)
            head = QLabel("Most faithful first (LR-consistency)")
            head.setToolTip(LR_TOOLTIP)
            font = head.font()
            font.setBold(True)
            head.setFont(font)
            self._grid.addWidget(head, 0, 1, 1, width)
            for i, entry in enumerate(order):
                if i % width == 0:
                    rank = QLabel(f"#{i + 1}")
                    rank.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    self._grid.addWidget(rank, i // width + 1, 0)
                add_tile(entry, i // width + 1, i % width + 1)
            return
        for c, column in enumerate(grid.columns):
            head = QLabel(column.title)
            head.setAlignment(Qt.AlignmentFlag.AlignCenter)
            font = head.font()
            font.setBold(True)
            head.setFont(font)
            self._grid.addWidget(head, 0, c + 1)
        for r, row in enumerate(grid.rows):
            label = QLabel(row.title.replace(" · ", "\n"))
            label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self._grid.addWidget(label, r + 1, 0)
        for (r, c), entry in sorted(grid.cells.items()):
            add_tile(entry, r + 1, c + 1)
        for c in range(len(grid.columns)):
            if not any(pos[1] == c for pos in grid.cells):
                placeholder = QLabel("not run")
                placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
                placeholder.setFixedSize(TILE_SIDE, TILE_SIDE)
                placeholder.setToolTip("No candidate in this column for this run")
                set_style_property(placeholder, "role", "hint")
                self._grid.addWidget(placeholder, 1, c + 1)

    # -- compare --------------------------------------------------------------------------

    def _upscaled_cutout(self, cutout: Cutout, size: tuple[int, int]) -> QImage:
        key = (cutout.id, size[0], size[1])
        if key not in self._upscaled:
            from PIL import Image

            resized = cutout.image.resize(size, Image.Resampling.LANCZOS)
            self._upscaled[key] = pil_to_qimage(resized)
        return self._upscaled[key]

    def _on_tile_clicked(self, entry: CandidateEntry, ctrl: bool) -> None:
        self.compare_entry(entry, against=self._compared if ctrl else None)

    def _score_text(self, entry: CandidateEntry) -> str:
        return score_text(entry.lr_consistency, self._store.speed_delta(entry))

    def compare_entry(self, entry: CandidateEntry, against: CandidateEntry | None = None) -> None:
        """Compare ``entry`` with the cutout (Lanczos), or with another candidate."""
        cutout = self._cutout
        if cutout is None:
            return
        # the captions over the images carry a speed mode's delta; the line above them stays
        # as short as before (its width sets the panel's)
        right = f"{entry.label} · LR {format_db(entry.lr_consistency)}"
        right_caption = f"{entry.label} · LR {self._score_text(entry)}"
        if against is not None and against is not entry:
            left_label = f"{against.label} · LR {format_db(against.lr_consistency)}"
            left_caption = f"{against.label} · LR {self._score_text(against)}"
            self.compare.set_pair(against.image, entry.image, left_caption, right_caption)
            text = f"{left_label}  ◀ split ▶  {right}"
        else:
            size = (entry.image.width(), entry.image.height())
            left = self._upscaled_cutout(cutout, size)
            self.compare.set_pair(left, entry.image, "cutout (Lanczos)", right_caption)
            text = f"cutout (Lanczos)  ◀ split ▶  {right}   ·   Ctrl+click another tile to compare two candidates"
        self.compare.set_number_boxes(number_boxes(entry.number_check))
        self._compared = entry
        self._compare_text = text
        self.compare_label.setText(text)
        self.compareChanged.emit(text)
        self._refresh_heatmap()

    # -- heatmap --------------------------------------------------------------------------

    def compared(self) -> CandidateEntry | None:
        """The candidate on the compare view's right side (the heatmap's subject)."""
        return self._compared

    @Slot(bool)
    def _on_heatmap_toggled(self, _on: bool) -> None:
        self._refresh_heatmap()

    @Slot(object)
    def _on_heatmap_ready(self, entry: CandidateEntry) -> None:
        if entry is self._compared:
            self._refresh_heatmap()

    def _refresh_heatmap(self) -> None:
        """Overlay the compared candidate's heatmap when the toggle is on (made once, off-thread)."""
        entry, cutout = self._compared, self._cutout
        note = ""
        if not self.compare.heatmap_on() or entry is None or cutout is None:
            self.compare.set_overlay(None)
        else:
            heat = self.heatmaps.request(entry, cutout.image)
            self.compare.set_overlay(heat)
            if heat is None and self.heatmaps.is_pending(entry):
                note = "heatmap: computing…"
            elif heat is None and self.heatmaps.error(entry):
                note = f"heatmap failed: {self.heatmaps.error(entry)}"
            elif heat is None:
                note = "heatmap: not available (the candidate does not match the cutout's shape)"
        self.compare_label.setText(
            f"{self._compare_text}   ·   {note}" if note else self._compare_text
        )
