"""Loading cutouts: files, folders, paste; bad files give one clear message naming the file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage
from PySide6.QtWidgets import QApplication

from fbupscale_gui.state.cutouts import CutoutsModel, decode_paths
from fbupscale_gui.ui.main_window import MainWindow


def write(path: Path, size: tuple[int, int], colour: tuple[int, int, int] = (30, 120, 40)) -> Path:
    img = Image.new("RGB", size, colour)
    img.putpixel((1, 1), (255, 255, 255))
    img.save(path)
    return path


def test_good_and_bad_files(qapp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = write(tmp_path / "player.png", (64, 80))
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    model = CutoutsModel()
    report = model.add_paths([good, bad, empty, tmp_path / "missing.png"])
    assert [c.name for c in report.added] == ["player.png"]
    assert len(report.errors) == 3
    text = report.message()
    assert "Could not load 3 files" in text
    for name in ("notes.png", "empty.jpg", "missing.png"):
        assert name in text
    assert "Traceback" not in text
    index = model.index(0, 0)
    assert index.data(Qt.ItemDataRole.DisplayRole) == "player.png\n64×80 px"
    assert not index.data(Qt.ItemDataRole.DecorationRole).isNull()


def test_folder_duplicates_and_sizes(qapp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "grabs"
    folder.mkdir()
    write(folder / "b.png", (60, 100))
    write(folder / "a.jpg", (90, 70), (200, 10, 10))
    write(folder / "c-copy.png", (60, 100))  # same pixels as b.png
    (folder / "readme.txt").write_text("ignored: not an image suffix")
    model = CutoutsModel()
    report = model.add_paths([folder])
    assert [c.name for c in report.added] == ["a.jpg", "b.png"]
    assert report.duplicates == ["c-copy.png"]
    assert not report.errors
    assert [c.size_text for c in model.cutouts()] == ["90×70 px", "60×100 px"]


def test_decoding_runs_off_the_gui_thread_on_the_asyncio_loop(qapp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "a.png", (64, 64))
    results = decode_paths([path])
    assert results and not isinstance(results[0], Exception)
    model = CutoutsModel()
    report = asyncio.run(model.load_paths([path]))  # asyncio.to_thread under the hood
    assert [c.name for c in report.added] == ["a.png"]


def test_window_shows_one_message_naming_the_bad_file(window: MainWindow, tmp_path: Path) -> None:
    good = write(tmp_path / "keeper.png", (64, 80))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    window.load_paths([str(good), str(bad)])
    assert len(window.session.cutouts) == 1
    texts = window.messages.texts()
    assert len(texts) == 1 and "broken.png" in texts[0]
    # the selected cutout is shown large, nearest-neighbour
    assert window.cutouts.current() is not None
    assert window.cutouts.pixels.image().width() == 64
    assert window.cutouts.pixels.zoom() >= 1


def test_drop_and_paste(window: MainWindow, tmp_path: Path) -> None:
    path = write(tmp_path / "dropped.png", (70, 90))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.cutouts.dropEvent(event)
    assert [c.name for c in window.session.cutouts.cutouts()] == ["dropped.png"]

    image = QImage(48, 64, QImage.Format.Format_RGB888)
    image.fill(0x3366CC)
    QApplication.clipboard().setImage(image)
    window.paste_action.trigger()
    cutouts = window.session.cutouts.cutouts()
    assert len(cutouts) == 2
    pasted = cutouts[1]
    assert (pasted.image.width, pasted.image.height) == (48, 64)
    assert Path(pasted.source.path).exists()  # stored content-addressed, so a request can name it
    assert str(tmp_path / "cache") in pasted.source.path


def test_a_scene_saved_next_to_the_cutout_is_loaded(qapp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from fbupscale_gui.core.scene import Person, Scene

    write(tmp_path / "gk.png", (64, 80))
    scene = Scene(people=(Person(role="goalkeeper", number=99),), action="A low save")
    (tmp_path / "gk.scene.json").write_text(scene.to_json())
    write(tmp_path / "broken.png", (60, 60), (1, 2, 3))
    (tmp_path / "broken.scene.json").write_text("{not json")
    model = CutoutsModel()
    report = model.add_paths([tmp_path])
    assert [c.name for c in report.added] == ["broken.png", "gk.png"]
    gk = report.added[1]
    assert gk.scene == scene and gk.prompt == scene.to_prompt()
    assert report.added[0].scene is None
    assert not report.errors
    assert "broken.scene.json: scene ignored" in report.message()
