"""Keeps the scene editor and the current cutout in step.

Scene and prompt are per cutout: the editor shows the current cutout's, and what the operator
types is copied back into it (on every prompt change, and before another cutout becomes
current or another session opens), then queued to the session writer. A cutout shown for the
first time starts from the last scene's teams, kits and stadium, never its people, numbers,
action or positions. The shirt numbers the engine read in a cutout are remembered, so they
show again when the cutout comes back.

Qt state, no widget: the editor is reached through :class:`SceneEditing`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import QObject, Slot

from fbupscale_gui.state.number_suggest import NumberSuggester

if TYPE_CHECKING:
    from fbupscale_gui.core.scene import Scene
    from fbupscale_gui.state.cutouts import Cutout
    from fbupscale_gui.state.session import Session

__all__ = ["EditorSync", "SceneEditing"]


class SceneEditing(Protocol):
    """What the sync needs of the scene editor (ui/scene_editor.py)."""

    def scene(self) -> Scene: ...
    def prompt(self) -> str: ...
    def is_prompt_manual(self) -> bool: ...
    def set_scene(self, scene: Scene, prompt: str | None = None) -> None: ...
    def show_number_suggestion(self, text: str) -> None: ...
    def reading_numbers(self) -> None: ...


class EditorSync(QObject):
    """The current cutout (:attr:`current`) and the editor showing its scene and prompt."""

    def __init__(self, session: Session, editor: SceneEditing, parent: QObject | None = None):
        super().__init__(parent)
        self._session = session
        self._editor = editor
        self.current: Cutout | None = None
        #: What the engine read in each cutout (cutout id -> the suggestion shown).
        self._number_hints: dict[int, str] = {}
        self.number_suggester = NumberSuggester(session.jobs, self)
        self.number_suggester.suggested.connect(self.on_numbers_suggested)

    def set_current(self, cutout: Cutout | None) -> None:
        """Keep the edits of the cutout left, then show ``cutout``'s scene and prompt."""
        from fbupscale_gui.core.scene import Scene

        self.store()
        self.current = cutout
        if cutout is not None:
            scene = cutout.scene or self._session.cutouts.starting_scene() or Scene()
            self._editor.set_scene(scene, cutout.prompt if cutout.prompt_manual else None)
            self.store()
        hint = self._number_hints.get(cutout.id, "") if cutout is not None else ""
        self._editor.show_number_suggestion(hint)

    def store(self) -> None:
        """Copy the editor's scene and prompt into the current cutout."""
        cutout = self.current
        if cutout is None:
            return
        cutout.scene = self._editor.scene()
        cutout.prompt = self._editor.prompt()
        cutout.prompt_manual = self._editor.is_prompt_manual()
        self._session.cutouts.last_scene = cutout.scene
        self._session.note_cutout_changed(cutout)  # queued to the session writer

    @Slot(str)
    def on_prompt_changed(self, _prompt: str) -> None:
        self.store()

    @Slot()
    def on_numbers_requested(self) -> None:
        if self.current is not None:
            self._editor.reading_numbers()
            self.number_suggester.read(self.current)

    @Slot(int, str)
    def on_numbers_suggested(self, cutout_id: int, text: str) -> None:
        self._number_hints[cutout_id] = text
        if self.current is not None and self.current.id == cutout_id:
            self._editor.show_number_suggestion(text)
