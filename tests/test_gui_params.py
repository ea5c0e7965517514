"""The Advanced parameters: the model, its defaults, and the panel bound to it both ways."""

from __future__ import annotations

import dataclasses
import json

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.request import (
    CONDITIONING_SCALE_RANGE,
    LoraParams,
    ModelRef,
    Preprocess,
    ReconstructionRequest,
    Stage1Params,
    Stage2Params,
)
from fbupscale_gui.core.settings import Settings
from fbupscale_gui.state.parameters import (
    FIELDS,
    Parameters,
    ParamValues,
    default_values,
    values_from_json,
)
from fbupscale_gui.ui.params_panel import ParamsPanel


@pytest.fixture
def panel(qtbot: QtBot) -> ParamsPanel:
    widget = ParamsPanel()
    qtbot.addWidget(widget)
    return widget


CUSTOM = ReconstructionRequest(
    prompt="two players",
    variants=5,
    seed=1_234_567_890_123,
    stage1=Stage1Params(strength=0.6, steps=50, guidance=4.0),
    stage2=Stage2Params(enabled=False, conditioning_scale=0.55, steps=20, guidance=2.5),
    lora=LoraParams(
        model=ModelRef(path="/models/football.safetensors", sha256="ab" * 32),
        scale=1.2,
        stages=("stage1", "stage2"),
        ab=False,
    ),
    preprocess=Preprocess(size=768, intermediate=256, pad="black", crop_to_content=False),
    memory_mode="group",
    speed="fast",
)


def test_params_defaults_are_the_requests(panel: ParamsPanel) -> None:
    assert not panel.is_expanded(), "the Advanced group starts collapsed"
    assert not panel.model.error()
    assert panel.model.apply_to(ReconstructionRequest()) == ReconstructionRequest()
    assert panel._s1_effective.text().endswith("60 run")
    assert "paper's defaults" in panel.summary()


def test_params_round_trip(panel: ParamsPanel) -> None:
    with_source = CUSTOM.replace(prompt="keep me", scene_json="{}")
    panel.model.set_from(with_source)
    assert not panel.model.error(), panel.model.error()
    assert panel.model.apply_to(with_source) == with_source  # LoRA ref (and its hash) kept
    applied = panel.model.apply_to(ReconstructionRequest())
    assert applied.prompt == "" and applied.preprocess.pad == "edge"  # not the panel's fields
    assert applied.lora.model == ModelRef(path="/models/football.safetensors")  # no hashing
    assert (
        applied.replace(lora=CUSTOM.lora, preprocess=CUSTOM.preprocess, prompt=CUSTOM.prompt)
        == CUSTOM
    )
    assert panel._s1_effective.text().endswith("30 run")
    assert not panel._s2_scale.isEnabled()
    assert "changed" in panel.summary()
    assert panel._speed.currentData() == "fast" and "fast" in panel.summary()


def test_params_reset_to_defaults(panel: ParamsPanel, qtbot: QtBot) -> None:
    panel.model.set_from(CUSTOM.replace(lora=LoraParams()))
    with qtbot.waitSignal(panel.changed):
        qtbot.mouseClick(panel._reset, Qt.MouseButton.LeftButton)
    assert panel.model.apply_to(ReconstructionRequest()) == ReconstructionRequest()
    # the LoRA file is a location, not a setting: it stays chosen
    panel.model.set_from(CUSTOM)
    panel.model.reset_to_defaults()
    reset = panel.model.apply_to(ReconstructionRequest())
    assert reset.lora == LoraParams(model=ModelRef(path="/models/football.safetensors"))
    assert reset.replace(lora=LoraParams()) == ReconstructionRequest()
    assert panel._lora_path.text() == "/models/football.safetensors"


def test_params_invalid_combination_is_shown_not_raised(panel: ParamsPanel, qtbot: QtBot) -> None:
    panel.set_expanded(True)
    with qtbot.waitSignal(panel.changed):
        panel._s1_steps.setValue(1)
    panel._s1_strength.setValue(0.5)  # diffusers still runs 1 step (its own rounding)
    assert not panel.model.error()
    assert panel._s1_effective.text().endswith("1 run")

    panel._size.setValue(256)  # the 256 px intermediate must be below the size
    panel._intermediate.setChecked(True)
    assert "intermediate" in panel.model.error()
    assert panel._error_label.isVisibleTo(panel)
    assert panel._error_label.text() == panel.model.error()
    assert panel.summary().startswith("Settings are not valid yet")
    with pytest.raises(RequestError):
        panel.model.apply_to(ReconstructionRequest())
    panel._intermediate.setChecked(False)
    assert not panel.model.error() and not panel._error_label.isVisibleTo(panel)


