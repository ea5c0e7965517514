"""The video frame view on the shared viewport: fit, stepped zoom about the cursor, pan, pixels."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage, QWheelEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from fbupscale_gui.ui.frame_view import ZOOM_STEPS, FrameView


def _checker(w: int, h: int) -> QImage:
    image = QImage(w, h, QImage.Format.Format_RGB32)
    for y in range(h):
        for x in range(w):
            image.setPixelColor(x, y, QColor("#ffffff" if (x + y) % 2 else "#000000"))
    return image


@pytest.fixture
def view(qtbot: QtBot) -> FrameView:
    frame = FrameView()
    qtbot.addWidget(frame)
    frame.resize(640, 360)
    frame.show()
    qtbot.waitExposed(frame)
    frame.set_image(_checker(160, 90))
    return frame


def _wheel(view: FrameView, at: QPointF, notches: int) -> None:
    event = QWheelEvent(
        at,
        view.mapToGlobal(at),
        QPoint(0, 0),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view, event)


def test_a_new_frame_is_fitted_and_stays_fitted_when_resized(view: FrameView, qtbot: QtBot) -> None:
    assert view.fit_mode and view.zoom() == pytest.approx(4.0)  # 160x90 in 640x360
    assert view.image_rect().width() == pytest.approx(640.0)
    view.resize(320, 360)
    qtbot.waitUntil(lambda: view.width() == 320)
    assert view.fit_mode and view.zoom() == pytest.approx(2.0)
    rect = view.image_rect()
    assert rect.width() == pytest.approx(320.0) and rect.center().y() == pytest.approx(180.0)


def test_the_wheel_steps_the_zoom_about_the_cursor(view: FrameView) -> None:
    cursor = QPointF(200.0, 120.0)
    under = view.to_source(cursor)
    _wheel(view, cursor, 1)
    assert view.zoom() == ZOOM_STEPS[ZOOM_STEPS.index(4.0) + 1] and not view.fit_mode
    after = view.to_source(cursor)
    assert after.x() == pytest.approx(under.x(), abs=0.5)
    assert after.y() == pytest.approx(under.y(), abs=0.5)
    _wheel(view, cursor, -1)
    _wheel(view, cursor, -1)
    assert view.zoom() == 3.0


def test_right_drag_pans_and_double_click_fits(view: FrameView, qtbot: QtBot) -> None:
    view.set_zoom(8.0)
    before = view.image_rect()
    qtbot.mousePress(view, Qt.MouseButton.RightButton, pos=QPoint(300, 200))
    qtbot.mouseMove(view, QPoint(260, 170))
    qtbot.mouseRelease(view, Qt.MouseButton.RightButton, pos=QPoint(260, 170))
    after = view.image_rect()
    assert after.left() - before.left() == pytest.approx(-40.0, abs=1.0)
    assert after.top() - before.top() == pytest.approx(-30.0, abs=1.0)
    assert view.rect_px() is None  # a pan draws no region
    qtbot.mouseDClick(view, Qt.MouseButton.LeftButton, pos=QPoint(300, 200))
    assert view.fit_mode and view.zoom() == pytest.approx(4.0)


def test_zoom_counts_logical_pixels(view: FrameView, monkeypatch: pytest.MonkeyPatch) -> None:
    # the compare view's 1:1 is one image pixel per device pixel; the frame view's steps are
    # logical, so 100 % is the same size on every display
    monkeypatch.setattr(view, "devicePixelRatioF", lambda: 2.0)
    view.set_zoom(1.0)
    assert view.image_rect().width() == pytest.approx(160.0)


def test_magnified_pixels_are_not_blended(view: FrameView) -> None:
    view.set_zoom(12.0)
    shot = view.grab().toImage()
    rect = view.image_rect().toAlignedRect().intersected(shot.rect()).adjusted(3, 40, -3, -3)
    colours = {
        shot.pixelColor(x, y).name()
        for y in range(rect.top(), rect.bottom(), 5)
        for x in range(rect.left(), rect.right(), 5)
    }
    assert colours == {"#000000", "#ffffff"}, "magnified pixels must not be blended"
