"""The scene editor, parameters panel, compare view and theme, offscreen with pytest-qt."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage, QWheelEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from fbupscale_gui.core.scene import Kit, Person, Scene, Team
from fbupscale_gui.state.scene_model import SceneModel, colour_swatches
from fbupscale_gui.storage.kits import KitPreset, load_kits
from fbupscale_gui.ui import theme
from fbupscale_gui.ui.compare_view import CompareView
from fbupscale_gui.ui.params_panel import ParamsPanel
from fbupscale_gui.ui.scene_editor import SceneEditor

ROOT = Path(__file__).resolve().parents[1]

MILAN = KitPreset(
    name="A.C. Milan",
    home=Kit(jersey="red and black", shorts="white", pattern="striped"),
    away=Kit(jersey="white", shorts="white", accents="red and black"),
)
INTER = KitPreset(
    name="Inter Milan",
    home=Kit(jersey="black and blue", shorts="black", pattern="striped"),
    away=Kit(jersey="white", shorts="white", accents="black and blue"),
)
PRESETS = (MILAN, INTER)


@pytest.fixture
def editor(qtbot: QtBot) -> SceneEditor:
    widget = SceneEditor(model=SceneModel(presets=PRESETS))
    qtbot.addWidget(widget)
    widget.resize(440, 900)
    return widget


def _checker(w: int, h: int, a: str = "#000000", b: str = "#ffffff") -> QImage:
    """A one-pixel checkerboard of colours ``a`` and ``b``."""
    ca, cb = QColor(a), QColor(b)
    rgb = (
        bytes((ca.red(), ca.green(), ca.blue())),
        bytes((cb.red(), cb.green(), cb.blue())),
    )
    data = b"".join(rgb[(x + y) % 2] for y in range(h) for x in range(w))
    return QImage(data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


# -- scene model and editor -------------------------------------------------------------


def test_visible_number_appears_and_hidden_number_does_not(
    editor: SceneEditor, qtbot: QtBot
) -> None:
    model = editor.model()
    model.add_team(MILAN.team("home"))
    with qtbot.waitSignal(editor.promptChanged):
        qtbot.mouseClick(editor._add_person, Qt.MouseButton.LeftButton)
    card = editor._person_cards[0]
    card.number.setValue(9)
    assert "9" not in editor.prompt(), "a number not marked visible must stay out of the prompt"
    card.visible.setChecked(True)
    assert "number 9" in editor.prompt()
    assert editor.scene().people[0] == Person(role="player", team=0, number=9, number_visible=True)
    card.visible.setChecked(False)
    assert "9" not in editor.prompt()
    assert editor.scene().people[0].number == 9  # kept for when it is shown again


def test_number_visible_needs_a_number(editor: SceneEditor) -> None:
    editor.model().add_person()
    card = editor._person_cards[0]
    assert not card.visible.isEnabled(), "no number yet: 'visible' cannot be ticked"
    card.number.setValue(7)
    assert card.visible.isEnabled()
    card.visible.setChecked(True)
    card.number.setValue(-1)  # back to "none"
    assert editor.scene().people[0].number is None
    assert not editor.scene().people[0].number_visible
    assert not card.visible.isChecked()


def test_kit_preset_fills_colours_and_kit_type(editor: SceneEditor) -> None:
    editor.model().add_team()
    card = editor._team_cards[0]
    card.preset.setCurrentIndex(card.preset.findData("A.C. Milan"))
    card.preset.activated.emit(card.preset.currentIndex())
    assert editor.scene().teams[0] == MILAN.team("home")
    assert card.jersey.text() == "red and black"
    assert [c.name() for c in card.jersey_swatch.colours()] == [
        QColor("#d62828").name(),
        QColor("#111111").name(),
    ]
    prompt = editor.prompt()
    editor.model().add_person()
    prompt = editor.prompt()
    assert "A.C. Milan" in prompt and "red and black striped jersey with white shorts" in prompt

    # the away kit takes the preset's away colours and drops the team name (paper rule)
    card.kit_type.setCurrentIndex(card.kit_type.findData("away"))
    card.kit_type.activated.emit(card.kit_type.currentIndex())
    team = editor.scene().teams[0]
    assert team.kit_type == "away" and team.kit == MILAN.away
    assert "A.C. Milan" not in editor.prompt()
    assert "white jersey with red and black accents" in editor.prompt()
    assert card.name_note.isVisibleTo(card)
    assert card.preset.currentText() == "A.C. Milan"
    card.jersey.setText("green")
    card.jersey.textEdited.emit("green")  # own colours: no longer the preset's kit
    assert card.preset.currentText() == "Custom colours"


def test_typing_kit_colours_updates_prompt_and_swatches(editor: SceneEditor, qtbot: QtBot) -> None:
    editor.model().add_team()
    editor.model().add_person()
    card = editor._team_cards[0]
    card.jersey.selectAll()
    qtbot.keyClicks(card.jersey, "sky blue")
    assert "sky blue jersey" in editor.prompt()
    assert len(card.jersey_swatch.colours()) == 1
    card.jersey.selectAll()
    qtbot.keyClicks(card.jersey, "heather")  # not a colour word: no swatch, still in prompt
    assert card.jersey_swatch.colours() == []
    assert "heather jersey" in editor.prompt()


def test_colour_words() -> None:
    assert [c.name() for c in colour_swatches("Red and BLACK")] == ["#d62828", "#111111"]
    assert [c.name() for c in colour_swatches("sky blue")] == ["#6cabdd"]
    assert colour_swatches("heather") == []
    assert colour_swatches("") == []
    assert colour_swatches("reddish") == []


def test_manual_prompt_is_kept_and_marked_until_regenerated(
    editor: SceneEditor, qtbot: QtBot
) -> None:
    editor.show()
    model = editor.model()
    model.add_team(MILAN.team("home"))
    model.add_person()
    assert not editor.is_prompt_manual()
    assert not editor._regenerate.isVisible()

    editor._prompt_edit.setPlainText("A striker in a red and black jersey heads the ball.")
    assert editor.is_prompt_manual()
    assert editor.prompt() == "A striker in a red and black jersey heads the ball."
    assert "edited by hand" in editor._prompt_status.text().lower()
    assert "no longer update" in editor._prompt_status.text()
    assert editor._regenerate.isVisible()

    model.set_stadium("full")  # a scene edit does not overwrite the hand-written text
    assert editor.prompt() == "A striker in a red and black jersey heads the ball."
    assert editor._prompt_edit.toPlainText() == editor.prompt()

    with qtbot.waitSignal(editor.promptChanged) as blocker:
        qtbot.mouseClick(editor._regenerate, Qt.MouseButton.LeftButton)
    assert not editor.is_prompt_manual()
    assert editor.prompt() == editor.scene().to_prompt()
    assert blocker.args == [editor.scene().to_prompt()]
    assert "sold-out stadium" in editor._prompt_edit.toPlainText()
    assert not editor._regenerate.isVisible()


def test_editing_back_to_the_generated_text_is_not_manual(editor: SceneEditor) -> None:
    generated = editor.prompt()
    editor._prompt_edit.setPlainText(generated + " More.")
    assert editor.is_prompt_manual()
    editor._prompt_edit.setPlainText(generated)
    assert not editor.is_prompt_manual()


def test_set_scene_round_trip_and_restored_manual_prompt(editor: SceneEditor) -> None:
    scene = Scene(
        teams=(MILAN.team("home"), INTER.team("away")),
        people=(
            Person("player", team=0, number=11, number_visible=True, hair="short hair"),
            Person("goalkeeper", team=1, action="preparing to make a save"),
            Person("referee"),
        ),
        action="A player is attempting to score",
        spatial=("Player number 11 is approaching the goal",),
        stadium="half full",
        background=("goal net", "advertising boards"),
        extra="Evening light",
    )
    editor.set_scene(scene)
    assert editor.scene() == scene
    assert editor.prompt() == scene.to_prompt()
    assert len(editor._team_cards) == 2 and len(editor._person_cards) == 3
    assert editor._person_cards[2].team.isEnabled() is False  # referees have no team
    assert editor._elements["goal net"].isChecked()
    assert editor._spatial.toPlainText() == "Player number 11 is approaching the goal"

    editor.set_scene(scene, prompt="My own words.")
    assert editor.is_prompt_manual() and editor.prompt() == "My own words."
    editor.set_scene(Scene())
    assert not editor.is_prompt_manual()
    assert editor._team_cards == [] and editor._teams_empty.isVisibleTo(editor)


def test_goalkeeper_own_kit(editor: SceneEditor, qtbot: QtBot) -> None:
    model = editor.model()
    model.add_team(INTER.team("home"))
    model.add_person(Person("player", team=0))
    model.add_person(Person("goalkeeper", team=0))
    card = editor._person_cards[1]
    assert "goalkeeper from Inter Milan is also wearing" in editor.prompt()
    qtbot.keyClicks(card.own_jersey, "black")
    assert editor.scene().people[1].kit == Kit(jersey="black", shorts="")
    assert "goalkeeper from Inter Milan is wearing a black jersey" in editor.prompt()
    assert len(card.own_swatch.colours()) == 1
    card.own_jersey.clear()
    card.own_jersey.textEdited.emit("")
    assert editor.scene().people[1].kit is None


def test_scene_model_keeps_scene_valid() -> None:
    model = SceneModel(presets=PRESETS)
    errors: list[str] = []
    model.errorChanged.connect(errors.append)
    model.add_team(MILAN.team("home"))
    before = model.scene()
    model.update_kit(0, jersey="")  # a kit needs a jersey colour
    assert model.scene() == before
    assert errors and "jersey" in errors[-1]
    model.update_kit(0, jersey="green")
    assert model.error() == ""

    model.add_person(Person("player", team=0))
    model.update_person(0, role="referee")
    assert model.scene().people[0].team is None

    model.set_background_element("spectators out of focus", True)
    model.set_background_element("goal net", True)
    assert model.scene().background == ("goal net", "spectators out of focus")
    model.set_stadium("empty")
    assert model.scene().background == ("goal net",)

    model.remove_team(0)
    assert model.scene().teams == ()
    model.set_spatial(["near the box", "  ", "by the flag"])
    assert model.scene().spatial == ("near the box", "by the flag")


def test_removing_a_team_keeps_its_people(editor: SceneEditor, qtbot: QtBot) -> None:
    model = editor.model()
    model.add_team(MILAN.team("home"))
    model.add_team(INTER.team("home"))
    model.add_person(Person("player", team=1))
    assert editor._person_cards[0].team.currentText() == "Inter Milan"
    qtbot.mouseClick(editor._team_cards[0].remove, Qt.MouseButton.LeftButton)
    assert [t.name for t in editor.scene().teams] == ["Inter Milan"]
    assert editor.scene().people[0].team == 0
    assert editor._person_cards[0].team.currentText() == "Inter Milan"


def test_shipped_presets_load_into_the_editor(qtbot: QtBot) -> None:
    model = SceneModel()
    assert model.presets_error() == ""
    assert len(model.presets()) == len(load_kits())
    widget = SceneEditor(model=model)
    qtbot.addWidget(widget)
    model.add_team()
    assert widget._team_cards[0].preset.count() == len(model.presets()) + 1


# -- compare view -----------------------------------------------------------------------


@pytest.fixture
def compare(qtbot: QtBot) -> CompareView:
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(800, 500)
    view.show()
    qtbot.waitExposed(view)
    view.set_pair(_checker(64, 64), _checker(64, 64, "#ff0000", "#00ff00"), "Cutout", "Seed 5")
    return view


def test_compare_split_setter_and_drag(compare: CompareView, qtbot: QtBot) -> None:
    assert compare.split() == 0.5
    compare.set_split(0.25)
    assert compare.split() == 0.25
    compare.set_split(3.0)
    assert compare.split() == 1.0
    compare.set_split(-1.0)
    assert compare.split() == 0.0
    canvas = compare.canvas()
    with qtbot.waitSignal(compare.splitChanged):
        qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(canvas.width() // 4, 50))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(canvas.width() // 4, 50))
    assert compare.split() == pytest.approx(0.25, abs=0.01)
    # Ctrl+drag pans instead of moving the split
    before = compare.center()
    qtbot.mousePress(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, QPoint(400, 200)
    )
    qtbot.mouseMove(canvas, QPoint(420, 200))
    qtbot.mouseRelease(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier, QPoint(420, 200)
    )
    assert compare.split() == pytest.approx(0.25, abs=0.01)
    assert compare.center() != before


def test_compare_fit_and_one_to_one(compare: CompareView) -> None:
    canvas = compare.canvas()
    assert compare.is_fit()
    rect = compare.image_rect("right")
    assert rect.height() == pytest.approx(canvas.height(), abs=1.0)  # 64 px frame fills height
    compare.actual_size()
    assert compare.zoom() == 1.0
    assert compare.image_rect("right").width() == pytest.approx(64.0)
    compare.set_zoom(4.0)
    assert compare.zoom() == 4.0 and not compare.is_fit()
    assert compare.image_rect("left").width() == pytest.approx(256.0)
    compare.set_zoom(1e6)
    assert compare.zoom() <= 64.0
    compare.fit()
    assert compare.is_fit()


def test_compare_one_to_one_honours_device_pixel_ratio(
    compare: CompareView, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compare.canvas(), "devicePixelRatioF", lambda: 2.0)
    compare.actual_size()
    assert compare.zoom() == 1.0
    # one image pixel per *device* pixel: 64 image pixels span 32 logical pixels
    assert compare.image_rect("right").width() == pytest.approx(32.0)


def test_compare_wheel_zooms_around_cursor(compare: CompareView) -> None:
    compare.set_zoom(2.0)
    canvas = compare.canvas()
    cursor = QPointF(300.0, 180.0)
    under = compare.map_to_image(cursor)
    event = QWheelEvent(
        cursor,
        canvas.mapToGlobal(cursor),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(canvas, event)
    assert compare.zoom() == pytest.approx(2.5)
    after = compare.map_to_image(cursor)
    assert after.x() == pytest.approx(under.x(), abs=0.5)
    assert after.y() == pytest.approx(under.y(), abs=0.5)


def test_compare_zoom_is_synced_between_sides(compare: CompareView, qtbot: QtBot) -> None:
    compare.set_mode("side")
    compare.set_zoom(3.0, QPointF(100.0, 100.0))  # zoom from the left pane
    left, right = compare.image_rect("left"), compare.image_rect("right")
    canvas = compare.canvas()
    pane_w = (canvas.width() - 6) / 2.0
    assert left.size() == right.size()
    assert right.left() - left.left() == pytest.approx(canvas.width() - pane_w, abs=1.0)
    assert left.top() == right.top()
    # pan with a plain drag in one pane: both move together
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(600, 200))
    qtbot.mouseMove(canvas, QPoint(560, 180))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(560, 180))
    left2, right2 = compare.image_rect("left"), compare.image_rect("right")
    assert left2.left() != left.left()
    assert right2.left() - left2.left() == pytest.approx(right.left() - left.left(), abs=1.0)


def test_compare_next_pair_keeps_zoom_and_pan(compare: CompareView) -> None:
    compare.set_zoom(6.0, QPointF(120.0, 90.0))
    zoom, center = compare.zoom(), compare.center()
    compare.set_pair(_checker(64, 64), _checker(64, 64, "#0000ff", "#ffff00"), "Cutout", "Seed 6")
    assert compare.zoom() == zoom and compare.center() == center
    assert compare.labels() == ("Cutout", "Seed 6")
    compare.set_pair(_checker(32, 32), _checker(128, 128), "Cutout", "Other size")
    assert compare.is_fit()  # a different frame starts fitted


def test_compare_draws_pixels_nearest_neighbour(compare: CompareView) -> None:
    compare.set_pair(_checker(8, 8), _checker(8, 8), "", "")
    compare.set_mode("side")
    compare.set_zoom(16.0)
    shot = compare.canvas().grab().toImage()
    rect = compare.image_rect("left").toAlignedRect().adjusted(3, 3, -3, -3)
    rect = rect.intersected(shot.rect().adjusted(3, 3, -3, -3))
    colours = {
        shot.pixelColor(x, y).name()
        for y in range(rect.top(), rect.bottom(), 3)
        for x in range(rect.left(), rect.right(), 3)
    }
    assert colours == {"#000000", "#ffffff"}, "magnified pixels must not be blended"


def test_compare_overlay_hook_and_empty_state(qtbot: QtBot) -> None:
    view = CompareView()
    qtbot.addWidget(view)
    assert not view.has_pair()
    assert not view._fit_btn.isEnabled()
    view.set_pair(QImage(), _checker(16, 16), "a", "b")
    heat = _checker(16, 16, "#ff0000", "#000000")
    view.set_overlay(heat, 0.4)
    assert view.overlay() is not None
    view.set_overlay(None, 0.4)
    assert view.overlay() is None
    view.clear()
    assert not view.has_pair()


# -- theme ------------------------------------------------------------------------------


def test_contrast_ratio_formula() -> None:
    assert theme.contrast_ratio(QColor("#000000"), QColor("#ffffff")) == pytest.approx(21.0)
    assert theme.contrast_ratio(QColor("#777777"), QColor("#777777")) == pytest.approx(1.0)
    # WCAG reference: #767676 on white is the darkest grey that passes 4.5:1
    assert theme.contrast_ratio(QColor("#767676"), QColor("#ffffff")) == pytest.approx(
        4.54, abs=0.01
    )


def test_every_palette_text_pair_is_readable() -> None:
    pairs = theme.contrast_pairs(theme.dark_palette())
    assert len(pairs) > 30
    failing = [f"{p.name}: {p.ratio:.2f} < {p.minimum}" for p in pairs if p.ratio < p.minimum]
    assert failing == []
    assert {p.minimum for p in pairs if p.name.startswith("disabled")} == {3.0}


@pytest.fixture
def restore_app_look(qapp: QApplication) -> Iterator[QApplication]:
    palette, sheet, style, font = (
        qapp.palette(),
        qapp.styleSheet(),
        qapp.style().name(),
        qapp.font(),
    )
    yield qapp
    qapp.setStyleSheet(sheet)
    qapp.setStyle(style)
    qapp.setPalette(palette)
    qapp.setFont(font)


def test_apply_dark_theme(restore_app_look: QApplication) -> None:
    app = restore_app_look
    theme.apply_dark_theme(app)
    window = app.palette().color(app.palette().ColorRole.Window)
    assert theme.relative_luminance(window) < 0.05
    assert "primary" in app.styleSheet()
    assert app.font().pointSizeF() >= theme.BASE_POINT_SIZE
    pairs = theme.contrast_pairs(app.palette())
    assert all(p.ratio >= p.minimum for p in pairs)


# -- rendering and layering ---------------------------------------------------------------


def test_widgets_render_offscreen(
    qtbot: QtBot, tmp_path: Path, restore_app_look: QApplication
) -> None:
    theme.apply_dark_theme(restore_app_look)
    scene_editor = SceneEditor(model=SceneModel(presets=PRESETS))
    scene_editor.set_scene(
        Scene(
            teams=(MILAN.team("home"),),
            people=(Person("player", team=0, number=10, number_visible=True),),
        )
    )
    params = ParamsPanel()
    params.set_expanded(True)
    view = CompareView()
    view.set_pair(_checker(64, 64), _checker(64, 64), "Cutout", "Seed 5")
    for name, widget in (("scene", scene_editor), ("params", params), ("compare", view)):
        qtbot.addWidget(widget)
        widget.resize(440, 700)
        widget.show()
        qtbot.waitExposed(widget)
        pixmap = widget.grab()
        assert not pixmap.isNull()
        assert pixmap.save(str(tmp_path / f"{name}.png"))
    primary = Team("x", "home", Kit("red", "white"))
    assert primary.kit.describe()  # sanity: the schema the editor shows is the real one


@pytest.mark.slow
def test_widget_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import fbupscale_gui.ui.scene_editor, fbupscale_gui.ui.params_panel\n"
        "import fbupscale_gui.ui.compare_view, fbupscale_gui.ui.theme\n"
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_a_long_compare_line_never_widens_the_window(qtbot: QtBot, window) -> None:  # type: ignore[no-untyped-def]
    """The line above the compare view (which candidates, how, and a heatmap note) can be
    longer than a 1366 px screen: it is shortened on screen, whole in its tooltip, and the
    window's minimum width does not grow with it (it pushed the window to 1388 px)."""
    label = window.candidates.compare_label
    before = window.minimumSizeHint().width()
    text = "cutout (Lanczos)  ◀ split ▶  " + "seed 5 · stage 2 · no LoRA · LR 41.2 dB " * 10
    label.setText(text)
    assert window.minimumSizeHint().width() == before
    assert label.minimumSizeHint().width() == 0 and label.toolTip() == text
