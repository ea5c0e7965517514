"""The session's Advanced parameters: every request is built from the model (no widget), and
they are saved with the session and come back when it is reopened."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QSettings

from fbupscale_gui.core.request import LoraParams, ModelRef, ReconstructionRequest, Stage1Params
from fbupscale_gui.state.parameters import ParamValues, default_values
from fbupscale_gui.state.session import Message, Session
from fbupscale_gui.state.session_persist import PARAMS_KEY
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.storage.session_store import SessionStore, create_session
from fbupscale_gui.worker.testing import FakeRunner

#: Not the defaults in any field the request records.
CUSTOM = ReconstructionRequest(
    variants=2,
    seed=41,
    stage1=Stage1Params(strength=0.5, steps=20, guidance=3.0),
    lora=LoraParams(model=ModelRef(path="/m/football.safetensors"), scale=0.7, ab=False),
    memory_mode="group",
    speed="fast",
)


@pytest.fixture
def sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "sessions"
    monkeypatch.setenv("FBUPSCALE_SESSIONS_DIR", str(root))
    return root


@pytest.fixture
def settings(tmp_path: Path) -> SettingsModel:
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    model = SettingsModel(store)
    model.update(export_dir=str(tmp_path / "exports"), engine="flux")
    return model


@pytest.fixture
def make_session(qtbot, settings: SettingsModel) -> Iterator[object]:  # type: ignore[no-untyped-def]
    made: list[Session] = []

    def make() -> Session:
        runner = FakeRunner(steps=1)
        session = Session(settings, runner_factory=lambda: runner)
        made.append(session)
        return session

    yield make
    for s in made:
        s.shutdown(10_000)
    gc.collect()


def cutout(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "a.png"
    Image.new("RGB", (48, 48), (30, 120, 40)).save(path)
    return path


def test_run_builds_requests_from_the_model_alone(qtbot, make_session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    session: Session = make_session()
    session.cutouts.add_paths([cutout(tmp_path / "in")])
    session.params.set_from(CUSTOM)
    (job,) = session.run(session.cutouts.cutouts())
    request = job.request
    assert (request.variants, request.seed, request.stage1) == (2, 41, CUSTOM.stage1)
    assert request.lora.model == ModelRef(path="/m/football.safetensors")
    assert (request.memory_mode, request.speed) == ("group", "fast")
    qtbot.waitUntil(lambda: not session.jobs.is_busy(), timeout=20_000)

    messages: list[Message] = []
    session.message.connect(messages.append)
    session.params.set("seed", None)  # what an emptied seed field leaves
    assert session.run(session.cutouts.cutouts()) == []
    assert messages[-1].level == "error"
    assert messages[-1].text == "a.png: cannot run: seed: enter a seed (a whole number)"


def test_settings_lora_and_memory_mode_reach_the_requests(make_session, settings) -> None:  # type: ignore[no-untyped-def]
    session: Session = make_session()
    settings.update(lora_path="/m/l.safetensors", memory_mode="model")
    values = session.params.values
    assert (values.lora_path, values.memory_mode) == ("/m/l.safetensors", "model")
    assert values == default_values(settings.settings)


def test_parameters_are_saved_with_the_session_and_restored(
    qtbot,  # type: ignore[no-untyped-def]
    make_session,
    sessions: Path,
    tmp_path: Path,
) -> None:
    first: Session = make_session()
    first.open_session()
    folder = first.session_path
    assert folder is not None
    first.params.set_from(CUSTOM)
    first.params.set("seed", None)  # kept as entered
    saved = first.params.values
    assert saved != default_values(first.settings.settings)
    assert first.recorder.flush(10)
    first.shutdown(10_000)

    second: Session = make_session()
    assert second.params.values == default_values(second.settings.settings)
    second.open_session(folder)
    assert second.params.values == saved
    # another session has its own (a new one: the defaults), and switching back restores these
    second.new_session("other")
    assert second.params.values == default_values(second.settings.settings)
    second.params.set("variants", 9)
    second.open_session(folder)
    assert second.params.values == saved
    second.params.set("seed", 3)
    assert second.recorder.flush(10)
    store = SessionStore(folder)
    try:
        assert '"seed": 3' in (store.meta(PARAMS_KEY) or "")
    finally:
        store.close()


def test_an_older_session_without_parameters_opens_with_the_defaults(
    make_session,  # type: ignore[no-untyped-def]
    sessions: Path,
) -> None:
    older = create_session("before parameters were saved")
    session: Session = make_session()
    session.params.set_from(CUSTOM)
    session.open_session(older)
    assert session.params.values == default_values(session.settings.settings)


def test_damaged_saved_parameters_open_with_the_defaults(make_session, sessions: Path) -> None:  # type: ignore[no-untyped-def]
    folder = create_session("damaged parameters")
    store = SessionStore(folder)
    store.set_meta(PARAMS_KEY, '{"version": 1, "values": {"variants": "x", "steps1": 30}}')
    store.close()
    session: Session = make_session()
    session.open_session(folder)
    expected: ParamValues = default_values(session.settings.settings).replace(steps1=30)
    assert session.params.values == expected  # the readable field kept, the other defaulted


def test_the_panel_shows_the_reopened_sessions_parameters(  # type: ignore[no-untyped-def]
    make_window, sessions: Path
) -> None:
    folder = create_session("with parameters")
    store = SessionStore(folder)
    from fbupscale_gui.state.parameters import Parameters

    saved = Parameters()
    saved.set_from(CUSTOM)
    store.set_meta(PARAMS_KEY, saved.to_json())
    store.close()
    window = make_window(engine="flux")
    window.session.open_session(folder)
    panel = window.params
    assert panel._variants.value() == 2 and panel._seed.text() == "41"
    assert panel._s1_steps.value() == 20 and panel._lora_path.text() == "/m/football.safetensors"
    assert panel._memory.currentData() == "group" and panel._speed.currentData() == "fast"
    assert "changed" in panel.summary()
