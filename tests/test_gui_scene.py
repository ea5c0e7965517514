"""Scene edits change the prompt that runs; scenes and hand-edited prompts are per cutout."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fbupscale_gui.core.scene import Person
from fbupscale_gui.ui.main_window import MainWindow
from fbupscale_gui.worker.testing import FakeRunner


@pytest.fixture
def window(make_window, tmp_path: Path) -> MainWindow:  # type: ignore[no-untyped-def]
    paths = []
    for i in range(2):
        p = tmp_path / f"cutout{i}.png"
        Image.new("RGB", (64, 80), (20 + 60 * i, 110, 40)).save(p)
        paths.append(p)
    runner = FakeRunner(steps=1)
    win = make_window(runner=runner, cutouts=paths)
    win.runner = runner
    return win  # type: ignore[no-any-return]


def test_scene_edits_change_the_prompt_that_runs(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    scene_model = window.scene_editor.model()
    before = window.scene_editor.prompt()
    with qtbot.waitSignal(window.scene_editor.promptChanged, timeout=2000):
        scene_model.add_person(Person(role="goalkeeper", number=1))
    with qtbot.waitSignal(window.scene_editor.promptChanged, timeout=2000):
        scene_model.set_action("The goalkeeper dives to his left")
    prompt = window.scene_editor.prompt()
    assert prompt != before
    assert "goalkeeper" in prompt.lower()
    cutout = window.cutouts.current()
    assert cutout is not None and cutout.prompt == prompt and not cutout.prompt_manual

    window.session.engine.set_engine("lanczos")
    window.run_selected()
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
    request = window.runner.runs[-1]  # type: ignore[attr-defined]
    assert request.prompt == prompt
    assert "goalkeeper" in request.scene_json


def test_scenes_and_manual_prompts_are_per_cutout(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    scene_model = window.scene_editor.model()
    scene_model.add_person(Person(role="referee"))
    scene_model.set_manual_prompt("A referee in black, hand-written prompt")
    first = window.cutouts.current()
    assert first is not None and first.prompt_manual

    window.next_action.trigger()
    second = window.cutouts.current()
    assert second is not None and second is not first
    # the new cutout starts from what carries over (teams, stadium), never the people
    assert not window.scene_editor.is_prompt_manual()
    assert "referee" not in window.scene_editor.prompt().lower()
    assert window.scene_editor.scene().people == ()
    scene_model.set_action("The referee shows a yellow card")
    assert "yellow card" in second.prompt

    window.prev_action.trigger()
    assert window.scene_editor.is_prompt_manual()
    assert window.scene_editor.prompt() == "A referee in black, hand-written prompt"
    assert "yellow card" not in window.scene_editor.scene().action


def test_a_cutout_never_shown_runs_with_what_carries_over(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    model = window.scene_editor.model()
    model.set_stadium("full")
    model.add_person(Person(role="goalkeeper", number=1))
    window.cutouts.list.selectAll()
    window.session.engine.set_engine("lanczos")
    jobs = window.run_selected()
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
    assert len(jobs) == 2
    prompts = [r.prompt for r in window.runner.runs]  # type: ignore[attr-defined]
    assert "goalkeeper" in prompts[0].lower()
    # the never-shown cutout has the stadium, not the first cutout's goalkeeper
    assert "goalkeeper" not in prompts[1].lower()
    assert "full" in prompts[1].lower()
