"""Scene schema: prompt wording (paper 3.3.1 caption rules), determinism, strict JSON."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.scene import (
    BACKGROUND_ELEMENTS,
    HAIR_STYLES,
    KIT_TYPES,
    ROLES,
    SCENE_SCHEMA_VERSION,
    SKIN_TONES,
    STADIUM_OCCUPANCY,
    Kit,
    Person,
    Scene,
    Team,
    count_phrase,
    with_article,
)

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"

MILAN = Team("A.C. Milan", "home", Kit("red and black", "white", pattern="striped"))
INTER_AWAY = Team("Inter Milan", "away", Kit("white", "white", accents="blue"))


def goalkeeper_scene() -> Scene:
    """The paper's section 3.1 example."""
    return Scene(
        people=(
            Person(
                "goalkeeper",
                number=99,
                number_visible=True,
                action="diving low to make a save",
                kit=Kit("green", "green"),
            ),
        ),
        background=("goal area", "field markings"),
        blurred_background=True,
    )


def two_team_scene() -> Scene:
    return Scene(
        teams=(MILAN, INTER_AWAY),
        people=(
            Person("player", team=0, number=11, number_visible=True, action="attempting to score"),
            Person(
                "player",
                team=1,
                number=28,
                number_visible=False,
                hair="short hair",
                skin="light skin tone",
                action="trying to block the shot",
            ),
            Person("player", team=1, number=20, number_visible=True, action="closing in"),
            Person("goalkeeper", team=1, kit=Kit("black", "black"), action="preparing to save"),
        ),
        action="two players are contesting possession of the ball",
        spatial=("Player number 11 is positioned near the penalty box",),
        stadium="half full",
        background=("goal net", "advertising boards"),
    )


def hand_built_scenes() -> list[Scene]:
    return [
        Scene(),
        goalkeeper_scene(),
        two_team_scene(),
        Scene(
            people=(
                Person("referee", hair="bald", skin="dark skin tone", kit=Kit("yellow", "black")),
                Person("assistant referee", action="raising the flag"),
                Person("coach", team=0, hair="ponytail"),
                Person("spectator"),
            ),
            teams=(Team("", "third", Kit("orange", "", accents="a black sash", pattern="")),),
            stadium="full",
            background=BACKGROUND_ELEMENTS,
            extra="Rain is falling",
            blurred_background=True,
        ),
        Scene(
            people=tuple(Person("player", number=n, number_visible=n % 2 == 0) for n in range(5)),
            stadium="empty",
            spatial=("the ball is in the air", "the goal is on the left."),
        ),
    ]


# -- prompt ---------------------------------------------------------------------------------


def test_goalkeeper_example_reads_like_the_paper() -> None:
    assert goalkeeper_scene().to_prompt() == (
        "A goalkeeper wearing a green jersey and matching shorts with the number 99 is diving "
        "low to make a save. The scene unfolds on a soccer field, with the blurred background "
        "featuring the goal area and field markings."
    )


def test_goalkeeper_example_with_overall_action() -> None:
    scene = goalkeeper_scene().replace(
        action="The player is focused on controlling the ball, which is on the ground ahead"
    )
    assert scene.to_prompt() == (
        "A goalkeeper wearing a green jersey and matching shorts with the number 99 is diving "
        "low to make a save. The player is focused on controlling the ball, which is on the "
        "ground ahead. The scene unfolds on a soccer field, with the blurred background "
        "featuring the goal area and field markings."
    )


def test_two_team_example() -> None:
    prompt = two_team_scene().to_prompt()
    assert prompt == (
        "Three players and a goalkeeper are visible. "
        "A player from A.C. Milan, wearing a red and black striped jersey with white shorts, "
        "marked with the number 11, is attempting to score. "
        "Another player, with short hair and light skin tone, wearing a white jersey with blue "
        "accents and matching shorts, is trying to block the shot. "
        "Another player, also wearing a white jersey with the number 20, is closing in. "
        "The goalkeeper wearing a black jersey and matching shorts is preparing to save. "
        "Two players are contesting possession of the ball. "
        "Player number 11 is positioned near the penalty box. "
        "The scene unfolds on a soccer field, with the background featuring the goal net, "
        "advertising boards, and a partially filled stadium with a moderate crowd."
    )
    # the home team is named, the away team never is; hidden numbers never appear
    assert "A.C. Milan" in prompt
    assert "Inter" not in prompt
    assert "28" not in prompt


def test_home_kit_names_the_team_and_other_kits_do_not() -> None:
    for kit_type in KIT_TYPES:
        team = dataclasses.replace(MILAN, kit_type=kit_type)
        prompt = Scene(teams=(team,), people=(Person("player", team=0),)).to_prompt()
        assert ("A.C. Milan" in prompt) == (kit_type == "home"), kit_type
        assert "a red and black striped jersey with white shorts" in prompt


