"""The reconstruction parameters, in a collapsible "Advanced" group with the paper's defaults.

The panel edits a copy of a frozen :class:`~fbupscale_gui.core.request.ReconstructionRequest`:
:meth:`ParamsPanel.set_from` shows a request, :meth:`ParamsPanel.apply_to` returns a copy with
the panel's values. A combination the request refuses (e.g. a stage-1 strength so low that no
step would run) is shown inline with the request's own message; nothing raises while editing.

Collapsed, the panel still shows a one-line summary of what will run, and says whether it
differs from the paper's defaults, so an operator never runs odd settings unknowingly.
"""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Final

from PySide6.QtCore import QRegularExpression, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.request import (
    CONDITIONING_SCALE_RANGE,
    LoraParams,
    MemoryMode,
    ModelRef,
    Preprocess,
    ReconstructionRequest,
    Speed,
    Stage1Params,
    Stage2Params,
    StageName,
    img2img_steps,
)

__all__ = ["MEMORY_MODE_LABELS", "PAPER_INTERMEDIATE", "ParamsPanel"]

#: The paper's two-step standardisation goes through a 256 px square first.
PAPER_INTERMEDIATE: Final = 256
#: Expanded, the parameters get at least this much height (they scroll within it).
_BODY_MIN_HEIGHT: Final = 150
#: Random seeds are drawn below this, so they stay short enough to read out and type.
RANDOM_SEED_LIMIT: Final = 2**31

MEMORY_MODE_LABELS: Final[dict[MemoryMode, str]] = {
    "auto": "Auto (by free GPU memory)",
    "none": "All on GPU (fastest, most memory)",
    "model": "Model offload",
    "group": "Group offload",
    "sequential": "Sequential offload (slowest, least memory)",
}
SPEED_LABELS: Final[dict[Speed, str]] = {
    "exact": "Exact (every step computed)",
    "fast": "Fast (stage-1 steps cached)",
    "fast-mag": "Fast, MagCache (stage-1 steps cached)",
    "compiled": "Compiled (GPU, first run compiles)",
}


def _section(text: str) -> QLabel:
    label = QLabel(text)
    label.setStyleSheet("font-weight: 600; margin-top: 6px;")
    return label


def _double(lo: float, hi: float, step: float, decimals: int) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    box.setKeyboardTracking(False)
    return box


def _int(lo: int, hi: int, step: int = 1) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setKeyboardTracking(False)
    return box


def _row(*widgets: QWidget) -> QWidget:
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(6)
    for w in widgets:
        layout.addWidget(w)
    layout.addStretch(1)
    return holder


