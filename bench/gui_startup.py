"""Time from launch to the window shown: fbupscale-gui against a bare PySide6 QMainWindow.

Both are measured the same way, in fresh subprocesses, alternating, several repeats: the wall
time from spawning ``python`` to the window's first paint event ("shown"). fbupscale-gui starts
progressively (the window first, then models and panes on the next loop turn), so the time to
"ready" (panes built and usable) is printed too. Prints medians and ratios (target <= 1.3x for
"shown"). No asserts.

    .venv/bin/python bench/gui_startup.py [--repeats 7] [--platform offscreen]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BARE = """
import time
t0 = time.perf_counter()
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(["bare"])
w = QMainWindow()
w.setWindowTitle("bare")
w.resize(1600, 960)
class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            w.removeEventFilter(self)
            print(f"shown {time.perf_counter() - t0:.4f}", flush=True)
            w.close()
        return False
f = FirstPaint()
w.installEventFilter(f)
w.show()
app.exec()
"""

APP = "import sys; from fbupscale_gui.app import main; sys.exit(main([]))"


def launch(code: str, env: dict[str, str]) -> tuple[float, float, float]:
    """Seconds from spawn to the window's first paint ("shown"), the child's own seconds to
    it, and seconds from spawn to the panes built and usable ("ready"; bare: = shown)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    wall = inner = ready = float("nan")
    for line in proc.stdout:
        if line.startswith("shown"):
            wall = time.perf_counter() - start
            inner = float(line.split()[1])
        elif line.startswith("ready"):
            ready = time.perf_counter() - start
    proc.wait(timeout=60)
    return wall, inner, ready if ready == ready else wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--platform", default="offscreen", help="QT_QPA_PLATFORM (xcb with DISPLAY)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ)
        # An installed app has its bytecode cached; a machine that sets PYTHONDONTWRITEBYTECODE
        # would recompile every module at each launch and time the compiler, not the app.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            PYTHONPYCACHEPREFIX=str(Path(home) / "pycache"),
            QT_QPA_PLATFORM=args.platform,
            XDG_CONFIG_HOME=str(Path(home) / "config"),  # fresh settings: no saved geometry
            FBUPSCALE_CACHE_DIR=str(Path(home) / "cache"),
            FBUPSCALE_SESSIONS_DIR=str(Path(home) / "sessions"),
            FBUPSCALE_MODELS_DIR=str(Path(home) / "models"),
            FBUPSCALE_QUIT_WHEN_SHOWN="1",
            FBUPSCALE_LOG="WARNING",
        )
        launch(BARE, env)  # warm the file cache for both
        launch(APP, env)
        bare: list[tuple[float, float, float]] = []
        app: list[tuple[float, float, float]] = []
        for _ in range(args.repeats):
            bare.append(launch(BARE, env))
            app.append(launch(APP, env))

    def med(xs: list[tuple[float, float, float]], i: int) -> float:
        return statistics.median(x[i] for x in xs)

    print(f"platform {args.platform}, {args.repeats} repeats each, alternating, medians:")
    print(
        f"  bare QMainWindow : {med(bare, 0) * 1000:7.0f} ms from spawn ({med(bare, 1) * 1000:.0f} ms in-process)"
    )
    print(
        f"  fbupscale-gui    : {med(app, 0) * 1000:7.0f} ms from spawn ({med(app, 1) * 1000:.0f} ms in-process)"
    )
    print(f"  ratio shown      : {med(app, 0) / med(bare, 0):.2f}x (target <= 1.3x)")
    print(
        f"  fbupscale ready  : {med(app, 2) * 1000:7.0f} ms from spawn "
        f"(panes built and usable; {med(app, 2) / med(bare, 0):.2f}x the bare window)"
    )
    print(f"  all app runs (ms): {[round(r[0] * 1000) for r in app]}")


if __name__ == "__main__":
    main()
