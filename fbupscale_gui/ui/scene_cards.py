"""The scene form's cards: one bordered block per team and per person, bound to the scene model.

Each card shows one team's (or person's) fields, sends every edit to the
:class:`~fbupscale_gui.state.scene_model.SceneModel` and is refreshed from the model's scene
(see :mod:`fbupscale_gui.ui.scene_editor`). Also the small form helpers both cards and the
editor use, and :class:`SwatchStrip`, the colours a kit field names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from PySide6.QtCore import QRectF, QSignalBlocker, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from fbupscale_gui.core.scene import (
    HAIR_STYLES,
    KIT_TYPES,
    MAX_TEXT,
    ROLES,
    SKIN_TONES,
    TEAM_ROLES,
    Hair,
    KitType,
    Person,
    Role,
    SkinTone,
    Team,
)
from fbupscale_gui.state.scene_model import colour_swatches
from fbupscale_gui.storage.kits import find_preset
from fbupscale_gui.ui.widgets import hint_label

if TYPE_CHECKING:
    from fbupscale_gui.ui.scene_editor import SceneEditor

__all__ = [
    "PersonCard",
    "SwatchStrip",
    "TeamCard",
    "combo",
    "line_edit",
    "set_combo_data",
    "set_text",
]

_KIT_LABELS: Final[dict[str, str]] = {"home": "Home kit", "away": "Away kit", "third": "Third kit"}
_NOT_SPECIFIED: Final = "not specified"
_NO_PRESET: Final = "Custom colours"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def set_text(edit: QLineEdit, text: str) -> None:
    """Show the model's value, unless the operator is typing in this field right now (the model
    may be holding the last valid value while the field is half-typed, e.g. emptied)."""
    if edit.text() != text and not edit.hasFocus():
        with QSignalBlocker(edit):
            edit.setText(text)


def set_combo_data(combo: QComboBox, value: object) -> None:
    index = combo.findData(value)
    if index >= 0 and index != combo.currentIndex():
        with QSignalBlocker(combo):
            combo.setCurrentIndex(index)


def line_edit(placeholder: str) -> QLineEdit:
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    edit.setMaxLength(MAX_TEXT)
    edit.setClearButtonEnabled(False)
    return edit


def combo(min_chars: int = 8) -> QComboBox:
    """A combo box that may be narrower than its longest item, so the form fits a side pane."""
    combo = QComboBox()
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(min_chars)
    return combo


class SwatchStrip(QWidget):
    """The colours named in a text field, as one small flag (unknown colour words: nothing)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._colours: list[QColor] = []
        self.setFixedSize(QSize(40, 22))

    def colours(self) -> list[QColor]:
        return list(self._colours)

    def set_text(self, text: str) -> None:
        colours = colour_swatches(text)[:4]
        if [c.name() for c in colours] != [c.name() for c in self._colours]:
            self._colours = colours
            self.setToolTip(", ".join(c.name() for c in colours))
            self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        if not self._colours:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        box = QRectF(self.rect()).adjusted(1.5, 2.5, -1.5, -2.5)
        w = box.width() / len(self._colours)
        p.save()
        clip = box.adjusted(0.5, 0.5, -0.5, -0.5)
        p.setClipRect(clip)
        for i, colour in enumerate(self._colours):
            p.fillRect(QRectF(box.left() + i * w, box.top(), w + 1, box.height()), colour)
        p.restore()
        p.setPen(QPen(QColor("#8a8f96"), 1.0))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRoundedRect(box, 3.0, 3.0)
        p.end()


class _Card(QFrame):
    """A bordered block for one team or one person: a bold title and a Remove button on top."""

    def __init__(self, editor: SceneEditor, index: int, title: str) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("sceneCard")
        self._editor = editor
        self._model = editor.model()
        self.index = index
        self.title = QLabel(title)
        self.title.setStyleSheet("font-weight: 600;")
        self.remove = QPushButton("Remove")

    def _grid(self, columns: int) -> QGridLayout:
        """The card's grid, with the title row (title left, Remove right) in row 0."""
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 6, 8, 8)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(4)
        head = QHBoxLayout()
        head.addWidget(self.title)
        head.addStretch(1)
        head.addWidget(self.remove)
        grid.addLayout(head, 0, 0, 1, columns)
        return grid


