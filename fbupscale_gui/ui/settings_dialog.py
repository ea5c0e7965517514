"""The settings dialog: model folders, Hugging Face cache, memory mode, export options."""

from __future__ import annotations

from typing import Final, get_args

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.core.export import TEMPLATE_FIELDS, ExportError, validate_template
from fbupscale_gui.core.request import MemoryMode
from fbupscale_gui.core.settings import Settings, SettingsError
from fbupscale_gui.ui.theme import set_style_property

__all__ = ["SettingsDialog"]

_FOLDERS = ("flux_dir", "flux_base_dir", "controlnet_dir", "hf_cache", "export_dir")
#: Path fields show at least this many characters (paths like ~/models/FLUX.1-dev fit whole).
_PATH_CHARS: Final = 56
_MIN_WIDTH: Final = 820


def _ask_or_refuse(value: str) -> QComboBox:
    """The choice an export guard offers: ask for confirmation, or refuse."""
    combo = QComboBox()
    combo.addItem("asks for confirmation", "ask")
    combo.addItem("is refused", "refuse")
    combo.setCurrentIndex(max(0, combo.findData(value)))
    return combo


class SettingsDialog(QDialog):
    """Edits a :class:`Settings`; :meth:`result_settings` is validated (or None)."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("fbupscale — Settings")
        self.setMinimumWidth(_MIN_WIDTH)
        self._settings = settings
        self._result: Settings | None = None
        self.edits: dict[str, QLineEdit] = {}
        form = QFormLayout()
        for name in (
            "flux_dir",
            "flux_base_dir",
            "controlnet_dir",
            "lora_path",
            "hf_cache",
            "export_dir",
        ):
            form.addRow(Settings.describe(name), self._path_row(name))
        self.memory = QComboBox()
        self.memory.addItems(list(get_args(MemoryMode)))
        self.memory.setCurrentText(settings.memory_mode)
        form.addRow(Settings.describe("memory_mode"), self.memory)
        self.template = QLineEdit(settings.export_template)
        self.template.setToolTip(
            "Fields: " + ", ".join(f"{{{k}}} ({v})" for k, v in TEMPLATE_FIELDS.items())
        )
        self.template.textChanged.connect(self._validate)
        form.addRow(Settings.describe("export_template"), self.template)
        self.format = QComboBox()
        self.format.addItems(["png", "jpeg"])
        self.format.setCurrentText(settings.export_format)
        form.addRow(Settings.describe("export_format"), self.format)
        self.match = QLineEdit(settings.match_name)
        form.addRow(Settings.describe("match_name"), self.match)
        self._add_fidelity_rows(form, settings)
        self._add_engine_rows(form, settings)

        self.error = QLabel("")
        self.error.setWordWrap(True)
        set_style_property(self.error, "role", "error")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)

    def _add_fidelity_rows(self, form: QFormLayout, settings: Settings) -> None:
        """Export guard and provenance badge (issue 5)."""
        from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox

        from fbupscale_gui.eval.scoring import LR_TOOLTIP

        self.min_lr = QDoubleSpinBox()
        self.min_lr.setRange(0.0, 99.0)
        self.min_lr.setDecimals(1)
        self.min_lr.setSingleStep(0.5)
        self.min_lr.setSuffix(" dB")
        self.min_lr.setSpecialValueText("off")  # shown at 0
        self.min_lr.setValue(settings.export_min_lr_db)
        self.min_lr.setToolTip(
            "Exporting a pick below this LR-consistency asks first, or is refused. "
            "Real-ESRGAN scores about 25-30 dB on typical cutouts.\n\n" + LR_TOOLTIP
        )
        form.addRow(Settings.describe("export_min_lr_db"), self.min_lr)
        self.low_fidelity = _ask_or_refuse(settings.export_low_fidelity)
        form.addRow(Settings.describe("export_low_fidelity"), self.low_fidelity)
        self.contradiction = _ask_or_refuse(settings.export_number_contradiction)
        self.contradiction.setToolTip(
            "The number check reads the shirt numbers in each candidate and compares them with "
            "the numbers the scene marks fully visible."
        )
        form.addRow(Settings.describe("export_number_contradiction"), self.contradiction)
        self.badge = QCheckBox("Corner badge in the exported pixels")
        self.badge.setChecked(settings.export_badge)
        self.badge.setToolTip(
            "Draws 'AI-reconstructed' (Lanczos: 'Upscaled') in the bottom-right corner. Every "
            "export carries the AI statement in its metadata either way; the metadata records "
            "whether the badge was drawn and the hash of the pixels without it."
        )
        form.addRow(Settings.describe("export_badge"), self.badge)

    def _add_engine_rows(self, form: QFormLayout, settings: Settings) -> None:
        """Settings › Engine: this computer (the engine process) or a server (URL + token)."""
        self.engine_where = QComboBox()
        self.engine_where.addItem("this computer", "local")
        self.engine_where.addItem("server", "server")
        self.engine_where.setCurrentIndex(1 if settings.engine_server else 0)
        self.server_url = QLineEdit(settings.engine_server)
        self.server_url.setPlaceholderText("https://fbupscale.example.org")
        self.server_token = QLineEdit(settings.engine_token)
        self.server_token.setEchoMode(QLineEdit.EchoMode.Password)
        self.server_token.setPlaceholderText("(empty: FBUPSCALE_TOKEN)")
        self.engine_where.currentIndexChanged.connect(self._engine_where_changed)
        self.engine_where.setToolTip(
            "Where reconstructions run: this computer's engine process, or an "
            "'fbupscale serve' GPU server (same jobs and candidates; applies after a restart)"
        )
        form.addRow("Engine", self.engine_where)
        form.addRow("Server address", self.server_url)
        form.addRow("Server token", self.server_token)
        self._engine_where_changed()

    def _engine_where_changed(self) -> None:
        remote = self.engine_where.currentData() == "server"
        self.server_url.setEnabled(remote)
        self.server_token.setEnabled(remote)

    def _path_row(self, name: str) -> QWidget:
        edit = QLineEdit(getattr(self._settings, name))
        edit.setPlaceholderText("(not set)")
        # wide enough for a typical models path; the full path is also the tooltip
        edit.setMinimumWidth(edit.fontMetrics().horizontalAdvance("x" * _PATH_CHARS))
        edit.setToolTip(edit.text())
        edit.textChanged.connect(edit.setToolTip)
        edit.setCursorPosition(0)
        self.edits[name] = edit
        browse = QPushButton("Browse…")
        browse.clicked.connect(lambda: self._browse(name))
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit, 1)
        layout.addWidget(browse)
        return row

    def _browse(self, name: str) -> None:
        edit = self.edits[name]
        if name in _FOLDERS:
            path = QFileDialog.getExistingDirectory(self, Settings.describe(name), edit.text())
        else:
            path, _ = QFileDialog.getOpenFileName(
                self, Settings.describe(name), edit.text(), "LoRA (*.safetensors)"
            )
        if path:
            edit.setText(path)

    def _validate(self) -> bool:
        try:
            validate_template(self.template.text())
        except ExportError as exc:
            self.error.setText(str(exc))
            return False
        self.error.setText("")
        return True

    def values(self) -> dict[str, object]:
        values: dict[str, object] = {name: edit.text() for name, edit in self.edits.items()}
        values.update(
            memory_mode=self.memory.currentText(),
            export_template=self.template.text(),
            export_format=self.format.currentText(),
            match_name=self.match.text(),
            export_min_lr_db=self.min_lr.value(),
            export_low_fidelity=self.low_fidelity.currentData(),
            export_number_contradiction=self.contradiction.currentData(),
            export_badge=self.badge.isChecked(),
        )
        remote = self.engine_where.currentData() == "server"
        values.update(
            engine_server=self.server_url.text() if remote else "",
            engine_token=self.server_token.text() if remote else "",
        )
        return values

    def result_settings(self) -> Settings | None:
        return self._result

    def accept(self) -> None:
        if self.engine_where.currentData() == "server" and not self.server_url.text().strip():
            self.error.setText("Engine: a server needs its address (http:// or https://)")
            return
        try:
            self._result = self._settings.replace(**self.values())
        except SettingsError as exc:
            self.error.setText(str(exc))
            return
        super().accept()