def test_params_empty_seed_is_refused_when_a_request_is_built(panel: ParamsPanel) -> None:
    panel._seed.setText("")
    assert panel.model.values.seed is None
    assert panel.model.error() == "seed: enter a seed (a whole number)"
    assert panel._seeds_hint.text() == ""


def test_params_conditioning_scale_is_limited(panel: ParamsPanel) -> None:
    lo, hi = CONDITIONING_SCALE_RANGE
    assert (panel._s2_scale.minimum(), panel._s2_scale.maximum()) == (lo, hi)
    panel._s2_scale.setValue(0.9)
    assert panel.model.apply_to(ReconstructionRequest()).stage2.conditioning_scale == hi


def test_params_random_seed_and_lora_path(panel: ParamsPanel) -> None:
    seeds = set()
    for _ in range(5):
        panel._random_seed.click()
        seeds.add(panel.model.apply_to(ReconstructionRequest()).seed)
        assert panel._seed.text() == str(panel.model.values.seed)
    assert len(seeds) > 1
    assert not panel._lora_scale.isEnabled()
    panel._lora_path.setText("/nowhere/lora.bin")
    assert panel._lora_scale.isEnabled()
    assert "safetensors" in panel._lora_note.text()
    request = panel.model.apply_to(ReconstructionRequest())
    assert request.lora.model == ModelRef(path="/nowhere/lora.bin")
    assert request.lora.branches() == (False, True)


def test_params_expand_collapse(panel: ParamsPanel) -> None:
    panel.show()
    assert not panel._body.isVisible()
    panel.set_expanded(True)
    assert panel._body.isVisible() and panel.is_expanded()
    panel._toggle.click()
    assert not panel._body.isVisible()


def test_request_fields_the_panel_ignores_are_kept(panel: ParamsPanel) -> None:
    base = ReconstructionRequest(prompt="p", device="cpu", precision="fp32", engine="flux")
    out = panel.model.apply_to(base)
    assert dataclasses.replace(out) == base


def test_params_summary_says_when_the_engine_ignores_diffusion_settings(panel: ParamsPanel) -> None:
    assert "stage 1" in panel.summary()
    panel.set_engine("realesrgan", "Real-ESRGAN x4plus (CPU)")
    assert panel.summary().startswith("Real-ESRGAN x4plus (CPU): one candidate at 1024 px")
    assert "FLUX only" in panel.summary()
    panel.set_engine("flux", "FLUX")
    assert "stage 1" in panel.summary()


# -- bound both ways ------------------------------------------------------------------------


def test_widget_edits_set_the_model_once_each(panel: ParamsPanel, qtbot: QtBot) -> None:
    """Each edit sets its field once, with one ``changed()``: the model's echo back to the
    widget is not an edit (no loop)."""
    names: list[str] = []
    changes: list[int] = []
    panel.model.valueChanged.connect(lambda name, _value: names.append(name))
    panel.model.changed.connect(lambda: changes.append(1))
    edits = [
        (lambda: panel._variants.setValue(7), "variants", 7),
        (lambda: panel._s1_strength.setValue(0.45), "strength", 0.45),
        (lambda: panel._s2_enabled.setChecked(False), "stage2", False),
        (lambda: panel._lora_path.setText("  /m/f.safetensors "), "lora_path", "/m/f.safetensors"),
        (lambda: panel._lora_s1.setChecked(True), "lora_stage1", True),
        (
            lambda: panel._memory.setCurrentIndex(panel._memory.findData("model")),
            "memory_mode",
            "model",
        ),
        (
            lambda: panel._speed.setCurrentIndex(panel._speed.findData("compiled")),
            "speed",
            "compiled",
        ),
        (lambda: panel._size.setValue(512), "size", 512),
    ]
    for edit, name, value in edits:
        names.clear()
        changes.clear()
        edit()
        assert names == [name] and changes == [1], name
        assert panel.model.get(name) == value
    request = panel.model.apply_to(ReconstructionRequest())
    assert (request.variants, request.stage1.strength, request.stage2.enabled) == (7, 0.45, False)
    assert request.lora.stages == ("stage1", "stage2") and request.memory_mode == "model"


def test_typing_in_a_field_is_not_rewritten_by_the_model(panel: ParamsPanel, qtbot: QtBot) -> None:
    """The model's value for "007" is 7; the field keeps what the operator typed."""
    panel._seed.clear()
    qtbot.keyClicks(panel._seed, "007")
    assert panel._seed.text() == "007" and panel._seed.cursorPosition() == 3
    assert panel.model.values.seed == 7
    assert panel._seeds_hint.text() == "seeds 7…9"


