"""The scene editor and the current cutout kept in step, without a widget (state/editor_sync)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image
from PySide6.QtCore import QSettings

from fbupscale_gui.core.scene import KIT_TYPES, Kit, Scene, Team
from fbupscale_gui.state.editor_sync import EditorSync
from fbupscale_gui.state.session import Session
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.worker.testing import FakeRunner


class FakeEditor:
    """What the sync needs of the scene editor, as plain fields."""

    def __init__(self) -> None:
        self.shown = Scene()
        self.typed: str | None = None
        self.hint = ""

    def scene(self) -> Scene:
        return self.shown

    def prompt(self) -> str:
        return self.typed if self.typed is not None else self.shown.to_prompt()

    def is_prompt_manual(self) -> bool:
        return self.typed is not None

    def set_scene(self, scene: Scene, prompt: str | None = None) -> None:
        self.shown, self.typed = scene, prompt

    def show_number_suggestion(self, text: str) -> None:
        self.hint = text

    def reading_numbers(self) -> None:
        self.hint = "reading…"


def test_edits_stay_with_their_cutout_and_a_new_one_inherits_only_teams_and_stadium(
    qapp, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    settings = SettingsModel(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    session = Session(settings, runner_factory=FakeRunner)
    paths = []
    for i, name in enumerate(("a.png", "b.png")):
        paths.append(tmp_path / name)
        Image.new("RGB", (40, 60), (10 + 50 * i, 100, 30)).save(paths[-1])
    session.cutouts.add_paths(paths)
    first, second = session.cutouts.cutouts()
    editor = FakeEditor()
    sync = EditorSync(session, editor)
    try:
        sync.set_current(first)
        reds = Team("Reds", KIT_TYPES[0], Kit("red", shorts="white"))
        edited = Scene(teams=(reds,), stadium="full", action="A header at the far post")
        editor.shown, editor.typed = edited, "my own prompt"
        sync.on_numbers_suggested(first.id, "7 (0.98)")
        sync.set_current(second)  # the first cutout keeps what was typed
        assert first.scene == edited and first.prompt == "my own prompt" and first.prompt_manual
        assert editor.shown == edited.carried_over() and editor.typed is None
        assert editor.shown.action == "" and editor.hint == ""
        sync.set_current(first)  # back: its scene, prompt and numbers read
        assert (editor.shown, editor.typed, editor.hint) == (edited, "my own prompt", "7 (0.98)")
    finally:
        session.shutdown(timeout_ms=5_000)
