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

from fbupscale_gui.state.session import Session
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.ui.main_window import MainWindow
from fbupscale_gui.worker.testing import FakeRunner


@pytest.fixture
def gated(make_window):  # type: ignore[no-untyped-def]
    """A window whose engine waits at a gate (``runner.gate``) until a test opens it."""
    import threading

    runner = FakeRunner(steps=1, gate=threading.Event())
    yield make_window(runner=runner), runner
    runner.gate.set()


# -- B: the video region starts at the pressed pixel ------------------------------------------


def _full_hd_clip(path: Path) -> Path:
    import av

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


# -- F: one banner per topic, always current ---------------------------------------------------


def test_banners_are_one_per_topic_and_passing_news_goes_to_the_status_bar(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    from fbupscale_gui.core.errors import ModelNotFoundError
    from fbupscale_gui.state.session import Message

    engine = window.session.engine
    engine.report_missing(ModelNotFoundError("FLUX.1-dev model folder", None, ["/a"], ""), ("a",))
    engine.set_engine("lanczos")
    engine.report_missing(ModelNotFoundError("FLUX.1-dev model folder", None, ["/b"], ""), ("b",))
    qtbot.wait(20)
    texts = window.messages.texts()
    assert len(texts) == 1  # replaced, not stacked
    assert "/b" in texts[0] and "/a" not in texts[0]
    assert "is selected" not in texts[0]  # never a stale claim about the engine
    row = window.messages.rows()[0]
    assert row.action_button is not None and "FLUX" in row.action_button.text()

    for n in range(4):
        window.session.message.emit(
            Message("info", f"Exported {n + 1} file(s) to /x", topic="export")
        )
    assert len(window.messages.texts()) == 1  # exports add no banners
    assert window.statusBar().currentMessage() == "Exported 4 file(s) to /x"
    # an export failure is a banner; the next success clears it
    window.session.message.emit(Message("error", "Export failed: disk full", topic="export"))
    window.session.message.emit(Message("error", "Export failed: still full", topic="export"))
    assert [t for t in window.messages.texts() if "Export" in t] == ["Export failed: still full"]
    window.session.message.emit(Message("info", "Exported 1 file(s) to /x", topic="export"))
    assert not [t for t in window.messages.texts() if "Export" in t]

    # the session could not be saved, then can again: the failure's banner goes
    window.session.recorder.failed.emit("The session cannot be saved: disk full")
    assert any("disk full" in t for t in window.messages.texts())
    window.session.recorder.recovered.emit()
    assert not any("disk full" in t for t in window.messages.texts())

    # FLUX found after all: its banner goes
    engine._set_status("available")
    assert window.messages.texts() == []


# -- I: the FLUX models page -------------------------------------------------------------------


def _fake_flux_folder(root: Path) -> None:
    import json
    import struct

    flux = root / "FLUX.1-dev"
    (flux / "transformer").mkdir(parents=True)
    (flux / "vae").mkdir()
    (flux / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 3000)
    (flux / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"\1" * 1000)
    (flux / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "FluxPipeline",
                "transformer": ["diffusers", "FluxTransformer2DModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            }
        )
    )
    (flux / "README.md").write_text(
        "---\nlicense: other\nlicense_name: flux-1-dev-non-commercial-license\n---\n# FLUX\n"
    )
    cn = root / "Flux.1-dev-Controlnet-Upscaler"
    cn.mkdir()
    (cn / "config.json").write_text("{}")
    (cn / "diffusion_pytorch_model.safetensors").write_bytes(b"\2" * 2000)
    (root / "loras").mkdir()
    header = json.dumps({"__metadata__": {"modelspec.license": "CC-BY-4.0"}}).encode()
    (root / "loras" / "football.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)


def test_flux_models_page_lists_missing_then_adopts_a_folder(qtbot, window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fbupscale_gui.state.engine_choice import FluxStatus

    window.session.settings.update(flux_dir="", controlnet_dir="", lora_path="")
    empty = tmp_path / "empty"
    empty.mkdir()
    window.open_flux_models()
    page = window.flux_models_dialog
    with qtbot.waitSignal(page.setup.surveyed, timeout=10_000):
        page.set_folder(str(empty))
    rows = page.texts()
    assert [r[1] for r in rows] == ["missing", "missing", "missing"]
    commands = [e.text() for e in page.command_edits]
    assert (
        commands[0] == f'hf download black-forest-labs/FLUX.1-dev --local-dir "{empty}/FLUX.1-dev"'
    )
    assert "jasperai/Flux.1-dev-Controlnet-Upscaler" in commands[1]
    assert "loras" in commands[2]
    assert page.missing_box.isVisibleTo(page)
    window.session.check_models()  # as at start-up
    qtbot.waitUntil(lambda: window.session.engine.flux_status == FluxStatus.MISSING, timeout=10_000)
    assert "missing" in window.engine_combo.itemText(window.engine_combo.findData("flux"))

    models = tmp_path / "models"
    _fake_flux_folder(models)
    with qtbot.waitSignal(page.setup.hashed, timeout=10_000):
        page.set_folder(str(models))
    rows = page.texts()
    assert [r[1] for r in rows] == ["found", "found", "found"]
    assert rows[0][3] == "4 KB" and "flux-1-dev-non-commercial" in rows[0][5]
    assert rows[2][5] == "CC-BY-4.0"
    assert all(r[4].endswith("…") and len(r[4]) == 17 for r in rows)  # hashed
    assert not page.missing_box.isVisibleTo(page)
    settings = window.session.settings.settings
    assert settings.flux_dir == str(models / "FLUX.1-dev")
    assert settings.controlnet_dir == str(models / "Flux.1-dev-Controlnet-Upscaler")
    assert settings.lora_path == str(models / "loras" / "football.safetensors")
    # the engine list knows without a restart
    qtbot.waitUntil(
        lambda: window.session.engine.flux_status == FluxStatus.AVAILABLE, timeout=10_000
    )
    assert "missing" not in window.engine_combo.itemText(window.engine_combo.findData("flux"))


# -- C: the window fits common screens in every state -----------------------------------------


@pytest.mark.parametrize("screen", [(1366, 768), (1920, 1080)])
def test_window_fits_the_screen_in_every_state(qtbot, window, tmp_path, screen) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from fbupscale_gui.state.session import Message

    width, height = screen[0], screen[1] - 40  # a title bar and a panel take some lines
    p = tmp_path / "cutout.png"
    Image.new("RGB", (64, 80), (30, 120, 40)).save(p)
    window.session.cutouts.add_paths([p])
    window.resize(width, height)
    qtbot.wait(20)

    def check(state: str) -> None:
        qtbot.wait(20)
        hint = window.minimumSizeHint()
        assert hint.width() <= width and hint.height() <= height, (state, hint)
        assert window.width() <= width and window.height() <= height, (state, window.size())
        bar = window.statusBar()
        assert bar.isVisible() and bar.geometry().bottom() < window.height(), state
        # the word count sits below the prompt box, never over it
        editor = window.scene_editor
        count = editor._prompt_count.geometry()
        prompt = editor._prompt_edit.geometry()
        assert count.top() >= prompt.bottom(), (state, count, prompt)
        assert count.bottom() <= editor._prompt_box.contentsRect().bottom(), state
        # the scene form and the Prompt title keep a visible gap at the splitter
        gap = editor._prompt_box.geometry().top() - editor._scroll.geometry().bottom()
        assert gap >= 10, (state, gap)

    check("collapsed")
    window.params.set_expanded(True)
    check("Advanced expanded")
    window.session.message.emit(Message("error", "cutout.png: the engine failed " * 4))
    window.session.message.emit(Message("warning", "Some of the session could not be read"))
    check("Advanced expanded, two banners")
    window.params.set_expanded(False)
    check("collapsed again, two banners")


# -- G: every engine describes itself truthfully -----------------------------------------------


def test_fast_engines_wear_no_flux_wording(qtbot, window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from PIL import Image

    from fbupscale_gui.storage.metadata import JSON_KEY, read_metadata

    p = tmp_path / "box.png"
    Image.new("RGB", (64, 80), (30, 120, 40)).save(p)
    window.session.cutouts.add_paths([p])
    window.session.settings.update(export_dir=str(tmp_path / "out"), match_name="m")
    names = []
    for engine, title in (("lanczos", "Lanczos"), ("realesrgan", "Real-ESRGAN")):
        window.session.engine.set_engine(engine)
        (job,) = window.run_selected()
        qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
        request = job.request
        assert request.variants == 1 and request.lora.model is None
        panel = window.candidates
        # the newest run only: each fast run is its own row named for its engine
        assert not panel.stage1_box.isVisible()
        entry = window.session.candidates.entries(window.cutouts.current().id)[-1]
        assert entry.label == f"{title} · one pass" and "seed" not in entry.label
        window.session.candidates.pick(entry)
        window.export_current()
        qtbot.waitUntil(lambda: "Exported 1 file" in window.statusBar().currentMessage())
        (path,) = (tmp_path / "out").glob(f"*{engine}*.png")
        names.append(path.name)
        with Image.open(path) as img:
            payload = json.loads(img.text[JSON_KEY])
        assert payload["run"] == {"engine": engine, "stages": ["single pass"], "candidates": 1}
        assert "stage" not in payload["key"]
        assert payload["request"]["variants"] == 1
        assert read_metadata(path).key == entry.key  # still reads back
        window.statusBar().clearMessage()
    # the engine is in the name; neither claims a seed or "nolora"
    assert names == ["m_box_lanczos.png", "m_box_realesrgan.png"]
    assert window.candidates.column_titles() == ["Result"]
    rows = [r.title for r in window.session.candidates.grid(window.cutouts.current().id).rows]
    assert rows == ["Lanczos", "run 2 · Real-ESRGAN"]


def test_one_engine_column_and_guard_wording(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image
    from PySide6.QtGui import QImage

    from fbupscale_gui.core.export import ExportItem, low_fidelity_text
    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
    from fbupscale_gui.state.candidate_grid import layout_grid
    from fbupscale_gui.state.candidates import CandidateEntry
    from fbupscale_gui.storage.metadata import run_summary

    fast = ReconstructionRequest(engine="realesrgan", variants=1)
    cand = Candidate(CandidateKey(0, False, 2), 5, Image.new("RGB", (8, 8)), fast)
    text = low_fidelity_text([ExportItem(cand, "box.png", lr_consistency=20.0)])
    assert text == "box.png (realesrgan): 20.0 dB"  # was "(seed 5, no LoRA, stage 2)"
    grid = layout_grid([CandidateEntry(1, 1, cand, None, QImage())])
    assert [c.title for c in grid.columns] == ["Real-ESRGAN"]
    flux = ReconstructionRequest(engine="flux", variants=2)
    summary = run_summary(flux)
    assert summary["stages"] == [
        "stage1: FLUX.1-dev image-to-image",
        "stage2: FLUX ControlNet upscaler",
    ]
    assert summary["variants"] == 2 and summary["candidates"] == len(flux.candidate_keys())
    one_stage = run_summary(flux.replace(stage2=flux.stage2.__class__(enabled=False)))
    assert len(one_stage["stages"]) == 1


# -- E (the window's side): "cancelling…" then "cancelled" -------------------------------------


def test_cancel_reads_cancelling_then_cancelled(qtbot, gated, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from fbupscale_gui.core.job import Progress
    from fbupscale_gui.state.job_queue import JobState, ProgressInfo

    win, _runner = gated
    p = tmp_path / "box.png"
    Image.new("RGB", (64, 80), (30, 120, 40)).save(p)
    win.session.cutouts.add_paths([p])
    win.session.engine.set_engine("realesrgan")
    (job,) = win.run_selected()
    qtbot.waitUntil(lambda: "box.png — starting" in win.progress.label.text(), timeout=10_000)
    win.cancel_action.trigger()  # Esc
    assert win.progress.label.text() == "box.png — cancelling…"
    # progress that was already on its way does not make it read "running" again
    late = Progress.single("fast", 1, 4)
    win.session.jobs.progressed.emit(job, ProgressInfo(late, None, "tile 1/4"))
    assert win.progress.label.text() == "box.png — cancelling…"
    qtbot.waitUntil(lambda: not win.session.jobs.is_busy(), timeout=10_000)
    assert job.state is JobState.CANCELLED
    assert win.progress.label.text() == "box.png — cancelled"


# -- J: the smaller things ---------------------------------------------------------------------


def _wheel(widget, delta: int) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    centre = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(
        centre,
        widget.mapToGlobal(centre),
        QPoint(0, 0),
        QPoint(0, delta),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def test_the_wheel_scrolls_the_form_not_an_unfocused_dropdown(qtbot, window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from fbupscale_gui.core.scene import Person

    p = tmp_path / "box.png"
    Image.new("RGB", (64, 80), (30, 120, 40)).save(p)
    window.session.cutouts.add_paths([p])
    window.resize(1366, 728)
    model = window.scene_editor.model()
    for _ in range(4):
        model.add_person(Person(role="player"))
    qtbot.wait(50)
    editor = window.scene_editor
    bar = editor._scroll.verticalScrollBar()
    assert bar.maximum() > 0  # the form scrolls at this size
    combo = editor._stadium
    combo.clearFocus()
    before_index, before_scroll = combo.currentIndex(), bar.value()
    _wheel(combo, -120)  # down, over the dropdown
    assert combo.currentIndex() == before_index
    assert bar.value() > before_scroll


def test_a_pasted_cutout_is_selected_and_said(qtbot, window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QApplication

    p = tmp_path / "box.png"
    Image.new("RGB", (64, 80), (30, 120, 40)).save(p)
    window.session.cutouts.add_paths([p])
    qtbot.waitUntil(lambda: window.cutouts.current() is not None, timeout=5000)
    image = QImage(50, 70, QImage.Format.Format_RGB32)
    image.fill(0x3366CC)
    QApplication.clipboard().setImage(image)
    window.paste()
    assert len(window.session.cutouts) == 2
    current = window.cutouts.current()
    assert current is not None and current is window.session.cutouts.at(1)
    assert current.image.size == (50, 70)
    assert "Pasted" in window.statusBar().currentMessage()
    assert "50×70" in window.statusBar().currentMessage()


def test_settings_path_fields_show_a_whole_path(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fbupscale_gui.core.settings import Settings
    from fbupscale_gui.ui.settings_dialog import SettingsDialog

    path = "/home/operator/models/black-forest-labs/FLUX.1-dev"
    dialog = SettingsDialog(Settings(flux_dir=path))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.wait(20)
    edit = dialog.edits["flux_dir"]
    room = edit.contentsRect().width() - 8  # the line edit's own margins
    assert edit.fontMetrics().horizontalAdvance(path) <= room
    assert dialog.width() <= 1366


def test_the_cutouts_list_marks_queued_running_done_and_picked(qtbot, gated, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    win, runner = gated
    paths = []
    for i in range(2):
        p = tmp_path / f"c{i}.png"
        Image.new("RGB", (64, 80), (30 + 90 * i, 120, 40)).save(p)
        paths.append(p)
    win.session.cutouts.add_paths(paths)
    model = win.session.cutouts

    def shown(row: int) -> str:
        return str(model.index(row, 0).data(Qt.ItemDataRole.DisplayRole))

    assert shown(0) == "c0.png\n64×80 px"
    win.session.engine.set_engine("lanczos")
    win.cutouts.list.selectAll()
    win.run_selected()
    qtbot.waitUntil(lambda: "running" in shown(0), timeout=10_000)
    assert "queued" in shown(1)
    runner.gate.set()
    qtbot.waitUntil(lambda: not win.session.jobs.is_busy(), timeout=10_000)
    # a fast run's single candidate is picked at once
    assert shown(0).endswith("★ picked") and shown(1).endswith("★ picked")


def test_the_first_export_names_the_folder_and_offers_another(
    qtbot, window, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image
    from PySide6.QtWidgets import QFileDialog

    p = tmp_path / "box.png"
    Image.new("RGB", (64, 80), (30, 120, 40)).save(p)
    window.session.cutouts.add_paths([p])
    first = tmp_path / "exports"
    window.session.settings.update(export_dir=str(first))
    window.session.engine.set_engine("lanczos")
    window.run_selected()
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
    window.export_all()
    qtbot.waitUntil(lambda: window.messages.row_for("export-folder") is not None, timeout=10_000)
    row = window.messages.row_for("export-folder")
    assert str(first) in row.label.text()
    assert row.action_button is not None and row.action_button.text() == "Change folder…"
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(other))
    row.action_button.click()
    assert window.session.settings.settings.export_dir == str(other)
    assert window.messages.row_for("export-folder") is None  # said once, then gone
    window.export_all()
    qtbot.waitUntil(lambda: any(other.iterdir()), timeout=10_000)
    assert window.messages.row_for("export-folder") is None  # not again


def test_selection_and_splitters_are_kept_across_a_relaunch(qtbot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    paths = []
    for i in range(3):
        p = tmp_path / f"c{i}.png"
        Image.new("RGB", (64, 80), (30 + 60 * i, 120, 40)).save(p)
        paths.append(p)

    def launch() -> MainWindow:
        store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
        win = MainWindow(Session(SettingsModel(store), runner_factory=FakeRunner), store=store)
        win.confirm_on_close = False
        win.resize(1600, 900)
        win.show()
        win.session.cutouts.add_paths(paths)
        return win

    first = launch()
    first.cutouts.select_row(2)
    first.splitter.setSizes([330, 520, 700])
    first.scene_editor.splitter().setSizes([250, 400])
    qtbot.wait(20)
    sizes, scene_sizes = first.splitter.sizes(), first.scene_editor.splitter().sizes()
    first.close()
    gc.collect()

    second = launch()
    try:
        qtbot.wait(20)
        current = second.cutouts.current()
        assert current is not None and current.name == "c2.png"
        assert second.splitter.sizes() == sizes
        assert second.scene_editor.splitter().sizes() == scene_sizes
    finally:
        second.close()
        gc.collect()


def test_with_nothing_installed_every_missing_model_has_a_real_command(
    monkeypatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from fbupscale_gui.core.settings import Settings
    from fbupscale_gui.state.flux_setup import default_folder, survey

    monkeypatch.setenv("HOME", str(tmp_path))
    statuses = survey(Settings())
    assert [s.found for s in statuses] == [False, False, False]
    for s in statuses:
        assert s.command and "<" not in s.command and str(default_folder()) in s.command
        assert s.problem


def test_the_empty_clip_preview_says_how_to_fill_it(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    preview = window.video_window.cut_box.preview
    assert preview.image().isNull()
    assert "Draw a region" in preview.placeholder
    assert "cutout" not in preview.placeholder  # the video window has no cutout to select
    assert window.cutouts.pixels.placeholder == "Select a cutout to see its pixels"


def test_a_lone_later_run_is_not_numbered(qapp) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image
    from PySide6.QtGui import QImage

    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
    from fbupscale_gui.state.candidate_grid import layout_grid
    from fbupscale_gui.state.candidates import CandidateEntry

    fast = ReconstructionRequest(engine="realesrgan", variants=1)
    cand = Candidate(CandidateKey(0, False, 2), 5, Image.new("RGB", (8, 8)), fast)
    # run 1 was cancelled before it made anything: the one row left is just "Real-ESRGAN"
    grid = layout_grid([CandidateEntry(1, 2, cand, None, QImage())])
    assert [r.title for r in grid.rows] == ["Real-ESRGAN"]
    two = layout_grid(
        [CandidateEntry(1, 1, cand, None, QImage()), CandidateEntry(1, 2, cand, None, QImage())]
    )
    assert [r.title for r in two.rows] == ["Real-ESRGAN", "run 2 · Real-ESRGAN"]
