"""The number check: verdicts from readings, OCR on shirt renders, metadata and pick rules."""

from __future__ import annotations

import pytest

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.number_check import (
    NumberCheck,
    NumberReading,
    badge_text,
    digit_strings,
    expected_numbers,
    judge,
    suggestable,
    suggestion_text,
)
from fbupscale_gui.core.scene import Person, Scene
from fbupscale_gui.eval.jersey_renders import render, render_pair, spec_for


def _r(text: str, conf: float = 0.99) -> NumberReading:
    return NumberReading(text, conf, ((0, 0), (10, 0), (10, 10), (0, 10)))


def test_expected_numbers_are_only_the_visible_ones() -> None:
    scene = Scene(
        people=(
            Person("player", number=9, number_visible=True),
            Person("player", number=4, number_visible=False),
            Person("goalkeeper", number=1, number_visible=True),
        )
    )
    assert expected_numbers(scene) == (1, 9)


@pytest.mark.parametrize(
    ("expected", "read", "verdict", "badge"),
    [
        ((9,), ["9"], "agrees", "✓ 9"),
        ((9,), ["8"], "contradicts", "✗ 8≠9"),
        ((9,), ["19"], "contradicts", "✗ 19≠9"),
        ((9,), [], "unreadable", "?"),
        ((9, 10), ["9", "10"], "agrees", "✓ 9 10"),
        ((9, 10), ["9"], "unreadable", "?"),
        ((9, 10), ["9", "18"], "contradicts", "✗ 18≠10"),
        ((88,), ["8"], "unreadable", "?"),  # a digit hidden by a fold, not another number
        ((), ["7"], "unchecked", ""),
    ],
)
def test_verdicts(expected, read, verdict, badge) -> None:
    check = judge(expected, [_r(t) for t in read])
    assert check.verdict == verdict
    assert badge_text(check) == badge


def test_a_low_confidence_reading_never_contradicts() -> None:
    check = judge((9,), [_r("8", 0.5)])
    assert check.verdict == "unreadable"
    assert check.readings[0].text == "8"  # kept for the record


def test_only_one_or_two_digit_strings_count() -> None:
    box = ((0, 0), (1, 0), (1, 1), (0, 1))
    got = digit_strings([(box, "9", 0.9), (box, "1 0", 0.8), (box, "2026", 0.99), (box, "A9", 1)])
    assert [r.text for r in got] == ["9", "10"]


def test_metadata_round_trips_and_is_strict() -> None:
    check = judge((9,), [_r("8", 0.97)])
    assert NumberCheck.from_dict(check.to_dict()) == check
    bad = check.to_dict() | {"verdict": "maybe"}
    with pytest.raises(RequestError):
        NumberCheck.from_dict(bad)
    with pytest.raises(RequestError):
        NumberCheck.from_dict(check.to_dict() | {"extra": 1})


def test_suggest_pick_never_offers_a_contradicting_candidate_while_one_agrees() -> None:
    agrees, wrong, unread = judge((9,), [_r("9")]), judge((9,), [_r("8")]), judge((9,), [])
    assert suggestable([wrong, agrees, unread]) == [False, True, True]
    # With nothing agreeing, contradicting candidates stay choosable (the guard warns at export).
    assert suggestable([wrong, unread]) == [True, True]


# -- the OCR on renders (engine) -------------------------------------------------------------


@pytest.fixture(scope="module")
def read():
    from fbupscale_gui.engine.numbers import read_numbers

    return read_numbers


@pytest.mark.slow  # a real OCR run
def test_correct_wrong_and_missing_numbers_on_a_render(read) -> None:
    readings = read(render(spec_for(9, "clear", 1, size=512)))
    assert judge((9,), readings).verdict == "agrees"
    wrong = judge((8,), readings)
    assert wrong.verdict == "contradicts" and badge_text(wrong) == "✗ 9≠8"
    box = wrong.readings[0].box
    xs = [x for x, _ in box]
    assert len(box) == 4 and 128 < min(xs) < max(xs) < 384  # the number is mid-shirt


