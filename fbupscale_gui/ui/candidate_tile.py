"""One candidate's tile in the grid: its thumbnail, caption, fidelity and number badges, and
a Pick button; and the compare view's outlines for a candidate's number check."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QMouseEvent, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.core.number_check import NumberCheck, badge_text
from fbupscale_gui.eval.scoring import LR_TOOLTIP
from fbupscale_gui.state.candidates import CandidateEntry
from fbupscale_gui.state.speed_delta import SpeedDelta, score_text
from fbupscale_gui.ui import theme
from fbupscale_gui.ui.theme import set_style_property

__all__ = ["TILE_SIDE", "CandidateTile", "number_boxes"]

TILE_SIDE = 150


class CandidateTile(QFrame):
    """One candidate: thumbnail, number, seed and stage, and a Pick button."""

    clicked = Signal(object, bool)  # entry, ctrl held
    pickRequested = Signal(object)

    def __init__(
        self,
        entry: CandidateEntry,
        number: int,
        parent: QWidget | None = None,
        *,
        min_lr_db: float = 0.0,
        speed_delta: SpeedDelta | None = None,
    ):
        super().__init__(parent)
        self.entry = entry
        self.speed_delta = speed_delta
        self.number = number
        self.setObjectName("candidateTile")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.image.setFixedSize(TILE_SIDE, TILE_SIDE)
        self.set_thumb(entry.thumb)
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
        self.score_label = QLabel()
        self.number_label = QLabel()
        self.set_number_check(entry.number_check)
        self.suggested_label = QLabel("◆ SUGGESTED")
        self.suggested_label.setToolTip(
            "The most faithful candidate (best LR-consistency). Not picked until you accept it: "
            "Shift+S or its Pick button."
        )
        self.suggested_label.setStyleSheet(f"color: {theme.LINK}; font-weight: 700;")
        policy = self.suggested_label.sizePolicy()
        policy.setRetainSizeWhenHidden(True)  # every tile the same height, rows aligned
        self.suggested_label.setSizePolicy(policy)
        self.suggested_label.hide()
        self.pick_button = QPushButton("Pick")
        self.pick_button.setToolTip(f"Pick this candidate for export (key {key})")
        self.pick_button.clicked.connect(self._on_pick)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(3)
        layout.addWidget(self.image)
        layout.addWidget(self.caption)
        score_row = QHBoxLayout()
        score_row.setContentsMargins(0, 0, 0, 0)
        score_row.addWidget(self.score_label)
        score_row.addStretch(1)
        score_row.addWidget(self.number_label)
        layout.addLayout(score_row)
        layout.addWidget(self.suggested_label)
        layout.addWidget(self.pick_button)
        self.set_min_lr_db(min_lr_db)
        self.set_picked(False)
        self.set_suggested(False)

    def set_thumb(self, thumb: QImage) -> None:
        """Show the candidate's image (a restored one's arrives after its tile: "loading…")."""
        if thumb.isNull():
            self.image.setText("loading…")
            set_style_property(self.image, "role", "hint")
            return
        self.image.setPixmap(
            QPixmap.fromImage(thumb).scaled(
                TILE_SIDE,
                TILE_SIDE,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )
        set_style_property(self.image, "role", "")

    @property
    def score_text(self) -> str:
        """``"31.2 dB"`` or ``"—"`` (no score), as the tile shows it; a non-exact speed mode's
        candidate with a scored exact twin adds its delta: ``"31.2 dB (−0.03 vs exact)"``."""
        return score_text(self.entry.lr_consistency, self.speed_delta)

    def set_min_lr_db(self, min_lr_db: float) -> None:
        """Flag the score when it is below the export threshold (0: no threshold)."""
        score = self.entry.lr_consistency
        low = bool(min_lr_db) and (score is None or score < min_lr_db)
        self.score_label.setText(f"LR {self.score_text}" + ("  ⚠ low" if low else ""))
        set_style_property(self.score_label, "role", "warning" if low else "hint")
        limit = f"\nExport threshold: {min_lr_db:g} dB (Settings)." if min_lr_db else ""
        delta = f"\nSpeed mode: {self.speed_delta.text()}." if self.speed_delta is not None else ""
        self.score_label.setToolTip(
            f"{LR_TOOLTIP}\n\nThis candidate: {self.score_text}.{delta}{limit}"
        )

    def set_number_check(self, check: NumberCheck | None) -> None:
        """The shirt-number badge: "✓ 9", "✗ 8≠9" or "?" (hidden when nothing was checked)."""
        text = badge_text(check)
        self.number_label.setText(text)
        self.number_label.setVisible(bool(text))
        role = {"agrees": "ok", "contradicts": "error"}.get(check.verdict if check else "", "hint")
        set_style_property(self.number_label, "role", role)
        if check is not None:
            read = ", ".join(f"{r.text} ({r.confidence:.0%})" for r in check.readings) or "nothing"
            self.number_label.setToolTip(
                f"Number check: {check.detail}.\nRead in this candidate: {read}.\n"
                "The scene's visible numbers are the truth: a contradicting candidate puts a "
                "wrong number on a player."
            )

    def set_suggested(self, suggested: bool) -> None:
        self.suggested = suggested
        set_style_property(self, "suggested", suggested)
        self.suggested_label.setVisible(suggested)

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


def number_boxes(
    check: NumberCheck | None,
) -> list[tuple[tuple[tuple[float, float], ...], str, bool]]:
    """The compare view's outlines for a number check: each reading's box, its text, and
    whether the scene has that number."""
    if check is None:
        return []
    return [(r.box, r.text, r.value in check.expected) for r in check.readings if r.box]
