"""The real entry point (``fbupscale-gui PATHS``) in a subprocess: progressive start, the
qasync loop attached to the running Qt loop, cutouts loaded off the GUI thread, clean exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
import json, sys, threading
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from fbupscale_gui.app import main
from fbupscale_gui.ui.main_window import MainWindow

seen = {}

def poll():
    windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
    session = getattr(windows[0], "session", None) if windows else None
    if session is None or len(session.cutouts) < 5:
        QTimer.singleShot(20, poll)
        return
    w = windows[0]
    seen.update(
        title=w.windowTitle(),
        cutouts=[c.name for c in session.cutouts.cutouts()],
        prompt=session.cutouts.cutouts()[0].prompt,
        gpu=w.gpu_label.text(),
        heavy=sorted(m for m in ("torch", "diffusers") if m in sys.modules),
        hooks=[type(getattr(h, "__self__", None)).__name__
               for h in (sys.excepthook, threading.excepthook)],
    )
    w.confirm_on_close = False
    w.close()

QTimer.singleShot(0, poll)
status = main([sys.argv[1]])
seen["status"] = status
print(json.dumps(seen))
"""


@pytest.mark.slow
def test_entry_point_loads_paths_and_exits_cleanly(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path), FBUPSCALE_LOG="WARNING")
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(ROOT / "resources" / "samples")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["status"] == 0
    assert seen["title"].startswith("fbupscale")
    assert seen["cutouts"] == ["box.png", "corner.png", "duel.png", "gk_save.png", "striker.png"]
    assert seen["prompt"]  # box.scene.json, loaded next to the cutout
    assert seen["gpu"]  # "No NVIDIA GPU — CPU mode" here, a reading on a GPU machine
    assert seen["heavy"] == []
    assert seen["hooks"] == ["ErrorChannel", "ErrorChannel"]  # slot and thread errors shown
    assert "Traceback" not in out.stderr
