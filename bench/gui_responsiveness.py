"""GUI-thread responsiveness while a job runs: a 10 ms heartbeat QTimer in the GUI thread.

The real window (offscreen) runs a real job twice (cold: the engine imports diffusers/loads
weights; warm: already loaded) -- two-stage FLUX on the tiny random models from
``fbupscale_gui.engine.testing`` and/or Real-ESRGAN x4plus (ncnn, CPU) on a sample cutout --
while a 10 ms timer records when it actually fires. A stall is the time between two beats
beyond the 10 ms period. Each engine runs both ways, side by side: in the engine process (the
window's path) and in a thread of the window's process (the old path). Prints worst and p99
stall (targets: worst <= 50 ms, p99 <= 20 ms). No asserts.

    .venv/bin/python bench/gui_responsiveness.py [--engine flux-tiny|realesrgan|all]
        [--path process|thread|both]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PERIOD_MS = 10

from PySide6.QtWidgets import QApplication  # noqa: E402

from fbupscale_gui.ui.main_window import MainWindow  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def measure(app: QApplication, window: MainWindow, label: str) -> None:
    """Run the selected cutout once with a 10 ms heartbeat; print the stalls."""
    from PySide6.QtCore import QElapsedTimer, Qt, QTimer

    clock = QElapsedTimer()
    beats: list[float] = []
    heartbeat = QTimer()
    heartbeat.setTimerType(Qt.TimerType.PreciseTimer)
    heartbeat.setInterval(PERIOD_MS)
    heartbeat.timeout.connect(lambda: beats.append(clock.nsecsElapsed() / 1e6))
    events: list[tuple[float, str]] = [(0.0, "queued")]
    window.session.jobs.progressed.connect(
        lambda _job, info: events.append((clock.nsecsElapsed() / 1e6, info.text))
    )
    clock.start()
    heartbeat.start()
    started = time.perf_counter()
    (job,) = window.run_selected()
    while window.session.jobs.is_busy() and time.perf_counter() - started < 600:
        app.processEvents()
        time.sleep(0.001)
    heartbeat.stop()
    elapsed = time.perf_counter() - started
    stalls = [max(0.0, b - a - PERIOD_MS) for a, b in itertools.pairwise(beats)]
    worst = max(stalls, default=0.0)
    worst_at = beats[stalls.index(worst)] if stalls else 0.0
    during = [text for t, text in events if t <= worst_at][-1:] or ["?"]
    print(
        f"{label:16s} job {job.state.value} in {elapsed:5.1f} s, {job.candidates} candidate(s), "
        f"{len(beats):5d} beats: worst stall {worst:6.1f} ms, p99 {percentile(stalls, 99):5.1f} ms, "
        f"median {statistics.median(stalls or [0]):4.1f} ms"
    )
    print(f"{'':16s} worst stall at {worst_at / 1000:.2f} s, after: {during[0]}")


def run_case(
    name: str, settings: dict[str, str], params: dict[str, object], workdir: Path, path: str
) -> None:
    from PySide6.QtCore import QSettings

    from fbupscale_gui.state.session import Session
    from fbupscale_gui.state.settings_model import SettingsModel
    from fbupscale_gui.worker.engine_thread import default_runner_factory

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(["bench"])
    store = QSettings(str(workdir / f"{name}-{path}.ini"), QSettings.Format.IniFormat)
    model = SettingsModel(store)
    model.update(export_dir=str(workdir / "exports"), **settings)
    factory = default_runner_factory if path == "thread" else None
    window = MainWindow(Session(model, runner_factory=factory))
    window.confirm_on_close = False
    window.show()
    window.session.cutouts.add_paths([ROOT / "resources" / "samples" / "gk_save.png"])
    engine = str(params.pop("engine"))
    window.session.engine.set_engine(engine)
    base = window.session.build_request(window.session.cutouts.at(0))
    window.session.params.set_from(base.replace(**params))

    for run in ("cold", "warm"):  # cold: the engine loads (imports, weights); warm: loaded
        measure(app, window, f"{name} {path[:7]} {run}")
    window.close()
    window.session.shutdown(30_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["flux-tiny", "realesrgan", "all"], default="all")
    parser.add_argument("--path", choices=["process", "thread", "both"], default="both")
    args = parser.parse_args()
    paths = ["process", "thread"] if args.path == "both" else [args.path]
    print(f"heartbeat {PERIOD_MS} ms in the GUI thread; targets: worst <= 50 ms, p99 <= 20 ms")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["FBUPSCALE_CACHE_DIR"] = str(work / "cache")
        if args.engine in ("realesrgan", "all"):
            for path in paths:
                run_case("realesrgan", {}, {"engine": "realesrgan"}, work, path)
        if args.engine in ("flux-tiny", "all"):
            from fbupscale_gui.core.request import Preprocess, Stage1Params, Stage2Params
            from fbupscale_gui.engine.testing import make_tiny_flux_files

            tiny = make_tiny_flux_files(work / "tiny")
            for path in paths:
                run_case(
                    "flux-tiny",
                    {
                        "flux_dir": str(tiny.flux_dir),
                        "controlnet_dir": str(tiny.controlnet_dir),
                        "lora_path": str(tiny.lora_diffusers),
                    },
                    {
                        "engine": "flux",
                        "variants": 1,
                        "preprocess": Preprocess(size=128),
                        "stage1": Stage1Params(steps=12, strength=0.75),
                        "stage2": Stage2Params(steps=6),
                    },
                    work,
                    path,
                )


if __name__ == "__main__":
    main()
