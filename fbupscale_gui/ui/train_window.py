"""The Train window: describe frames, build a Kohya dataset, train the football LoRA, A/B it.

Opened by Engine → Train LoRA…. Left, the frames of a folder, each marked with its state
(described, rule issues, nothing to caption); middle, the same scene form as the main window
(kit presets included) for the current frame, saved next to it as ``NAME.scene.json`` on every
edit; right, the caption it makes, the rules it breaks and the counts per action and team,
and a button that copies the current frame's teams, kits and stadium to the selected frames.

Below, "Build dataset" and "Train" run ``fbupscale lora dataset`` / ``fbupscale lora train`` in
child processes (:mod:`fbupscale_gui.state.lora_training`): this window never imports torch.
Training shows its estimate, progress, ETA and a loss curve; Cancel stops after the current
step and keeps a resume state, and Train again resumes. After each checkpoint a fixed cutout
(when chosen) goes through the real two-stage pipeline with and without the new LoRA and the
two results are shown side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QCloseEvent, QColor, QPainter, QPaintEvent, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.core.errors import FbError
from fbupscale_gui.core.scene import Scene
from fbupscale_gui.state.lora_training import CliRun, LoraFramesModel, PreviewRun, TrainingRun
from fbupscale_gui.ui.scene_editor import SceneEditor
from fbupscale_gui.ui.widgets import resize_within_screen

if TYPE_CHECKING:
    from fbupscale_gui.storage.lora_dataset_files import Frame

__all__ = ["LossPlot", "TrainWindow"]

TITLE: Final = "Train football LoRA"


class LossPlot(QWidget):
    """The training loss per step (thin) and its running mean (thick), autoscaled."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.losses: list[float] = []
        self.setMinimumSize(260, 140)

    def set_losses(self, losses: list[float]) -> None:
        self.losses = list(losses)
        self.update()

    @staticmethod
    def running_mean(values: list[float], window: int) -> list[float]:
        out, total = [], 0.0
        for i, v in enumerate(values):
            total += v
            if i >= window:
                total -= values[i - window]
            out.append(total / min(i + 1, window))
        return out

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = self.rect().adjusted(44, 10, -10, -22)
        pal = self.palette()
        p.fillRect(self.rect(), pal.base())
        p.setPen(QPen(pal.mid().color()))
        p.drawRect(rect)
        text = pal.text().color()
        if len(self.losses) < 2:
            p.setPen(text)
            p.drawText(rect, Qt.AlignmentFlag.AlignCenter, "loss curve: no steps yet")
            return
        lo, hi = min(self.losses), max(self.losses)
        span = (hi - lo) or 1.0
        n = len(self.losses)

        def point(i: int, v: float) -> QPointF:
            x = rect.left() + rect.width() * i / (n - 1)
            y = rect.bottom() - rect.height() * (v - lo) / span
            return QPointF(x, y)

        raw = QPolygonF([point(i, v) for i, v in enumerate(self.losses)])
        p.setPen(QPen(QColor(120, 160, 220, 140), 1))
        p.drawPolyline(raw)
        mean = self.running_mean(self.losses, max(2, n // 15))
        p.setPen(QPen(QColor(240, 140, 40), 2))
        p.drawPolyline(QPolygonF([point(i, v) for i, v in enumerate(mean)]))
        p.setPen(text)
        p.drawText(2, rect.top() + 10, f"{hi:.3f}")
        p.drawText(2, rect.bottom(), f"{lo:.3f}")
        p.drawText(rect.left(), self.height() - 4, "step 1")
        label = f"step {n}"
        p.drawText(
            rect.right() - p.fontMetrics().horizontalAdvance(label), self.height() - 4, label
        )


def _status(frame: Frame) -> str:
    if frame.error:
        return "✗"
    if any(i.severity == "error" for i in frame.issues):
        return "!"
    if frame.issues:
        return "~"
    return "✓"


class TrainWindow(QWidget):
    """See the module docstring."""

    def __init__(
        self, parent: QWidget | None = None, *, flux: str = "", controlnet: str = ""
    ) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle(TITLE)
        resize_within_screen(self, 1360, 860)
        self.frames = LoraFramesModel(self)
        self.training = TrainingRun(self)
        self.preview = PreviewRun(self)
        self.dataset_run = CliRun(self)
        self._current = ""
        self._loading = False
        self._controlnet = controlnet
        self._build(flux)
        self._bind()
        self._update_buttons()

    # -- construction -------------------------------------------------------------------

    def _build(self, flux: str) -> None:
        self.folder_button = QPushButton("Frames folder…")
        self.folder_label = QLabel("No folder open")
        self.frame_list = QListWidget()
        self.frame_list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.scene_editor = SceneEditor(self)
        self.caption = QPlainTextEdit()
        self.caption.setReadOnly(True)
        self.caption.setMaximumHeight(150)
        self.issues = QLabel()
        self.issues.setWordWrap(True)
        self.counts = QLabel()
        self.counts.setWordWrap(True)
        self.counts.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.apply_button = QPushButton("Apply teams, kits, stadium to selected")
        self.apply_button.setToolTip(
            "Copy this frame's teams (names, kit types, kits), stadium and background to every "
            "selected frame"
        )

        side = QVBoxLayout()
        side.addWidget(QLabel("Caption"))
        side.addWidget(self.caption)
        side.addWidget(self.issues)
        side.addWidget(self.apply_button)
        side.addWidget(QLabel("Counts"))
        side.addWidget(self.counts, 1)
        side_box = QWidget()
        side_box.setLayout(side)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.folder_button)
        left_layout.addWidget(self.folder_label)
        left_layout.addWidget(self.frame_list, 1)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.scene_editor)
        split.addWidget(side_box)
        split.setSizes([260, 640, 360])

        # dataset and training
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("dataset folder (OUT)")
        self.holdout = QSpinBox()
        self.holdout.setRange(0, 10000)
        self.crops = QSpinBox()
        self.crops.setRange(0, 16)
        self.crops.setValue(2)
        self.jitters = QSpinBox()
        self.jitters.setRange(0, 16)
        self.jitters.setValue(1)
        self.build_button = QPushButton("Build dataset")
        self.models_edit = QLineEdit()
        self.models_edit.setPlaceholderText("ComfyUI models folder (for train_command.sh)")
        self.flux_edit = QLineEdit(flux)
        self.flux_edit.setPlaceholderText("FLUX.1-dev folder (empty: Hugging Face cache)")
        self.steps = QSpinBox()
        self.steps.setRange(1, 1_000_000)
        self.steps.setValue(2000)
        self.rank = QSpinBox()
        self.rank.setRange(1, 256)
        self.rank.setValue(8)
        self.resolution = QSpinBox()
        self.resolution.setRange(16, 2048)
        self.resolution.setSingleStep(64)
        self.resolution.setValue(512)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 0.1)
        self.lr.setSingleStep(1e-5)
        self.lr.setValue(1e-4)
        self.every = QSpinBox()
        self.every.setRange(0, 1_000_000)
        self.every.setValue(250)
        self.every.setSpecialValueText("2 epochs")
        self.every.setToolTip("Save a checkpoint (and run the A/B preview) every N steps")
        self.lora_edit = QLineEdit()
        self.lora_edit.setPlaceholderText("LoRA output (.safetensors)")
        self.train_button = QPushButton("Train")
        self.cancel_button = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.eta = QLabel()
        self.estimate = QLabel()
        self.estimate.setWordWrap(True)
        self.plot = LossPlot()
        self.cutout_edit = QLineEdit()
        self.cutout_edit.setPlaceholderText("cutout for previews (optional)")
        self.preview_button = QPushButton("Preview A/B")
        self.cutout_button = QPushButton("Cutout…")
        self.report_button = QPushButton("A/B report on held-out frames")
        self.report_button.setToolTip(
            "Degrade the held-out frames with the broadcast model, reconstruct them with and "
            "without the LoRA, and score PSNR-Y, SSIM-Y and LR-consistency"
        )
        self.report_label = QLabel()
        self.report_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.report_run = CliRun(self)
        self.without_label = QLabel("without LoRA")
        self.with_label = QLabel("with LoRA")
        for label in (self.without_label, self.with_label):
            label.setMinimumSize(180, 180)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.status = QLabel()
        self.status.setWordWrap(True)

        data_box = QGroupBox("Dataset")
        data = QHBoxLayout(data_box)
        data.addWidget(QLabel("Output folder"))
        data.addWidget(self.out_edit, 1)
        for text, spin in (
            ("Crops", self.crops),
            ("Jitters", self.jitters),
            ("Hold out", self.holdout),
        ):
            data.addWidget(QLabel(text))
            data.addWidget(spin)
        data.addWidget(self.models_edit, 1)
        data.addWidget(self.build_button)

        train_box = QGroupBox("Training")
        train = QGridLayout(train_box)
        train.addWidget(QLabel("FLUX"), 0, 0)
        train.addWidget(self.flux_edit, 0, 1, 1, 9)
        for col, (text, widget) in enumerate(
            (
                ("Steps", self.steps),
                ("Rank", self.rank),
                ("Resolution", self.resolution),
                ("LR", self.lr),
                ("Checkpoint every", self.every),
            )
        ):
            train.addWidget(QLabel(text), 1, col * 2)
            train.addWidget(widget, 1, col * 2 + 1)
        train.addWidget(QLabel("Output"), 2, 0)
        train.addWidget(self.lora_edit, 2, 1, 1, 5)
        train.addWidget(self.train_button, 2, 6, 1, 2)
        train.addWidget(self.cancel_button, 2, 8, 1, 2)
        train.addWidget(self.progress, 3, 0, 1, 6)
        train.addWidget(self.eta, 3, 6, 1, 4)
        train.addWidget(self.estimate, 4, 0, 1, 10)

        preview_box = QGroupBox("Preview (two-stage pipeline)")
        preview = QGridLayout(preview_box)
        preview.addWidget(self.cutout_edit, 0, 0)
        preview.addWidget(self.cutout_button, 0, 1)
        preview.addWidget(self.preview_button, 0, 2)
        preview.addWidget(self.without_label, 1, 0)
        preview.addWidget(self.with_label, 1, 1, 1, 2)
        preview.addWidget(self.report_button, 2, 0, 1, 3)
        preview.addWidget(self.report_label, 3, 0, 1, 3)

        # page 1: describe the frames and build the dataset
        describe = QWidget()
        describe_layout = QVBoxLayout(describe)
        describe_layout.addWidget(split, 1)
        describe_layout.addWidget(data_box)
        # page 2: train, with the loss curve and the A/B preview
        train_page = QWidget()
        train_layout = QGridLayout(train_page)
        train_layout.addWidget(train_box, 0, 0)
        train_layout.addWidget(preview_box, 0, 1)
        train_layout.addWidget(self.plot, 1, 0, 1, 2)
        train_layout.setRowStretch(1, 1)
        train_layout.setColumnStretch(0, 3)
        train_layout.setColumnStretch(1, 2)
        self.tabs = QTabWidget()
        self.tabs.addTab(describe, "1  Describe frames")
        self.tabs.addTab(train_page, "2  Train")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.status)

    def _bind(self) -> None:
        self.folder_button.clicked.connect(self._choose_folder)
        self.frame_list.currentItemChanged.connect(self._on_current)
        self.frame_list.itemSelectionChanged.connect(self._update_buttons)
        self.scene_editor.model().sceneChanged.connect(self._on_scene_edited)
        self.frames.frameChanged.connect(self._on_frame_changed)
        self.frames.message.connect(self.status.setText)
        self.apply_button.clicked.connect(self.apply_to_selected)
        self.build_button.clicked.connect(self.build_dataset)
        self.train_button.clicked.connect(self.start_training)
        self.cancel_button.clicked.connect(self.training.cancel)
        self.preview_button.clicked.connect(self.run_preview)
        self.cutout_button.clicked.connect(self._choose_cutout)
        self.report_button.clicked.connect(self.run_report)
        self.report_run.finished.connect(self._on_report_finished)
        self.report_run.runningChanged.connect(self._update_buttons)
        self.training.lossesChanged.connect(self._on_losses)
        self.training.progressChanged.connect(self._on_progress)
        self.training.estimateReady.connect(self.estimate.setText)
        self.training.checkpointSaved.connect(self._on_checkpoint)
        self.training.finished.connect(self._on_train_finished)
        self.training.runningChanged.connect(self._update_buttons)
        self.dataset_run.finished.connect(self._on_dataset_finished)
        self.dataset_run.runningChanged.connect(self._update_buttons)
        self.preview.ready.connect(self._on_preview)
        self.preview.finished.connect(self._on_preview_finished)
        self.preview.runningChanged.connect(self._update_buttons)

    # -- frames -------------------------------------------------------------------------

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of high-resolution frames")
        if folder:
            self.open_folder(folder)

    def open_folder(self, folder: str | Path) -> None:
        try:
            self.frames.open_folder(folder)
        except FbError as exc:
            self.status.setText(str(exc))
            return
        self.folder_label.setText(str(folder))
        if not self.out_edit.text():
            self.out_edit.setText(str(Path(folder).with_name(Path(folder).name + "_dataset")))
        if not self.lora_edit.text():
            self.lora_edit.setText(str(Path(folder).with_name("football_lora.safetensors")))
        self.frame_list.clear()
        for name in self.frames.names():
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, name)
            self.frame_list.addItem(item)
            self._refresh_item(item)
        self._update_counts()
        if self.frame_list.count():
            self.frame_list.setCurrentRow(0)

    def _refresh_item(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        frame = self.frames.frame(name)
        item.setText(f"{_status(frame)}  {name}")
        item.setToolTip(
            frame.error or "\n".join(i.message for i in frame.issues) or "follows the rules"
        )

    def _on_current(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        self._current = "" if item is None else str(item.data(Qt.ItemDataRole.UserRole))
        if not self._current:
            return
        scene = self.frames.scene(self._current) or Scene()
        self._loading = True
        try:
            self.scene_editor.set_scene(scene)
        finally:
            self._loading = False
        self._show_frame(self._current)

    def _on_scene_edited(self) -> None:
        if self._current and not self._loading:
            self.frames.set_scene(self._current, self.scene_editor.scene())

    def _on_frame_changed(self, name: str) -> None:
        for i in range(self.frame_list.count()):
            item = self.frame_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == name:
                self._refresh_item(item)
        if name == self._current:
            self._show_frame(name)
        self._update_counts()

    def _show_frame(self, name: str) -> None:
        frame = self.frames.frame(name)
        self.caption.setPlainText(frame.caption)
        lines = [f"✗ {frame.error}"] if frame.error else []
        lines += [f"{'!' if i.severity == 'error' else '~'} {i.message}" for i in frame.issues]
        self.issues.setText("\n".join(lines) or "✓ follows the caption rules")

    def _update_counts(self) -> None:
        counts = self.frames.counts()
        parts = []
        for title, table in (
            ("Actions", counts.actions),
            ("Teams", counts.teams),
            ("Roles", counts.roles),
        ):
            if table:
                parts.append(
                    f"<b>{title}</b><br>" + "<br>".join(f"{v} × {k}" for k, v in table.items())
                )
        if counts.without_scene:
            parts.append(f"{counts.without_scene} frame(s) without a scene")
        self.counts.setText("<br><br>".join(parts) or "No scenes yet")

    def selected_names(self) -> list[str]:
        return [str(i.data(Qt.ItemDataRole.UserRole)) for i in self.frame_list.selectedItems()]

    def apply_to_selected(self) -> None:
        names = [n for n in self.selected_names() if n != self._current]
        if not self._current or not names:
            return
        done = self.frames.apply_to(names, self.scene_editor.scene())
        self.status.setText(f"Teams, kits and stadium applied to {done} frame(s)")

    # -- runs ---------------------------------------------------------------------------

    def build_dataset(self) -> None:
        if self.frames.folder is None or not self.out_edit.text().strip():
            self.status.setText("Open a folder of frames and name the dataset folder first")
            return
        args = ["lora", "dataset", str(self.frames.folder), "-o", self.out_edit.text().strip()]
        args += ["--crops", str(self.crops.value()), "--jitters", str(self.jitters.value())]
        args += ["--holdout", str(self.holdout.value())]
        if self.models_edit.text().strip():
            args += ["--models-dir", self.models_edit.text().strip()]
        self.status.setText("Building the dataset…")
        self.dataset_run.start(args)

    def _on_dataset_finished(self, code: int, tail: str) -> None:
        self.status.setText(
            f"Dataset written to {self.out_edit.text()}" + (f"\n{tail}" if tail else "")
            if code == 0
            else f"Dataset not built: {tail or f'exit status {code}'}"
        )

    def train_options(self) -> list[str]:
        return [
            "--steps", str(self.steps.value()),
            "--rank", str(self.rank.value()),
            "--resolution", str(self.resolution.value()),
            "--lr", f"{self.lr.value():g}",
        ] + (["--save-every-n-steps", str(self.every.value())] if self.every.value() else [])  # fmt: skip

    def start_training(self) -> None:
        dataset, output = self.out_edit.text().strip(), self.lora_edit.text().strip()
        if not dataset or not output:
            self.status.setText("Name the dataset folder and the LoRA file first")
            return
        self.progress.setValue(0)
        self.eta.setText("")
        self.status.setText("Training (loading models, caching latents and captions)…")
        self.training.train(
            self.flux_edit.text().strip(), Path(dataset), Path(output), self.train_options()
        )

    def _on_losses(self) -> None:
        self.plot.set_losses(self.training.losses)

    def _on_progress(self, step: int, total: int, eta: float) -> None:
        if total:
            self.progress.setRange(0, total)
            self.eta.setText(f"step {step}/{total}, ETA {eta:.0f} s")
        self.progress.setValue(step)

    def _on_checkpoint(self, path: str) -> None:
        self.status.setText(f"Checkpoint saved: {path}")
        if self.cutout_edit.text().strip() and not self.preview.running:
            self.run_preview()

    def _on_train_finished(self, code: int, tail: str) -> None:
        if code == 0:
            self.status.setText(f"Training done: {self.lora_edit.text()}")
        elif code == 130:
            self.status.setText("Training stopped; Train again resumes from where it stopped")
        else:
            self.status.setText(f"Training failed: {tail or f'exit status {code}'}")

    def _lora(self) -> Path | None:
        """The newest checkpoint of this run, else the LoRA file named, if it exists."""
        if self.training.checkpoints:
            return Path(self.training.checkpoints[-1])
        named = Path(self.lora_edit.text().strip())
        return named if self.lora_edit.text().strip() and named.is_file() else None

    def _choose_cutout(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Cutout for previews", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
        )
        if path:
            self.cutout_edit.setText(path)

    def run_preview(self) -> None:
        cutout, lora = self.cutout_edit.text().strip(), self._lora()
        if not cutout or lora is None:
            self.status.setText("Choose a cutout; previews need a checkpoint or a LoRA file")
            return
        out = Path(self.lora_edit.text()).with_name("previews")
        self.preview.preview(
            Path(cutout), lora, out,
            flux=self.flux_edit.text().strip(), controlnet=self._controlnet,
        )  # fmt: skip

    def _on_preview(self, without: str, with_lora: str) -> None:
        for label, path in ((self.without_label, without), (self.with_label, with_lora)):
            pix = QPixmap(path)
            label.setPixmap(pix.scaled(label.size(), Qt.AspectRatioMode.KeepAspectRatio))
            label.setToolTip(path)

    def _on_preview_finished(self, code: int, tail: str) -> None:
        if code != 0:
            self.status.setText(f"Preview failed: {tail or f'exit status {code}'}")

    def report_dir(self) -> Path:
        return Path(self.lora_edit.text().strip()).with_name("ab_report")

    def run_report(self) -> None:
        lora, dataset = self._lora(), self.out_edit.text().strip()
        if lora is None or not dataset:
            self.status.setText("The A/B report needs a dataset with held-out frames and a LoRA")
            return
        args = ["lora", "report", "--dataset", dataset, "--lora", str(lora)]
        args += ["-o", str(self.report_dir())]
        for flag, value in (
            ("--flux", self.flux_edit.text().strip()),
            ("--controlnet", self._controlnet),
        ):
            if value:
                args += [flag, value]
        self.status.setText("A/B report: reconstructing the held-out frames…")
        self.report_run.start(args)

    def _on_report_finished(self, code: int, tail: str) -> None:
        if code != 0:
            self.status.setText(f"A/B report failed: {tail or f'exit status {code}'}")
            return
        pix = QPixmap(str(self.report_dir() / "report.png"))
        self.report_label.setPixmap(pix.scaledToWidth(max(200, self.report_label.width())))
        table = (self.report_dir() / "report.md").read_text(encoding="utf-8", errors="replace")
        mean = next((line for line in table.splitlines() if "**mean**" in line), "")
        self.status.setText(f"A/B report in {self.report_dir()}  {mean}")

    def _update_buttons(self) -> None:
        busy = self.training.running
        self.train_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.build_button.setEnabled(not self.dataset_run.running)
        self.preview_button.setEnabled(not self.preview.running)
        self.report_button.setEnabled(not self.report_run.running)
        self.apply_button.setEnabled(bool(self._current) and len(self.selected_names()) > 1)

    def closeEvent(self, event: QCloseEvent) -> None:
        for run in (self.training, self.dataset_run, self.preview, self.report_run):
            run.cancel()
            run.wait(3000)
        super().closeEvent(event)
