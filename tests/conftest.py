"""Shared test setup: offscreen Qt, strictly offline Hugging Face, isolated caches."""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# Isolated caches: an empty Hugging Face home (so tests never see real models) and a private
# fbupscale cache (model fingerprints) and models folder. Set before anything imports huggingface_hub.
_CACHE_ROOT = Path(tempfile.mkdtemp(prefix="fbupscale-tests-"))
atexit.register(shutil.rmtree, _CACHE_ROOT, True)
os.environ["HF_HOME"] = str(_CACHE_ROOT / "hf")
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HUGGINGFACE_HUB_CACHE", None)
os.environ["FBUPSCALE_CACHE_DIR"] = str(_CACHE_ROOT / "fbupscale")
os.environ.pop("FBUPSCALE_MODEL_DIRS", None)
os.environ["FBUPSCALE_MODELS_DIR"] = str(_CACHE_ROOT / "models")
# Sessions (the window's crash-safe record) go to a private folder too, never the user's.
os.environ["FBUPSCALE_SESSIONS_DIR"] = str(_CACHE_ROOT / "sessions")

if TYPE_CHECKING:
    from fbupscale_gui.engine.testing import TinyFluxFiles
    from fbupscale_gui.ui.main_window import MainWindow
    from fbupscale_gui.worker.engine_thread import RunnerFactory


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module's tiny-model tests on one torch thread, restoring the count afterwards.

    Tiny models gain nothing from threads, and on a shared 2-core machine a second thread
    mostly waits for the scheduler."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> TinyFluxFiles:
    """A tiny random FLUX saved like the real one: ``flux_dir``, ``controlnet_dir``,
    ``lora_diffusers`` and ``lora_kohya`` (built once per session, about a second)."""
    from fbupscale_gui.engine.testing import make_tiny_flux_files

    return make_tiny_flux_files(tmp_path_factory.mktemp("tiny_flux"))


def _top_level_widgets() -> dict[int, str]:
    """The application's live top-level widgets: C++ address -> class name."""
    import shiboken6
    from PySide6.QtWidgets import QApplication

    return {shiboken6.getCppPointer(w)[0]: type(w).__name__ for w in QApplication.topLevelWidgets()}


def _flush_deletes() -> None:
    """Run pending ``deleteLater`` calls and free cyclic garbage, in the GUI thread."""
    from PySide6.QtCore import QCoreApplication, QEvent

    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()  # cyclic garbage freed in the GUI thread (see models.gc_guard)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def make_window(qtbot, tmp_path: Path) -> Iterator[Callable[..., MainWindow]]:  # type: ignore[no-untyped-def]
    """Build shown main windows the way the window tests do; close them at teardown and fail
    if any top-level widget the test opened is still alive (naming its class).

    ``make_window(runner=..., runner_factory=..., model=..., cutouts=[paths], **settings)``:
    the settings are ``model``, else a fresh settings file in ``tmp_path``, updated with
    ``settings``; the engine is ``runner`` (one instance for every job), else
    ``runner_factory`` (default :class:`FakeRunner`; ``None`` is the real engine in its
    process); ``cutouts`` are added to the session once the window is shown.
    """
    import shiboken6
    from PySide6.QtCore import QSettings

    from fbupscale_gui.state.session import Session
    from fbupscale_gui.state.settings_model import SettingsModel
    from fbupscale_gui.ui.main_window import MainWindow
    from fbupscale_gui.worker.testing import FakeRunner

    before = _top_level_widgets()
    windows: list[MainWindow] = []

    def make(
        *,
        runner: object = None,
        runner_factory: RunnerFactory | None = FakeRunner,
        model: SettingsModel | None = None,
        cutouts: list[Path] | tuple[Path, ...] = (),
        **settings: object,
    ) -> MainWindow:
        if model is None:
            ini = tmp_path / f"settings{len(windows) or ''}.ini"
            model = SettingsModel(QSettings(str(ini), QSettings.Format.IniFormat))
        if settings:
            model.update(**settings)
        if runner is not None:
            runner_factory = lambda: runner  # noqa: E731
        window = MainWindow(Session(model, runner_factory=runner_factory))
        window.confirm_on_close = False
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        if cutouts:
            window.session.cutouts.add_paths(list(cutouts))
        return window

    yield make
    for window in windows:  # qtbot has closed them already; a test may have deleted one
        if shiboken6.isValid(window):
            window.close()
            assert not window.session.engine_thread.is_running()
    windows.clear()
    _flush_deletes()
    leaked = sorted(name for ptr, name in _top_level_widgets().items() if ptr not in before)
    assert not leaked, f"top-level widgets left alive after the test: {', '.join(leaked)}"


@pytest.fixture
def window(
    make_window: Callable[..., MainWindow], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> MainWindow:
    """One shown main window on a :class:`FakeRunner`, with its own settings and cache."""
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(tmp_path / "cache"))
    return make_window()
