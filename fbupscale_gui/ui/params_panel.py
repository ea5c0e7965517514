"""The reconstruction parameters, in a collapsible "Advanced" group with the paper's defaults.

The panel shows and edits a :class:`~fbupscale_gui.state.parameters.Parameters` model, bound
both ways: an edit sets the model's field, a change of the model (a restored session, new
settings, Reset) sets the widget, and neither loops back. The panel owns no value. A
combination the request refuses (e.g. a stage-1 strength so low that no step would run) is
shown inline with the request's own message; nothing raises while editing.

Collapsed, the panel still shows a one-line summary of what will run, and says whether it
differs from the defaults, so an operator never runs odd settings unknowingly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from PySide6.QtCore import QRegularExpression, QSignalBlocker, Qt, Signal, SignalInstance, Slot
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

from fbupscale_gui.core.request import (
    CONDITIONING_SCALE_RANGE,
    MemoryMode,
    Speed,
    img2img_steps,
)
from fbupscale_gui.state.parameters import PAPER_INTERMEDIATE, Parameters

__all__ = ["MEMORY_MODE_LABELS", "ParamsPanel"]

#: Expanded, the parameters get at least this much height (they scroll within it).
_BODY_MIN_HEIGHT: Final = 150

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


def _choices(labels: Mapping[Any, str], tooltip: str) -> QComboBox:
    """A drop-down of ``labels`` (value -> label), each item's data its value."""
    box = QComboBox()
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(14)
    box.setToolTip(tooltip)
    for value, label in labels.items():
        box.addItem(label, value)
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
    """Stage 1/2, variants and seed, LoRA, output size and memory mode of ``model`` (a model
    of its own when none is given). Emits ``changed()`` after each change of the model."""

    changed = Signal()
    expandedChanged = Signal(bool)

    def __init__(self, model: Parameters | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model if model is not None else Parameters(parent=self)
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
        self._memory = _choices(
            MEMORY_MODE_LABELS,
            "Where the models live while running. Offloading needs less GPU memory but is slower.",
        )
        self._speed = _choices(
            SPEED_LABELS,
            "Exact computes every step. Fast skips stage-1 steps whose first block barely "
            "changes (First Block Cache; stage 2 stays exact); its quality cost is the "
            "LR-consistency delta. Compiled compiles the transformer blocks once.",
        )

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
        self._reset.clicked.connect(self.model.reset_to_defaults)
        self._random_seed.clicked.connect(self.model.randomize_seed)
        self._lora_browse.clicked.connect(self._browse_lora)
        #: field -> (widget, read it, show a value): the model's fields, bound both ways
        self._bound: dict[str, tuple[QWidget, Callable[[], object], Callable[[Any], None]]] = {}
        bound: tuple[tuple[str, QWidget], ...] = (
            ("variants", self._variants),
            ("strength", self._s1_strength),
            ("steps1", self._s1_steps),
            ("guidance1", self._s1_guidance),
            ("stage2", self._s2_enabled),
            ("conditioning", self._s2_scale),
            ("steps2", self._s2_steps),
            ("guidance2", self._s2_guidance),
            ("lora_path", self._lora_path),
            ("lora_scale", self._lora_scale),
            ("lora_ab", self._lora_ab),
            ("lora_stage1", self._lora_s1),
            ("lora_stage2", self._lora_s2),
            ("size", self._size),
            ("intermediate", self._intermediate),
            ("memory_mode", self._memory),
            ("speed", self._speed),
        )
        for name, widget in bound:
            self._bind(name, widget, *_accessors(widget))
        seed = self._seed  # a whole number, or None while the field is empty
        self._bind("seed", seed, seed.textChanged, _seed_of(seed), _show_seed(seed))
        self.model.valueChanged.connect(self._show_value)
        self.model.changed.connect(self._on_model_changed)
        for name in self._bound:
            self._show_value(name, self.model.get(name))
        self._on_model_changed()

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

    def _bind(
        self,
        name: str,
        widget: QWidget,
        edited: SignalInstance,
        read: Callable[[], object],
        show: Callable[[Any], None],
    ) -> None:
        """Bind ``widget`` to the model's field ``name`` both ways."""
        self._bound[name] = (widget, read, show)
        edited.connect(lambda *_args: self.model.set(name, read()))

    @Slot(str, object)
    def _show_value(self, name: str, value: object) -> None:
        """The model changed ``name``: show it, unless the widget shows it already (the edit
        came from there), without the widget's signals (so it does not come back)."""
        bound = self._bound.get(name)
        if bound is None:
            return
        widget, read, show = bound
        if read() != value:
            with QSignalBlocker(widget):
                show(value)

    @Slot()
    def _on_model_changed(self) -> None:
        self._update_dependent()
        self._refresh_summary()
        self.changed.emit()

    def _refresh_summary(self) -> None:
        error = self.model.error()
        self._error_label.setText(error)
        self._error_label.setVisible(bool(error))
        if self._engine == "flux" or error:
            self._summary.setText(self.model.summary())
        else:
            self._summary.setText(
                f"{self._engine_label}: one candidate at {self.model.values.size} px. "
                "The diffusion settings below apply to FLUX only."
            )

    def _update_dependent(self) -> None:
        v = self.model.values
        self._s1_effective.setText(f"→ {img2img_steps(v.steps1, round(v.strength, 4))} run")
        stage2_widgets: tuple[QWidget, ...] = (self._s2_scale, self._s2_steps, self._s2_guidance)
        for w in stage2_widgets:
            w.setEnabled(v.stage2)
        lora_widgets: tuple[QWidget, ...] = (
            self._lora_scale,
            self._lora_ab,
            self._lora_s1,
            self._lora_s2,
        )
        for w in lora_widgets:
            w.setEnabled(bool(v.lora_path))
        first, n = v.seed, v.variants
        if first is None:
            self._seeds_hint.setText("")
        else:
            self._seeds_hint.setText(
                f"seed {first}" if n == 1 else f"seeds {first}…{first + n - 1}"
            )
        self._intermediate.setEnabled(v.size > PAPER_INTERMEDIATE)
        note, role, details = "", "warning", ""
        path = v.lora_path
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


def _accessors(
    widget: QWidget,
) -> tuple[SignalInstance, Callable[[], object], Callable[[Any], None]]:
    """How ``widget`` says it was edited, the value it shows, and how to show a value."""
    if isinstance(widget, QDoubleSpinBox):
        dspin = widget
        return dspin.valueChanged, lambda: round(dspin.value(), 4), dspin.setValue
    if isinstance(widget, QSpinBox):
        return widget.valueChanged, widget.value, widget.setValue
    if isinstance(widget, QCheckBox):
        return widget.toggled, widget.isChecked, widget.setChecked
    if isinstance(widget, QComboBox):
        combo = widget
        return (
            combo.currentIndexChanged,
            combo.currentData,
            lambda data: combo.setCurrentIndex(max(combo.findData(data), 0)),
        )
    if isinstance(widget, QLineEdit):
        line = widget
        return line.textChanged, lambda: line.text().strip(), lambda text: line.setText(str(text))
    raise TypeError(f"cannot bind a {type(widget).__name__}")


def _seed_of(field: QLineEdit) -> Callable[[], object]:
    """The seed typed (None while the field is empty)."""

    def read() -> object:
        text = field.text().strip()
        return int(text) if text.isdigit() else None

    return read


def _show_seed(field: QLineEdit) -> Callable[[Any], None]:
    return lambda seed: field.setText("" if seed is None else str(seed))
