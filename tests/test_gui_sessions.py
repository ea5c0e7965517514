"""File ▸ Sessions… in the window: list, open, rename, archive, delete (with confirmation)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtWidgets import QInputDialog, QMessageBox

from fbupscale_gui.storage.session_catalogue import list_sessions
from fbupscale_gui.storage.session_reader import read_snapshot
from fbupscale_gui.storage.session_store import create_session
from fbupscale_gui.ui.main_window import MainWindow
from fbupscale_gui.ui.sessions_dialog import SessionsDialog
from fbupscale_gui.worker.testing import FakeRunner


@pytest.fixture
def sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "sessions"
    monkeypatch.setenv("FBUPSCALE_SESSIONS_DIR", str(root))
    return root


@pytest.fixture
def window(make_window, sessions: Path) -> Iterator[MainWindow]:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    win = make_window(runner=FakeRunner(steps=1, gate=gate), engine="lanczos")
    win.gate = gate
    win.session.new_session("Saturday")
    yield win
    gate.set()


def add_cutout(win: MainWindow, folder: Path, name: str = "a.png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.new("RGB", (40, 40), (200, 30, 30)).save(path)
    win.session.cutouts.add_paths([path])


def names(dialog: SessionsDialog) -> list[str]:
    return [dialog.tree.topLevelItem(i).text(0) for i in range(dialog.tree.topLevelItemCount())]


def select(dialog: SessionsDialog, name: str) -> None:
    for i in range(dialog.tree.topLevelItemCount()):
        item = dialog.tree.topLevelItem(i)
        if item.text(0) == name:
            dialog.tree.setCurrentItem(item)
            item.setSelected(True)
            return
    raise AssertionError(name)


def test_file_menu_has_sessions_and_the_title_names_the_session(window: MainWindow) -> None:
    file_menu = window.menuBar().actions()[0].menu()
    assert window.sessions_action in file_menu.actions()
    assert window.windowTitle().endswith("Saturday")


def test_dialog_lists_opens_renames_and_archives(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    add_cutout(window, tmp_path / "in")
    saturday = window.session.session_path
    other = create_session("Friday")
    dialog = SessionsDialog(window.session, window)
    qtbot.addWidget(dialog)
    assert sorted(names(dialog)) == ["Friday", "Saturday"]
    current = next(
        dialog.tree.topLevelItem(i)
        for i in range(2)
        if dialog.tree.topLevelItem(i).text(0) == "Saturday"
    )
    assert current.text(4) == "open" and current.font(0).bold()

    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Friday night", True))
    select(dialog, "Friday")
    dialog.rename_selected()
    assert "Friday night" in names(dialog)

    select(dialog, "Friday night")
    dialog.archive_selected()
    assert "Friday night" not in names(dialog)  # archived: hidden
    dialog.show_archived.setChecked(True)
    assert "Friday night" in names(dialog)
    assert {i.name: i.archived for i in list_sessions()}["Friday night"]

    select(dialog, "Friday night")
    dialog.open_selected()
    qtbot.waitUntil(lambda: not window.session.is_restoring, timeout=5000)
    assert window.session.session_path == other
    assert len(window.session.cutouts) == 0
    assert window.windowTitle().endswith("Friday night")
    # and back: Saturday's cutout is there again
    window.session.open_session(saturday)
    qtbot.waitUntil(lambda: not window.session.is_restoring, timeout=5000)
    assert [c.name for c in window.session.cutouts.cutouts()] == ["a.png"]


def test_delete_asks_first_and_never_while_the_current_session_runs(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    other = create_session("Friday")
    dialog = SessionsDialog(window.session, window)
    qtbot.addWidget(dialog)
    asked: list[str] = []

    def answer(reply: QMessageBox.StandardButton):  # type: ignore[no-untyped-def]
        def question(_parent, _title, text, *_a, **_k):  # type: ignore[no-untyped-def]
            asked.append(text)
            return reply

        return question

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Cancel))
    select(dialog, "Friday")
    dialog.delete_selected()
    assert asked and "Friday" in asked[0]
    assert other.exists()
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    dialog.delete_selected()
    assert not other.exists()
    assert names(dialog) == ["Saturday"]

    # a running job: the current session can be neither deleted nor left
    add_cutout(window, tmp_path / "in")
    window.session.run(window.session.cutouts.cutouts())
    select(dialog, "Saturday")
    dialog._update_buttons()
    assert not dialog.delete_button.isEnabled()
    assert not dialog.new_button.isEnabled()
    window.gate.set()  # type: ignore[attr-defined]
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
    dialog._update_buttons()
    assert dialog.delete_button.isEnabled()


def test_prompt_edits_in_the_window_are_recorded(qtbot, window: MainWindow, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    add_cutout(window, tmp_path / "in")
    window.cutouts.select_row(0)
    window.scene_editor._prompt_edit.setPlainText("a keeper diving to his left")
    window.editor_sync.store()
    assert window.session.recorder.flush(10)
    folder = window.session.session_path
    assert folder is not None
    row = read_snapshot(folder).cutouts[0]
    assert row.prompt == "a keeper diving to his left"
    assert row.prompt_manual


def test_restored_tiles_show_at_once_and_get_their_images_from_the_loader(
    qtbot, window: MainWindow, tmp_path: Path, sessions: Path
) -> None:  # type: ignore[no-untyped-def]
    from tests.test_sessions import build_stored_session

    folder, _stored, _picks = build_stored_session(sessions, tmp_path)
    session = window.session
    with qtbot.waitSignal(session.imagesRestored, timeout=20_000):
        session.open_session(folder)
        qtbot.waitUntil(lambda: not session.is_restoring, timeout=5000)
        # the grid of the selected cutout is laid out before its images arrive
        assert len(window.candidates.tiles()) == 3
    assert all(not t.image.pixmap().isNull() for t in window.candidates.tiles())
    window.cutouts.select_row(2)
    tiles = window.candidates.tiles()
    assert len(tiles) == 3 and all(not t.image.pixmap().isNull() for t in tiles)
    picked = [t for t in tiles if t.picked]
    assert len(picked) == 1 and picked[0].entry is tiles[-1].entry


def test_the_image_loader_decodes_the_wanted_cutout_first() -> None:
    from PySide6.QtGui import QImage

    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest, SourceRef
    from fbupscale_gui.state.candidates import CandidateEntry, StoredCandidate
    from fbupscale_gui.state.session_restore import ImageLoader

    request = ReconstructionRequest(engine="lanczos", source=SourceRef("a.png", "0" * 64, 8, 8))
    stored = StoredCandidate(CandidateKey(0, False, 2), 1, request, Path("x.png"))
    entries = [
        CandidateEntry(cid, 1, None, None, QImage(), stored=stored) for cid in (1, 1, 2, 2, 3)
    ]
    loader = ImageLoader(1, entries)  # not started: the order is checked by hand
    loader.want(2)
    order = [loader._next() for _ in range(2)]
    loader.want(None)
    order += [loader._next() for _ in range(3)]
    assert [e.cutout_id for e in order if e is not None] == [2, 2, 1, 1, 3]
    assert loader._next() is None


def test_a_restored_tile_shows_its_number_badge_before_its_pixels_are_decoded(qtbot) -> None:  # type: ignore[no-untyped-def]
    """The verdict is in the session index: a relaunch must not drop the tile's badge while
    the image loader has not reached the candidate yet (it did)."""
    from PySide6.QtGui import QImage

    from fbupscale_gui.core.number_check import NumberCheck, badge_text
    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest, SourceRef
    from fbupscale_gui.state.candidates import CandidateEntry, StoredCandidate
    from fbupscale_gui.ui.candidate_tile import CandidateTile

    request = ReconstructionRequest(engine="lanczos", source=SourceRef("a.png", "0" * 64, 8, 8))
    check = NumberCheck("contradicts", expected=(9,), conflict_read="8", conflict_with=9)
    stored = StoredCandidate(
        CandidateKey(0, False, 2), 1, request, Path("x.png"), number_check=check
    )
    entry = CandidateEntry(1, 1, None, None, QImage(), stored=stored)
    assert not entry.is_loaded
    assert entry.number_check == check
    tile = CandidateTile(entry, 1)
    qtbot.addWidget(tile)
    assert tile.number_label.text() == badge_text(check) == "✗ 8≠9"


def test_a_damaged_session_is_listed_as_damaged_and_rebuilt_from_the_dialog(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from fbupscale_gui.storage.session_index import INDEX_NAME

    add_cutout(window, tmp_path / "in")
    saturday = window.session.session_path
    assert saturday is not None and window.session.recorder.flush(10)
    assert window.session.new_session("Friday")
    (saturday / INDEX_NAME).write_bytes(b"")  # e.g. a crash while it was being created
    dialog = SessionsDialog(window.session, window)
    qtbot.addWidget(dialog)
    assert sorted(names(dialog)) == ["Friday", "Saturday"]
    select(dialog, "Saturday")
    item = dialog.tree.currentItem()
    assert item.text(4) == "damaged" and "empty" in item.toolTip(4)
    assert dialog.damage_label.isVisibleTo(dialog) and "empty" in dialog.damage_label.text()
    assert not dialog.open_button.isEnabled() and dialog.rebuild_button.isEnabled()
    friday = window.session.session_path
    dialog.open_selected()  # a double click: not opened, nothing new made
    assert window.session.session_path == friday and len(list_sessions()) == 2
    dialog.rebuild_selected()
    qtbot.waitUntil(lambda: not window.session.is_restoring, timeout=5000)
    assert window.session.session_path == saturday
    assert len(window.session.cutouts) == 1
    assert not next(i for i in list_sessions() if i.path == saturday).damaged
