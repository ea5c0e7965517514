"""Issue 5 in the window: LR-consistency on every tile, sort by it, "Suggest pick", the deviation
heatmap in the compare view, and the export guard (ask / refuse below a threshold)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from fbupscale_gui.core.errors import Cancelled
from fbupscale_gui.core.export import ExportError
from fbupscale_gui.core.job import Candidate, IsCancelled, OnProgress, Progress
from fbupscale_gui.core.request import FAITHFUL_MODEL, CandidateKey, ReconstructionRequest
from fbupscale_gui.eval.fidelity import lr_consistency
from fbupscale_gui.eval.scoring import format_db
from fbupscale_gui.state.candidates import CandidateEntry
from fbupscale_gui.state.job_queue import JobState
from fbupscale_gui.state.session import Session
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.storage.cutouts import load_cutout
from fbupscale_gui.ui.export_guard import EXPORT_ANYWAY
from fbupscale_gui.ui.main_window import MainWindow

CUT_W, CUT_H, SCALE = 48, 64, 4


def textured_cutout(path: Path) -> Path:
    """A cutout with structure (a player-ish blob and a number), so fidelity means something."""
    img = Image.new("RGB", (CUT_W, CUT_H), (40, 120, 50))
    draw = ImageDraw.Draw(img)
    draw.rectangle((14, 10, 34, 50), fill=(200, 30, 40))
    draw.rectangle((20, 18, 28, 34), fill=(250, 250, 250))
    draw.line((0, 60, 47, 56), fill=(230, 230, 230), width=2)
    img.save(path)
    return path


def corrupt(image: Image.Image) -> Image.Image:
    """A "changed shirt number": a block painted over the middle of the player."""
    out = image.copy()
    w, h = out.size
    ImageDraw.Draw(out).rectangle((w // 3, h // 4, 2 * w // 3, h // 2), fill=(10, 10, 10))
    return out


@dataclass
class ScriptedRunner:
    """Engine stand-in that renders real candidates from the request's cutout.

    The first stage-2 candidate (the one auto-picked among finals, top left of the grid) is
    corrupted; the last stage-2 one is a clean upscale; the others are blurred.
    """

    runs: list[ReconstructionRequest] = field(default_factory=list)

    def run(
        self, request: ReconstructionRequest, on_progress: OnProgress, is_cancelled: IsCancelled
    ) -> Iterator[Candidate]:
        self.runs.append(request)
        assert request.source is not None
        cutout = load_cutout(request.source.path)
        clean = cutout.resize((CUT_W * SCALE, CUT_H * SCALE), Image.Resampling.LANCZOS)
        keys = request.candidate_keys()
        finals = [k for k in keys if k.stage == 2]
        for i, key in enumerate(keys):
            if is_cancelled():
                raise Cancelled()
            if key == finals[0]:
                image = corrupt(clean)
            elif key == finals[-1]:
                image = clean
            else:
                image = clean.filter(ImageFilter.GaussianBlur(3 + i))
            on_progress(Progress("stage2", i + 1, len(keys), i + 1, len(keys)))
            yield Candidate(key, request.seed_for(key.variant), image, request, runtime="test")

    def release(self) -> None:
        pass


@pytest.fixture
def make_window(make_window, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Windows on a :class:`ScriptedRunner`, each with one textured cutout."""

    def make(**settings: object) -> MainWindow:
        return make_window(  # type: ignore[no-any-return]
            runner=ScriptedRunner(),
            cutouts=[textured_cutout(tmp_path / "keeper.png")],
            export_dir=str(tmp_path / "exports"),
            lora_path=str(tmp_path / "lora.safetensors"),
            **{"engine": "flux", **settings},  # the FLUX grid (the default is "faithful")
        )

    return make


