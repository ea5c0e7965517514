"""Paths read from untrusted files stay inside their folder."""

from __future__ import annotations

import os
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
