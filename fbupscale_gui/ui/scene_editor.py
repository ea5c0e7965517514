"""The scene form: teams and kits, people, action, background, and the prompt made from them.

A thin view over :class:`~fbupscale_gui.state.scene_model.SceneModel`: every edit goes to the
model, and the form is refreshed from the model's (always valid) scene. The prompt preview at
the bottom follows the scene until the operator types into it; the hand-edited text is then
kept and clearly marked, with a button to go back to the generated prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from PySide6.QtCore import QRectF, QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.core.scene import (
    BACKGROUND_ELEMENTS,
    HAIR_STYLES,
    KIT_TYPES,
    MAX_PEOPLE,
    MAX_TEXT,
    ROLES,
    SKIN_TONES,
    STADIUM_OCCUPANCY,
    TEAM_ROLES,
    BackgroundElement,
    Hair,
    KitType,
    Person,
    Role,
    Scene,
    SkinTone,
    Stadium,
    Team,
)
from fbupscale_gui.state.scene_model import SceneModel, colour_swatches
from fbupscale_gui.storage.kits import find_preset
from fbupscale_gui.ui.theme import set_style_property

__all__ = ["SceneEditor", "SwatchStrip"]

MAX_TEAMS: Final = 8
#: Height of the handle between the scene form and the prompt (room between their titles).
_SPLITTER_HANDLE: Final = 12

_KIT_LABELS: Final[dict[str, str]] = {"home": "Home kit", "away": "Away kit", "third": "Third kit"}
_STADIUM_LABELS: Final[dict[str, str]] = {
    "": "Not visible / not specified",
    "empty": "Empty: no spectators",
    "half full": "Half full: moderate crowd",
    "full": "Full: sold out",
}
_BACKGROUND_LABELS: Final[dict[str, str]] = {
    "goal area": "Goal area",
    "goalposts": "Goalposts",
    "goal net": "Goal net",
    "penalty box": "Penalty box",
    "field markings": "Field markings",
    "corner flag": "Corner flag",
    "advertising boards": "Advertising boards",
    "bench": "Bench",
    "spectators out of focus": "Spectators (out of focus)",
}
_NOT_SPECIFIED: Final = "not specified"
_NO_PRESET: Final = "Custom colours"

_GENERATED_TEXT: Final = "Generated from the scene"
_MANUAL_TEXT: Final = "Edited by hand — scene changes no longer update it"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _set_text(edit: QLineEdit, text: str) -> None:
    """Show the model's value, unless the operator is typing in this field right now (the model
    may be holding the last valid value while the field is half-typed, e.g. emptied)."""
    if edit.text() != text and not edit.hasFocus():
        with QSignalBlocker(edit):
            edit.setText(text)


def _set_combo_data(combo: QComboBox, value: object) -> None:
    index = combo.findData(value)
    if index >= 0 and index != combo.currentIndex():
        with QSignalBlocker(combo):
            combo.setCurrentIndex(index)


def _line_edit(placeholder: str) -> QLineEdit:
    edit = QLineEdit()
    edit.setPlaceholderText(placeholder)
    edit.setMaxLength(MAX_TEXT)
    edit.setClearButtonEnabled(False)
    return edit


def _combo(min_chars: int = 8) -> QComboBox:
    """A combo box that may be narrower than its longest item, so the form fits a side pane."""
    combo = QComboBox()
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(min_chars)
    return combo


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "hint")
    label.setWordWrap(True)
    return label


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


class _TeamCard(_Card):
    def __init__(self, editor: SceneEditor, index: int) -> None:
        super().__init__(editor, index, f"Team {index + 1}")
        self.name = _line_edit("Team name")
        self.kit_type = _combo(7)
        for kit_type in KIT_TYPES:
            self.kit_type.addItem(_KIT_LABELS[kit_type], kit_type)
        self.kit_type.setToolTip(
            "Which kit the team wears. The team name goes into the prompt only for a home kit."
        )
        self.remove.setToolTip("Remove this team; its people stay, without a team")
        self.preset = _combo(10)
        self.preset.addItem(_NO_PRESET, "")
        for preset in self._model.presets():
            self.preset.addItem(preset.name, preset.name)
        self.preset.setToolTip("Fill name and colours from a kit preset")
        self.jersey = _line_edit("e.g. red and black")
        self.pattern = _line_edit("e.g. striped")
        self.shorts = _line_edit("e.g. white")
        self.accents = _line_edit("e.g. yellow")
        self.jersey_swatch = SwatchStrip()
        self.shorts_swatch = SwatchStrip()
        self.accents_swatch = SwatchStrip()
        self.name_note = _hint("")

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
        _set_text(self.name, team.name)
        _set_combo_data(self.kit_type, team.kit_type)
        _set_text(self.jersey, team.kit.jersey)
        _set_text(self.pattern, team.kit.pattern)
        _set_text(self.shorts, team.kit.shorts)
        _set_text(self.accents, team.kit.accents)
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


class _PersonCard(_Card):
    def __init__(self, editor: SceneEditor, index: int) -> None:
        super().__init__(editor, index, f"Person {index + 1}")
        self.role = _combo(6)
        for role in ROLES:
            self.role.addItem(_cap(role), role)
        self.team = _combo(6)
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
        self.hair = _combo(6)
        for hair in HAIR_STYLES:
            self.hair.addItem(_cap(hair) if hair else _NOT_SPECIFIED, hair)
        self.skin = _combo(6)
        for skin in SKIN_TONES:
            label = skin.removesuffix(" skin tone")
            self.skin.addItem(_cap(label) if skin else _NOT_SPECIFIED, skin)
        self.action = _line_edit("e.g. kicking the ball")
        self.own_jersey = _line_edit("team kit")
        self.own_jersey.setToolTip(
            "A kit of their own, e.g. a goalkeeper's or a referee's: the jersey colour. "
            "Leave empty to wear the team's kit."
        )
        self.own_shorts = _line_edit("shorts")
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
        _set_combo_data(self.role, person.role)
        labels = ["No team", *(t.name.strip() or f"Team {i + 1}" for i, t in enumerate(teams))]
        current = [self.team.itemText(i) for i in range(self.team.count())]
        if labels != current:
            with QSignalBlocker(self.team):
                self.team.clear()
                self.team.addItem(labels[0], -1)
                for i, label in enumerate(labels[1:]):
                    self.team.addItem(label, i)
        _set_combo_data(self.team, person.team if person.team is not None else -1)
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
        _set_combo_data(self.hair, person.hair)
        _set_combo_data(self.skin, person.skin)
        _set_text(self.action, person.action)
        _set_text(self.own_jersey, person.kit.jersey if person.kit is not None else "")
        _set_text(self.own_shorts, person.kit.shorts if person.kit is not None else "")
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


class SceneEditor(QWidget):
    """The scene form plus the prompt preview. ``promptChanged(str)`` carries the prompt to run
    with (hand-edited or generated) whenever it changes."""

    promptChanged = Signal(str)
    #: The operator asked for the cutout's shirt numbers to be read (a suggestion).
    numbersRequested = Signal()

    def __init__(self, parent: QWidget | None = None, model: SceneModel | None = None) -> None:
        super().__init__(parent)
        self._model = model if model is not None else SceneModel(parent=self)
        self._team_cards: list[_TeamCard] = []
        self._person_cards: list[_PersonCard] = []

        # -- teams
        self._teams_box = QGroupBox("Teams")
        self._teams_layout = QVBoxLayout()
        self._teams_layout.setSpacing(6)
        self._teams_empty = _hint("No teams yet. Add one, then pick its kit preset.")
        self._add_team = QPushButton("Add team")
        self._add_team.setToolTip("Add a team and describe its kit")
        teams_outer = QVBoxLayout(self._teams_box)
        teams_outer.addWidget(self._teams_empty)
        teams_outer.addLayout(self._teams_layout)
        teams_outer.addWidget(self._add_team, 0, Qt.AlignmentFlag.AlignLeft)
        if self._model.presets_error():
            err = QLabel(f"Kit presets unavailable: {self._model.presets_error()}")
            err.setProperty("role", "error")
            err.setWordWrap(True)
            teams_outer.addWidget(err)

        # -- people
        self._people_box = QGroupBox("People")
        self._people_layout = QVBoxLayout()
        self._people_layout.setSpacing(6)
        self._people_empty = _hint(
            "No people yet. Add everyone visible: players, goalkeepers, referees…"
        )
        self._add_person = QPushButton("Add person")
        self.read_numbers_button = QPushButton("Suggest numbers from the cutout")
        self.read_numbers_button.setToolTip(
            "Enlarge the cutout with the faithful preview and read its shirt numbers. Only a "
            "suggestion, with how sure it is: nothing is filled in."
        )
        self.read_numbers_button.clicked.connect(self.numbersRequested)
        self.number_hint = _hint("")
        self.number_hint.hide()
        people_outer = QVBoxLayout(self._people_box)
        people_outer.addWidget(self._people_empty)
        people_outer.addLayout(self._people_layout)
        people_buttons = QHBoxLayout()
        people_buttons.addWidget(self._add_person)
        people_buttons.addWidget(self.read_numbers_button)
        people_buttons.addStretch(1)
        people_outer.addLayout(people_buttons)
        people_outer.addWidget(self.number_hint)

        # -- action and positions
        self._action_box = QGroupBox("Action and positions")
        self._action = _line_edit("e.g. Two players are contesting possession of the ball")
        self._spatial = QPlainTextEdit()
        self._spatial.setPlaceholderText(
            "One per line, e.g. Player number 10 is positioned near the penalty box"
        )
        self._spatial.setTabChangesFocus(True)
        self._spatial.setFixedHeight(self._spatial.fontMetrics().lineSpacing() * 3 + 16)
        action_form = QVBoxLayout(self._action_box)
        action_form.addWidget(QLabel("Overall action"))
        action_form.addWidget(self._action)
        action_form.addWidget(QLabel("Positions (one per line)"))
        action_form.addWidget(self._spatial)

        # -- background
        self._background_box = QGroupBox("Background")
        self._stadium = _combo(12)
        for stadium in STADIUM_OCCUPANCY:
            self._stadium.addItem(_STADIUM_LABELS[stadium], stadium)
        self._elements: dict[BackgroundElement, QCheckBox] = {}
        bg_grid = QGridLayout(self._background_box)
        bg_grid.addWidget(QLabel("Stadium"), 0, 0)
        bg_grid.addWidget(self._stadium, 0, 1)
        elements_grid = QGridLayout()
        elements_grid.setHorizontalSpacing(12)
        for i, element in enumerate(BACKGROUND_ELEMENTS):
            box = QCheckBox(_BACKGROUND_LABELS[element])
            box.setProperty("element", element)
            box.toggled.connect(self._on_element)
            self._elements[element] = box
            elements_grid.addWidget(box, i // 2, i % 2)
        bg_grid.addLayout(elements_grid, 1, 0, 1, 2)
        self._blurred = QCheckBox("Background is blurred")
        bg_grid.addWidget(self._blurred, 2, 0, 1, 2)
        bg_grid.setColumnStretch(1, 1)

        # -- extra
        self._extra_box = QGroupBox("Anything else")
        self._extra = _line_edit("One more sentence for the prompt (optional)")
        QVBoxLayout(self._extra_box).addWidget(self._extra)

        form = QWidget()
        form_layout = QVBoxLayout(form)
        form_layout.setContentsMargins(0, 0, 6, 0)
        form_layout.setSpacing(10)
        for group in (
            self._teams_box,
            self._people_box,
            self._action_box,
            self._background_box,
            self._extra_box,
        ):
            form_layout.addWidget(group)
        form_layout.addStretch(1)
        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setWidget(form)

        # -- prompt
        self._prompt_box = QGroupBox("Prompt")
        self._prompt_status = QLabel(_GENERATED_TEXT)
        self._prompt_status.setProperty("role", "hint")
        self._prompt_status.setWordWrap(True)
        self._regenerate = QPushButton("Regenerate from scene")
        self._regenerate.setToolTip("Throw away the hand-edited text and use the scene's prompt")
        self._prompt_edit = QPlainTextEdit()
        self._prompt_edit.setTabChangesFocus(True)
        self._prompt_edit.setMinimumHeight(self._prompt_edit.fontMetrics().lineSpacing() * 5 + 14)
        self._prompt_edit.setToolTip(
            "The text the reconstruction runs with. You may edit it; it then stops following "
            "the scene until you regenerate it."
        )
        self._prompt_count = _hint("")
        self._error = QLabel("")
        self._error.setProperty("role", "error")
        self._error.setWordWrap(True)
        self._error.hide()
        status_row = QHBoxLayout()
        status_row.addWidget(self._prompt_status, 1)
        status_row.addWidget(self._regenerate)
        prompt_layout = QVBoxLayout(self._prompt_box)
        prompt_layout.addLayout(status_row)
        prompt_layout.addWidget(self._prompt_edit, 1)
        prompt_layout.addWidget(self._prompt_count)
        prompt_layout.addWidget(self._error)

        self._splitter = QSplitter(Qt.Orientation.Vertical)
        self._splitter.addWidget(self._scroll)
        self._splitter.addWidget(self._prompt_box)
        self._splitter.setStretchFactor(0, 2)
        self._splitter.setStretchFactor(1, 1)
        self._splitter.setChildrenCollapsible(False)
        # a visible gap between the form's last box and the Prompt title: they never touch
        self._splitter.setHandleWidth(_SPLITTER_HANDLE)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._splitter)

        self._add_team.clicked.connect(self._on_add_team)
        self._add_person.clicked.connect(self._on_add_person)
        self._action.textEdited.connect(self._model.set_action)
        self._spatial.textChanged.connect(self._on_spatial)
        self._stadium.activated.connect(self._on_stadium)
        self._blurred.toggled.connect(self._model.set_blurred_background)
        self._extra.textEdited.connect(self._model.set_extra)
        self._prompt_edit.textChanged.connect(self._on_prompt_edited)
        self._regenerate.clicked.connect(self._model.regenerate_prompt)

        self._model.sceneReset.connect(self._rebuild)
        self._model.teamsChanged.connect(self._sync_team_cards)
        self._model.peopleChanged.connect(self._sync_person_cards)
        self._model.sceneChanged.connect(self._refresh)
        self._model.promptChanged.connect(self._on_model_prompt)
        self._model.manualChanged.connect(self._on_manual_changed)
        self._model.errorChanged.connect(self._on_error)

        self._rebuild()
        self._show_prompt(self._model.prompt())
        self._on_manual_changed(self._model.is_prompt_manual())

    # -- public interface ---------------------------------------------------------------

    def model(self) -> SceneModel:
        return self._model

    def splitter(self) -> QSplitter:
        """The splitter between the scene form and the prompt (its state is kept)."""
        return self._splitter

    def scene(self) -> Scene:
        return self._model.scene()

    def show_number_suggestion(self, text: str) -> None:
        """Show what the engine read in the cutout ("" hides it). Never changes the scene."""
        self.number_hint.setText(text)
        self.number_hint.setVisible(bool(text))
        self.read_numbers_button.setEnabled(True)

    def reading_numbers(self) -> None:
        """The cutout is being read: say so until the suggestion arrives."""
        self.show_number_suggestion("Reading the cutout's shirt numbers…")
        self.read_numbers_button.setEnabled(False)

    def set_scene(self, scene: Scene, prompt: str | None = None) -> None:
        """Show ``scene``; ``prompt`` restores that scene's hand-edited prompt (see
        :meth:`SceneModel.set_scene`)."""
        self._model.set_scene(scene, prompt)

    def prompt(self) -> str:
        return self._model.prompt()

    def is_prompt_manual(self) -> bool:
        return self._model.is_prompt_manual()

    def regenerate_prompt(self) -> None:
        self._model.regenerate_prompt()

    def remove_team(self, index: int) -> None:
        self._model.remove_team(index)

    def remove_person(self, index: int) -> None:
        self._model.remove_person(index)

    # -- building and refreshing ----------------------------------------------------------

    def _rebuild(self) -> None:
        self._sync_team_cards(force=True)
        self._sync_person_cards(force=True)
        self._refresh()

    def _sync_team_cards(self, force: bool = False) -> None:
        teams = self._model.scene().teams
        if force or len(teams) != len(self._team_cards):
            team_cards = [_TeamCard(self, i) for i in range(len(teams))]
            _swap_cards(self._team_cards, team_cards, self._teams_layout)
            self._team_cards = team_cards
        self._teams_empty.setVisible(not teams)
        self._add_team.setEnabled(len(teams) < MAX_TEAMS)

    def _sync_person_cards(self, force: bool = False) -> None:
        people = self._model.scene().people
        if force or len(people) != len(self._person_cards):
            person_cards = [_PersonCard(self, i) for i in range(len(people))]
            _swap_cards(self._person_cards, person_cards, self._people_layout)
            self._person_cards = person_cards
        self._people_empty.setVisible(not people)
        self._add_person.setEnabled(len(people) < MAX_PEOPLE)

    def _refresh(self) -> None:
        scene = self._model.scene()
        for team_card, team in zip(self._team_cards, scene.teams, strict=False):
            team_card.refresh(team)
        for person_card, person in zip(self._person_cards, scene.people, strict=False):
            person_card.refresh(person, scene.teams)
        _set_text(self._action, scene.action)
        spatial = "\n".join(scene.spatial)
        typed = [line.strip() for line in self._spatial.toPlainText().splitlines() if line.strip()]
        if typed != list(scene.spatial) and not self._spatial.hasFocus():
            with QSignalBlocker(self._spatial):
                self._spatial.setPlainText(spatial)
        _set_combo_data(self._stadium, scene.stadium)
        for element, box in self._elements.items():
            with QSignalBlocker(box):
                box.setChecked(element in scene.background)
        spectators = self._elements["spectators out of focus"]
        spectators.setEnabled(scene.stadium != "empty")
        spectators.setToolTip(
            "Not with an empty stadium" if scene.stadium == "empty" else "Blurred crowd behind play"
        )
        with QSignalBlocker(self._blurred):
            self._blurred.setChecked(scene.blurred_background)
        _set_text(self._extra, scene.extra)

    # -- prompt ---------------------------------------------------------------------------

    def _show_prompt(self, text: str) -> None:
        if self._prompt_edit.toPlainText() != text:
            with QSignalBlocker(self._prompt_edit):
                self._prompt_edit.setPlainText(text)
        words = len(text.split())
        self._prompt_count.setText(f"{words} words, {len(text)} characters")

    def _on_model_prompt(self, text: str) -> None:
        self._show_prompt(text)
        self.promptChanged.emit(text)

    def _on_prompt_edited(self) -> None:
        text = self._prompt_edit.toPlainText()
        self._model.set_manual_prompt(text)
        self._prompt_count.setText(f"{len(text.split())} words, {len(text)} characters")

    def _on_manual_changed(self, manual: bool) -> None:
        self._prompt_status.setText(_MANUAL_TEXT if manual else _GENERATED_TEXT)
        set_style_property(self._prompt_status, "role", "warning" if manual else "hint")
        set_style_property(self._prompt_edit, "manual", manual)
        self._regenerate.setVisible(manual)

    def _on_error(self, message: str) -> None:
        if message:
            self._error.setText(f"{message}. The prompt keeps the last valid value.")
        self._error.setVisible(bool(message))

    # -- form edits -----------------------------------------------------------------------

    def _on_add_team(self) -> None:
        self._model.add_team()

    def _on_add_person(self) -> None:
        self._model.add_person()

    def _on_spatial(self) -> None:
        self._model.set_spatial(self._spatial.toPlainText().splitlines())

    def _on_stadium(self, _row: int) -> None:
        stadium: Stadium = self._stadium.currentData()
        self._model.set_stadium(stadium)

    def _on_element(self, on: bool) -> None:
        box = self.sender()
        if isinstance(box, QCheckBox):
            element: BackgroundElement = box.property("element")
            self._model.set_background_element(element, on)


def _swap_cards(old: Sequence[QWidget], new: Sequence[QWidget], layout: QLayout) -> None:
    """Swap a form's cards: the old ones leave the layout and become Python-owned (released
    when unreferenced, never through deleteLater), the new ones are added in order."""
    for card in old:
        layout.removeWidget(card)
        card.hide()
        card.setParent(None)
    for card in new:
        layout.addWidget(card)
