"""The Train window: frames described with the scene form, bulk apply, counts, and a real
training run in a child process with progress, loss curve, cancel and resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from fbupscale_gui.core.scene import Person, Scene

if TYPE_CHECKING:
    from pytestqt.qtbot import QtBot

    from fbupscale_gui.engine.testing import TinyFluxFiles
    from fbupscale_gui.ui.main_window import MainWindow

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"
ROOT = Path(__file__).resolve().parents[1]


def _frames(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i, name in enumerate(("duel", "striker", "box")):
        Image.new("RGB", (96, 64), (40 * i, 120, 60)).save(folder / f"{name}.png")
        shutil.copy(SAMPLES / f"{name}.scene.json", folder / f"{name}.scene.json")
    Image.new("RGB", (96, 64)).save(folder / "new.png")
    return folder


@pytest.mark.slow
def test_the_window_process_never_imports_torch() -> None:
    code = (
        "import sys; import fbupscale_gui.ui.train_window, fbupscale_gui.state.lora_training;"
        "bad = [m for m in ('torch', 'diffusers', 'peft') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"},
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_describe_frames_bulk_apply_and_counts(qtbot: QtBot, tmp_path: Path) -> None:
    from fbupscale_gui.ui.train_window import TrainWindow

    folder = _frames(tmp_path / "frames")
    window = TrainWindow()
    qtbot.addWidget(window)
    window.open_folder(folder)
    assert window.frame_list.count() == 4
    texts = [window.frame_list.item(i).text() for i in range(4)]
    assert texts[0].startswith("✓") and texts[2] == "✗  new.png"  # sorted: box, duel, new, striker
    assert "contesting possession" in window.counts.text()
    assert "1 frame(s) without a scene" in window.counts.text()

    # an edit in the scene form is saved next to the frame and re-checked at once
    window.frame_list.setCurrentRow(1)  # duel
    model = window.scene_editor.model()
    model.update_person(0, number=10, number_visible=False)
    saved = Scene.from_json((folder / "duel.scene.json").read_bytes())
    assert saved.people[0].number_visible is False
    assert "number 10" not in window.caption.toPlainText()
    assert window.issues.text().startswith("✓")

    # bulk apply: the current frame's teams, kits and stadium go to the selected frames
    model.set_stadium("full")
    window.frame_list.item(1).setSelected(True)
    window.frame_list.item(2).setSelected(True)
    assert window.apply_button.isEnabled()
    window.apply_to_selected()
    new_scene = Scene.from_json((folder / "new.scene.json").read_bytes())
    assert new_scene.teams == saved.teams and new_scene.stadium == "full"
    assert window.frame_list.item(2).text().startswith("!")  # still nobody described
    window.frame_list.setCurrentRow(2)
    window.scene_editor.model().add_person(Person(role="player", team=0, action="running"))
    assert window.frame_list.item(2).text().startswith("✓")
    assert "2 × " in window.counts.text() or "running" in window.counts.text()


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_build_train_cancel_and_resume_in_a_child_process(
    qtbot: QtBot, tmp_path: Path, tiny_flux: TinyFluxFiles
) -> None:
    from fbupscale_gui.ui.train_window import TrainWindow

    folder = _frames(tmp_path / "frames")
    (folder / "new.png").unlink()
    window = TrainWindow(flux=str(tiny_flux.flux_dir))
    qtbot.addWidget(window)
    window.open_folder(folder)
    window.out_edit.setText(str(tmp_path / "ds"))
    window.lora_edit.setText(str(tmp_path / "lora.safetensors"))
    window.crops.setValue(0)
    window.jitters.setValue(0)
    with qtbot.waitSignal(window.dataset_run.finished, timeout=120_000) as built:
        window.build_dataset()
    assert built.args is not None and built.args[0] == 0, window.status.text()
    assert len(json.loads((tmp_path / "ds" / "captions_kohya.json").read_text())) == 3

    window.steps.setValue(400)
    window.resolution.setValue(32)
    assert window.train_options()[-2:] == ["--save-every-n-steps", "250"]
    with qtbot.waitSignal(window.training.finished, timeout=300_000) as stopped:
        window.start_training()
        assert window.cancel_button.isEnabled() and not window.train_button.isEnabled()
        qtbot.waitUntil(lambda: len(window.training.losses) >= 3, timeout=240_000)
        window.cancel_button.click()
    assert stopped.args is not None and stopped.args[0] == 130
    assert "resumes" in window.status.text()
    assert window.estimate.text().startswith("Estimate:")
    done_before = len(window.training.losses)
    before = list(window.training.losses)
    assert window.plot.losses == window.training.losses and done_before < 400

    window.steps.setValue(done_before + 2)
    with qtbot.waitSignal(window.training.finished, timeout=300_000) as finished:
        window.start_training()
    assert finished.args is not None and finished.args[0] == 0, window.status.text()
    assert window.progress.value() == done_before + 2
    assert window.training.losses[:done_before] == pytest.approx(before)
    assert len(window.training.losses) == done_before + 2  # it resumed, curve kept
    assert (tmp_path / "lora.safetensors").is_file()
    assert window.training.checkpoints[-1] == str(tmp_path / "lora.safetensors")
    window.grab().save(str(tmp_path / "shot.png"))


def test_engine_menu_opens_the_train_window(window: MainWindow) -> None:
    from fbupscale_gui.ui.train_window import TrainWindow

    engine_menu = next(
        a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "Engine"
    )
    action = next(a for a in engine_menu.actions() if a.text().startswith("Train LoRA"))
    action.trigger()
    train = window.findChild(TrainWindow)
    assert train is not None and train.isVisible()
    action.trigger()  # the same window again, not a second one
    assert window.findChildren(TrainWindow) == [train]
    train.close()


def test_cli_command_in_the_packaged_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from fbupscale_gui.state.lora_training import cli_command

    assert cli_command(["lora", "train"]) == (
        sys.executable, ["-m", "fbupscale_gui.cli", "lora", "train"]
    )  # fmt: skip
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/fbupscale/fbupscale-gui")
    assert cli_command(["lora", "train"]) == ("/opt/fbupscale/fbupscale", ["lora", "train"])


def test_the_extra_windows_open_within_the_screen(qtbot: QtBot, window: MainWindow) -> None:
    """The LoRA trainer and the video window ask for 1360x860 and 1440x900; on a smaller
    screen (a 1366x768 desk, the test platform's) they open within it, frame included."""
    from fbupscale_gui.ui.train_window import TrainWindow

    room = window.screen().availableGeometry()
    train = TrainWindow()
    qtbot.addWidget(train)
    for w in (train, window.video_window):
        assert w.width() <= room.width() and w.height() <= room.height() - 40, type(w)