def run_two_seeds(qtbot, window: MainWindow) -> list[CandidateEntry]:  # type: ignore[no-untyped-def]
    base = window.session.build_request(window.session.cutouts.at(0))
    window.session.params.set_from(window.session.params.apply_to(base).replace(variants=2, seed=5))
    (job,) = window.run_selected()
    qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=10_000)
    assert job.state is JobState.DONE, window.messages.texts()
    cutout = window.session.cutouts.at(0)
    return window.session.candidates.entries(cutout.id)


def corrupted(entries: list[CandidateEntry]) -> CandidateEntry:
    return next(e for e in entries if e.key == CandidateKey(0, False, 2))


def answer_modal(button_text: str, seen: list[str]) -> None:
    """Click ``button_text`` in the next modal message box (recording its text)."""

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if not isinstance(box, QMessageBox):
            QTimer.singleShot(20, answer)
            return
        seen.append(f"{box.text()}\n{box.informativeText()}")
        for button in box.buttons():
            if button.text().replace("&", "") == button_text:
                button.click()
                return
        box.reject()

    QTimer.singleShot(0, answer)


# -- tiles ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["lanczos", "realesrgan", "faithful"])
def test_real_engine_tile_shows_its_lr_consistency(qtbot, tmp_path: Path, engine: str) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    store = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(Session(SettingsModel(store)))  # the real engines, in their process
    window.confirm_on_close = False
    window.show()
    try:
        window.session.cutouts.add_paths([textured_cutout(tmp_path / "keeper.png")])
        window.session.engine.set_engine(engine)
        base = window.session.build_request(window.session.cutouts.at(0))
        window.session.params.set_from(
            base.replace(preprocess=dataclasses.replace(base.preprocess, size=128))
        )
        (job,) = window.run_selected()
        qtbot.waitUntil(lambda: not window.session.jobs.is_busy(), timeout=120_000)
        assert job.state is JobState.DONE, window.messages.texts()
        (tile,) = window.candidates.tiles()
        score = tile.entry.lr_consistency
        assert score is not None and 20.0 < score <= 99.0
        # scored in the engine thread against the cutout, exactly as core.fidelity scores it
        cutout = window.session.cutouts.at(0).image
        assert score == pytest.approx(lr_consistency(cutout, tile.entry.candidate.image))
        assert tile.score_text == f"{score:.1f} dB"
        assert f"{score:.1f} dB" in tile.score_label.text()
        assert "shrunk back to the cutout's size" in tile.score_label.toolTip()
        assert "higher is more faithful" in tile.score_label.toolTip()
        if engine == "realesrgan":  # provenance: the weights' hash travels with the candidate
            assert len(tile.entry.models["realesrgan"]["sha256"]) == 64
        if engine == "faithful":
            assert len(tile.entry.models[FAITHFUL_MODEL]["sha256"]) == 64
    finally:
        window.close()
        gc.collect()


def test_sort_by_score_and_keys_follow_the_ranking(qtbot, make_window) -> None:  # type: ignore[no-untyped-def]
    window = make_window()
    entries = run_two_seeds(qtbot, window)
    panel, store = window.candidates, window.session.candidates
    cutout_id = window.session.cutouts.at(0).id
    assert all(e.lr_consistency is not None for e in entries)
    grid_order = store.grid(cutout_id).order
    assert [t.entry for t in panel.tiles()] == grid_order  # default: variant x LoRA
    assert panel.column_titles() == ["Stage 1", "Without LoRA", "With LoRA"]

    panel.sort_box.setChecked(True)
    ranked = [t.entry for t in panel.tiles()]
    scores = [e.lr_consistency for e in ranked]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    assert ranked[-1] is corrupted(entries)
    assert ranked != grid_order
    assert "[1]" in panel.tiles()[0].caption.text()
    window.pick_actions[0].trigger()  # key 1 = the best one now
    assert store.picked(cutout_id) is ranked[0]

    panel.sort_box.setChecked(False)
    assert [t.entry for t in panel.tiles()] == grid_order


