"""Paths read from untrusted files stay inside their folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from fbupscale_gui.storage.paths import PathEscapeError, contained


def test_plain_name_resolves_inside(tmp_path: Path) -> None:
    assert contained(tmp_path, "a/b.png", "entry") == (tmp_path / "a" / "b.png").resolve()


@pytest.mark.parametrize(
    "rel", ["/etc/passwd", "../x", "a/../../x", "..\\x", "C:\\x", "", "a\0b", "\\\\host\\share"]
)
def test_escapes_are_refused_naming_the_entry(tmp_path: Path, rel: str) -> None:
    with pytest.raises(PathEscapeError, match="index entry 'x4'"):
        contained(tmp_path, rel, "index entry 'x4'")


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path, root / "link")
    with pytest.raises(PathEscapeError, match="symbolic link"):
        contained(root, "link/secret", "row 3")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG folders are Linux's")
def test_the_app_folders_follow_xdg_and_their_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fbupscale_gui.storage.session_catalogue import sessions_dir
    from fbupscale_gui.storage.weights import user_cache_dir
    from fbupscale_gui.storage.weights_library import models_dir

    for env in ("FBUPSCALE_SESSIONS_DIR", "FBUPSCALE_MODELS_DIR", "FBUPSCALE_CACHE_DIR"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert sessions_dir() == tmp_path / "data" / "fbupscale" / "sessions"
    assert models_dir() == tmp_path / "data" / "fbupscale" / "models"
    assert user_cache_dir() == tmp_path / "cache" / "fbupscale"
    monkeypatch.setenv("FBUPSCALE_MODELS_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", " ")  # blank: the default
    assert models_dir() == tmp_path / "mine"
    assert user_cache_dir() == tmp_path / "cache" / "fbupscale"