def test_numbers_only_when_visible() -> None:
    hidden = Scene(people=(Person("player", number=7, action="running"),))
    shown = Scene(people=(Person("player", number=7, number_visible=True, action="running"),))
    assert "7" not in hidden.to_prompt()
    assert shown.to_prompt().startswith("A player with the number 7 is running.")


def test_counts_articles_and_plurals() -> None:
    assert count_phrase("player", 2) == "two players"
    assert count_phrase("coach", 3) == "three coaches"
    assert count_phrase("assistant referee", 1) == "an assistant referee"
    assert count_phrase("spectator", 21) == "21 spectators"
    assert with_article("orange jersey") == "an orange jersey"
    assert with_article("white jersey") == "a white jersey"
    people = (
        Person("player"),
        Person("player"),
        Person("goalkeeper"),
        Person("assistant referee"),
    )
    scene = Scene(people=people)
    assert scene.role_counts() == {"player": 2, "goalkeeper": 1, "assistant referee": 1}
    assert scene.count_text() == "two players, a goalkeeper, and an assistant referee"
    assert scene.to_prompt().startswith(
        "Two players, a goalkeeper, and an assistant referee are visible."
    )
    assert Scene(people=people[:3]).to_prompt().startswith("Two players and a goalkeeper are")


def test_kit_wording() -> None:
    assert Kit("green", "green").describe() == "a green jersey and matching shorts"
    assert Kit("Green", " green ").describe() == "a Green jersey and matching shorts"
    assert Kit("red", "white").describe() == "a red jersey with white shorts"
    assert Kit("blue", "white", accents="yellow").describe() == (
        "a blue jersey with yellow accents and white shorts"
    )
    assert Kit("blue", "", accents="yellow accents").describe() == (
        "a blue jersey with yellow accents"
    )
    assert Kit("red", "white", accents="white sleeves").describe() == (
        "a red jersey with white sleeves and white shorts"
    )
    assert Kit("green and white", "white", pattern="hooped").describe() == (
        "a green and white hooped jersey with white shorts"
    )


def test_hair_and_skin_in_neutral_words() -> None:
    person = Person("player", hair="braids", skin="dark skin tone", action="celebrating")
    assert (
        Scene(people=(person,))
        .to_prompt()
        .startswith("A player with braids and dark skin tone is celebrating.")
    )
    bald = Person("referee", hair="bald", kit=Kit("black", "black"))
    assert (
        Scene(people=(bald,))
        .to_prompt()
        .startswith("A referee with a bald head is wearing a black jersey and matching shorts.")
    )


@pytest.mark.parametrize(
    ("stadium", "phrase"),
    [
        ("empty", "an empty stadium with no spectators"),
        ("half full", "a partially filled stadium with a moderate crowd"),
        ("full", "a sold-out stadium at full capacity"),
    ],
)
def test_stadium_occupancy_wording(stadium: str, phrase: str) -> None:
    prompt = Scene(stadium=stadium).to_prompt()  # type: ignore[arg-type]
    assert prompt == f"The scene unfolds on a soccer field, with the background featuring {phrase}."


def test_background_without_elements() -> None:
    assert Scene().to_prompt() == "The scene unfolds on a soccer field."
    assert Scene(blurred_background=True).to_prompt() == (
        "The scene unfolds on a soccer field, with a blurred background."
    )


def test_prompt_is_deterministic_and_clean() -> None:
    for scene in hand_built_scenes():
        prompt = scene.to_prompt()
        assert prompt == scene.to_prompt()
        assert prompt == Scene.from_json(scene.to_json()).to_prompt()
        assert prompt.endswith(".")
        assert "  " not in prompt and ".." not in prompt and " ," not in prompt
        assert "None" not in prompt
        for sentence in re.split(r"(?<=\.) ", prompt):
            assert sentence[0].isupper() or sentence[0].isdigit(), sentence


def test_choice_tuples_for_combo_boxes() -> None:
    assert ROLES == ("player", "goalkeeper", "referee", "assistant referee", "coach", "spectator")
    assert KIT_TYPES == ("home", "away", "third")
    assert "" in HAIR_STYLES and "ponytail" in HAIR_STYLES
    assert SKIN_TONES == ("", "light skin tone", "medium skin tone", "dark skin tone")
    assert STADIUM_OCCUPANCY == ("", "empty", "half full", "full")
    assert "corner flag" in BACKGROUND_ELEMENTS


