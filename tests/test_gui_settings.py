"""Settings: schema defaults and validation, QSettings round-trip, bad values, the dialog."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings

from fbupscale_gui.core.settings import Settings, SettingsError
from fbupscale_gui.state.session import Session
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.ui.main_window import MainWindow
from fbupscale_gui.ui.settings_dialog import SettingsDialog
from fbupscale_gui.worker.testing import FakeRunner


def ini(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def test_defaults_and_validation() -> None:
    s = Settings.defaults()
    assert s.memory_mode == "auto" and s.export_format == "png"
    assert s.export_template == "{match}_{cutout}_{engine}_{seed}_{lora}.png"
    assert s.export_dir.endswith("fbupscale-exports")
    with pytest.raises(SettingsError, match=r"memory_mode.*sequential"):
        s.replace(memory_mode="huge")
    with pytest.raises(SettingsError, match="unknown setting"):
        s.replace(colour="red")
    assert s.replace(match_name="  Cup Final ").match_name == "Cup Final"


def test_round_trip(qapp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = SettingsModel(ini(tmp_path))
    changed: list[Settings] = []
    model.changed.connect(changed.append)
    model.update(
        flux_dir="/models/FLUX.1-dev",
        controlnet_dir="/models/cn",
        lora_path="/models/football.safetensors",
        hf_cache="/cache/hf",
        memory_mode="sequential",
        export_dir=str(tmp_path / "out"),
        export_template="{cutout}_{seed}.png",
        export_format="jpeg",
        match_name="Derby",
    )
    assert len(changed) == 1
    again = SettingsModel(ini(tmp_path))
    assert again.settings == model.settings
    assert again.settings.memory_mode == "sequential"


def test_bad_stored_values_fall_back_and_are_logged(qapp, tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    store = ini(tmp_path)
    store.setValue("settings/memory_mode", "turbo")
    store.setValue("settings/export_template", "{player}.png")
    store.setValue("settings/match_name", "Final")
    store.sync()
    with caplog.at_level(logging.WARNING):
        model = SettingsModel(ini(tmp_path))
    assert model.settings.memory_mode == "auto"
    assert model.settings.export_template == Settings.defaults().export_template
    assert model.settings.match_name == "Final"
    assert "memory_mode" in caplog.text and "turbo" in caplog.text
    assert "export_template" in caplog.text


def test_dialog_validates_and_returns_settings(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dialog = SettingsDialog(Settings.defaults())
    qtbot.addWidget(dialog)
    dialog.template.setText("{nope}.png")
    assert "unknown field" in dialog.error.text()
    dialog.accept()
    assert dialog.result_settings() is None and "unknown field" in dialog.error.text()
    dialog.template.setText("{cutout}_{stage}.png")
    dialog.edits["flux_dir"].setText("/models/flux1-dev-Q8_0.gguf")
    dialog.edits["flux_base_dir"].setText("/models/FLUX.1-dev-base")
    dialog.memory.setCurrentText("model")
    dialog.accept()
    result = dialog.result_settings()
    assert result is not None
    assert (result.flux_dir, result.memory_mode, result.export_template) == (
        "/models/flux1-dev-Q8_0.gguf",
        "model",
        "{cutout}_{stage}.png",
    )
    # a single-file transformer's base folder goes into the requests the window builds
    from types import SimpleNamespace

    from fbupscale_gui.state.session import base_request

    cutout = SimpleNamespace(prompt="", scene=None, source=None)
    request = base_request(cutout, "lanczos", result)  # type: ignore[arg-type]
    assert request.flux.path == "/models/flux1-dev-Q8_0.gguf"
    assert request.flux_base is not None and request.flux_base.path == "/models/FLUX.1-dev-base"


def test_window_geometry_is_remembered(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = MainWindow(Session(SettingsModel(ini(tmp_path)), runner_factory=FakeRunner))
    first.confirm_on_close = False
    first.show()
    first.resize(first.minimumSizeHint().width(), 690)
    first.move(20, 30)
    height = first.height()
    first.close()
    geometry, _state = SettingsModel(ini(tmp_path)).window_geometry()
    assert geometry is not None
    second = MainWindow(Session(SettingsModel(ini(tmp_path)), runner_factory=FakeRunner))
    second.confirm_on_close = False
    try:
        # the offscreen screen is 800 px wide, so restoreGeometry keeps the window on it by
        # moving/narrowing it; the height shows the geometry came back (the default is 960)
        assert second.height() == height == 690
        assert second.windowTitle().startswith("fbupscale")
    finally:
        second.close()


def test_settings_feed_the_request(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = SettingsModel(ini(tmp_path))
    model.update(
        flux_dir="/m/flux",
        controlnet_dir="/m/cn",
        lora_path="/m/l.safetensors",
        memory_mode="group",
    )
    window = MainWindow(Session(model, runner_factory=FakeRunner))
    window.confirm_on_close = False
    try:
        from PIL import Image

        p = tmp_path / "a.png"
        Image.new("RGB", (60, 90), (1, 2, 3)).save(p)
        window.session.cutouts.add_paths([p])
        window.session.engine.set_engine("flux")  # the LoRA only rides on a FLUX request
        req = window.session.build_request(window.session.cutouts.at(0))
        assert req.flux.path == "/m/flux" and req.controlnet.path == "/m/cn"
        assert req.lora.model is not None and req.lora.model.path == "/m/l.safetensors"
        assert req.memory_mode == "group"
    finally:
        window.close()
