"""The FLUX models page: choose a folder, see what was found and what is missing.

FLUX.1-dev, the ControlNet upscaler and the LoRAs are never downloaded by the app. This page
shows, for each, where it was found, its size, SHA-256 and licence; for a missing one, the
command to run on a connected machine, as a line to copy. Choosing a folder points Settings at
what it holds and looks for FLUX again, so the Engine list updates without a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.state.flux_setup import FluxSetup, ModelStatus, settings_for
from fbupscale_gui.ui.models_dialog import format_size
from fbupscale_gui.ui.theme import set_style_property
from fbupscale_gui.ui.widgets import empty_layout, hint_label

if TYPE_CHECKING:
    from fbupscale_gui.state.session import Session

__all__ = ["COLUMNS", "FluxModelsDialog"]

COLUMNS: Final = ("Model", "Status", "Where", "Size", "SHA-256", "Licence")
_SOURCES: Final = {"folder": "chosen folder", "settings": "Settings", "hf-cache": "HF cache"}


class FluxModelsDialog(QDialog):
    """Non-modal; reads and writes the session's settings, then asks it to check FLUX."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("fbupscale — FLUX models")
        self.setMinimumSize(760, 420)
        self.resize(1000, 640)  # the table, three command lines and the note, on 1366x768 too
        self._session = session
        self.setup = FluxSetup(self)
        self.setup.surveyed.connect(self._on_surveyed)
        self.setup.hashed.connect(self._show)

        intro = hint_label(
            "The FLUX engine needs FLUX.1-dev and the jasperai ControlNet upscaler; a football "
            "LoRA is optional. fbupscale never downloads them. Choose the folder that holds "
            "them (the Hugging Face cache is searched too)."
        )

        self.folder_edit = QLineEdit()
        self.folder_edit.setReadOnly(True)
        self.folder_edit.setPlaceholderText("no folder chosen: Settings and the HF cache")
        self.choose_button = QPushButton("Choose folder…")
        set_style_property(self.choose_button, "primary", True)
        self.choose_button.clicked.connect(self.choose_folder)
        self.again_button = QPushButton("Look again")
        self.again_button.clicked.connect(self.refresh)
        folder_row = QHBoxLayout()
        folder_row.addWidget(QLabel("Models folder"))
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.choose_button)
        folder_row.addWidget(self.again_button)

        self.table = QTreeWidget()
        self.table.setColumnCount(len(COLUMNS))
        self.table.setHeaderLabels(list(COLUMNS))
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        header = self.table.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        # every row shows (two models and a LoRA or more) without scrolling
        rows = self.table.fontMetrics().lineSpacing() + 8
        self.table.setMinimumHeight(rows * 4 + header.sizeHint().height())

        self.missing_box = QGroupBox("How to get what is missing (on a machine with internet)")
        self._missing_layout = QGridLayout(self.missing_box)
        self.state = QLabel()
        self.state.setWordWrap(True)
        self.state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        if close is not None:
            close.setIcon(QIcon())  # text only, like the other buttons

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(folder_row)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.missing_box)
        layout.addWidget(self.state)
        layout.addWidget(buttons)
        self.command_edits: list[QLineEdit] = []
        session.engine.fluxStatusChanged.connect(self._on_flux_status)
        self.refresh()

    # -- looking --------------------------------------------------------------------------

    def folder(self) -> str:
        return self.folder_edit.text().strip()

    @Slot()
    def refresh(self) -> None:
        """Survey again (background thread); the table fills when it is done."""
        self.state.setText("Looking…")
        set_style_property(self.state, "role", "hint")
        self.setup.start(self._session.settings.settings, self.folder())

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "The folder that holds the FLUX models")
        if folder:
            self.set_folder(folder)

    def set_folder(self, folder: str) -> None:
        self.folder_edit.setText(folder)
        self.refresh()

    @Slot(object)
    def _show(self, statuses: list[ModelStatus]) -> None:
        self.table.clear()
        for s in statuses:
            item = QTreeWidgetItem(
                [
                    s.label,
                    "found" if s.found else "missing",
                    f"{s.path} ({_SOURCES.get(s.source, s.source)})" if s.path else "—",
                    format_size(s.size_bytes) if s.found else "—",
                    (s.sha256[:16] + "…" if s.sha256 else "hashing…") if s.found else "—",
                    s.licence or "—",
                ]
            )
            item.setToolTip(0, s.repo_id or s.label)
            item.setToolTip(2, str(s.path) if s.path else s.problem)
            item.setToolTip(4, s.sha256)
            item.setData(0, Qt.ItemDataRole.UserRole, s)
            self.table.addTopLevelItem(item)
        self._show_missing([s for s in statuses if not s.found])

    @Slot(object)
    def _on_surveyed(self, statuses: list[ModelStatus]) -> None:
        self._show(statuses)
        self._adopt(statuses)

    def _show_missing(self, missing: list[ModelStatus]) -> None:
        empty_layout(self._missing_layout)
        self.command_edits = []
        for row, s in enumerate(missing):
            name = QLabel(f"<b>{s.label}</b>")
            line = QLineEdit(s.command)
            line.setReadOnly(True)
            line.setCursorPosition(0)
            line.setToolTip(s.problem)
            copy = QPushButton("Copy")
            copy.setToolTip("Copy the command line")
            copy.setProperty("command", s.command)
            copy.clicked.connect(self._copy)
            self._missing_layout.addWidget(name, row, 0)
            self._missing_layout.addWidget(line, row, 1)
            self._missing_layout.addWidget(copy, row, 2)
            self.command_edits.append(line)
        if missing and any(s.repo_id for s in missing):
            note = hint_label(
                "On a machine with internet: accept the licence on the model's Hugging Face page, "
                "log in with `hf auth login`, run the line, then copy the folder to the same "
                "place on this machine and choose its parent folder above."
            )
            self._missing_layout.addWidget(note, len(missing), 0, 1, 3)
        self._missing_layout.setColumnStretch(1, 1)
        self.missing_box.setVisible(bool(missing))
        if self.height() < self.sizeHint().height():
            self.resize(self.width(), self.sizeHint().height())  # the lines never squeeze

    @Slot()
    def _copy(self) -> None:
        sender = self.sender()
        command = sender.property("command") if sender is not None else None
        if isinstance(command, str):
            QApplication.clipboard().setText(command)
            self.state.setText(f"Copied: {command}")

    def _adopt(self, statuses: list[ModelStatus]) -> None:
        """Point Settings at what the chosen folder holds, and let the engine list know."""
        settings = self._session.settings.settings
        updated = settings_for(settings, statuses)
        if updated != settings:
            self._session.settings.set(updated)
            self._session.check_models()
        found = sum(1 for s in statuses[:2] if s.found)
        if found == 2:
            self.state.setText("FLUX is ready: choose it in the Engine list.")
            set_style_property(self.state, "role", "hint")
        else:
            self.state.setText(f"FLUX needs both models; {2 - found} missing (see below).")
            set_style_property(self.state, "role", "warning")
        if updated == settings and found == 2:
            self._session.check_models()  # e.g. found in the cache since the last check

    @Slot(str)
    def _on_flux_status(self, status: str) -> None:
        if status == "available" and self.isVisible():
            self.state.setText("FLUX is ready: it is in the Engine list.")

    def texts(self) -> list[list[str]]:
        """Every row's cells (tests and screenshots)."""
        out = []
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            if item is not None:
                out.append([item.text(c) for c in range(len(COLUMNS))])
        return out
