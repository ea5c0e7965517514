"""The Models dialog: the user's super-resolution models, with "Add model…" and "Remove".

Each model shows what was detected when it was added: architecture, scale, parameter count,
file size, the precisions it runs in, and its licence note. Adding validates the file in the
engine thread (:class:`~fbupscale_gui.state.weights_library.SrLibrary`), so the window stays
responsive and never loads torch; a refused file (pickled code, not an upscaler, a damaged
header) shows one line here and changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.state.weights_library import SrLibrary
from fbupscale_gui.storage.weights_library import MODEL_SUFFIXES, LibraryEntry
from fbupscale_gui.ui.theme import set_style_property
from fbupscale_gui.ui.widgets import hint_label

__all__ = ["COLUMNS", "ModelsDialog", "format_params", "format_size"]

COLUMNS: Final = ("Name", "Architecture", "Scale", "Parameters", "Size", "Precisions", "Licence")
_NUMERIC: Final = (2, 3, 4)  # scale, parameters, size: right-aligned
_RIGHT: Final = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_FILTER: Final = f"Super-resolution models ({' '.join('*' + s for s in MODEL_SUFFIXES)})"


def format_params(params: int) -> str:
    """``16.70 M``, ``412 k``, ``—`` when unknown."""
    if params <= 0:
        return "—"
    if params >= 1_000_000:
        return f"{params / 1e6:.2f} M"
    return f"{params / 1e3:.0f} k"


def format_size(size: int) -> str:
    """``63.9 MB``, ``412 KB``."""
    if size >= 1_000_000:
        return f"{size / 1e6:.1f} MB"
    return f"{max(size, 0) / 1e3:.0f} KB"


class ModelsDialog(QDialog):
    """Lists the models folder; adds (in the engine thread) and removes models."""

    def __init__(self, library: SrLibrary, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("fbupscale — Models")
        self.setMinimumSize(1000, 420)
        self._library = library
        #: Ask before removing (tests turn it off).
        self.confirm_remove = True

        intro = hint_label(
            "Super-resolution models for the Engine list (SPAN, ESRGAN, Compact, SwinIR, HAT, "
            "DAT, …). .safetensors files are always accepted; .pth/.pt/.ckpt only when they "
            "hold plain weights."
        )

        self.table = QTreeWidget()
        self.table.setColumnCount(len(COLUMNS))
        self.table.setHeaderLabels(list(COLUMNS))
        head = self.table.headerItem()
        for col in _NUMERIC:
            head.setTextAlignment(col, _RIGHT)
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setAlternatingRowColors(True)
        # room between the facts; the header text lines up with the cells
        self.table.setStyleSheet(
            "QTreeView::item { padding: 3px 10px; } QHeaderView::section { padding: 3px 10px; }"
        )
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.table.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._on_selection)

        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        set_style_property(self.details, "role", "hint")
        self.empty = QLabel()
        set_style_property(self.empty, "role", "hint")

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.licence = QLineEdit()
        self.licence.setPlaceholderText("licence note for the next model added (optional)")
        self.add_button = QPushButton("Add model…")
        self.add_button.setToolTip(
            "Choose a model file; it is checked, then copied into the folder"
        )
        self.add_button.clicked.connect(self.choose_file)
        set_style_property(self.add_button, "primary", True)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove the selected model and delete its copy")
        self.remove_button.clicked.connect(self.remove_selected)
        self.remove_button.setEnabled(False)
        row = QHBoxLayout()
        row.addWidget(self.add_button)
        row.addWidget(self.licence, 1)
        row.addWidget(self.remove_button)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        if close is not None:
            close.setIcon(QIcon())  # text only, like the other buttons
        self.folder = QLabel()
        set_style_property(self.folder, "role", "hint")
        self.folder.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bottom = QHBoxLayout()
        bottom.addWidget(self.folder, 1)
        bottom.addWidget(buttons)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.empty)
        layout.addWidget(self.details)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addLayout(bottom)

        library.changed.connect(self.refresh)
        library.added.connect(self._on_added)
        library.addFailed.connect(self._on_add_failed)
        library.busyChanged.connect(self._on_busy)
        self.refresh()

    # -- the list -------------------------------------------------------------------------

    def entries(self) -> list[LibraryEntry]:
        """The models shown, in row order."""
        out: list[LibraryEntry] = []
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            entry = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
            if isinstance(entry, LibraryEntry):
                out.append(entry)
        return out

    def row_texts(self, row: int) -> list[str]:
        item = self.table.topLevelItem(row)
        return [item.text(c) for c in range(len(COLUMNS))] if item is not None else []

    @Slot()
    def refresh(self) -> None:
        """Re-read the models folder, keeping the selection."""
        selected = self._selected()
        keep = selected.name if selected is not None else None
        entries = self._library.entries()
        self.table.clear()
        for entry in entries:
            item = QTreeWidgetItem(
                [
                    entry.name,
                    entry.arch,
                    f"{entry.scale}x",
                    format_params(entry.params),
                    format_size(entry.size_bytes),
                    " / ".join(entry.precisions),
                    entry.licence or "not recorded",
                ]
            )
            item.setData(0, Qt.ItemDataRole.UserRole, entry)
            for col in (2, 3, 4):
                item.setTextAlignment(
                    col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                )
            item.setToolTip(0, f"{entry.name}: {entry.summary}")
            self.table.addTopLevelItem(item)
            if entry.name == keep:
                item.setSelected(True)
        error = self._library.error
        if error:
            self.empty.setText(f"The models folder cannot be read: {error}")
            set_style_property(self.empty, "role", "error")
        else:
            self.empty.setText(
                "No models yet: use Add model… (or `fbupscale models add FILE`)."
                if not entries
                else ""
            )
            set_style_property(self.empty, "role", "hint")
        self.empty.setVisible(bool(self.empty.text()))
        self.folder.setText(f"Folder: {self._library.library.root}")
        self._on_selection()

    def _selected(self) -> LibraryEntry | None:
        items = self.table.selectedItems()
        entry = items[0].data(0, Qt.ItemDataRole.UserRole) if items else None
        return entry if isinstance(entry, LibraryEntry) else None

    @Slot()
    def _on_selection(self) -> None:
        entry = self._selected()
        self.remove_button.setEnabled(entry is not None)
        if entry is None:
            self.details.setText("Select a model to see where it came from.")
            return
        source = f" · from {entry.source}" if entry.source else ""
        added = f" · added {entry.added}" if entry.added else ""
        self.details.setText(
            f"{entry.name}: file {entry.file} · sha256 {entry.sha256[:16]}…{added}{source}"
        )

    # -- adding and removing --------------------------------------------------------------

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a super-resolution model", "", _FILTER)
        if path:
            self.add_file(path)

    def add_file(self, path: str | Path) -> None:
        """Check and add ``path`` in the engine thread; the list updates when it is done."""
        self._library.add(path, licence=self.licence.text().strip())
        self._show(
            "hint", f"Checking {Path(path).name}… (the engine finishes its current job first)"
        )

    @Slot(object)
    def _on_added(self, entry: LibraryEntry) -> None:
        self.licence.clear()
        self._show("hint", f"Added {entry.name}: {entry.summary}. It is now in the Engine list.")

    @Slot(str, str)
    def _on_add_failed(self, path: str, reason: str) -> None:
        self._show("error", f"Not added: {reason}")

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        self.add_button.setEnabled(not busy)

    def remove_selected(self) -> None:
        entry = self._selected()
        if entry is None:
            return
        if self.confirm_remove:
            answer = QMessageBox.question(
                self,
                "Remove model",
                f"Remove {entry.name} and delete its copy in the models folder?",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        error = self._library.remove(entry.name)
        if error is not None:
            self._show("error", f"Not removed: {error}")
        else:
            self._show("hint", f"Removed {entry.name}.")

    def _show(self, role: str, text: str) -> None:
        self.status.setText(text)
        set_style_property(self.status, "role", role)