class ParamsPanel(QWidget):
    """Stage 1/2, variants and seed, LoRA, output size and memory mode. Emits ``changed()``."""

    changed = Signal()
    expandedChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._base = ReconstructionRequest()
        self._error = ""
        self._engine, self._engine_label = "flux", "FLUX"

        # -- header (always visible)
        self._toggle = QToolButton()
        self._toggle.setText("Advanced")
        self._toggle.setCheckable(True)
        self._toggle.setChecked(False)
        self._toggle.setArrowType(Qt.ArrowType.RightArrow)
        self._toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self._toggle.setToolTip("Show or hide the reconstruction parameters")
        self._toggle.setStyleSheet(
            "QToolButton, QToolButton:checked, QToolButton:hover "
            "{ border: none; background: transparent; font-weight: 600; padding: 4px 2px; }"
        )
        self._reset = QPushButton("Reset to defaults")
        self._reset.setToolTip("Go back to the paper's settings (the LoRA file stays chosen)")
        self._summary = QLabel()
        self._summary.setProperty("role", "hint")
        self._summary.setWordWrap(True)

        # -- candidates
        self._variants = _int(1, 16)
        self._variants.setToolTip("How many candidates per LoRA setting, each with its own seed")
        self._seed = QLineEdit()
        self._seed.setValidator(
            QRegularExpressionValidator(QRegularExpression(r"[0-9]{1,19}"), self._seed)
        )
        self._seed.setMaximumWidth(self._seed.fontMetrics().horizontalAdvance("0" * 12) + 16)
        self._seed.setToolTip("Candidate n uses seed + n, so each can be re-rendered on its own")
        self._random_seed = QPushButton("Random")
        self._random_seed.setToolTip("Pick a new random seed")
        self._seeds_hint = QLabel()
        self._seeds_hint.setProperty("role", "hint")

        # -- stage 1
        self._s1_strength = _double(0.01, 1.0, 0.05, 2)
        self._s1_strength.setToolTip("How far stage 1 may move away from the cutout (0..1)")
        self._s1_steps = _int(1, 500)
        self._s1_effective = QLabel()
        self._s1_effective.setProperty("role", "hint")
        self._s1_effective.setToolTip("Image-to-image runs about steps × strength steps")
        self._s1_guidance = _double(0.0, 30.0, 0.5, 1)

        # -- stage 2
        lo, hi = CONDITIONING_SCALE_RANGE
        self._s2_enabled = QCheckBox("Run stage 2 (ControlNet upscaler)")
        self._s2_scale = _double(lo, hi, 0.01, 2)
        self._s2_scale.setToolTip(
            f"How closely stage 2 follows stage 1's image; the paper's range is {lo}..{hi}"
        )
        self._s2_steps = _int(1, 500)
        self._s2_guidance = _double(0.0, 30.0, 0.5, 1)

        # -- LoRA
        self._lora_path = QLineEdit()
        self._lora_path.setPlaceholderText("No LoRA: choose a .safetensors file")
        self._lora_path.setClearButtonEnabled(True)
        self._lora_browse = QPushButton("Browse…")
        self._lora_scale = _double(0.05, 2.0, 0.05, 2)
        self._lora_ab = QCheckBox("A/B: also without the LoRA")
        self._lora_ab.setToolTip("Render every candidate with and without the LoRA, to compare")
        self._lora_s1 = QCheckBox("Stage 1")
        self._lora_s2 = QCheckBox("Stage 2")
        self._lora_s1.setToolTip("The paper found the LoRA can hurt stage 1")
        self._lora_note = QLabel()
        self._lora_note.setProperty("role", "warning")
        self._lora_note.hide()
        #: The engine's report of the last LoRA load: (path, level, text).
        self._lora_report: tuple[str, str, str] | None = None

        # -- output and memory
        self._size = _int(64, 4096, 16)
        self._size.setSuffix(" px")
        self._intermediate = QCheckBox(f"Via {PAPER_INTERMEDIATE} px first")
        self._intermediate.setToolTip(
            f"The paper's two-step Lanczos resize: the cutout goes to {PAPER_INTERMEDIATE} px, "
            "then to the output size"
        )
        self._memory = QComboBox()
        self._memory.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self._memory.setMinimumContentsLength(14)
        self._memory.setToolTip(
            "Where the models live while running. Offloading needs less GPU memory but is slower."
        )
        for mode, label in MEMORY_MODE_LABELS.items():
            self._memory.addItem(label, mode)
        self._speed = QComboBox()
        self._speed.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self._speed.setMinimumContentsLength(14)
        self._speed.setToolTip(
            "Exact computes every step. Fast skips stage-1 steps whose first block barely "
            "changes (First Block Cache; stage 2 stays exact); its quality cost is the "
            "LR-consistency delta. Compiled compiles the transformer blocks once."
        )
        for speed, label in SPEED_LABELS.items():
            self._speed.addItem(label, speed)

        self._error_label = QLabel()
        self._error_label.setProperty("role", "error")
        self._error_label.setWordWrap(True)
        self._error_label.hide()

        # -- layout
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        form.setVerticalSpacing(6)
        form.addRow(_section("Candidates"))
        form.addRow("Variants", _row(self._variants, self._seeds_hint))
        form.addRow("Seed", _row(self._seed, self._random_seed))
        form.addRow(_section("Stage 1: FLUX image-to-image"))
        form.addRow("Strength", self._s1_strength)
        form.addRow("Steps", _row(self._s1_steps, self._s1_effective))
        form.addRow("Guidance", self._s1_guidance)
        form.addRow(_section("Stage 2: ControlNet upscaler"))
        form.addRow(self._s2_enabled)
        form.addRow("Conditioning", self._s2_scale)
        form.addRow("Steps", self._s2_steps)
        form.addRow("Guidance", self._s2_guidance)
        form.addRow(_section("Football LoRA"))
        path_row = QWidget()
        path_layout = QHBoxLayout(path_row)
        path_layout.setContentsMargins(0, 0, 0, 0)
        path_layout.addWidget(self._lora_path, 1)
        path_layout.addWidget(self._lora_browse)
        form.addRow("File", path_row)
        form.addRow("", self._lora_note)
        form.addRow("Scale", self._lora_scale)
        form.addRow("", self._lora_ab)
        form.addRow("Used in", _row(self._lora_s1, self._lora_s2))
        form.addRow(_section("Output"))
        form.addRow("Size", self._size)
        form.addRow("", self._intermediate)
        form.addRow("GPU memory", self._memory)
        form.addRow("Speed", self._speed)
        compact: tuple[QWidget, ...] = (
            self._s1_strength,
            self._s1_guidance,
            self._s2_scale,
            self._s2_guidance,
            self._s1_steps,
            self._s2_steps,
            self._size,
            self._variants,
            self._lora_scale,
        )
        for w in compact:
            w.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)

        self._body = QFrame()
        self._body.setFrameShape(QFrame.Shape.NoFrame)
        body_layout = QVBoxLayout(self._body)
        body_layout.setContentsMargins(12, 0, 0, 0)
        body_layout.addLayout(form)
        # Expanded, the parameters scroll inside the column rather than growing the window
        # past the screen (1366x768 included); the scene editor keeps its share.
        self._body_scroll = QScrollArea()
        self._body_scroll.setWidget(self._body)
        self._body_scroll.setWidgetResizable(True)
        self._body_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._body_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._body_scroll.setMinimumHeight(_BODY_MIN_HEIGHT)
        # its height comes from the column's stretch, not from the long form's size hint
        self._body_scroll.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Ignored)
        self._body_scroll.setVisible(False)

        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self._toggle)
        header.addStretch(1)
        header.addWidget(self._reset)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self._summary)
        layout.addWidget(self._error_label)
        layout.addWidget(self._body_scroll, 1)

        # -- wiring
        self._toggle.toggled.connect(self.set_expanded)
        self._reset.clicked.connect(self.reset_to_defaults)
        self._random_seed.clicked.connect(self.randomize_seed)
        self._lora_browse.clicked.connect(self._browse_lora)
        for spin in (
            self._variants,
            self._s1_steps,
            self._s2_steps,
            self._size,
        ):
            spin.valueChanged.connect(self._on_edit)
        for dspin in (
            self._s1_strength,
            self._s1_guidance,
            self._s2_scale,
            self._s2_guidance,
            self._lora_scale,
        ):
            dspin.valueChanged.connect(self._on_edit)
        for check in (
            self._s2_enabled,
            self._lora_ab,
            self._lora_s1,
            self._lora_s2,
            self._intermediate,
        ):
            check.toggled.connect(self._on_edit)
        self._seed.textChanged.connect(self._on_edit)
        self._lora_path.textChanged.connect(self._on_edit)
        self._memory.currentIndexChanged.connect(self._on_edit)
        self._speed.currentIndexChanged.connect(self._on_edit)

        self.set_from(self._base)

    # -- public interface ---------------------------------------------------------------

    def is_expanded(self) -> bool:
        return self._toggle.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        if self._toggle.isChecked() != expanded:
            self._toggle.setChecked(expanded)  # re-enters through toggled
            return
        self._toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self._body_scroll.setVisible(expanded)
        self.expandedChanged.emit(expanded)

    def error(self) -> str:
        """The request's message for the current values, or "" when they are valid."""
        return self._error

    def is_valid(self) -> bool:
        return not self._error

    def apply_to(self, request: ReconstructionRequest) -> ReconstructionRequest:
        """A copy of ``request`` with the panel's values.

        Fields the panel does not show (prompt, source, padding, models, ...) are kept. Raises
        :class:`RequestError` with the message already shown in the panel when the values do
        not make a valid request (check :meth:`is_valid` first to avoid that).
        """
        seed_text = self._seed.text().strip()
        if not seed_text:
            raise RequestError("seed: enter a seed (a whole number)")
        stages: list[StageName] = []
        if self._lora_s1.isChecked():
            stages.append("stage1")
        if self._lora_s2.isChecked():
            stages.append("stage2")
        path = self._lora_path.text().strip()
        if not path and not stages:
            stages = list(LoraParams().stages)  # unused without a LoRA; keep it valid
        model: ModelRef | None = None
        if path:
            old = request.lora.model
            model = old if old is not None and old.path == path else ModelRef(path=path)
        size = self._size.value()
        intermediate = PAPER_INTERMEDIATE if self._intermediate.isChecked() else None
        memory: MemoryMode = self._memory.currentData()
        return request.replace(
            variants=self._variants.value(),
            seed=int(seed_text),
            stage1=Stage1Params(
                strength=round(self._s1_strength.value(), 4),
                steps=self._s1_steps.value(),
                guidance=round(self._s1_guidance.value(), 4),
            ),
            stage2=Stage2Params(
                enabled=self._s2_enabled.isChecked(),
                conditioning_scale=round(self._s2_scale.value(), 4),
                steps=self._s2_steps.value(),
                guidance=round(self._s2_guidance.value(), 4),
            ),
            lora=LoraParams(
                model=model,
                scale=round(self._lora_scale.value(), 4),
                stages=tuple(stages),
                ab=self._lora_ab.isChecked(),
            ),
            preprocess=dataclasses.replace(
                request.preprocess, size=size, intermediate=intermediate
            ),
            memory_mode=memory,
            speed=self._speed.currentData(),
        )

    def set_from(self, request: ReconstructionRequest) -> None:
        """Show ``request``'s values (one ``changed()`` afterwards, none per field)."""
        self._base = request
        widgets: list[QWidget] = [
            self._variants,
            self._seed,
            self._s1_strength,
            self._s1_steps,
            self._s1_guidance,
            self._s2_enabled,
            self._s2_scale,
            self._s2_steps,
            self._s2_guidance,
            self._lora_path,
            self._lora_scale,
            self._lora_ab,
            self._lora_s1,
            self._lora_s2,
            self._size,
            self._intermediate,
            self._memory,
            self._speed,
        ]
        blockers = [QSignalBlocker(w) for w in widgets]
        try:
            self._variants.setValue(request.variants)
            self._seed.setText(str(request.seed))
            self._s1_strength.setValue(request.stage1.strength)
            self._s1_steps.setValue(request.stage1.steps)
            self._s1_guidance.setValue(request.stage1.guidance)
            self._s2_enabled.setChecked(request.stage2.enabled)
            self._s2_scale.setValue(request.stage2.conditioning_scale)
            self._s2_steps.setValue(request.stage2.steps)
            self._s2_guidance.setValue(request.stage2.guidance)
            model = request.lora.model
            self._lora_path.setText(model.path if model is not None else "")
            self._lora_scale.setValue(request.lora.scale)
            self._lora_ab.setChecked(request.lora.ab)
            self._lora_s1.setChecked("stage1" in request.lora.stages)
            self._lora_s2.setChecked("stage2" in request.lora.stages)
            self._size.setValue(request.preprocess.size)
            self._intermediate.setChecked(request.preprocess.intermediate is not None)
            index = self._memory.findData(request.memory_mode)
            self._memory.setCurrentIndex(max(index, 0))
            self._speed.setCurrentIndex(max(self._speed.findData(request.speed), 0))
        finally:
            for blocker in blockers:
                blocker.unblock()
        self._on_edit()

    def reset_to_defaults(self) -> None:
        """The paper's settings. The chosen LoRA file stays: it says where the LoRA is."""
        path = self._lora_path.text().strip()
        defaults = ReconstructionRequest()
        lora = defaults.lora
        if path:
            lora = dataclasses.replace(lora, model=ModelRef(path=path))
        self.set_from(
            self._base.replace(
                variants=defaults.variants,
                seed=defaults.seed,
                stage1=defaults.stage1,
                stage2=defaults.stage2,
                lora=lora,
                preprocess=dataclasses.replace(
                    self._base.preprocess,
                    size=defaults.preprocess.size,
                    intermediate=defaults.preprocess.intermediate,
                ),
                memory_mode=defaults.memory_mode,
                speed=defaults.speed,
            )
        )

    def randomize_seed(self) -> None:
        self._seed.setText(str(secrets.randbelow(RANDOM_SEED_LIMIT)))

    def summary(self) -> str:
        return self._summary.text()

    def set_engine(self, engine: str, label: str) -> None:
        """Say in the summary when the chosen engine ignores the diffusion settings."""
        self._engine, self._engine_label = engine, label
        self._refresh_summary()

    # -- internals ----------------------------------------------------------------------

    def _browse_lora(self) -> None:
        current = self._lora_path.text().strip()
        start = str(Path(current).parent) if current else ""
        path, _filter = QFileDialog.getOpenFileName(
            self, "Choose the football LoRA", start, "LoRA weights (*.safetensors)"
        )
        if path:
            self._lora_path.setText(path)

    def _on_edit(self, *_args: object) -> None:
        self._update_dependent()
        self._refresh_summary()
        self.changed.emit()

    def _refresh_summary(self) -> None:
        try:
            request = self.apply_to(self._base)
        except RequestError as exc:
            self._set_error(str(exc))
            self._summary.setText("Settings are not valid yet: see below.")
            return
        self._set_error("")
        if self._engine == "flux":
            self._summary.setText(_summarize(request))
        else:
            self._summary.setText(
                f"{self._engine_label}: one candidate at {request.preprocess.size} px. "
                "The diffusion settings below apply to FLUX only."
            )

    def _update_dependent(self) -> None:
        effective = img2img_steps(self._s1_steps.value(), round(self._s1_strength.value(), 4))
        self._s1_effective.setText(f"→ {effective} run")
        stage2 = self._s2_enabled.isChecked()
        stage2_widgets: tuple[QWidget, ...] = (self._s2_scale, self._s2_steps, self._s2_guidance)
        for w in stage2_widgets:
            w.setEnabled(stage2)
        has_lora = bool(self._lora_path.text().strip())
        lora_widgets: tuple[QWidget, ...] = (
            self._lora_scale,
            self._lora_ab,
            self._lora_s1,
            self._lora_s2,
        )
        for w in lora_widgets:
            w.setEnabled(has_lora)
        seed = self._seed.text().strip()
        n = self._variants.value()
        if seed.isdigit():
            first = int(seed)
            self._seeds_hint.setText(
                f"seed {first}" if n == 1 else f"seeds {first}…{first + n - 1}"
            )
        else:
            self._seeds_hint.setText("")
        self._intermediate.setEnabled(self._size.value() > PAPER_INTERMEDIATE)
        note, role, details = "", "warning", ""
        path = self._lora_path.text().strip()
        if path and not path.lower().endswith(".safetensors"):
            note = "This is not a .safetensors file."
        elif path and not Path(path).expanduser().is_file():
            note = "No file at this path on this computer."
        elif self._lora_report is not None and self._lora_report[0] == path:
            _, level, details = self._lora_report
            # "LoRA x: 12 of 14 layers applied (...); left out: ..." -> the count; all on hover
            note = details.split(": ", 1)[-1].split(" (", 1)[0]
            if level == "warning":
                note += " · some left out (hover)"
            role = "warning" if level == "warning" else "hint"
        if self._lora_note.property("role") != role:
            self._lora_note.setProperty("role", role)
            self._lora_note.style().polish(self._lora_note)
        self._lora_note.setText(note)
        self._lora_note.setToolTip(details)
        self._lora_note.setVisible(bool(note))

    def show_lora_report(self, path: str, level: str, text: str) -> None:
        """The engine's report of a LoRA load, shown under the LoRA file while it is chosen."""
        self._lora_report = (path, level, text)
        self._update_dependent()

    def _set_error(self, message: str) -> None:
        self._error = message
        self._error_label.setText(message)
        self._error_label.setVisible(bool(message))


