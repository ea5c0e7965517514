"""Run -> progress -> candidates in the right grid cells, cancel, failures, picks (fake runner)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QSettings

from fbupscale_gui.core.errors import GpuOutOfMemoryError, LoraError
from fbupscale_gui.core.request import CandidateKey
from fbupscale_gui.state.job_queue import JobState
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.ui.main_window import MainWindow
from fbupscale_gui.worker.testing import FakeRunner


@pytest.fixture
def settings(tmp_path: Path) -> SettingsModel:
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    model = SettingsModel(store)
    model.update(
        export_dir=str(tmp_path / "exports"),
        lora_path=str(tmp_path / "lora.safetensors"),
        engine="flux",  # the FLUX grid (the window opens on "faithful" by default)
    )
    return model


def cutout_file(folder: Path, name: str, size: tuple[int, int] = (64, 80), colour: int = 0) -> Path:
    path = folder / name
    img = Image.new("RGB", size, (30 + colour, 120, 40))
    img.putpixel((3, 5), (250, 250, 250))
    img.save(path)
    return path


@pytest.fixture
def make_window(make_window):  # type: ignore[no-untyped-def]
    """Windows on the given settings and fake runner (the shared fixture closes them)."""

    def make(settings: SettingsModel, runner: FakeRunner) -> MainWindow:
        return make_window(model=settings, runner=runner)  # type: ignore[no-any-return]

    return make


def small_params(window: MainWindow, variants: int = 2) -> None:
    req = window.session.build_request(window.session.cutouts.at(0))
    window.session.params.set_from(req.replace(variants=variants, seed=5))


def wait_idle(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)


def test_run_fills_the_grid_by_seed_and_lora(qtbot, make_window, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = FakeRunner(steps=2)
    window = make_window(settings, runner)
    window.session.cutouts.add_paths([cutout_file(tmp_path, "keeper.png")])
    small_params(window, variants=2)
    progress: list[str] = []
    window.session.jobs.progressed.connect(lambda _job, info: progress.append(info.text))

    jobs = window.run_selected()
    assert len(jobs) == 1
    wait_idle(qtbot, window)

    job = jobs[0]
    assert job.state is JobState.DONE
    assert runner.thread_names == ["fbupscale-engine"] or runner.thread_names[0] != "MainThread"
    assert progress and "step" in progress[-1] and "ETA" in progress[-1]
    assert window.progress.bar.value() == 1000
    panel = window.candidates
    assert panel.column_titles() == ["Stage 1", "Without LoRA", "With LoRA"]
    # rows = seeds 5, 6; columns stage 1 | without | with
    for row, variant in enumerate((0, 1)):
        for col, (stage, lora) in enumerate(((1, False), (2, False), (2, True))):
            tile = panel.tile_at(row, col)
            assert tile is not None
            assert tile.entry.key == CandidateKey(variant, lora, stage)
            assert f"seed {5 + variant}" in tile.caption.text()
            assert f"stage {stage}" in tile.caption.text()
    # the request carried the scene prompt, the engine and the models from the settings
    request = runner.runs[0]
    assert request.engine == "flux"
    assert request.lora.model is not None and request.lora.model.path.endswith("lora.safetensors")
    assert request.source is not None and request.source.name == "keeper.png"


def test_exactly_one_pick_and_keys(qtbot, make_window, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    window = make_window(settings, FakeRunner(steps=1))
    window.session.cutouts.add_paths([cutout_file(tmp_path, "a.png")])
    small_params(window, variants=1)
    window.run_selected()
    wait_idle(qtbot, window)
    tiles = window.candidates.tiles()
    assert len(tiles) == 3
    assert [t.picked for t in tiles].count(True) == 1  # the first result is picked at once
    window.pick_actions[2].trigger()  # key 3
    assert [t.picked for t in window.candidates.tiles()] == [False, False, True]
    tiles[1].pickRequested.emit(tiles[1].entry)
    assert [t.picked for t in window.candidates.tiles()] == [False, True, False]
    window.pick_actions[8].trigger()  # key 9: no such tile, nothing changes
    assert [t.picked for t in window.candidates.tiles()] == [False, True, False]
    assert "PICKED" in window.candidates.tiles()[1].pick_button.text()
    # clicking a tile opens the compare view: cutout (Lanczos) against the candidate
    tiles = window.candidates.tiles()
    tiles[2].clicked.emit(tiles[2].entry, False)
    assert "cutout (Lanczos)" in window.candidates.compare_label.text()
    tiles[1].clicked.emit(tiles[1].entry, True)  # ctrl+click: candidate vs candidate
    assert "cutout" not in window.candidates.compare_label.text()


def test_stage1_toggle_hides_the_stage1_column(qtbot, make_window, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    window = make_window(settings, FakeRunner(steps=1))
    window.session.cutouts.add_paths([cutout_file(tmp_path, "a.png")])
    small_params(window, variants=1)
    window.run_selected()
    wait_idle(qtbot, window)
    window.candidates.stage1_box.setChecked(False)
    assert window.candidates.column_titles() == ["Without LoRA", "With LoRA"]
    assert len(window.candidates.tiles()) == 2


def test_cancel_stops_the_job_and_drops_the_queue(qtbot, make_window, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    runner = FakeRunner(steps=1, gate=gate)
    window = make_window(settings, runner)
    window.session.cutouts.add_paths(
        [cutout_file(tmp_path, "a.png"), cutout_file(tmp_path, "b.png", colour=50)]
    )
    small_params(window, variants=1)
    window.cutouts.list.selectAll()
    jobs = window.run_selected()
    assert len(jobs) == 2
    assert runner.started.wait(5)
    assert window.cancel_action.isEnabled()
    window.cancel_action.trigger()  # Esc
    wait_idle(qtbot, window)
    assert [j.state for j in jobs] == [JobState.CANCELLED, JobState.CANCELLED]
    assert len(runner.runs) == 1  # the queued job never started
    assert window.progress.label.text().endswith("— cancelled")
    # the window still works: run again to completion
    gate.set()
    again = window.run_selected()
    wait_idle(qtbot, window)
    assert all(j.state is JobState.DONE for j in again)


def test_a_failure_is_shown_and_the_queue_continues(qtbot, make_window, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = FakeRunner(steps=1, fail_after=0, error=GpuOutOfMemoryError("none", "model"))
    window = make_window(settings, runner)
    window.session.cutouts.add_paths(
        [cutout_file(tmp_path, "a.png"), cutout_file(tmp_path, "b.png", colour=50)]
    )
    small_params(window, variants=1)
    window.cutouts.list.selectAll()
    jobs = window.run_selected()
    qtbot.waitUntil(lambda: jobs[0].state is JobState.FAILED, timeout=10_000)
    runner.fail_after = None  # the second job succeeds
    wait_idle(qtbot, window)
    assert jobs[1].state in (JobState.DONE, JobState.FAILED)
    rows = window.messages.rows()
    oom = [r for r in rows if "out of memory" in r.label.text()]
    assert oom and oom[0].action_button is not None
    assert "model" in oom[0].action_button.text()
    assert window.isVisible()
    # retry offers the next memory mode
    before = len(runner.runs)
    oom[0].action_button.click()
    wait_idle(qtbot, window)
    assert len(runner.runs) == before + 1
    assert runner.runs[-1].memory_mode == "model"


def test_unexpected_errors_do_not_take_the_window_down(
    qtbot, make_window, settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    runner = FakeRunner(steps=1, fail_after=1, error=ZeroDivisionError("boom"))
    window = make_window(settings, runner)
    window.session.cutouts.add_paths([cutout_file(tmp_path, "a.png")])
    small_params(window, variants=1)
    jobs = window.run_selected()
    wait_idle(qtbot, window)
    assert jobs[0].state is JobState.FAILED
    assert len(window.candidates.tiles()) == 1  # the finished candidate is kept
    assert any("unexpected engine error" in t and "boom" in t for t in window.messages.texts())
    runner.fail_after, runner.error = None, None
    runner.runs.clear()
    window.session.engine.set_engine("lanczos")
    window.run_selected()
    wait_idle(qtbot, window)
    assert runner.runs[-1].engine == "lanczos"
    assert any(e.run == 2 for e in window.session.candidates.entries(1))  # a second run, kept


def test_lora_errors_are_reported_with_their_message(
    qtbot, make_window, settings, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    runner = FakeRunner(steps=1, fail_after=0, error=LoraError("lora.safetensors: no keys match"))
    window = make_window(settings, runner)
    window.session.cutouts.add_paths([cutout_file(tmp_path, "a.png")])
    window.run_selected()
    wait_idle(qtbot, window)
    assert any("no keys match" in t for t in window.messages.texts())


def test_next_and_previous_cutout(qtbot, make_window, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    window = make_window(settings, FakeRunner())
    window.session.cutouts.add_paths(
        [cutout_file(tmp_path, f"{n}.png", colour=10 * i) for i, n in enumerate("abc")]
    )
    assert window.cutouts.current() is not None and window.cutouts.current().name == "a.png"
    window.next_action.trigger()
    window.next_action.trigger()
    assert window.cutouts.current().name == "c.png"
    window.next_action.trigger()
    assert window.cutouts.current().name == "c.png"
    window.prev_action.trigger()
    assert window.cutouts.current().name == "b.png"


def test_shutdown_releases_the_engine_in_its_thread(qtbot, make_window, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = FakeRunner(steps=1)
    window = make_window(settings, runner)
    window.session.cutouts.add_paths([cutout_file(tmp_path, "a.png")])
    window.session.engine.set_engine("lanczos")
    window.run_selected()
    wait_idle(qtbot, window)
    window.close()
    assert runner.released == 1
    assert not window.session.engine_thread.is_running()
