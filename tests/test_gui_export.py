"""Export: file-name templates, sanitising, never overwriting, PNG and JPEG with metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import QSettings

from fbupscale_gui.core.export import (
    ExportError,
    ExportItem,
    plan_names,
    render_name,
    validate_template,
)
from fbupscale_gui.core.job import Candidate
from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
from fbupscale_gui.core.settings import SettingsError
from fbupscale_gui.state.job_queue import JobState
from fbupscale_gui.state.session import Session
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.storage.cutouts import make_source
from fbupscale_gui.storage.export import export_candidates
from fbupscale_gui.storage.metadata import read_metadata
from fbupscale_gui.ui.main_window import MainWindow
from fbupscale_gui.worker.testing import FakeRunner


def candidate(tmp_path: Path, *, lora: bool = True, size: int = 512) -> Candidate:
    src = tmp_path / "cutout.png"
    Image.new("RGB", (48, 64), (10, 90, 30)).save(src)
    request = ReconstructionRequest(source=make_source(src), prompt="a keeper", seed=5)
    return Candidate(
        key=CandidateKey(1, lora, 2),
        seed=6,
        image=Image.new("RGB", (size * 3 // 4, size), (200, 30, 30)),
        request=request,
        runtime="cpu fp32",
    )


def test_unknown_fields_are_refused_with_the_known_ones() -> None:
    validate_template("{match}_{cutout}_{seed}_{lora}.png")
    with pytest.raises(ExportError, match=r"unknown field \{player\}.*\{match\}"):
        validate_template("{match}_{player}.png")
    with pytest.raises(ExportError, match="empty field"):
        validate_template("{}_{seed}.png")
    with pytest.raises(ExportError, match="literal braces"):
        validate_template("{match")


def test_names_are_sanitised_and_take_the_format_extension() -> None:
    fields = {"match": "Home v Away/../x", "cutout": "a:b", "seed": 5, "lora": "lora"}
    name = render_name("{match}_{cutout}_{seed}_{lora}.png", fields, "jpeg")
    assert name == "Home_v_Away_.._x_a_b_5_lora.jpg"
    assert "/" not in name
    assert render_name("con", {}, "png") == "con_.png"


def test_export_never_overwrites_and_embeds_metadata(tmp_path: Path) -> None:
    item = ExportItem(candidate(tmp_path), "keeper.png")
    out = tmp_path / "out"
    first = export_candidates([item], out, "{match}_{cutout}_{seed}_{lora}.png", match="Final")
    second = export_candidates([item], out, "{match}_{cutout}_{seed}_{lora}.png", match="Final")
    assert [p.name for p in first] == ["Final_keeper_6_lora.png"]
    assert [p.name for p in second] == ["Final_keeper_6_lora-2.png"]
    with Image.open(first[0]) as img:
        assert img.size == (768, 1024)  # long side 1024 whatever the candidate's size
    record = read_metadata(first[0])
    assert record.key == CandidateKey(1, True, 2)
    assert record.request.prompt == "a keeper"


def test_jpeg_export_and_batch_numbering(tmp_path: Path) -> None:
    items = [ExportItem(candidate(tmp_path), "a.png"), ExportItem(candidate(tmp_path), "a.png")]
    names = plan_names(items, tmp_path, "{cutout}_{n}.png", match="m", fmt="jpeg")
    assert [p.name for p in names] == ["a_1.jpg", "a_2.jpg"]
    same = plan_names(items, tmp_path, "{cutout}.png", match="m")
    assert [p.name for p in same] == ["a.png", "a-2.png"]
    paths = export_candidates(items[:1], tmp_path / "j", "{cutout}.png", match="m", fmt="jpeg")
    with Image.open(paths[0]) as img:
        assert img.format == "JPEG"
    assert read_metadata(paths[0]).seed == 6


def test_nothing_picked_and_unwritable_folder(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="pick a candidate"):
        export_candidates([], tmp_path, "{seed}.png", match="m")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot create the export folder"):
        export_candidates(
            [ExportItem(candidate(tmp_path), "a.png")], blocker / "sub", "{seed}.png", match="m"
        )


@pytest.fixture
def window(make_window, tmp_path: Path) -> MainWindow:  # type: ignore[no-untyped-def]
    return make_window(  # type: ignore[no-any-return]
        runner_factory=lambda: FakeRunner(steps=1),
        export_dir=str(tmp_path / "exports"),
        match_name="Cup final",
    )


def test_batch_export_covers_every_pick(qtbot, window: MainWindow, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = []
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        p = tmp_path / name
        Image.new("RGB", (64, 80), (10 + 40 * i, 100, 30)).save(p)
        paths.append(p)
    window.session.cutouts.add_paths(paths[:2])
    window.session.cutouts.add_paths(paths[2:])  # c has no candidates: not exported
    window.session.engine.set_engine("lanczos")
    window.cutouts.select_row(0)
    window.cutouts.list.selectAll()
    window.cutouts.list.selectionModel().select(
        window.session.cutouts.index(2, 0),
        window.cutouts.list.selectionModel().SelectionFlag.Deselect,
    )
    jobs = window.run_selected()
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
    assert [j.state for j in jobs] == [JobState.DONE, JobState.DONE]
    assert window.export_action.isEnabled()
    window.export_all()
    qtbot.waitUntil(lambda: "Exported 2 file" in window.statusBar().currentMessage())
    names = sorted(p.name for p in (tmp_path / "exports").iterdir())
    assert names == ["Cup_final_a_lanczos.png", "Cup_final_b_lanczos.png"]


def test_export_problems_are_reported_in_the_window(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "a.png"
    Image.new("RGB", (64, 80), (10, 100, 30)).save(p)
    window.session.cutouts.add_paths([p])
    window.session.engine.set_engine("lanczos")
    window.run_selected()
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
    # a template the schema refuses never reaches export: the settings reject it
    with pytest.raises(SettingsError, match=r"unknown field \{nope\}"):
        window.session.settings.update(export_template="{nope}.png")
    (tmp_path / "blocker").write_text("x")
    window.session.export_in_background(folder=tmp_path / "blocker" / "sub")
    assert any("Export failed" in t and "blocker" in t for t in window.messages.texts())


def test_an_exported_pick_is_known_by_its_own_id_not_its_address(qapp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A new pick at the address of an exported one that was dropped is still unexported
    (Python reuses ``id()`` once an object is freed)."""
    from PySide6.QtGui import QImage

    from fbupscale_gui.state.candidates import CandidateEntry
    from fbupscale_gui.worker.bridge import ReadyCandidate

    settings = SettingsModel(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    settings.update(export_dir=str(tmp_path / "exports"))
    session = Session(settings, runner_factory=FakeRunner)
    path = tmp_path / "a.png"
    Image.new("RGB", (64, 80), (10, 100, 30)).save(path)
    session.cutouts.add_paths([path])
    cutout = session.cutouts.at(0)
    candidate = Candidate(
        CandidateKey(0, False, 2), 5, Image.new("RGB", (256, 320)), ReconstructionRequest()
    )
    ready = ReadyCandidate(candidate, QImage(), QImage(), None)
    thumb = QImage()
    for _attempt in range(50):  # the allocator usually, not always, reuses the address at once
        first = session.candidates.add(cutout.id, session.candidates.new_run(cutout.id), ready)
        session.export()
        assert session.unexported_picks() == []
        session.candidates.discard(first)  # e.g. its file could not be read back
        address = id(first)
        del first  # freed now: the next entry of the same size usually takes its address
        entry = CandidateEntry(cutout.id, 2, candidate, None, thumb)
        if id(entry) == address:
            break
    else:
        pytest.fail("the allocator never reused a freed entry's address")
    session.candidates.pick(entry)
    assert session.unexported_picks() == [entry]
    session.shutdown(timeout_ms=5_000)


def test_quitting_with_unexported_picks_asks_and_can_export(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    settings = SettingsModel(store)
    settings.update(export_dir=str(tmp_path / "exports"))
    win = MainWindow(Session(settings, runner_factory=lambda: FakeRunner(steps=1)))
    win.show()
    p = tmp_path / "a.png"
    Image.new("RGB", (64, 80), (10, 100, 30)).save(p)
    win.session.cutouts.add_paths([p])
    win.session.engine.set_engine("lanczos")
    win.run_selected()
    qtbot.waitUntil(lambda: not win.session.jobs.is_busy(), timeout=10_000)
    assert len(win.session.unexported_picks()) == 1

    seen: list[str] = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, answer)
            return
        seen.append(box.text())
        for button in box.buttons():
            if button.text() == "Export picks and quit":
                button.click()

    QTimer.singleShot(0, answer)
    assert win.close()
    assert seen and "1 picked candidate(s) have not been exported" in seen[0]
    assert [f.name for f in (tmp_path / "exports").iterdir()] == ["match_a_lanczos.png"]
    assert win.session.unexported_picks() == []
    assert not win.session.engine_thread.is_running()
