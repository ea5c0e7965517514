"""Kit presets: the shipped file, load/save round trip, merging a user file, strict errors."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.scene import Kit, Person, Scene
from fbupscale_gui.storage import kits as kits_module
from fbupscale_gui.storage.kits import (
    KITS_FILE_FORMAT,
    KITS_SCHEMA_VERSION,
    KitPreset,
    default_kits_path,
    find_preset,
    load_kits,
    merge_kits,
    resources_dir,
    save_kits,
)


def test_shipped_kits_load_with_traditional_home_colours() -> None:
    presets = load_kits()
    names = [p.name for p in presets]
    assert len(presets) >= 20
    assert sum(not n.startswith("Generic") for n in names) >= 12
    assert any(n.startswith("Generic red") for n in names)
    milan = find_preset(presets, "a.c. milan")
    assert milan is not None
    assert milan.home.describe() == "a red and black striped jersey with white shorts"
    inter = find_preset(presets, "Inter Milan")
    assert inter is not None
    assert inter.home.describe() == "a black and blue striped jersey with black shorts"
    juve = find_preset(presets, "Juventus")
    assert juve is not None
    assert juve.home.describe() == "a black and white striped jersey with white shorts"
    assert all(p.away is not None for p in presets)
    note = json.loads(default_kits_path().read_text(encoding="utf-8"))["note"]
    assert "change every season" in note


def test_preset_to_scene_team() -> None:
    milan = find_preset(load_kits(), "A.C. Milan")
    assert milan is not None
    assert milan.kit_types == ("home", "away")
    home = Scene(teams=(milan.team("home"),), people=(Person("player", team=0),))
    away = Scene(teams=(milan.team("away"),), people=(Person("player", team=0),))
    assert "A.C. Milan" in home.to_prompt()
    assert "A.C. Milan" not in away.to_prompt()
    with pytest.raises(RequestError, match="has no third kit"):
        milan.team("third")


def test_save_load_round_trip(tmp_path: Path) -> None:
    presets = (
        KitPreset("Club A", Kit("red", "white", accents="white sleeves")),
        KitPreset(
            "Club B",
            Kit("green and white", "white", pattern="hooped"),
            Kit("black", "black"),
            Kit("orange", ""),
        ),
    )
    path = tmp_path / "sub" / "kits.json"
    save_kits(presets, path)
    assert load_kits(path) == presets
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == KITS_FILE_FORMAT and data["version"] == KITS_SCHEMA_VERSION
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["kits.json"]  # no temp left
    # saving again replaces the file atomically
    save_kits(presets[:1], path)
    assert load_kits(path) == presets[:1]


def test_shipped_file_survives_a_save_round_trip(tmp_path: Path) -> None:
    presets = load_kits()
    save_kits(presets, tmp_path / "kits.json")
    assert load_kits(tmp_path / "kits.json") == presets


def test_failed_save_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "kits.json"
    save_kits((KitPreset("Old", Kit("red", "red")),), path)

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(RequestError, match=r"kits\.json: cannot write"):
        save_kits((KitPreset("New", Kit("blue", "blue")),), path)
    monkeypatch.undo()
    assert [p.name for p in load_kits(path)] == ["Old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kits.json"]


def test_user_file_extends_the_shipped_one(tmp_path: Path) -> None:
    user = tmp_path / "my_kits.json"
    save_kits(
        (
            KitPreset(
                "Inter Milan",
                Kit("black and blue", "black", pattern="striped"),
                Kit("yellow", "yellow"),
            ),
            KitPreset("Local FC", Kit("purple", "white")),
        ),
        user,
    )
    shipped = load_kits()
    merged = load_kits(extend=user)
    assert len(merged) == len(shipped) + 1
    assert merged[-1].name == "Local FC"
    inter = find_preset(merged, "inter milan")
    assert inter is not None and inter.away == Kit("yellow", "yellow")
    assert [p.name for p in merged][: len(shipped)] == [p.name for p in shipped]
    # a user file that does not exist yet is fine
    assert load_kits(extend=tmp_path / "missing.json") == shipped
    assert merge_kits(shipped, ()) == shipped


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _valid() -> dict[str, Any]:
    return {
        "format": KITS_FILE_FORMAT,
        "version": 1,
        "note": "",
        "teams": [{"name": "A", "home": {"jersey": "red", "shorts": "red"}, "away": None}],
    }


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(extra=1), r"unknown field\(s\) \['extra'\]"),
        (lambda d: d.update(format="other"), "format: must be 'fbupscale-kits'"),
        (lambda d: d.update(version=99), "version: written by a newer fbupscale"),
        (lambda d: d.pop("version"), "version: missing"),
        (lambda d: d.update(teams={}), "teams: expected a list"),
        (lambda d: d["teams"][0].update(colour="red"), r"teams\[0\]: unknown field\(s\)"),
        (lambda d: d["teams"][0].update(name=""), r"teams\[0\]\.name: must not be empty"),
        (lambda d: d["teams"][0].pop("home"), r"teams\[0\]: missing field\(s\) \['home'\]"),
        (
            lambda d: d["teams"][0]["home"].update(jersey=3),
            r"teams\[0\]\.home\.jersey: expected a string",
        ),
        (
            lambda d: d["teams"][0]["home"].update(jersey=" "),
            r"teams\[0\]\.home\.jersey: must not be empty",
        ),
        (lambda d: d["teams"].append(d["teams"][0]), r"teams\[1\]\.name: duplicate team 'A'"),
    ],
)
def test_bad_files_name_the_file_and_field(tmp_path: Path, mutate: Any, message: str) -> None:
    data = _valid()
    mutate(data)
    path = _write(tmp_path / "kits.json", data)
    with pytest.raises(RequestError, match=rf"^{re.escape(str(tmp_path))}.*kits\.json: {message}"):
        load_kits(path)


def test_valid_minimal_file_loads(tmp_path: Path) -> None:
    (preset,) = load_kits(_write(tmp_path / "kits.json", _valid()))
    assert preset == KitPreset("A", Kit("red", "red"))


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match=r"nope\.json: kits file not found"):
        load_kits(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(RequestError, match=r"broken\.json: not valid JSON"):
        load_kits(broken)
    with pytest.raises(RequestError, match=r"list\.json: expected a JSON object"):
        load_kits(_write(tmp_path / "list.json", []))


def test_resources_dir_prefers_the_checkout_then_the_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resources_dir() == Path(kits_module.__file__).resolve().parents[2] / "resources"
    assert default_kits_path().is_file()
    fake_module = tmp_path / "site" / "fbupscale_gui" / "core" / "kits.py"
    monkeypatch.setattr(kits_module, "__file__", str(fake_module))
    monkeypatch.setenv("FBUPSCALE_RESOURCES", str(tmp_path / "res"))
    assert resources_dir() == tmp_path / "res"
    monkeypatch.delenv("FBUPSCALE_RESOURCES")
    with pytest.raises(RequestError, match="FBUPSCALE_RESOURCES is not set"):
        resources_dir()