def test_suggest_marks_the_best_and_leaves_the_pick(qtbot, make_window) -> None:  # type: ignore[no-untyped-def]
    window = make_window()
    entries = run_two_seeds(qtbot, window)
    panel, store = window.candidates, window.session.candidates
    cutout_id = window.session.cutouts.at(0).id
    bad = corrupted(entries)
    store.pick(bad)  # the operator's current pick is the corrupted one
    assert not panel.accept_button.isEnabled()

    panel.suggest_action.trigger()  # S
    best = store.suggested(cutout_id)
    assert best is not None and best is not bad
    finals = [e for e in entries if e.key.stage == 2]
    assert best.lr_consistency == max(e.lr_consistency for e in finals)  # type: ignore[type-var]
    assert best.key == CandidateKey(1, True, 2)  # the clean upscale
    assert store.picked(cutout_id) is bad  # the operator still decides
    tiles = {id(t.entry): t for t in panel.tiles()}
    assert tiles[id(best)].suggested and not tiles[id(best)].picked
    assert tiles[id(best)].property("suggested") is True
    assert tiles[id(best)].suggested_label.isVisibleTo(tiles[id(best)])
    assert tiles[id(bad)].picked and not tiles[id(bad)].suggested
    assert not tiles[id(bad)].suggested_label.isVisibleTo(tiles[id(bad)])
    assert sum(t.suggested for t in panel.tiles()) == 1
    assert "Your pick is another candidate" in panel.note.text() and format_db(
        best.lr_consistency
    ) in (panel.note.text())
    assert panel.compared() is best  # shown in the compare view
    assert panel.accept_button.isEnabled()

    panel.accept_action.trigger()  # Shift+S
    assert store.picked(cutout_id) is best
    assert tiles[id(best)].picked
    assert not panel.accept_button.isEnabled()
    panel.suggest_action.trigger()
    assert "It is your pick" in panel.note.text()
    # picking another (a number key) and the note follows: it no longer says "your pick"
    store.pick(bad)
    assert "It is your pick" not in panel.note.text()
    assert "Your pick is another candidate" in panel.note.text()


# -- heatmap --------------------------------------------------------------------------------


