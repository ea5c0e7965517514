"""Pane 1: the cutouts list (drop, open, paste) and the selected cutout at pixel zoom."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QListView,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.state.cutouts import Cutout, CutoutRole, CutoutsModel
from fbupscale_gui.ui.pixel_view import PixelView
from fbupscale_gui.ui.theme import set_style_property
from fbupscale_gui.ui.widgets import hint_label

__all__ = ["CutoutPanel"]


class CutoutPanel(QWidget):
    """Emits ``filesDropped(paths)``, ``openRequested()`` and ``currentChanged(cutout|None)``."""

    filesDropped = Signal(list)
    openRequested = Signal()
    currentChanged = Signal(object)

    def __init__(self, model: CutoutsModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._model = model
        self.setAcceptDrops(True)

        title = QLabel("Cutouts")
        set_style_property(title, "role", "title")
        font = title.font()
        font.setBold(True)
        title.setFont(font)

        self.list = QListView()
        self.list.setModel(model)
        self.list.setIconSize(QSize(64, 64))
        self.list.setSpacing(2)
        self.list.setUniformItemSizes(True)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setAccessibleName("Cutouts")
        self.list.setToolTip("Selected cutouts are queued by Run (Ctrl+R)")
        self.list.selectionModel().currentChanged.connect(self._on_current)
        model.rowsInserted.connect(self._on_rows_inserted)

        self.hint = hint_label("Drop cutouts here, or Open (Ctrl+O) / Paste (Ctrl+V)")
        self.open_button = QPushButton("Open cutouts…")
        self.open_button.clicked.connect(self.openRequested)

        self.pixels = PixelView()

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(title)
        top_layout.addWidget(self.list, 1)
        top_layout.addWidget(self.hint)
        top_layout.addWidget(self.open_button)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(self.pixels)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setChildrenCollapsible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(split)

    # -- selection ------------------------------------------------------------------------

    def current(self) -> Cutout | None:
        index = self.list.currentIndex()
        value = index.data(CutoutRole.CUTOUT) if index.isValid() else None
        return value if isinstance(value, Cutout) else None

    def selected(self) -> list[Cutout]:
        """Selected cutouts in list order (the current one if nothing is selected)."""
        rows = sorted(i.row() for i in self.list.selectionModel().selectedRows())
        chosen = [self._model.at(r) for r in rows]
        if not chosen and (cur := self.current()) is not None:
            chosen = [cur]
        return chosen

    def select_row(self, row: int) -> None:
        if not 0 <= row < self._model.rowCount():
            return
        index = self._model.index(row, 0)
        self.list.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect
        )
        self.list.scrollTo(index)

    def step(self, delta: int) -> None:
        """Next (+1) / previous (-1) cutout."""
        if self._model.rowCount() == 0:
            return
        row = self.list.currentIndex().row()
        row = 0 if row < 0 else max(0, min(self._model.rowCount() - 1, row + delta))
        self.select_row(row)

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        cutout = self.current()
        self.pixels.set_image(cutout.qimage if cutout is not None else None)
        self.currentChanged.emit(cutout)

    def _on_rows_inserted(self, _parent: QModelIndex, first: int, _last: int) -> None:
        if not self.list.currentIndex().isValid():
            self.select_row(first)

    # -- drag and drop --------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.filesDropped.emit(paths)
