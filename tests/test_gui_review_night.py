"""A review night without surprises: the window as an operator meets it.

The video region starts where the operator presses, the window fits common screens in every
state, a new cutout inherits only what carries over, banners don't pile up, and every engine
describes itself truthfully.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtTest import QTest

from fbupscale_gui.models.session import Session
from fbupscale_gui.models.settings_model import SettingsModel
from fbupscale_gui.ui.main_window import MainWindow
from fbupscale_gui.worker.testing import FakeRunner


@pytest.fixture
def window(qtbot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(tmp_path / "cache"))
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    session = Session(SettingsModel(store), runner_factory=FakeRunner)
    win = MainWindow(session)
    win.confirm_on_close = False
    win.show()
    yield win
    win.close()
    del win
    gc.collect()  # cyclic garbage freed in the GUI thread (see models.gc_guard)


# -- B: the video region starts at the pressed pixel ------------------------------------------


def _full_hd_clip(path: Path) -> Path:
    av = pytest.importorskip("av")
    out = av.open(str(path), "w", format="mp4")
    stream = out.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
    for i in range(2):
        img = np.zeros((1080, 1920, 3), np.uint8)
        img[:, :, 0] = (np.arange(1920) % 256).astype(np.uint8)
        img[:, :, 1] = 40 * i
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


@pytest.mark.parametrize("size", [(1920, 1050), (1366, 740)])
def test_region_starts_at_the_pressed_pixel_at_three_zooms(qtbot, window, tmp_path, size) -> None:  # type: ignore[no-untyped-def]
    clip = _full_hd_clip(tmp_path / "match.mp4")
    video = window.video_window
    video.resize(*size)
    with qtbot.waitSignal(video.clip.opened, timeout=20_000):
        window.show_clip(str(clip))
    qtbot.waitUntil(lambda: not video.view.image().isNull(), timeout=20_000)
    view = video.view
    press, end = QPoint(301, 203), QPoint(349, 251)
    for zoom in (None, 1.0, 4.0):  # fit (below 1x here), 1:1 and 4x
        view.set_rect(None)
        view.set_zoom(zoom)
        qtbot.wait(20)
        size_before, zoom_before = view.size(), view.zoom()
        seen = view.to_source(press)  # the pixel under the pointer as the operator sees it
        QTest.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, press)
        QTest.mouseMove(view, end)
        qtbot.wait(20)  # layouts settle while the button is down
        QTest.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
        qtbot.wait(20)
        rect = view.rect_px()
        assert rect is not None
        # drawing a region never moves or rescales the frame
        assert view.size() == size_before, zoom
        assert view.zoom() == pytest.approx(zoom_before), zoom
        # the first corner is the pressed pixel, within 1 px, and still under the pointer
        assert (rect[0], rect[1]) == (math.floor(seen.x()), math.floor(seen.y())), zoom
        now = view.to_source(press)
        assert abs(now.x() - rect[0]) <= 1 and abs(now.y() - rect[1]) <= 1, zoom


# -- D: a new cutout inherits only teams/kits and stadium -------------------------------------


def test_a_new_cutout_inherits_only_teams_and_stadium(qtbot, window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from fbupscale_gui.core.scene import Kit, Person, Scene, Team

    first = tmp_path / "box.png"
    Image.new("RGB", (64, 80), (30, 120, 40)).save(first)
    window.session.cutouts.add_paths([first])
    qtbot.waitUntil(lambda: window.cutouts.current() is not None, timeout=5000)
    teams = (
        Team("Rovers", "home", Kit(jersey="red", shorts="white")),
        Team("", "away", Kit(jersey="blue", shorts="blue")),
    )
    busy = Scene(
        people=(
            Person(role="player", team=0, number=7, number_visible=True, action="shooting"),
            Person(role="player", team=1),
            Person(role="referee"),
        ),
        teams=teams,
        action="Three players contest the ball",
        spatial=("Player number 7 is near the edge of the penalty box",),
        stadium="full",
    )
    window.scene_editor.model().set_scene(busy)
    window.scene_editor.model().set_manual_prompt("A hand-written prompt about #7")

    # a cutout sent from elsewhere (the video window, a paste) becomes the current one
    report = window.session.cutouts.add_image(Image.new("RGB", (60, 90), (200, 10, 10)), "sent")
    second = report.added[0]
    window.cutouts.select_row(window.session.cutouts.row_of(second.id))
    assert window.cutouts.current() is second
    scene = window.scene_editor.scene()
    assert scene.teams == teams and scene.stadium == "full"
    assert scene.people == () and scene.action == "" and scene.spatial == ()
    prompt = window.scene_editor.prompt()
    assert not window.scene_editor.is_prompt_manual()
    for word in ("7", "referee", "penalty box", "contest", "hand-written"):
        assert word not in prompt, word
    assert second.scene == scene and second.prompt == prompt