def test_model_changes_show_in_the_widgets(panel: ParamsPanel, qtbot: QtBot) -> None:
    edited: list[int] = []
    panel._variants.valueChanged.connect(edited.append)  # a widget signal = an operator edit
    values = ParamValues.from_request(CUSTOM)
    with qtbot.waitSignal(panel.changed):
        panel.model.set_values(values)
    assert edited == [], "setting a widget from the model is not an edit"
    assert panel._variants.value() == 5
    assert panel._seed.text() == "1234567890123"
    assert panel._s1_strength.value() == pytest.approx(0.6)
    assert not panel._s2_enabled.isChecked() and not panel._s2_steps.isEnabled()
    assert panel._lora_path.text() == "/models/football.safetensors"
    assert (
        panel._lora_s1.isChecked() and panel._lora_s2.isChecked() and not panel._lora_ab.isChecked()
    )
    assert panel._size.value() == 768 and panel._intermediate.isChecked()
    assert panel._memory.currentData() == "group" and panel._speed.currentData() == "fast"
    assert panel.model.values == values  # nothing came back changed
    panel.model.set("seed", None)
    assert panel._seed.text() == ""


def test_a_panel_shows_the_model_it_is_given(qtbot: QtBot) -> None:
    model = Parameters()
    model.set_from(CUSTOM)
    panel = ParamsPanel(model)
    qtbot.addWidget(panel)
    assert panel._variants.value() == 5 and panel._memory.currentData() == "group"
    assert panel.model.values == ParamValues.from_request(CUSTOM)
    assert set(panel._bound) == set(FIELDS), "every parameter has its widget"


# -- one source of defaults -----------------------------------------------------------------


def test_defaults_are_the_papers_with_the_settings_lora_and_memory_mode() -> None:
    settings = Settings(lora_path="/m/l.safetensors", memory_mode="model")
    expected = ReconstructionRequest(
        lora=LoraParams(model=ModelRef(path="/m/l.safetensors")), memory_mode="model"
    )
    assert default_values(settings).apply_to(ReconstructionRequest()) == expected
    model = Parameters(settings)
    assert model.apply_to(ReconstructionRequest()) == expected
    model.set_from(CUSTOM.replace(lora=LoraParams()))
    model.reset_to_defaults()  # the settings' memory mode is the default; no LoRA file chosen
    assert model.apply_to(ReconstructionRequest()) == expected.replace(lora=LoraParams())
    assert "paper's defaults" in model.summary()


def test_new_settings_change_only_what_they_changed() -> None:
    settings = Settings(lora_path="/m/l.safetensors", memory_mode="auto")
    model = Parameters(settings)
    model.set("variants", 6)
    model.set("memory_mode", "group")
    model.apply_settings(settings.replace(engine="lanczos"))  # neither LoRA nor memory changed
    assert (model.values.variants, model.values.memory_mode) == (6, "group")
    model.apply_settings(settings.replace(memory_mode="sequential", lora_path="/m/k.safetensors"))
    values = model.values
    assert (values.variants, values.memory_mode, values.lora_path) == (
        6,
        "sequential",
        "/m/k.safetensors",
    )
    model.apply_settings(settings.replace(memory_mode="sequential", lora_path=""))
    assert model.values.lora_path == "/m/k.safetensors"  # no LoRA in the settings: kept


# -- saved form ---------------------------------------------------------------------------


def test_saved_parameters_round_trip_and_damaged_fields_fall_back() -> None:
    model = Parameters()
    model.set_from(CUSTOM)
    model.set("seed", None)  # saved as entered, refused only when a request is built
    text = model.to_json()
    again = Parameters()
    again.restore(text)
    assert again.values == model.values
    assert set(json.loads(text)["values"]) == set(FIELDS)

    defaults = default_values()
    data = json.loads(text)
    data["values"].update(variants="many", memory_mode="turbo", unknown=1)
    problems: list[str] = []
    read = values_from_json(json.dumps(data), defaults, problems)
    assert len(problems) == 3 and "unknown field 'unknown'" in " ".join(problems)
    assert read.variants == defaults.variants and read.memory_mode == defaults.memory_mode
    assert read.steps1 == 50 and read.lora_path == "/models/football.safetensors"
    nested = "[" * 100_000 + "]" * 100_000  # a hostile session's index
    for bad in ("[", "[]", nested, '{"version": 99, "values": {}}', '{"version": 1}'):
        with pytest.raises(RequestError):
            values_from_json(bad, defaults)
        damaged = Parameters()
        damaged.set("variants", 9)
        assert damaged.restore(bad)[0].endswith("the defaults are used")
        assert damaged.values == defaults
