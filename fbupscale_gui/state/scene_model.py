"""The scene being described and the prompt made from it, as a Qt model the editor binds to.

:class:`SceneModel` owns one frozen :class:`~fbupscale_gui.core.scene.Scene` and replaces it on
every edit, so the scene is always valid: an edit the schema refuses leaves the scene as it was
and reports the schema's message through :attr:`SceneModel.errorChanged`.

The prompt is generated from the scene (:meth:`Scene.to_prompt`) until the operator edits the
prompt text by hand. From then on the hand-written text is kept and scene edits no longer
touch it, until :meth:`SceneModel.regenerate_prompt`. Tests drive all of this without a
display.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.scene import (
    BACKGROUND_ELEMENTS,
    TEAM_ROLES,
    BackgroundElement,
    Kit,
    KitType,
    Person,
    Role,
    Scene,
    Stadium,
    Team,
)
from fbupscale_gui.storage.kits import KitPreset, find_preset, load_kits

__all__ = [
    "COLOUR_WORDS",
    "DEFAULT_KIT",
    "SceneModel",
    "colour_swatches",
]

#: A new team starts in a neutral kit until the operator picks a preset or types colours.
DEFAULT_KIT: Final = Kit(jersey="white", shorts="white")

#: Common kit colour words and the colour a swatch shows for them. Multi-word names first.
COLOUR_WORDS: Final[dict[str, str]] = {
    "sky blue": "#6cabdd",
    "light blue": "#8ec5ee",
    "royal blue": "#1f4fbf",
    "navy blue": "#1b2a4a",
    "dark blue": "#1a3270",
    "dark green": "#1d5a2c",
    "light green": "#8fd18a",
    "bottle green": "#1f4d2b",
    "dark red": "#8b1a1a",
    "light grey": "#c8c8c8",
    "light gray": "#c8c8c8",
    "dark grey": "#4a4a4a",
    "dark gray": "#4a4a4a",
    "red": "#d62828",
    "white": "#ffffff",
    "black": "#111111",
    "blue": "#1f5fcf",
    "navy": "#1b2a4a",
    "green": "#2e8b3a",
    "yellow": "#f5d000",
    "gold": "#d4a017",
    "golden": "#d4a017",
    "orange": "#f07800",
    "purple": "#6a2c91",
    "violet": "#7f3fbf",
    "pink": "#f28cb8",
    "magenta": "#d0208c",
    "grey": "#8a8a8a",
    "gray": "#8a8a8a",
    "silver": "#bfc3c7",
    "claret": "#7a1f3d",
    "maroon": "#6b1c23",
    "burgundy": "#741b2f",
    "crimson": "#b3122e",
    "scarlet": "#e0201b",
    "cyan": "#19b5d8",
    "turquoise": "#2cc3b5",
    "teal": "#127c7c",
    "lime": "#a4d600",
    "amber": "#f0a530",
    "brown": "#6e4424",
    "beige": "#d9c8a3",
    "cream": "#f1e9d2",
}

_COLOUR_RE: Final = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in sorted(COLOUR_WORDS, key=len, reverse=True)) + r")\b"
)


def colour_swatches(text: str) -> list[QColor]:
    """The colours named in ``text``, in order ("red and black" -> red, black).

    Words this table does not know give no swatch, so a swatch never shows a guessed colour.
    """
    names = _COLOUR_RE.findall(" ".join(text.lower().split()))
    return [QColor(COLOUR_WORDS[n]) for n in names]


class SceneModel(QObject):
    """One scene, always valid, and the prompt text that goes with it.

    Signals:

    * ``sceneReset()`` -- the whole scene was replaced (:meth:`set_scene`): rebuild the form;
    * ``teamsChanged()`` -- a team was added, removed or renamed (person team choices change);
    * ``peopleChanged()`` -- a person was added or removed;
    * ``sceneChanged()`` -- any change at all, after the more specific signals;
    * ``promptChanged(str)`` -- the effective prompt text changed;
    * ``manualChanged(bool)`` -- the prompt became hand-edited, or generated again;
    * ``errorChanged(str)`` -- the last edit's problem, or "" once an edit succeeds.
    """

    sceneReset = Signal()
    teamsChanged = Signal()
    peopleChanged = Signal()
    sceneChanged = Signal()
    promptChanged = Signal(str)
    manualChanged = Signal(bool)
    errorChanged = Signal(str)

    def __init__(
        self,
        scene: Scene | None = None,
        presets: Sequence[KitPreset] | None = None,
        parent: QObject | None = None,
    ) -> None:
        """``presets`` None reads the shipped kit presets; a broken file gives no presets and
        its message in :meth:`presets_error`, never an exception."""
        super().__init__(parent)
        self._scene = scene if scene is not None else Scene()
        self._manual: str | None = None
        self._error = ""
        self._presets_error = ""
        if presets is None:
            try:
                presets = load_kits()
            except RequestError as exc:
                presets = ()
                self._presets_error = str(exc)
        self._presets: tuple[KitPreset, ...] = tuple(presets)
        self._prompt = self._scene.to_prompt()

    # -- kit presets --------------------------------------------------------------------

    def presets(self) -> tuple[KitPreset, ...]:
        return self._presets

    def presets_error(self) -> str:
        """Why the kit presets could not be read, or ""."""
        return self._presets_error

    def apply_preset(self, index: int, preset_name: str, kit_type: KitType = "home") -> None:
        """Fill team ``index`` from the named preset's ``kit_type`` kit (home if it has none)."""
        preset = find_preset(self._presets, preset_name)
        if preset is None:
            self._set_error(f"kit preset: no team called {preset_name!r}")
            return
        if preset.kit(kit_type) is None:
            kit_type = "home"
        self._edit(lambda: self.set_team(index, preset.team(kit_type)))

    def set_kit_type(self, index: int, kit_type: KitType) -> None:
        """Change which kit team ``index`` wears. A team named after a preset that defines that
        kit also takes the preset's colours; otherwise only the kit type changes."""
        if not 0 <= index < len(self._scene.teams):
            self._set_error(f"teams: no team {index}")
            return
        team = self._scene.teams[index]
        preset = find_preset(self._presets, team.name)
        kit = preset.kit(kit_type) if preset is not None else None
        if kit is not None:
            self._edit(lambda: self.set_team(index, Team(team.name, kit_type, kit)))
        else:
            self.update_team(index, kit_type=kit_type)

    # -- reading ------------------------------------------------------------------------

    def scene(self) -> Scene:
        return self._scene

    def prompt(self) -> str:
        """The prompt to run with: the hand-edited text if there is one, else the generated one."""
        return self._manual if self._manual is not None else self._scene.to_prompt()

    def is_prompt_manual(self) -> bool:
        return self._manual is not None

    def error(self) -> str:
        return self._error

    # -- whole scene and prompt ---------------------------------------------------------

    def set_scene(self, scene: Scene, prompt: str | None = None) -> None:
        """Replace the scene (e.g. another cutout's).

        ``prompt`` is that scene's prompt text as last used: None (or the generated text) means
        the prompt follows the scene; any other text is restored as a hand-edited prompt.
        """
        self._scene = scene
        was_manual = self._manual is not None
        self._manual = None if prompt is None or prompt == scene.to_prompt() else prompt
        if was_manual != (self._manual is not None):
            self.manualChanged.emit(self._manual is not None)
        self._set_error("")
        self.sceneReset.emit()
        self.teamsChanged.emit()
        self.peopleChanged.emit()
        self.sceneChanged.emit()
        self._update_prompt()

    def set_manual_prompt(self, text: str) -> None:
        """The operator typed ``text`` into the prompt. Text equal to the generated prompt is
        not a manual edit; anything else is kept until :meth:`regenerate_prompt`."""
        was_manual = self._manual is not None
        self._manual = None if text == self._scene.to_prompt() else text
        if was_manual != (self._manual is not None):
            self.manualChanged.emit(self._manual is not None)
        self._update_prompt()

    def regenerate_prompt(self) -> None:
        """Drop the hand-edited text; the prompt follows the scene again."""
        if self._manual is None:
            return
        self._manual = None
        self.manualChanged.emit(False)
        self._update_prompt()

    # -- teams --------------------------------------------------------------------------

    def add_team(self, team: Team | None = None) -> int:
        """Append a team (by default "Team A"/"Team B"... in a white home kit); its index."""
        if team is None:
            letter = chr(ord("A") + len(self._scene.teams))
            team = Team(name=f"Team {letter}", kit_type="home", kit=DEFAULT_KIT)
        if self._replace(teams=(*self._scene.teams, team)):
            self.teamsChanged.emit()
            self._after_change()
        return len(self._scene.teams) - 1

    def remove_team(self, index: int) -> None:
        """Remove a team; its people keep their place in the scene without a team."""
        try:
            scene = self._scene.without_team(index)
        except RequestError as exc:
            self._set_error(str(exc))
            return
        self._scene = scene
        self._set_error("")
        self.teamsChanged.emit()
        self._after_change()

    def set_team(self, index: int, team: Team) -> None:
        teams = list(self._scene.teams)
        if not 0 <= index < len(teams):
            self._set_error(f"teams: no team {index}")
            return
        renamed = teams[index].name != team.name
        teams[index] = team
        if self._replace(teams=tuple(teams)):
            if renamed:
                self.teamsChanged.emit()
            self._after_change()

    def update_team(self, index: int, **changes: Any) -> None:
        """Change some of a team's fields (``name``, ``kit_type``)."""
        if 0 <= index < len(self._scene.teams):
            self._edit(
                lambda: self.set_team(
                    index, dataclasses.replace(self._scene.teams[index], **changes)
                )
            )
        else:
            self._set_error(f"teams: no team {index}")

    def update_kit(self, index: int, **changes: Any) -> None:
        """Change some of a team's kit fields (``jersey``, ``shorts``, ``accents``, ``pattern``)."""
        if not 0 <= index < len(self._scene.teams):
            self._set_error(f"teams: no team {index}")
            return
        team = self._scene.teams[index]
        self._edit(
            lambda: self.set_team(
                index, dataclasses.replace(team, kit=dataclasses.replace(team.kit, **changes))
            )
        )

    # -- people -------------------------------------------------------------------------

    def add_person(self, person: Person | None = None) -> int:
        """Append a person (by default a player of the first team); their index, or -1."""
        if person is None:
            team = 0 if self._scene.teams else None
            person = Person(role="player", team=team)
        if self._replace(people=(*self._scene.people, person)):
            self.peopleChanged.emit()
            self._after_change()
            return len(self._scene.people) - 1
        return -1

    def remove_person(self, index: int) -> None:
        people = list(self._scene.people)
        if not 0 <= index < len(people):
            self._set_error(f"people: no person {index}")
            return
        del people[index]
        if self._replace(people=tuple(people)):
            self.peopleChanged.emit()
            self._after_change()

    def update_person(self, index: int, **changes: Any) -> None:
        """Change some of a person's fields. Choosing a role that has no team (referee,
        spectator) drops the team; hiding the number keeps it for when it is shown again."""
        people = list(self._scene.people)
        if not 0 <= index < len(people):
            self._set_error(f"people: no person {index}")
            return
        role: Role = changes.get("role", people[index].role)
        if role not in TEAM_ROLES:
            changes["team"] = None
        if changes.get("number", people[index].number) is None:
            changes["number_visible"] = False
        try:
            people[index] = dataclasses.replace(people[index], **changes)
        except (RequestError, TypeError) as exc:
            self._set_error(str(exc))
            return
        if self._replace(people=tuple(people)):
            self._after_change()

    def set_person_kit(self, index: int, jersey: str, shorts: str = "") -> None:
        """Give a person a kit of their own (a goalkeeper's, a referee's); an empty ``jersey``
        means they wear their team's kit again."""
        if not jersey.strip():
            self.update_person(index, kit=None)
            return
        try:
            kit = Kit(jersey=jersey, shorts=shorts)
        except RequestError as exc:
            self._set_error(str(exc))
            return
        self.update_person(index, kit=kit)

    # -- the rest of the scene ----------------------------------------------------------

    def set_action(self, text: str) -> None:
        self._set_field(action=text)

    def set_spatial(self, relations: Sequence[str]) -> None:
        """The spatial relations, one sentence each; blank ones are dropped."""
        self._set_field(spatial=tuple(r.strip() for r in relations if r.strip()))

    def set_stadium(self, stadium: Stadium) -> None:
        """Stadium occupancy. An empty stadium drops "spectators out of focus"."""
        background = self._scene.background
        if stadium == "empty":
            background = tuple(b for b in background if b != "spectators out of focus")
        self._set_field(stadium=stadium, background=background)

    def set_background_element(self, element: BackgroundElement, on: bool) -> None:
        current = set(self._scene.background)
        if on:
            current.add(element)
        else:
            current.discard(element)
        # keep the schema's order, so the prompt does not depend on the click order
        self._set_field(background=tuple(b for b in BACKGROUND_ELEMENTS if b in current))

    def set_extra(self, text: str) -> None:
        self._set_field(extra=text)

    def set_blurred_background(self, on: bool) -> None:
        self._set_field(blurred_background=bool(on))

    # -- internals ----------------------------------------------------------------------

    def _set_field(self, **changes: Any) -> None:
        if self._replace(**changes):
            self._after_change()

    def _edit(self, action: Callable[[], None]) -> None:
        try:
            action()
        except (RequestError, TypeError) as exc:
            self._set_error(str(exc))

    def _replace(self, **changes: Any) -> bool:
        """Try ``scene.replace(**changes)``; on a schema error keep the scene and report it."""
        try:
            scene = self._scene.replace(**changes)
        except (RequestError, TypeError) as exc:
            self._set_error(str(exc))
            return False
        self._scene = scene
        self._set_error("")
        return True

    def _after_change(self) -> None:
        self.sceneChanged.emit()
        self._update_prompt()

    def _update_prompt(self) -> None:
        prompt = self.prompt()
        if prompt != self._prompt:
            self._prompt = prompt
            self.promptChanged.emit(prompt)

    def _set_error(self, message: str) -> None:
        if message != self._error:
            self._error = message
            self.errorChanged.emit(message)