class TeamCard(_Card):
    """One team: its preset, name, kit type and kit colours."""

    def __init__(self, editor: SceneEditor, index: int) -> None:
        super().__init__(editor, index, f"Team {index + 1}")
        self.name = line_edit("Team name")
        self.kit_type = combo(7)
        for kit_type in KIT_TYPES:
            self.kit_type.addItem(_KIT_LABELS[kit_type], kit_type)
        self.kit_type.setToolTip(
            "Which kit the team wears. The team name goes into the prompt only for a home kit."
        )
        self.remove.setToolTip("Remove this team; its people stay, without a team")
        self.preset = combo(10)
        self.preset.addItem(_NO_PRESET, "")
        for preset in self._model.presets():
            self.preset.addItem(preset.name, preset.name)
        self.preset.setToolTip("Fill name and colours from a kit preset")
        self.jersey = line_edit("e.g. red and black")
        self.pattern = line_edit("e.g. striped")
        self.shorts = line_edit("e.g. white")
        self.accents = line_edit("e.g. yellow")
        self.jersey_swatch = SwatchStrip()
        self.shorts_swatch = SwatchStrip()
        self.accents_swatch = SwatchStrip()
        self.name_note = hint_label("")

        grid = self._grid(3)
        grid.addWidget(QLabel("Preset"), 1, 0)
        grid.addWidget(self.preset, 1, 1, 1, 2)
        grid.addWidget(QLabel("Name"), 2, 0)
        name_row = QHBoxLayout()
        name_row.addWidget(self.name, 1)
        name_row.addWidget(self.kit_type)
        grid.addLayout(name_row, 2, 1, 1, 2)
        rows: Sequence[tuple[str, QLineEdit, SwatchStrip | None]] = (
            ("Jersey", self.jersey, self.jersey_swatch),
            ("Pattern", self.pattern, None),
            ("Shorts", self.shorts, self.shorts_swatch),
            ("Accents", self.accents, self.accents_swatch),
        )
        for r, (label, edit, swatch) in enumerate(rows, start=3):
            grid.addWidget(QLabel(label), r, 0)
            grid.addWidget(edit, r, 1)
            if swatch is not None:
                grid.addWidget(swatch, r, 2)
        grid.addWidget(self.name_note, 7, 0, 1, 3)
        grid.setColumnStretch(1, 1)

        self.name.textEdited.connect(self._on_name)
        self.kit_type.activated.connect(self._on_kit_type)
        self.preset.activated.connect(self._on_preset)
        self.jersey.textEdited.connect(self._on_jersey)
        self.pattern.textEdited.connect(self._on_pattern)
        self.shorts.textEdited.connect(self._on_shorts)
        self.accents.textEdited.connect(self._on_accents)
        self.remove.clicked.connect(self._on_remove)

    def refresh(self, team: Team) -> None:
        set_text(self.name, team.name)
        set_combo_data(self.kit_type, team.kit_type)
        set_text(self.jersey, team.kit.jersey)
        set_text(self.pattern, team.kit.pattern)
        set_text(self.shorts, team.kit.shorts)
        set_text(self.accents, team.kit.accents)
        self.jersey_swatch.set_text(team.kit.jersey)
        self.shorts_swatch.set_text(team.kit.shorts)
        self.accents_swatch.set_text(team.kit.accents)
        # the combo names a preset only while the team still wears exactly that preset's kit
        found = find_preset(self._model.presets(), team.name)
        preset = 0
        if found is not None and found.kit(team.kit_type) == team.kit:
            preset = max(self.preset.findData(found.name), 0)
        if preset != self.preset.currentIndex():
            with QSignalBlocker(self.preset):
                self.preset.setCurrentIndex(preset)
        if team.kit_type == "home":
            self.name_note.setText("")
            self.name_note.hide()
        else:
            self.name_note.setText(
                f"{_KIT_LABELS[team.kit_type]}: the team name is left out of the prompt "
                "(only kit colours are described)."
            )
            self.name_note.show()

    def _on_name(self, text: str) -> None:
        self._model.update_team(self.index, name=text)

    def _on_kit_type(self, _row: int) -> None:
        kit_type: KitType = self.kit_type.currentData()
        self._model.set_kit_type(self.index, kit_type)

    def _on_preset(self, _row: int) -> None:
        name = str(self.preset.currentData() or "")
        if name:
            kit_type: KitType = self.kit_type.currentData()
            self._model.apply_preset(self.index, name, kit_type)

    def _on_jersey(self, text: str) -> None:
        self.jersey_swatch.set_text(text)
        self._model.update_kit(self.index, jersey=text)

    def _on_pattern(self, text: str) -> None:
        self._model.update_kit(self.index, pattern=text)

    def _on_shorts(self, text: str) -> None:
        self.shorts_swatch.set_text(text)
        self._model.update_kit(self.index, shorts=text)

    def _on_accents(self, text: str) -> None:
        self.accents_swatch.set_text(text)
        self._model.update_kit(self.index, accents=text)

    def _on_remove(self) -> None:
        self._editor.remove_team(self.index)