def test_a_blank_shirt_is_unreadable(read) -> None:
    from PIL import Image

    assert judge((9,), read(Image.new("RGB", (512, 512), (20, 40, 140)))).verdict == "unreadable"


@pytest.mark.slow  # a real OCR run
def test_two_players(read) -> None:
    readings = read(render_pair(spec_for(9, "clear", 3, size=768), 10))
    assert judge((9, 10), readings).verdict == "agrees"
    assert judge((9, 16), readings).verdict == "contradicts"


# -- the score command ------------------------------------------------------------------------


@pytest.mark.slow  # a real OCR run
def test_score_with_a_scene_reports_numbers_and_a_verdict_per_candidate(
    read, tmp_path, capsys
) -> None:
    import json

    from PIL import Image

    from fbupscale_gui.cli import main as cli_main

    nine = render(spec_for(9, "clear", 1, size=512))
    eight = render(spec_for(8, "clear", 2, size=512))
    nine.resize((32, 32), Image.Resampling.BOX).save(tmp_path / "cutout.png")
    nine.save(tmp_path / "nine.png")
    eight.save(tmp_path / "eight.png")
    scene = Scene(people=(Person("player", number=9, number_visible=True),))
    (tmp_path / "scene.json").write_text(scene.to_json(), encoding="utf-8")
    args = ["score", str(tmp_path / "cutout.png"), str(tmp_path / "nine.png")]
    args += [str(tmp_path / "eight.png"), "--scene", str(tmp_path / "scene.json"), "--json"]
    assert cli_main(args) == 0
    rows = json.loads(capsys.readouterr().out)["candidates"]
    assert [r["number_check"] for r in rows] == ["agrees", "contradicts"]
    assert rows[0]["numbers"][0]["text"] == "9" and rows[0]["numbers"][0]["confidence"] > 0.8
    assert rows[1]["number_detail"] == "8 read where the scene says 9"


# -- in the engine, the metadata and the window's rules ---------------------------------------


def _scene_json(*numbers: int) -> str:
    people = tuple(Person("player", number=n, number_visible=True) for n in numbers)
    return Scene(people=people).to_json()


@pytest.mark.slow  # a real OCR run
def test_the_engine_checks_every_candidate_and_the_metadata_keeps_it(read, tmp_path) -> None:
    from PIL import Image

    from fbupscale_gui.core.messages import CandidateReady
    from fbupscale_gui.core.messages import ReconstructJob as Job
    from fbupscale_gui.core.request import Preprocess, ReconstructionRequest
    from fbupscale_gui.engine import Engine
    from fbupscale_gui.storage.cutouts import make_source
    from fbupscale_gui.storage.metadata import read_metadata, save_candidate

    cutout = tmp_path / "nine.png"
    render(spec_for(9, "clear", 4, size=512)).resize((200, 200), Image.Resampling.BOX).save(cutout)
    verdicts = {}
    for claimed in (9, 8):
        request = ReconstructionRequest(
            engine="lanczos",
            source=make_source(cutout),
            preprocess=Preprocess(size=512),
            scene_json=_scene_json(claimed),
        )
        messages = list(Engine().handle(1, Job(request), lambda: False))
        (ready,) = [m for m in messages if isinstance(m, CandidateReady)]
        assert ready.number_check is not None
        verdicts[claimed] = ready.number_check.verdict
        # it travels with the candidate into the file's metadata, and reads back the same
        path = save_candidate(ready.candidate(), tmp_path / f"c{claimed}.png")
        assert read_metadata(path).number_check == ready.number_check
    assert verdicts == {9: "agrees", 8: "contradicts"}


def test_without_a_visible_number_the_ocr_does_not_run(monkeypatch) -> None:
    from PIL import Image

    from fbupscale_gui.engine import numbers

    def no_ocr() -> None:
        raise AssertionError("the OCR ran with nothing to check")

    monkeypatch.setattr(numbers, "_ocr", no_ocr)
    check = numbers.check_numbers(Image.new("RGB", (64, 64)), ())
    assert check.verdict == "unchecked" and badge_text(check) == ""


