"""FLUX weights missing (said once, fast engines keep working) and the GPU status bar."""

from __future__ import annotations

import gc
import sys
import types
from pathlib import Path

import pytest
from PIL import Image

from fbupscale_gui.core.errors import ModelNotFoundError
from fbupscale_gui.state.gpu import NO_GPU_TEXT, GpuMonitor, GpuReading, format_reading, read_nvml
from fbupscale_gui.state.job_queue import JobState
from fbupscale_gui.ui.main_window import MainWindow
from fbupscale_gui.worker.testing import FakeRunner


@pytest.fixture
def window(make_window, tmp_path: Path) -> MainWindow:  # type: ignore[no-untyped-def]
    p = tmp_path / "a.png"
    Image.new("RGB", (64, 80), (20, 110, 40)).save(p)
    runner = FakeRunner(steps=1)
    win = make_window(
        runner=runner, cutouts=[p], flux_dir=str(tmp_path / "no-flux-here"), engine="flux"
    )
    win.runner = runner
    return win  # type: ignore[no-any-return]


def test_missing_flux_is_said_once_and_falls_back(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    assert window.session.engine.engine == "flux"
    window.session.check_models()  # in the engine thread
    qtbot.waitUntil(lambda: window.session.engine.flux_status == "missing", timeout=10_000)
    assert window.session.engine.engine == "faithful"
    assert window.engine_combo.currentData() == "faithful"
    assert "missing" in window.engine_combo.itemText(window.engine_combo.findData("flux"))
    texts = window.messages.texts()
    assert len(texts) == 1
    assert str(tmp_path / "no-flux-here") in texts[0]
    assert "FLUX models…" in texts[0]
    # asked again (e.g. a job fails the same way): not said twice
    window.session.check_models()
    window.session.engine.report_missing(
        ModelNotFoundError("FLUX.1-dev model folder", None, [], "")
    )
    qtbot.wait(50)
    assert len([t for t in window.messages.texts() if "FLUX models…" in t]) == 1
    # the fast engine still runs
    (job,) = window.run_selected()
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
    assert job.state is JobState.DONE and job.request.engine == "faithful"


def test_a_flux_job_without_weights_reports_once(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    runner = window.runner  # type: ignore[attr-defined]
    runner.fail_after = 0
    runner.error = ModelNotFoundError(
        "FLUX.1-dev model folder", "black-forest-labs/FLUX.1-dev", ["/x"], "hint"
    )
    window.run_selected()
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
    window.session.engine.set_engine("flux")
    window.run_selected()
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
    texts = window.messages.texts()
    assert len([t for t in texts if "FLUX models…" in t]) == 1
    assert window.isVisible()


def test_no_nvml_means_cpu_mode_without_error(qapp, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    fake = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init() -> None:
        raise NVMLError("NVML Shared Library Not Found")

    fake.nvmlInit = init  # type: ignore[attr-defined]
    fake.NVMLError = NVMLError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monitor = GpuMonitor()
    texts: list[str] = []
    monitor.statusChanged.connect(texts.append)
    monitor.poll()
    monitor.poll()
    assert texts == [NO_GPU_TEXT]
    assert monitor.available is False


def test_gpu_reading_is_formatted(qapp) -> None:  # type: ignore[no-untyped-def]
    class Mem:
        used, total = 6 * 1024**3, 80 * 1024**3

    class FakeNvml:
        NVML_TEMPERATURE_GPU = 0

        class NVMLError(Exception):
            pass

        def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
            return i

        def nvmlDeviceGetName(self, h: int) -> bytes:
            return b"NVIDIA H100 80GB HBM3"

        def nvmlDeviceGetMemoryInfo(self, h: int) -> Mem:
            return Mem()

        def nvmlDeviceGetTemperature(self, h: int, kind: int) -> int:
            return 41

        def nvmlDeviceGetPowerUsage(self, h: int) -> int:
            raise self.NVMLError("not supported")

    reading = read_nvml(FakeNvml())
    assert reading == GpuReading("NVIDIA H100 80GB HBM3", 6 * 1024**3, 80 * 1024**3, 41, None)
    assert format_reading(reading) == "NVIDIA H100 80GB HBM3 · VRAM 6.0/80.0 GiB · 41 °C"


def test_garbage_is_collected_in_the_gui_thread_only(qapp) -> None:  # type: ignore[no-untyped-def]

    from fbupscale_gui.state.gc_guard import GuiThreadGarbageCollector

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    was_enabled = gc.isenabled()
    guard = GuiThreadGarbageCollector()
    guard.start()
    try:
        assert not gc.isenabled()
        for _ in range(gc.get_threshold()[0] + 10):
            Cycle()
        assert gc.get_count()[0] > gc.get_threshold()[0]  # nothing collected automatically
        guard.check()  # what the GUI-thread timer does
        assert gc.get_count()[0] < gc.get_threshold()[0]
    finally:
        guard.stop()
    assert gc.isenabled() == was_enabled