def test_heatmap_overlay_toggles_and_its_opacity(qtbot, make_window) -> None:  # type: ignore[no-untyped-def]
    window = make_window()
    entries = run_two_seeds(qtbot, window)
    panel, compare = window.candidates, window.candidates.compare
    bad = corrupted(entries)
    panel.compare_entry(bad)
    assert compare.overlay() is None and not compare.heatmap_on()

    compare.heatmap_button.click()  # on
    overlay = compare.overlay()
    assert overlay is not None
    assert (overlay.width(), overlay.height()) == bad.candidate.image.size
    # hot where the block was painted over, clear on the untouched grass
    w, h = overlay.width(), overlay.height()
    assert overlay.pixelColor(w // 2, 3 * h // 8).alpha() > 200
    assert overlay.pixelColor(3, 3 * h // 4 - 20).alpha() < 40
    assert panel.heatmaps.get(bad) is not None  # cached: made once per candidate

    compare.opacity_slider.setValue(25)
    assert compare.overlay_opacity() == pytest.approx(0.25)
    compare.set_overlay_opacity(0.8)
    assert compare.opacity_slider.value() == 80

    good = next(e for e in entries if e.key == CandidateKey(1, True, 2))
    panel.compare_entry(good)  # the toggle stays on: the next candidate's own heatmap
    other = compare.overlay()
    assert other is not None and other != overlay

    compare.heatmap_button.click()  # off
    assert compare.overlay() is None
    compare.grab()  # paints with and without the overlay


# -- export guard ---------------------------------------------------------------------------


def test_export_below_threshold_asks_naming_the_picks(qtbot, make_window, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = make_window(export_min_lr_db=30.0, export_low_fidelity="ask")
    entries = run_two_seeds(qtbot, window)
    bad = corrupted(entries)
    window.session.candidates.pick(bad)
    assert bad.lr_consistency is not None and bad.lr_consistency < 30.0
    tiles = {id(t.entry): t for t in window.candidates.tiles()}
    assert "⚠ low" in tiles[id(bad)].score_label.text()
    exports = tmp_path / "exports"

    seen: list[str] = []
    answer_modal("Cancel", seen)
    window.export_all()
    assert seen and "below the LR-consistency threshold of 30 dB" in seen[0]
    assert f"keeper.png (seed 5, no LoRA, stage 2): {bad.lr_consistency:.1f} dB" in seen[0]
    assert not exports.exists() or not list(exports.iterdir())

    answer_modal(EXPORT_ANYWAY, seen)
    window.export_all()
    qtbot.waitUntil(lambda: "Exported 1 file" in window.statusBar().currentMessage())
    assert len(list(exports.iterdir())) == 1

    # a faithful pick passes without a question
    good = next(e for e in entries if e.key == CandidateKey(1, True, 2))
    assert good.lr_consistency is not None and good.lr_consistency >= 30.0
    window.session.candidates.pick(good)
    assert window.session.low_fidelity_picks() == []


def test_export_below_threshold_is_refused(qtbot, make_window, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    window = make_window(export_min_lr_db=30.0, export_low_fidelity="refuse")
    entries = run_two_seeds(qtbot, window)
    window.session.candidates.pick(corrupted(entries))
    seen: list[str] = []
    answer_modal("OK", seen)
    window.export_all()
    assert seen and "Export refused" in seen[0] and "keeper.png (seed 5" in seen[0]
    exports = tmp_path / "exports"
    assert not exports.exists() or not list(exports.iterdir())
    # enforced below the window too: any export path refuses
    with pytest.raises(ExportError, match=r"below the LR-consistency threshold of 30 dB"):
        window.session.export()


def test_export_guard_asks_then_refuses_a_contradicting_shirt_number(
    qtbot, make_window, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from fbupscale_gui.core.number_check import NumberReading, judge

    window = make_window()
    entries = run_two_seeds(qtbot, window)
    wrong = entries[0]
    check = judge((9,), [NumberReading("8", 0.99, ((0, 0), (9, 0), (9, 9), (0, 9)))])
    wrong._candidate = dataclasses.replace(wrong.candidate, number_check=check)
    window.session.candidates.pick(wrong)
    exports = tmp_path / "exports"
    seen: list[str] = []
    answer_modal("Cancel", seen)
    window.export_all()
    assert seen and "shirt number the scene contradicts. Export anyway?" in seen[0]
    assert "8 read where the scene says 9" in seen[0]
    assert not exports.exists() or not list(exports.iterdir())
    # a setting makes it refuse, on every export path
    window.session.settings.update(export_number_contradiction="refuse")
    seen.clear()
    answer_modal("OK", seen)
    window.export_all()
    assert seen and seen[0].startswith("Export refused: 1 pick(s) show a shirt number")
    with pytest.raises(ExportError, match="8 read where the scene says 9"):
        window.session.export()
    assert not exports.exists() or not list(exports.iterdir())


def test_guard_is_off_by_default_and_settings_parse_stored_text(qapp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from fbupscale_gui.core.settings import Settings, SettingsError

    s = Settings.defaults()
    assert s.export_min_lr_db == 0.0 and s.export_low_fidelity == "ask" and not s.export_badge
    stored = Settings.from_mapping(
        {"export_min_lr_db": "27.5", "export_badge": "true", "export_low_fidelity": "refuse"}
    )
    assert stored.export_min_lr_db == 27.5 and stored.export_badge
    assert stored.export_low_fidelity == "refuse"
    with pytest.raises(SettingsError, match="export_min_lr_db"):
        s.replace(export_min_lr_db=150)
    model = SettingsModel(QSettings(str(tmp_path / "x.ini"), QSettings.Format.IniFormat))
    model.update(export_min_lr_db=25.0, export_badge=True)
    again = SettingsModel(QSettings(str(tmp_path / "x.ini"), QSettings.Format.IniFormat))
    assert again.settings.export_min_lr_db == 25.0 and again.settings.export_badge is True


def test_settings_dialog_edits_the_guard_and_badge(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from fbupscale_gui.core.settings import Settings
    from fbupscale_gui.ui.settings_dialog import SettingsDialog

    dialog = SettingsDialog(Settings.defaults())
    qtbot.addWidget(dialog)
    assert dialog.min_lr.text() == "off"
    dialog.min_lr.setValue(26.0)
    dialog.low_fidelity.setCurrentIndex(dialog.low_fidelity.findData("refuse"))
    dialog.badge.setChecked(True)
    dialog.accept()
    result = dialog.result_settings()
    assert result is not None
    assert (result.export_min_lr_db, result.export_low_fidelity, result.export_badge) == (
        26.0,
        "refuse",
        True,
    )


def test_pixels_are_never_scored_in_the_gui_thread(qtbot, make_window, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import threading

    from fbupscale_gui.eval import scoring

    threads: list[str] = []
    real = scoring.score_candidate

    def spy(cutout: Image.Image, candidate: Candidate) -> float | None:
        threads.append(threading.current_thread().name)
        return real(cutout, candidate)

    monkeypatch.setattr(scoring, "score_candidate", spy)
    window = make_window()
    run_two_seeds(qtbot, window)
    assert threads and threading.main_thread().name not in threads
    assert np.isfinite([t.entry.lr_consistency for t in window.candidates.tiles()]).all()


@pytest.mark.slow
def test_suggest_compares_like_with_like(qapp) -> None:  # type: ignore[no-untyped-def]
    """Lanczos invents nothing and always scores highest: it is never suggested over an engine
    that reconstructs, and FLUX candidates are compared among themselves."""
    from PySide6.QtGui import QImage

    from fbupscale_gui.state.candidates import CandidateStore
    from fbupscale_gui.worker.engine_thread import ReadyCandidate

    store = CandidateStore()
    image = Image.new("RGB", (8, 8))

    def add(engine: str, variant: int, score: float | None) -> CandidateEntry:
        request = ReconstructionRequest(engine=engine)  # type: ignore[arg-type]
        cand = Candidate(CandidateKey(variant, False, 2), 5 + variant, image, request)
        run = store.new_run(1)
        return store.add(1, run, ReadyCandidate(cand, QImage(), QImage(), score))

    assert store.suggest(1) is None
    add("lanczos", 0, 45.0)
    esr = add("realesrgan", 0, 29.0)
    assert store.suggest(1) is esr
    add("flux", 0, 24.0)
    flux_best = add("flux", 1, 26.5)
    add("flux", 2, None)  # unscored: never suggested
    assert store.suggested(1) is None  # a new candidate voids the old suggestion
    assert store.suggest(1) is flux_best
    assert store.picked(1) is not flux_best  # the first arrival stays picked


def test_heatmap_is_made_off_the_gui_thread_on_the_asyncio_loop(
    qtbot, make_window, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import threading

    from fbupscale_gui.eval import scoring
    from fbupscale_gui.state.heatmaps import HeatmapCache

    window = make_window()
    entries = run_two_seeds(qtbot, window)
    cutout = window.session.cutouts.at(0).image
    threads: list[str] = []
    real = scoring.candidate_heatmap

    def spy(cut: Image.Image, candidate: Candidate) -> Image.Image | None:
        threads.append(threading.current_thread().name)
        return real(cut, candidate)

    monkeypatch.setattr(scoring, "candidate_heatmap", spy)

    async def scenario() -> None:
        cache = HeatmapCache()
        ready: list[CandidateEntry] = []
        cache.ready.connect(ready.append)
        assert cache.request(entries[0], cutout) is None  # on its way, not blocking
        assert cache.is_pending(entries[0])
        for _ in range(500):
            if ready:
                break
            await asyncio.sleep(0.01)
        assert ready == [entries[0]] and cache.get(entries[0]) is not None
        assert cache.request(entries[0], cutout) is cache.get(entries[0])  # cached
        assert len(threads) == 1

    asyncio.run(scenario())
    assert threads and threads[0] != threading.main_thread().name


def test_a_heatmap_failure_is_shown_not_blamed_on_the_shape(
    qtbot, make_window, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from fbupscale_gui.eval import scoring

    window = make_window()
    entries = run_two_seeds(qtbot, window)
    panel, compare = window.candidates, window.candidates.compare

    def broken(cut: Image.Image, candidate: Candidate) -> Image.Image | None:
        raise RuntimeError("scratch buffer exhausted")

    monkeypatch.setattr(scoring, "candidate_heatmap", broken)
    panel.compare_entry(entries[0])
    compare.heatmap_button.click()  # on: the heatmap is made now, and fails
    assert compare.overlay() is None
    text = panel.compare_label.text()
    assert "heatmap failed: " in text and "RuntimeError: scratch buffer exhausted" in text
    assert "shape" not in text
    assert panel.heatmaps.error(entries[0])
    assert panel.heatmaps.error(entries[1]) == ""  # not asked for: no error


def test_a_fast_tile_shows_its_delta_against_the_exact_twin(qtbot, make_window) -> None:  # type: ignore[no-untyped-def]
    """Issue 12: a non-exact speed mode's tile says what it cost against its exact twin (same
    cutout, key and request but the speed), where both are scored; other tiles look as before."""
    from PySide6.QtGui import QImage

    from fbupscale_gui.core.request import ModelRef
    from fbupscale_gui.worker.engine_thread import ReadyCandidate

    window = make_window()
    cutout = window.session.cutouts.at(0)
    panel, store = window.candidates, window.session.candidates
    panel.set_cutout(cutout)
    base = ReconstructionRequest(flux=ModelRef(path="/m/flux1-dev.safetensors", sha256="a" * 64))
    image = Image.new("RGB", (8, 8))

    def add(
        request: ReconstructionRequest, key: CandidateKey, score: float | None
    ) -> CandidateEntry:
        run = store.new_run(cutout.id)
        ready = ReadyCandidate(Candidate(key, 5, image, request), QImage(), QImage(), score)
        return store.add(cutout.id, run, ready)

    twin_key, lone_key = CandidateKey(0, False, 2), CandidateKey(1, False, 2)
    fast = add(base.replace(speed="fast"), twin_key, 30.94)
    unscored_exact = add(base, twin_key, None)
    lone = add(base.replace(speed="fast-mag"), lone_key, 33.0)  # no exact twin at all
    tiles = {id(t.entry): t for t in panel.tiles()}
    assert tiles[id(fast)].score_label.text() == "LR 30.9 dB"  # the twin is not scored yet
    assert tiles[id(unscored_exact)].score_label.text() == "LR —"

    exact = add(base, twin_key, 31.0)
    tiles = {id(t.entry): t for t in panel.tiles()}
    assert tiles[id(fast)].score_label.text() == "LR 30.9 dB (−0.06 vs exact)"
    assert "fast −0.06 dB vs exact" in tiles[id(fast)].score_label.toolTip()
    assert tiles[id(exact)].score_label.text() == "LR 31.0 dB"
    assert tiles[id(lone)].score_label.text() == "LR 33.0 dB"
    assert "vs exact" not in tiles[id(lone)].score_label.toolTip()
    panel.compare_entry(fast, against=exact)  # the compare view's image captions say it too
    left_caption, right_caption = panel.compare.labels()
    assert right_caption.endswith("LR 30.9 dB (−0.06 vs exact)")
    assert left_caption.endswith("LR 31.0 dB")
    assert "vs exact" not in panel.compare_label.text()  # the line above keeps its width

    slower = add(base.replace(speed="compiled"), twin_key, 31.27)  # a gain shows its + sign
    tiles = {id(t.entry): t for t in panel.tiles()}
    assert tiles[id(slower)].score_label.text() == "LR 31.3 dB (+0.27 vs exact)"
