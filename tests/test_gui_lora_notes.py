"""The window shows what the engine reports of a LoRA load, and warns of an empty FLUX prompt."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from fbupscale_gui.core.job import Note
from fbupscale_gui.core.scene import Scene
from fbupscale_gui.ui.main_window import MainWindow
from fbupscale_gui.worker.testing import FakeRunner

REPORT = (
    "LoRA football.safetensors: 12 of 14 layers applied (Kohya; alpha/rank 0.5, from its "
    ".alpha tensors); left out: 1 layer for a block the model does not have: "
    "double_blocks_7_img_attn_proj; 1 text-encoder layer: not loaded"
)


@pytest.fixture
def window(make_window, tmp_path: Path) -> MainWindow:  # type: ignore[no-untyped-def]
    lora = tmp_path / "football.safetensors"
    lora.write_bytes(b"{}")  # the panel only checks that the file is there
    for i, name in enumerate(("a.png", "b.png")):
        Image.new("RGB", (40, 64), (30 + 60 * i, 120, 40)).save(tmp_path / name)
    return make_window(  # type: ignore[no-any-return]
        runner=FakeRunner(steps=1, notes=[Note("warning", REPORT, "lora")]),
        cutouts=[tmp_path / "a.png", tmp_path / "b.png"],
        export_dir=str(tmp_path / "exports"),
        lora_path=str(lora),
        engine="flux",  # the FLUX grid (the window opens on "faithful" by default)
    )


def test_lora_report_and_empty_prompt_reach_the_window(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    assert window.session.engine.engine == "flux"
    for cutout in window.session.cutouts.cutouts():  # the operator emptied the prompts
        cutout.scene = cutout.scene or Scene()
        cutout.prompt, cutout.prompt_manual = "", True
    jobs = window.session.run(window.session.cutouts.cutouts())
    assert len(jobs) == 2
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
    texts = window.messages.texts()
    # the empty prompt: one warning for the whole run, pointing at the scene form and --scene
    prompt_warnings = [t for t in texts if "without a prompt" in t]
    assert len(prompt_warnings) == 1
    assert "a.png, b.png" in prompt_warnings[0] and "Scene form" in prompt_warnings[0]
    assert "--scene" in prompt_warnings[0]
    # the run's message and the LoRA row under the file name
    assert any(REPORT in t and t.startswith("a.png") for t in texts)
    note = window.params._lora_note
    assert not note.isHidden()  # the Advanced panel may be folded: hidden is not visible
    assert note.text() == "12 of 14 layers applied · some left out (hover)"
    assert note.toolTip() == REPORT
    assert note.property("role") == "warning"
