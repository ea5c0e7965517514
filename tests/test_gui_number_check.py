"""The number check in the window: tile badges, compare outlines, suggest pick, export guard."""

from __future__ import annotations

from PIL import Image

from fbupscale_gui.core.job import Candidate
from fbupscale_gui.core.number_check import NumberCheck, NumberReading, judge
from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest


def _check(expected: int, read: str) -> NumberCheck:
    box = ((10.0, 10.0), (30.0, 10.0), (30.0, 40.0), (10.0, 40.0))
    return judge((expected,), [NumberReading(read, 0.99, box)])


def _store_with(checks: list[tuple[float, NumberCheck | None]]):  # type: ignore[no-untyped-def]
    from PySide6.QtGui import QImage

    from fbupscale_gui.state.candidates import CandidateStore
    from fbupscale_gui.worker.bridge import ReadyCandidate

    store = CandidateStore()
    image = Image.new("RGB", (8, 8))
    entries = []
    for variant, (score, check) in enumerate(checks):
        request = ReconstructionRequest(engine="flux", variants=len(checks))
        cand = Candidate(
            CandidateKey(variant, False, 2), 5 + variant, image, request, number_check=check
        )
        run = store.new_run(1)
        entries.append(store.add(1, run, ReadyCandidate(cand, QImage(), QImage(), score)))
    return store, entries


def test_suggest_never_offers_a_contradicting_candidate_while_one_agrees(qapp) -> None:  # type: ignore[no-untyped-def]
    # the most faithful by LR-consistency shows 8 where the scene says 9
    store, (_wrong, _right, unread) = _store_with(
        [(31.0, _check(9, "8")), (27.0, _check(9, "9")), (29.0, None)]
    )
    assert store.suggest(1) is unread  # best LR among those that do not contradict
    store2, (_wrong2, right2) = _store_with([(31.0, _check(9, "8")), (27.0, _check(9, "9"))])
    assert store2.suggest(1) is right2
    # with nothing agreeing, LR-consistency alone decides (the export guard still warns)
    store3, (wrong3, _unread3) = _store_with([(31.0, _check(9, "8")), (27.0, None)])
    assert store3.suggest(1) is wrong3


def test_tiles_wear_the_badge_and_the_compare_view_outlines_the_readings(qtbot) -> None:  # type: ignore[no-untyped-def]
    from fbupscale_gui.ui.candidates_panel import CandidateTile, number_boxes

    _store, (wrong, right, unread) = _store_with(
        [(31.0, _check(9, "8")), (27.0, _check(9, "9")), (29.0, judge((9,), []))]
    )
    texts = []
    for entry in (wrong, right, unread):
        tile = CandidateTile(entry, 1)
        qtbot.addWidget(tile)
        texts.append(tile.number_label.text())
        assert tile.number_label.isVisibleTo(tile)
    assert texts == ["✗ 8≠9", "✓ 9", "?"]
    assert tile.number_label.property("role") == "hint"
    assert (
        "not legible" in tile.number_label.toolTip()
        or "no shirt number" in tile.number_label.toolTip()
    )
    (box,) = number_boxes(wrong.number_check)
    assert box == (((10.0, 10.0), (30.0, 10.0), (30.0, 40.0), (10.0, 40.0)), "8", False)
    assert number_boxes(right.number_check)[0][2] is True
    assert number_boxes(None) == []