# -- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Person("striker"), "role"),  # type: ignore[arg-type]
        (lambda: Person("player", hair="blonde"), "hair"),  # type: ignore[arg-type]
        (lambda: Person("player", skin="pale"), "skin"),  # type: ignore[arg-type]
        (lambda: Person("player", number=100), "number"),
        (lambda: Person("player", number_visible=True), "number"),
        (lambda: Person("referee", team=0), "team"),
        (lambda: Person("player", action="two\nlines"), "action"),
        (lambda: Kit("", "white"), "kit.jersey"),
        (lambda: Team("X", "fourth", Kit("red", "red")), "team.kit_type"),  # type: ignore[arg-type]
        (lambda: Scene(people=(Person("player", team=1),), teams=(MILAN,)), "people[0].team"),
        (lambda: Scene(stadium="packed"), "stadium"),  # type: ignore[arg-type]
        (lambda: Scene(background=("moon",)), "background[0]"),  # type: ignore[arg-type]
        (lambda: Scene(background=("bench", "bench")), "background"),
        (lambda: Scene(stadium="empty", background=("spectators out of focus",)), "background"),
        (lambda: Scene(spatial=("",)), "spatial[0]"),
        (lambda: Scene(action="x" * 301), "action"),
    ],
)
def test_invalid_values_name_the_field(build: object, field: str) -> None:
    with pytest.raises(RequestError, match=rf"^{re.escape(field)}: "):
        build()  # type: ignore[operator]


def test_validate_team_refs_and_without_team() -> None:
    scene = two_team_scene()
    scene.validate_team_refs()
    fewer = scene.without_team(0)
    assert fewer.teams == (INTER_AWAY,)
    assert [p.team for p in fewer.people] == [None, 0, 0, 0]
    fewer.validate_team_refs()
    with pytest.raises(RequestError, match=r"^teams: "):
        scene.without_team(5)


# -- JSON -----------------------------------------------------------------------------------


def test_json_round_trip_is_lossless() -> None:
    for scene in hand_built_scenes():
        text = scene.to_json()
        again = Scene.from_json(text)
        assert again == scene
        assert again.to_json() == text
        assert Scene.from_dict(scene.to_dict()) == scene
        assert Scene.from_json(scene.to_json(indent=2)) == scene
        assert json.loads(text)["version"] == SCENE_SCHEMA_VERSION


def _bad(mutate: object) -> str:
    data = two_team_scene().to_dict()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(RequestError) as info:
        Scene.from_dict(data)
    return str(info.value)


def test_strict_json_errors_name_the_field() -> None:
    assert _bad(lambda d: d.update(mood="tense")).startswith("scene: unknown field(s) ['mood']")
    assert _bad(lambda d: d["people"][1].update(hat="red")).startswith(
        "scene.people[1]: unknown field(s) ['hat']"
    )
    assert _bad(lambda d: d["people"][1].update(hair="blonde")).startswith(
        "scene.people[1].hair: must be one of"
    )
    assert _bad(lambda d: d["people"][0].update(number=True)).startswith(
        "scene.people[0].number: expected an integer"
    )
    assert _bad(lambda d: d["people"][0].update(number=None)).startswith(
        "scene.people[0].number: is required when number_visible is true"
    )
    assert _bad(lambda d: d["people"][0].update(team=7)).startswith("scene.people[0].team: ")
    assert _bad(lambda d: d["teams"][0]["kit"].update(jersey="")).startswith(
        "scene.teams[0].kit.jersey: must not be empty"
    )
    assert _bad(lambda d: d["teams"][0]["kit"].pop("shorts")).startswith(
        "scene.teams[0].kit: missing field(s) ['shorts']"
    )
    assert _bad(lambda d: d.update(background="goal net")).startswith(
        "scene.background: expected a list"
    )
    assert _bad(lambda d: d.update(blurred_background=1)).startswith(
        "scene.blurred_background: expected true/false"
    )
    assert _bad(lambda d: d.update(version=SCENE_SCHEMA_VERSION + 1)).startswith(
        "scene.version: written by a newer fbupscale"
    )
    assert _bad(lambda d: d.pop("version")).startswith("scene.version: missing")


def test_from_json_rejects_non_json_and_non_objects() -> None:
    with pytest.raises(RequestError, match=r"^scene: not valid JSON"):
        Scene.from_json("{nope")
    with pytest.raises(RequestError, match=r"^scene: expected a JSON object"):
        Scene.from_json("[]")


# -- samples --------------------------------------------------------------------------------


def test_samples_exist_are_cutout_sized_and_have_scenes() -> None:
    images = sorted(SAMPLES.glob("*.png"))
    assert len(images) >= 5
    sizes = set()
    for path in images:
        with Image.open(path) as im:
            assert 60 <= im.width <= 100 and 60 <= im.height <= 100, path.name
            sizes.add(im.size)
        scene_path = path.with_name(path.stem + ".scene.json")
        scene = Scene.from_json(scene_path.read_text(encoding="utf-8"))
        assert scene.people, scene_path.name
        assert scene.to_prompt()
    assert len(sizes) >= 3  # varied aspect ratios


def test_sample_scene_files_match_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_samples", SAMPLES.parents[1] / "scripts" / "make_samples.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_samples", module)  # dataclasses look it up
    spec.loader.exec_module(module)
    for sample in module.samples():
        on_disk = (SAMPLES / f"{sample.name}.scene.json").read_text(encoding="utf-8")
        assert Scene.from_json(on_disk) == sample.scene, sample.name
        with Image.open(SAMPLES / f"{sample.name}.png") as im:
            assert im.size == sample.size