def _param_fields(request: ReconstructionRequest) -> dict[str, object]:
    """The request fields the panel edits, to reset them and nothing else."""
    return {
        "variants": request.variants,
        "seed": request.seed,
        "stage1": request.stage1,
        "stage2": request.stage2,
        "lora": request.lora,
        "preprocess": Preprocess(
            size=request.preprocess.size, intermediate=request.preprocess.intermediate
        ),
        "memory_mode": request.memory_mode,
        "speed": request.speed,
    }


def _summarize(request: ReconstructionRequest) -> str:
    """One line saying what will run, e.g. "3 variants from seed 5 · stage 1: 60 steps · ..."."""
    parts = [
        f"{request.variants} variant{'s' if request.variants != 1 else ''} "
        f"from seed {request.seed}",
        f"stage 1: {request.stage1.effective_steps} steps at strength {request.stage1.strength:g}",
    ]
    if request.stage2.enabled:
        parts.append(
            f"stage 2: {request.stage2.steps} steps, conditioning {request.stage2.conditioning_scale:g}"
        )
    else:
        parts.append("no stage 2")
    if request.lora.enabled:
        parts.append(
            f"LoRA {request.lora.scale:g}" + (" with and without" if request.lora.ab else "")
        )
    else:
        parts.append("no LoRA")
    parts.append(f"{request.preprocess.size} px")
    if request.speed != "exact":
        parts.append(request.speed)
    defaults = ReconstructionRequest()
    same = _param_fields(request.replace(lora=dataclasses.replace(request.lora, model=None)))
    changed = same != _param_fields(defaults)
    return " · ".join(parts) + (
        " (changed from the paper's defaults)" if changed else " (paper's defaults)"
    )
