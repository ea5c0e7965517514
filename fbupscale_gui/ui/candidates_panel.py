"""Pane 3: the candidates grid (rows = seeds, columns = without | with LoRA, stage 1 too) and
the compare view under it.

Click a tile: compare it against the cutout, Lanczos-upscaled to the same size. Ctrl+click a
second tile: compare the two candidates. Double-click, the tile's Pick button or keys 1-9:
pick. Exactly one tile per cutout carries the amber "PICKED" border.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QMouseEvent, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.models.candidates import CandidateEntry, CandidateStore
from fbupscale_gui.models.cutouts import Cutout
from fbupscale_gui.worker.qimage import pil_to_qimage

from . import theme
from .compare_view import CompareView
from .theme import set_style_property

__all__ = ["CandidateTile", "CandidatesPanel"]

TILE_SIDE = 150


class CandidateTile(QFrame):
    """One candidate: thumbnail, number, seed and stage, and a Pick button."""

    clicked = Signal(object, bool)  # entry, ctrl held
    pickRequested = Signal(object)

    def __init__(self, entry: CandidateEntry, number: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.entry = entry
        self.number = number
        self.setObjectName("candidateTile")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setFixedSize(TILE_SIDE, TILE_SIDE)
        self.image.setPixmap(
            QPixmap.fromImage(entry.thumb).scaled(
                TILE_SIDE,
                TILE_SIDE,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )
        key = f"{number}" if number <= 9 else "·"
        # "[1] seed 5 · stage 2" then "no LoRA": two short lines keep tiles narrow
        head, _sep, tail = entry.label.rpartition(" · ")
        text = f"[{key}] {head}\n{tail}" if head else f"[{key}] {entry.label}"
        self.caption = QLabel(text)
        self.caption.setFixedWidth(TILE_SIDE)
        self.caption.setToolTip(
            f"{entry.label} · run {entry.run}\nClick: compare with the cutout · "
            f"Ctrl+click: compare with the last clicked candidate · "
            f"Double-click or key {key}: pick"
        )
        self.pick_button = QPushButton("Pick")
        self.pick_button.setToolTip(f"Pick this candidate for export (key {key})")
        self.pick_button.clicked.connect(self._on_pick)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(3)
        layout.addWidget(self.image)
        layout.addWidget(self.caption)
        layout.addWidget(self.pick_button)
        self.set_picked(False)

    def set_picked(self, picked: bool) -> None:
        self.picked = picked
        set_style_property(self, "picked", picked)
        self.pick_button.setText("★ PICKED" if picked else "Pick")
        set_style_property(self.pick_button, "primary", picked)

    def _on_pick(self) -> None:
        self.pickRequested.emit(self.entry)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            ctrl = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
            self.clicked.emit(self.entry, ctrl)
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.pickRequested.emit(self.entry)


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

        self.title = QLabel("Candidates")
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.stage1_box = QCheckBox("Show stage 1")
        self.stage1_box.setChecked(store.show_stage1)
        self.stage1_box.setToolTip("Show the stage-1 (img2img) results as their own column")
        self.stage1_box.toggled.connect(store.set_show_stage1)
        header = QHBoxLayout()
        header.addWidget(self.title, 1)
        header.addWidget(self.stage1_box)

        self.empty = QLabel(
            "No candidates yet. Select a cutout, describe the scene and press Run (Ctrl+R)."
        )
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        set_style_property(self.empty, "role", "hint")

        self._grid_host = QWidget()
        # Tiles: a quiet border, the accent only for the pick (the theme's meaning of amber).
        self._grid_host.setStyleSheet(
            f"QFrame#candidateTile {{ border: 1px solid {theme.BORDER}; border-radius: 4px; }}"
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
        grid_box.setMinimumHeight(TILE_SIDE + 150)  # one full row: header, tile, caption, button
        grid_layout = QVBoxLayout(grid_box)
        grid_layout.setContentsMargins(0, 0, 0, 0)
        grid_layout.addLayout(header)
        grid_layout.addWidget(self.empty)
        grid_layout.addWidget(self.grid_scroll, 1)

        self.compare_label = QLabel("")
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
        split.setSizes([TILE_SIDE + 190, 420])
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(split)

        store.added.connect(self._on_added)
        store.pickChanged.connect(self._on_pick_changed)
        store.showStage1Changed.connect(self._on_show_stage1)
        self.rebuild()

    # -- binding --------------------------------------------------------------------------

    def set_cutout(self, cutout: Cutout | None) -> None:
        self._cutout = cutout
        self._compared = None
        self.compare.clear()
        self.compare_label.setText("")
        self.rebuild()

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
            self.rebuild()

    def _on_pick_changed(self, cutout_id: int) -> None:
        if self._cutout is None or cutout_id != self._cutout.id:
            return
        picked = self._store.picked(cutout_id)
        for tile in self._tiles:
            tile.set_picked(tile.entry is picked)

    def _on_show_stage1(self, show: bool) -> None:
        self.stage1_box.setChecked(show)
        self.rebuild()

    def rebuild(self) -> None:
        while self._grid.count():
            item = self._grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.hide()
                widget.setParent(None)
        self._tiles = []
        cutout = self._cutout
        entries = self._store.entries(cutout.id) if cutout is not None else []
        self.title.setText(f"Candidates — {cutout.name}" if cutout is not None else "Candidates")
        self.empty.setVisible(not entries)
        self.grid_scroll.setVisible(bool(entries))
        if cutout is None or not entries:
            return
        grid = self._store.grid(cutout.id)
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
        picked = self._store.picked(cutout.id)
        number = {id(e): i + 1 for i, e in enumerate(grid.order)}
        for (r, c), entry in sorted(grid.cells.items()):
            tile = CandidateTile(entry, number[id(entry)])
            tile.set_picked(entry is picked)
            tile.clicked.connect(self._on_tile_clicked)
            tile.pickRequested.connect(self._store.pick)
            self._grid.addWidget(tile, r + 1, c + 1)
            self._tiles.append(tile)
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

    def compare_entry(self, entry: CandidateEntry, against: CandidateEntry | None = None) -> None:
        """Compare ``entry`` with the cutout (Lanczos), or with another candidate."""
        cutout = self._cutout
        if cutout is None:
            return
        if against is not None and against is not entry:
            self.compare.set_pair(against.image, entry.image, against.label, entry.label)
            text = f"{against.label}  ◀ split ▶  {entry.label}"
        else:
            size = (entry.image.width(), entry.image.height())
            left = self._upscaled_cutout(cutout, size)
            self.compare.set_pair(left, entry.image, "cutout (Lanczos)", entry.label)
            text = f"cutout (Lanczos)  ◀ split ▶  {entry.label}   ·   Ctrl+click another tile to compare two candidates"
        self._compared = entry
        self.compare_label.setText(text)
        self.compareChanged.emit(text)
