"""Layering: importing (and showing) the whole UI never loads torch or diffusers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
import json, os, pkgutil, importlib, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import fbupscale_gui.app
import fbupscale_gui.ui, fbupscale_gui.state, fbupscale_gui.worker
names = []
for pkg in (fbupscale_gui.ui, fbupscale_gui.state, fbupscale_gui.worker):
    for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(info.name)
        names.append(info.name)
from PySide6.QtWidgets import QApplication
from PySide6.QtCore import QSettings
app = QApplication([])
from fbupscale_gui.state.session import Session
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.ui.main_window import MainWindow
settings = SettingsModel(QSettings(sys.argv[1], QSettings.Format.IniFormat))
window = MainWindow(Session(settings))
window.show()
app.processEvents()
heavy = sorted(m for m in ("torch", "diffusers", "transformers", "peft", "ncnn", "onnxruntime") if m in sys.modules)
window.confirm_on_close = False
window.close()
print(json.dumps({"modules": names, "heavy": heavy}))
"""


def _last_line(script: str, *args: str) -> str:
    """The last line ``script`` prints in a fresh interpreter (which must succeed)."""
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_whole_ui_imports_without_torch_or_diffusers(tmp_path: Path) -> None:
    result = json.loads(_last_line(_SCRIPT, str(tmp_path / "s.ini")))
    assert "fbupscale_gui.ui.main_window" in result["modules"]
    assert "fbupscale_gui.state.session" in result["modules"]
    assert result["heavy"] == []


@pytest.mark.slow
def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run(
        [str(lint)], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _contracts() -> list[dict[str, Any]]:
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["tool"]["importlinter"]["contracts"])


def test_the_command_line_is_the_top_layer_and_never_imports_qt() -> None:
    contracts = _contracts()
    (layers,) = [c for c in contracts if c["type"] == "layers"]
    assert layers["layers"][0] == "fbupscale_gui.cli"
    forbidding_qt = [
        c
        for c in contracts
        if c["type"] == "forbidden"
        and "fbupscale_gui.cli" in c["source_modules"]
        and "PySide6" in c["forbidden_modules"]
    ]
    assert forbidding_qt and not any(c.get("ignore_imports") for c in forbidding_qt)


def test_every_command_line_module_loads_without_qt_or_torch() -> None:
    script = (
        "import importlib, pkgutil, sys\n"
        "import fbupscale_gui.cli as cli\n"
        "for info in pkgutil.iter_modules(cli.__path__, cli.__name__ + '.'):\n"
        "    if info.name != 'fbupscale_gui.cli.__main__':\n"
        "        importlib.import_module(info.name)\n"
        "from fbupscale_gui.cli.entry import build_parser\n"
        "build_parser()\n"
        "print(sorted(m for m in ('PySide6', 'qasync', 'torch', 'ray') if m in sys.modules))\n"
    )
    assert _last_line(script) == "[]"