def test_export_refuses_a_contradicting_pick_when_set_to(tmp_path) -> None:
    from PIL import Image

    from fbupscale_gui.core.export import ExportError, ExportItem, contradicting
    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
    from fbupscale_gui.storage.export import export_candidates

    request = ReconstructionRequest(engine="lanczos", scene_json=_scene_json(9))
    image = Image.new("RGB", (64, 64))

    def item(check: NumberCheck) -> ExportItem:
        key = CandidateKey(0, False, 2)
        return ExportItem(Candidate(key, 1, image, request, number_check=check), "box.png")

    wrong, right = item(judge((9,), [_r("8")])), item(judge((9,), [_r("9")]))
    assert contradicting([wrong, right]) == [wrong]
    with pytest.raises(ExportError, match="8 read where the scene says 9"):
        export_candidates(
            [right, wrong], tmp_path, "{cutout}", match="m", refuse_contradicting=True
        )
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert len(export_candidates([right, wrong], tmp_path, "{cutout}_{seed}", match="m")) == 2


# -- suggesting the cutout's numbers in the scene form ----------------------------------------


def test_the_suggestion_gives_confidences_and_never_a_value() -> None:
    text = suggestion_text([_r("9", 0.96), _r("19", 0.41), _r("9", 0.5)])
    assert text.startswith("The cutout may show 9 (96% sure) or 19 (41%).")
    assert "Only a suggestion" in text
    assert "No shirt number is legible" in suggestion_text([])


@pytest.mark.slow  # the faithful preview and a real OCR run
def test_the_engine_reads_a_cutouts_numbers_enlarged(read, tmp_path) -> None:
    from PIL import Image

    from fbupscale_gui.core.messages import Done, ReadNumbersJob
    from fbupscale_gui.engine import Engine

    cutout = tmp_path / "cutout.png"
    render(spec_for(23, "clear", 6, size=512)).resize((96, 96), Image.Resampling.BOX).save(cutout)
    messages = list(Engine().handle(3, ReadNumbersJob(str(cutout)), lambda: False))
    done = messages[-1]
    assert isinstance(done, Done), messages
    assert [r.text for r in done.result][:1] == ["23"]
    assert all(0 <= r.confidence <= 1 for r in done.result)


def test_the_scene_form_shows_the_suggestion_and_keeps_the_scene(qtbot, window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    cutouts = window.session.cutouts
    Image.new("RGB", (40, 60), (200, 30, 30)).save(tmp_path / "red.png")
    cutouts.add_paths([tmp_path / "red.png"])
    qtbot.waitUntil(lambda: cutouts.rowCount() == 1)
    window.cutouts.select_row(0)
    (cutout,) = cutouts.cutouts()
    editor = window.scene_editor
    before = editor.scene()
    text = suggestion_text([_r("9", 0.96)])
    window.editor_sync.on_numbers_suggested(cutout.id, text)
    assert editor.number_hint.text() == text and editor.number_hint.isVisibleTo(window)
    assert editor.scene() == before  # nothing filled in
    window.editor_sync.on_numbers_suggested(cutout.id + 999, "another cutout's")
    assert editor.number_hint.text() == text  # only the current cutout's suggestion shows


def test_score_scene_must_be_a_regular_file(tmp_path, capsys) -> None:
    from fbupscale_gui.cli import main as cli_main

    image = render(spec_for(9, "clear", 1, size=64))
    image.save(tmp_path / "cutout.png")
    image.save(tmp_path / "cand.png")
    args = ["score", str(tmp_path / "cutout.png"), str(tmp_path / "cand.png"), "--scene"]
    assert cli_main([*args, "/dev/zero"]) == 1  # never read without bound
    err = capsys.readouterr().err
    assert "not a regular file" in err and err.count("\n") == 1