class PersonCard(_Card):
    """One person: role, team, number, appearance, own kit and action."""

    def __init__(self, editor: SceneEditor, index: int) -> None:
        super().__init__(editor, index, f"Person {index + 1}")
        self.role = combo(6)
        for role in ROLES:
            self.role.addItem(_cap(role), role)
        self.team = combo(6)
        self.team.setToolTip("The team whose kit this person wears")
        self.number = QSpinBox()
        self.number.setRange(-1, 99)
        self.number.setSpecialValueText("none")
        self.number.setToolTip("Shirt number, or none")
        self.number.setMinimumWidth(self.number.fontMetrics().horizontalAdvance("none") + 44)
        self.visible = QCheckBox("fully visible")
        self.visible.setToolTip(
            "Tick only when the whole number can be read in the cutout. "
            "A number that is not visible is left out of the prompt."
        )
        self.hair = combo(6)
        for hair in HAIR_STYLES:
            self.hair.addItem(_cap(hair) if hair else _NOT_SPECIFIED, hair)
        self.skin = combo(6)
        for skin in SKIN_TONES:
            label = skin.removesuffix(" skin tone")
            self.skin.addItem(_cap(label) if skin else _NOT_SPECIFIED, skin)
        self.action = line_edit("e.g. kicking the ball")
        self.own_jersey = line_edit("team kit")
        self.own_jersey.setToolTip(
            "A kit of their own, e.g. a goalkeeper's or a referee's: the jersey colour. "
            "Leave empty to wear the team's kit."
        )
        self.own_shorts = line_edit("shorts")
        self.own_shorts.setToolTip("The shorts colour of their own kit")
        self.own_swatch = SwatchStrip()

        grid = self._grid(4)
        grid.addWidget(QLabel("Role"), 1, 0)
        grid.addWidget(self.role, 1, 1)
        grid.addWidget(QLabel("Team"), 1, 2)
        grid.addWidget(self.team, 1, 3)
        grid.addWidget(QLabel("Number"), 2, 0)
        number_row = QHBoxLayout()
        number_row.addWidget(self.number)
        number_row.addWidget(self.visible)
        number_row.addStretch(1)
        grid.addLayout(number_row, 2, 1, 1, 3)
        grid.addWidget(QLabel("Hair"), 3, 0)
        grid.addWidget(self.hair, 3, 1)
        grid.addWidget(QLabel("Skin"), 3, 2)
        grid.addWidget(self.skin, 3, 3)
        grid.addWidget(QLabel("Own kit"), 4, 0)
        kit_row = QHBoxLayout()
        kit_row.addWidget(self.own_jersey, 3)
        kit_row.addWidget(self.own_shorts, 2)
        kit_row.addWidget(self.own_swatch)
        grid.addLayout(kit_row, 4, 1, 1, 3)
        grid.addWidget(QLabel("Action"), 5, 0)
        grid.addWidget(self.action, 5, 1, 1, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)

        self.role.activated.connect(self._on_role)
        self.team.activated.connect(self._on_team)
        self.number.valueChanged.connect(self._on_number)
        self.visible.toggled.connect(self._on_visible)
        self.hair.activated.connect(self._on_hair)
        self.skin.activated.connect(self._on_skin)
        self.action.textEdited.connect(self._on_action)
        self.own_jersey.textEdited.connect(self._on_own_kit)
        self.own_shorts.textEdited.connect(self._on_own_kit)
        self.remove.clicked.connect(self._on_remove)

    def refresh(self, person: Person, teams: Sequence[Team]) -> None:
        set_combo_data(self.role, person.role)
        labels = ["No team", *(t.name.strip() or f"Team {i + 1}" for i, t in enumerate(teams))]
        current = [self.team.itemText(i) for i in range(self.team.count())]
        if labels != current:
            with QSignalBlocker(self.team):
                self.team.clear()
                self.team.addItem(labels[0], -1)
                for i, label in enumerate(labels[1:]):
                    self.team.addItem(label, i)
        set_combo_data(self.team, person.team if person.team is not None else -1)
        has_team = person.role in TEAM_ROLES
        self.team.setEnabled(has_team)
        self.team.setToolTip(
            "The team whose kit this person wears"
            if has_team
            else f"A {person.role} does not belong to a team"
        )
        self.own_jersey.setPlaceholderText("team kit" if has_team else "e.g. yellow")
        number = person.number if person.number is not None else -1
        if self.number.value() != number and not self.number.hasFocus():
            with QSignalBlocker(self.number):
                self.number.setValue(number)
        with QSignalBlocker(self.visible):
            self.visible.setChecked(person.number_visible)
        self.visible.setEnabled(person.number is not None)
        set_combo_data(self.hair, person.hair)
        set_combo_data(self.skin, person.skin)
        set_text(self.action, person.action)
        set_text(self.own_jersey, person.kit.jersey if person.kit is not None else "")
        set_text(self.own_shorts, person.kit.shorts if person.kit is not None else "")
        self.own_swatch.set_text(self.own_jersey.text())
        self.own_shorts.setEnabled(person.kit is not None or bool(self.own_jersey.text().strip()))

    def _on_role(self, _row: int) -> None:
        role: Role = self.role.currentData()
        self._model.update_person(self.index, role=role)

    def _on_team(self, _row: int) -> None:
        team = int(self.team.currentData())
        self._model.update_person(self.index, team=team if team >= 0 else None)

    def _on_number(self, value: int) -> None:
        self._model.update_person(self.index, number=value if value >= 0 else None)

    def _on_visible(self, on: bool) -> None:
        self._model.update_person(self.index, number_visible=on)

    def _on_hair(self, _row: int) -> None:
        hair: Hair = self.hair.currentData()
        self._model.update_person(self.index, hair=hair)

    def _on_skin(self, _row: int) -> None:
        skin: SkinTone = self.skin.currentData()
        self._model.update_person(self.index, skin=skin)

    def _on_own_kit(self, _text: str) -> None:
        self.own_swatch.set_text(self.own_jersey.text())
        self._model.set_person_kit(self.index, self.own_jersey.text(), self.own_shorts.text())

    def _on_action(self, text: str) -> None:
        self._model.update_person(self.index, action=text)

    def _on_remove(self) -> None:
        self._editor.remove_person(self.index)
