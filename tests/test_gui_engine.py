"""The window on the real engine: Real-ESRGAN/Lanczos, and two-stage FLUX on tiny models.

Run -> progress -> candidates in the right cells; cancel; pick, export, read the metadata back
and reproduce the candidate with ``request.with_only(key)``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fbupscale_gui.core.request import CandidateKey
from fbupscale_gui.engine import Engine
from fbupscale_gui.engine.testing import TinyFluxFiles, tiny_cutout
from fbupscale_gui.state.candidate_grid import engine_title
from fbupscale_gui.state.job_queue import JobState
from fbupscale_gui.storage.metadata import read_metadata
from fbupscale_gui.ui.main_window import MainWindow

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml


@pytest.fixture
def make_window(make_window, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Windows on the real engine (in its process), each with one cutout."""

    def make(**settings: str) -> MainWindow:
        path = tmp_path / "keeper.png"
        tiny_cutout(40, 64, seed=3).save(path)
        return make_window(  # type: ignore[no-any-return]
            runner_factory=None,
            cutouts=[path],
            export_dir=str(tmp_path / "exports"),
            match_name="Home v Away",
            **settings,
        )

    return make


def wait_idle(qtbot, window: MainWindow, timeout: int = 120_000) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=timeout)


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def reproduce(path: Path) -> Image.Image:
    record = read_metadata(path)
    engine = Engine()
    try:
        (candidate,) = list(engine.run(record.request.with_only(record.key)))
    finally:
        engine.release()
    assert candidate.key == record.key
    return candidate.image


@pytest.mark.parametrize("engine", ["faithful", "realesrgan", "lanczos"])
def test_fast_engine_run_pick_export_reproduce(qtbot, make_window, engine: str) -> None:  # type: ignore[no-untyped-def]
    window = make_window()
    window.session.engine.set_engine(engine)
    size = 256 if engine == "realesrgan" else 1024  # Real-ESRGAN to 1024 takes ~10 s on 2 cores
    base = window.session.build_request(window.session.cutouts.at(0))
    window.session.params.set_from(
        base.replace(preprocess=dataclasses.replace(base.preprocess, size=size))
    )
    assert window.engine_combo.currentData() == engine
    (job,) = window.run_selected()
    wait_idle(qtbot, window)
    assert job.state is JobState.DONE, window.messages.texts()
    # a fast engine renders no LoRA branch: one column, named for the engine
    title = engine_title(engine)
    assert window.candidates.column_titles() == [title]
    tile = window.candidates.tile_at(0, 0)
    assert tile is not None and tile.picked
    assert tile.entry.key == CandidateKey(0, False, 2)
    assert "seed" not in tile.caption.text() and title in tile.caption.text()
    assert max(tile.entry.candidate.image.size) == size

    window.export_action.trigger()  # Ctrl+E: every pick
    qtbot.waitUntil(lambda: "Exported 1 file" in window.statusBar().currentMessage())
    (path,) = Path(window.session.settings.settings.export_dir).glob("*.png")
    assert path.name == f"Home_v_Away_keeper_{engine}.png"
    record = read_metadata(path)
    assert record.request.engine == engine
    assert record.seed == 5
    with Image.open(path) as exported:
        assert max(exported.size) == 1024  # exports are 1024 px whatever the run size
        if size == 1024:
            assert np.array_equal(pixels(exported), pixels(tile.entry.candidate.image))
    assert np.array_equal(pixels(reproduce(path)), pixels(tile.entry.candidate.image))


def test_tiny_flux_grid_cancel_pick_export_reproduce(
    qtbot, make_window, tiny_flux: TinyFluxFiles
) -> None:  # type: ignore[no-untyped-def]
    window = make_window(
        flux_dir=str(tiny_flux.flux_dir),
        controlnet_dir=str(tiny_flux.controlnet_dir),
        lora_path=str(tiny_flux.lora_diffusers),
        engine="flux",  # the window opens on "faithful" unless told otherwise
    )
    assert window.session.engine.engine == "flux"
    params = window.session.build_request(window.session.cutouts.at(0))
    assert params.lora.model is not None  # the LoRA from the settings reached the panel
    window.session.params.set_from(
        params.replace(
            variants=2,
            seed=11,
            preprocess=params.preprocess.__class__(size=64),
            stage1=params.stage1.__class__(steps=4, strength=0.75),
            stage2=params.stage2.__class__(steps=2),
        )
    )
    progress: list[str] = []
    window.session.jobs.progressed.connect(lambda _j, info: progress.append(info.text))
    (job,) = window.run_selected()
    wait_idle(qtbot, window)
    assert job.state is JobState.DONE, window.messages.texts()
    assert any("stage 1" in p for p in progress) and any("stage 2" in p for p in progress)
    panel = window.candidates
    assert panel.column_titles() == ["Stage 1", "Without LoRA", "With LoRA"]
    for row, variant in enumerate((0, 1)):
        for col, (stage, lora) in enumerate(((1, False), (2, False), (2, True))):
            tile = panel.tile_at(row, col)
            assert tile is not None
            assert tile.entry.key == CandidateKey(variant, lora, stage)
            assert tile.entry.seed == 11 + variant

    # pick "seed 12, with LoRA" (tile 6) and export it; reproduce it from the file alone
    window.pick_actions[5].trigger()
    picked = window.session.candidates.picked(window.session.cutouts.at(0).id)
    assert picked is not None and picked.key == CandidateKey(1, True, 2)
    window.export_current_action.trigger()
    qtbot.waitUntil(lambda: "Exported 1 file" in window.statusBar().currentMessage())
    (path,) = Path(window.session.settings.settings.export_dir).glob("*.png")
    assert path.name == "Home_v_Away_keeper_flux_12_lora.png"
    record = read_metadata(path)
    assert record.key == CandidateKey(1, True, 2)
    assert record.request.lora.model is not None
    assert np.array_equal(pixels(reproduce(path)), pixels(picked.candidate.image))

    # cancel a longer run as soon as it reports progress: it stops, the window survives
    window.session.params.set_from(
        window.session.params.apply_to(record.request).replace(
            stage1=record.request.stage1.__class__(steps=200, strength=1.0), variants=1
        )
    )
    window.session.jobs.progressed.connect(lambda _j, _i: window.cancel_action.trigger())
    (job2,) = window.run_selected()
    wait_idle(qtbot, window)
    assert job2.state is JobState.CANCELLED
    assert window.progress.label.text().endswith("— cancelled")
    assert len(window.session.candidates.entries(1)) == 6  # nothing half-done was added
