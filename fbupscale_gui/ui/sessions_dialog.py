"""File ▸ Sessions…: open, create, rename, archive and delete the saved sessions.

Every cutout, request, candidate, pick and export is written to the current session as it is
made (:mod:`fbupscale_gui.state.session_persist`), so opening another session loses nothing.
Deleting asks first; the current session cannot be deleted (or left) while a job runs.
A damaged session is listed with the reason; "Rebuild" recovers it from its candidate files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.state.session import Session
from fbupscale_gui.storage.session_catalogue import list_sessions, sessions_dir
from fbupscale_gui.storage.session_index import SessionInfo
from fbupscale_gui.ui.theme import ERROR, set_style_property

__all__ = ["COLUMNS", "SessionsDialog"]

COLUMNS: Final = ("Name", "Cutouts", "Candidates", "Created", "Status")
_RIGHT: Final = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_PATH_ROLE: Final = int(Qt.ItemDataRole.UserRole) + 1


def _created(info: SessionInfo) -> str:
    if info.created <= 0:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(info.created))


class SessionsDialog(QDialog):
    """The saved sessions, newest first; archived ones only with "Show archived"."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("Sessions")
        self.resize(760, 420)

        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.tree.header()
        header.setStretchLastSection(False)  # the name takes the spare width, not "Status"
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.tree.itemDoubleClicked.connect(self._on_double_click)

        self.show_archived = QCheckBox("Show archived")
        self.show_archived.toggled.connect(self.refresh)
        self.damage_label = QLabel()
        self.damage_label.setWordWrap(True)
        self.damage_label.setVisible(False)
        set_style_property(self.damage_label, "role", "error")
        self.folder_label = QLabel(f"Saved in {sessions_dir()}")
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        set_style_property(self.folder_label, "role", "hint")

        self.open_button = QPushButton("Open")
        self.new_button = QPushButton("New…")
        self.rename_button = QPushButton("Rename…")
        self.archive_button = QPushButton("Archive")
        self.rebuild_button = QPushButton("Rebuild")
        self.rebuild_button.setToolTip(
            "Recover a damaged session: a new index from its candidate files (their embedded "
            "request and cutout); the damaged index is kept beside it"
        )
        self.delete_button = QPushButton("Delete…")
        set_style_property(self.open_button, "primary", True)
        self.open_button.clicked.connect(self.open_selected)
        self.new_button.clicked.connect(self.new_session)
        self.rename_button.clicked.connect(self.rename_selected)
        self.archive_button.clicked.connect(self.archive_selected)
        self.rebuild_button.clicked.connect(self.rebuild_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        buttons = QHBoxLayout()
        for b in (
            self.open_button,
            self.new_button,
            self.rename_button,
            self.archive_button,
            self.rebuild_button,
            self.delete_button,
        ):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.show_archived)

        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.damage_label)
        layout.addLayout(buttons)
        layout.addWidget(self.folder_label)
        layout.addWidget(close)
        self.refresh()

    # -- list -----------------------------------------------------------------------------

    @Slot()
    def refresh(self) -> None:
        current = self.session.session_path
        selected = self.selected_path() or current
        self.tree.clear()
        for info in list_sessions():
            if info.archived and not self.show_archived.isChecked() and info.path != current:
                continue
            status = []
            if current is not None and info.path == current:
                status.append("open")
            if info.archived:
                status.append("archived")
            if info.damaged:
                status.append("damaged")
            item = QTreeWidgetItem(
                [
                    info.name,
                    str(info.cutouts),
                    str(info.candidates),
                    _created(info),
                    ", ".join(status),
                ]
            )
            item.setData(0, _PATH_ROLE, str(info.path))
            item.setToolTip(0, str(info.path))
            if info.damaged:
                item.setToolTip(len(COLUMNS) - 1, f"Damaged: {info.damaged}. Rebuild recovers it.")
                item.setForeground(len(COLUMNS) - 1, QColor(ERROR))
            for col in (1, 2):
                item.setTextAlignment(col, _RIGHT)
            if info.archived:
                dim = self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
                for col in range(len(COLUMNS)):
                    item.setForeground(col, dim)
            if current is not None and info.path == current:
                font = item.font(0)
                font.setBold(True)
                item.setFont(0, font)
            self.tree.addTopLevelItem(item)
            if selected is not None and info.path == selected:
                item.setSelected(True)
                self.tree.setCurrentItem(item)
        self._update_buttons()

    def selected_path(self) -> Path | None:
        items = self.tree.selectedItems()
        if not items:
            return None
        raw = items[0].data(0, _PATH_ROLE)
        return Path(raw) if isinstance(raw, str) else None

    def _selected_info(self) -> SessionInfo | None:
        path = self.selected_path()
        if path is None:
            return None
        return next((i for i in list_sessions() if i.path == path), None)

    @Slot()
    def _update_buttons(self) -> None:
        path = self.selected_path()
        current = path is not None and path == self.session.session_path
        busy = self.session.jobs.is_busy()
        info = self._selected_info() if path is not None else None
        damaged = info is not None and bool(info.damaged)
        self.open_button.setEnabled(path is not None and not current and not busy and not damaged)
        self.new_button.setEnabled(not busy)
        self.rename_button.setEnabled(path is not None and not damaged)
        self.archive_button.setEnabled(path is not None and not current and not damaged)
        self.rebuild_button.setEnabled(damaged and not busy)
        self.damage_label.setVisible(damaged)
        if info is not None and info.damaged:
            self.damage_label.setText(
                f"“{info.name}” is damaged: {info.damaged}. Rebuild recovers its cutouts, "
                "prompts and candidates from the candidate files (picks and export records "
                "were only in the index, which is kept beside it)."
            )
        self.archive_button.setText(
            "Unarchive" if info is not None and info.archived else "Archive"
        )
        self.delete_button.setEnabled(path is not None and not (current and busy))
        self.delete_button.setToolTip(
            "The current session cannot be deleted while a job runs" if current and busy else ""
        )

    # -- actions --------------------------------------------------------------------------

    @Slot(QTreeWidgetItem, int)
    def _on_double_click(self, _item: QTreeWidgetItem, _column: int) -> None:
        self.open_selected()

    @Slot()
    def open_selected(self) -> None:
        if not self.open_button.isEnabled():
            return  # a double click on the open, a damaged (Rebuild) or a busy one
        path = self.selected_path()
        if path is not None and self.session.open_session(path):
            self.accept()

    @Slot()
    def rebuild_selected(self) -> None:
        info = self._selected_info()
        if info is not None and info.damaged and self.session.rebuild_session(info.path):
            self.accept()
        else:
            self.refresh()

    @Slot()
    def new_session(self) -> None:
        name, ok = QInputDialog.getText(self, "New session", "Name of the new session:")
        if ok and self.session.new_session(name):
            self.accept()

    @Slot()
    def rename_selected(self) -> None:
        info = self._selected_info()
        if info is None:
            return
        name, ok = QInputDialog.getText(self, "Rename session", "New name:", text=info.name)
        if ok and name.strip():
            self.session.rename_session(info.path, name)
            self.refresh()

    @Slot()
    def archive_selected(self) -> None:
        info = self._selected_info()
        if info is not None:
            self.session.archive_session(info.path, not info.archived)
            self.refresh()

    @Slot()
    def delete_selected(self) -> None:
        info = self._selected_info()
        if info is None:
            return
        current = info.path == self.session.session_path
        extra = " It is the session open now; a new empty one replaces it." if current else ""
        answer = QMessageBox.question(
            self,
            "Delete session",
            f"Delete the session “{info.name}” with its {info.cutouts} cutout(s) and "
            f"{info.candidates} candidate(s)? This cannot be undone; exported files are "
            f"kept.{extra}",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.session.delete_session(info.path)
            self.refresh()
