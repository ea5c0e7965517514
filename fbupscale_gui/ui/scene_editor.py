"""The scene form: teams and kits, people, action, background, and the prompt made from them.

A thin view over :class:`~fbupscale_gui.state.scene_model.SceneModel`: every edit goes to the
model, and the form is refreshed from the model's (always valid) scene. The prompt preview at
the bottom follows the scene until the operator types into it; the hand-edited text is then
kept and clearly marked, with a button to go back to the generated prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from fbupscale_gui.core.scene import (
    BACKGROUND_ELEMENTS,
    MAX_PEOPLE,
    STADIUM_OCCUPANCY,
    BackgroundElement,
    Scene,
    Stadium,
)
from fbupscale_gui.state.scene_model import SceneModel
from fbupscale_gui.ui.scene_cards import (
    PersonCard,
    SwatchStrip,
    TeamCard,
    combo,
    line_edit,
    set_combo_data,
    set_text,
)
from fbupscale_gui.ui.theme import set_style_property
from fbupscale_gui.ui.widgets import hint_label, release_widgets

__all__ = ["SceneEditor", "SwatchStrip"]

MAX_TEAMS: Final = 8
#: Height of the handle between the scene form and the prompt (room between their titles).
_SPLITTER_HANDLE: Final = 12

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
_C = TypeVar("_C", TeamCard, PersonCard)

_GENERATED_TEXT: Final = "Generated from the scene"
_MANUAL_TEXT: Final = "Edited by hand — scene changes no longer update it"


class SceneEditor(QWidget):
    """The scene form plus the prompt preview. ``promptChanged(str)`` carries the prompt to run
    with (hand-edited or generated) whenever it changes."""

    promptChanged = Signal(str)
    #: The operator asked for the cutout's shirt numbers to be read (a suggestion).
    numbersRequested = Signal()

    def __init__(self, parent: QWidget | None = None, model: SceneModel | None = None) -> None:
        super().__init__(parent)
        self._model = model if model is not None else SceneModel(parent=self)
        self._team_cards: list[TeamCard] = []
        self._person_cards: list[PersonCard] = []

        # -- teams
        self._teams_box = QGroupBox("Teams")
        self._teams_layout = QVBoxLayout()
        self._teams_layout.setSpacing(6)
        self._teams_empty = hint_label("No teams yet. Add one, then pick its kit preset.")
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
        self._people_empty = hint_label(
            "No people yet. Add everyone visible: players, goalkeepers, referees…"
        )
        self._add_person = QPushButton("Add person")
        self.read_numbers_button = QPushButton("Suggest numbers from the cutout")
        self.read_numbers_button.setToolTip(
            "Enlarge the cutout with the faithful preview and read its shirt numbers. Only a "
            "suggestion, with how sure it is: nothing is filled in."
        )
        self.read_numbers_button.clicked.connect(self.numbersRequested)
        self.number_hint = hint_label("")
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
        self._action = line_edit("e.g. Two players are contesting possession of the ball")
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
        self._stadium = combo(12)
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
        self._extra = line_edit("One more sentence for the prompt (optional)")
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
        self._prompt_count = hint_label("")
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
        self._team_cards = self._sync_cards(
            self._team_cards, len(self._model.scene().teams), TeamCard, self._teams_layout, force
        )
        self._teams_empty.setVisible(not self._team_cards)
        self._add_team.setEnabled(len(self._team_cards) < MAX_TEAMS)

    def _sync_person_cards(self, force: bool = False) -> None:
        self._person_cards = self._sync_cards(
            self._person_cards,
            len(self._model.scene().people),
            PersonCard,
            self._people_layout,
            force,
        )
        self._people_empty.setVisible(not self._person_cards)
        self._add_person.setEnabled(len(self._person_cards) < MAX_PEOPLE)

    def _sync_cards(
        self,
        cards: list[_C],
        count: int,
        make: Callable[[SceneEditor, int], _C],
        layout: QLayout,
        force: bool,
    ) -> list[_C]:
        """One card per team (or person): when the count changed (or ``force``), the old cards
        are released and new ones take their place in the same layout, in order."""
        if not force and count == len(cards):
            return cards
        release_widgets(cards, layout)
        new = [make(self, i) for i in range(count)]
        for card in new:
            layout.addWidget(card)
        return new

    def _refresh(self) -> None:
        scene = self._model.scene()
        for team_card, team in zip(self._team_cards, scene.teams, strict=False):
            team_card.refresh(team)
        for person_card, person in zip(self._person_cards, scene.people, strict=False):
            person_card.refresh(person, scene.teams)
        set_text(self._action, scene.action)
        spatial = "\n".join(scene.spatial)
        typed = [line.strip() for line in self._spatial.toPlainText().splitlines() if line.strip()]
        if typed != list(scene.spatial) and not self._spatial.hasFocus():
            with QSignalBlocker(self._spatial):
                self._spatial.setPlainText(spatial)
        set_combo_data(self._stadium, scene.stadium)
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
        set_text(self._extra, scene.extra)

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
