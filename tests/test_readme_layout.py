"""The README's layout section names the tree as it is, and the layers it states are the ones
import-linter enforces."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fbupscale_gui"


def _layout_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Layout")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _table_paths(section: str) -> list[str]:
    return re.findall(r"^\| `([^`]+)`", section, flags=re.MULTILINE)


def test_every_path_in_the_layout_table_exists() -> None:
    paths = _table_paths(_layout_section())
    assert paths, "the README's layout section has no table of paths"
    missing = [p for p in paths if not (ROOT / p.split(",")[0].strip()).exists()]
    assert missing == [], f"README names paths that are not in the tree: {missing}"


def test_every_package_and_top_level_module_is_in_the_layout_table() -> None:
    named = {p.rstrip("/") for p in _table_paths(_layout_section())}
    packages = {
        f"fbupscale_gui/{d.name}"
        for d in PACKAGE.iterdir()
        if d.is_dir() and (d / "__init__.py").exists()
    }
    modules = {
        f"fbupscale_gui/{f.name}"
        for f in PACKAGE.glob("*.py")
        if f.name not in {"__init__.py", "__main__.py"}
    }
    assert packages - named == set(), f"packages missing from the README: {packages - named}"
    assert modules - named == set(), f"modules missing from the README: {modules - named}"


def test_the_readme_states_the_enforced_layers_in_order() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    chain = " → ".join(name.removeprefix("fbupscale_gui.") for name in layers)
    assert f"`{chain}`" in _layout_section()
