"""The structured scene description a FLUX prompt is generated from.

An operator describes what is visible in a cutout: the people (role, team, shirt number when it
is readable, hair and skin tone in neutral words, what they are doing), the teams' kits, the
overall action, spatial relations, and the background (stadium occupancy, goalposts, boards).
:meth:`Scene.to_prompt` turns that into concise, deterministic English following the caption
rules the football LoRA was trained on (paper section 3.3.1):

* begin by identifying every visible person, with a count and their roles;
* describe each team's jersey and shorts colours; the team name is written only for a home
  (first) kit, never for second or third kits, which change from season to season;
* write a shirt number only when it is fully visible, and tie it to that person's action;
* describe hair in fixed categories and skin tone in neutral, professional words;
* describe the action, spatial relations and the background, including how full the stadium is
  (empty: no spectators; half full: moderate crowd; full: sold out).

Every choice a GUI offers in a combo box is a ``Literal`` type with a matching tuple
(:data:`ROLES`, :data:`HAIR_STYLES`, ...), ``""`` meaning "not specified". Like
:class:`~fbupscale_gui.core.request.ReconstructionRequest`, a :class:`Scene` is frozen,
validated on construction, and round-trips losslessly through strict JSON with a ``version``.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.jsonable import (
    JsonDocument,
    check_version,
    from_jsonable,
    parse_json,
)
from fbupscale_gui.core.scene_prompt import (
    ACCENT_NOUNS,
    HAIR_PHRASES,
    clean_text,
    count_phrase,
    join_words,
    norm_colour,
    with_article,
    write_prompt,
)

__all__ = [
    "BACKGROUND_ELEMENTS",
    "HAIR_STYLES",
    "KIT_TYPES",
    "MAX_PEOPLE",
    "MAX_TEXT",
    "ROLES",
    "SCENE_SCHEMA_VERSION",
    "SKIN_TONES",
    "STADIUM_OCCUPANCY",
    "TEAM_ROLES",
    "BackgroundElement",
    "Hair",
    "Kit",
    "KitType",
    "Person",
    "Role",
    "Scene",
    "SkinTone",
    "Stadium",
    "Team",
    "count_phrase",
    "with_article",
]

SCENE_SCHEMA_VERSION: Final = 1
#: Longest free-text field, in characters (FLUX's T5 encoder reads 512 tokens in all).
MAX_TEXT: Final = 300
#: Most people one scene may list; cutouts rarely show more than a handful.
MAX_PEOPLE: Final = 30

KitType = Literal["home", "away", "third"]
Role = Literal["player", "goalkeeper", "referee", "assistant referee", "coach", "spectator"]
#: Fixed hair categories; "" is "not specified" and is left out of the prompt.
Hair = Literal["", "bald", "short hair", "long hair", "curly hair", "braids", "ponytail"]
#: Neutral, professional skin-tone descriptors; "" is "not specified".
SkinTone = Literal["", "light skin tone", "medium skin tone", "dark skin tone"]
#: Stadium occupancy; "" is "not visible / not specified".
Stadium = Literal["", "empty", "half full", "full"]
BackgroundElement = Literal[
    "goal area",
    "goalposts",
    "goal net",
    "penalty box",
    "field markings",
    "corner flag",
    "advertising boards",
    "bench",
    "spectators out of focus",
]

KIT_TYPES: Final[tuple[KitType, ...]] = get_args(KitType)
ROLES: Final[tuple[Role, ...]] = get_args(Role)
HAIR_STYLES: Final[tuple[Hair, ...]] = get_args(Hair)
SKIN_TONES: Final[tuple[SkinTone, ...]] = get_args(SkinTone)
STADIUM_OCCUPANCY: Final[tuple[Stadium, ...]] = get_args(Stadium)
BACKGROUND_ELEMENTS: Final[tuple[BackgroundElement, ...]] = get_args(BackgroundElement)
#: Roles that may belong to a team (referees and spectators never do).
TEAM_ROLES: Final[tuple[Role, ...]] = ("player", "goalkeeper", "coach")


def _check(cond: bool, field_name: str, message: str) -> None:
    if not cond:
        raise RequestError(f"{field_name}: {message}")


def _check_text(value: object, field_name: str, *, required: bool = False) -> None:
    _check(isinstance(value, str), field_name, f"expected a string, got {value!r}")
    assert isinstance(value, str)
    _check(len(value) <= MAX_TEXT, field_name, f"must be at most {MAX_TEXT} characters")
    _check(
        "\n" not in value and "\r" not in value and "\t" not in value,
        field_name,
        "must be a single line",
    )
    if required:
        _check(bool(value.strip()), field_name, "must not be empty")


def _check_choice(value: object, allowed: Sequence[object], field_name: str) -> None:
    _check(value in allowed, field_name, f"must be one of {list(allowed)}, got {value!r}")


# -- schema ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kit:
    """A kit's colours in plain words.

    ``jersey`` is the jersey colour(s) ("red and black", "green"); ``pattern`` an optional
    pattern word written after the colours ("striped", "hooped"); ``shorts`` the shorts colour,
    "" when not visible; ``accents`` an optional detail: "yellow" (written "yellow accents"),
    "white sleeves", or a phrase with its own article ("a red central band").
    Shorts of the same colour as the jersey are written as "matching shorts".
    """

    jersey: str
    shorts: str
    accents: str = ""
    pattern: str = ""

    def __post_init__(self) -> None:
        _check_text(self.jersey, "kit.jersey", required=True)
        _check_text(self.shorts, "kit.shorts")
        _check_text(self.accents, "kit.accents")
        _check_text(self.pattern, "kit.pattern")

    @property
    def jersey_phrase(self) -> str:
        """ "red and black striped jersey" (no article)."""
        words = [clean_text(self.jersey)]
        if self.pattern.strip():
            words.append(clean_text(self.pattern))
        return " ".join([*words, "jersey"])

    @property
    def accents_phrase(self) -> str:
        """ "yellow accents", or "" without accents."""
        accents = clean_text(self.accents)
        if not accents:
            return ""
        lower = accents.lower()
        if lower.startswith(("a ", "an ")) or lower.endswith(ACCENT_NOUNS):
            return accents
        return f"{accents} accents"

    @property
    def matching_shorts(self) -> bool:
        shorts = norm_colour(self.shorts)
        return shorts in (norm_colour(self.jersey), "matching")

    def describe(self) -> str:
        """ "a green jersey and matching shorts", "a blue jersey with yellow accents and white
        shorts", "a red and black striped jersey with white shorts"."""
        text = with_article(self.jersey_phrase)
        accents = self.accents_phrase
        shorts = clean_text(self.shorts)
        if accents:
            text += f" with {accents}"
        if not shorts:
            return text
        if self.matching_shorts:
            return f"{text} and matching shorts"
        return f"{text} {'and' if accents else 'with'} {shorts} shorts"


@dataclass(frozen=True)
class Team:
    """A team in the scene. ``name`` is written in the prompt only for a home kit."""

    name: str
    kit_type: KitType
    kit: Kit

    def __post_init__(self) -> None:
        _check_text(self.name, "team.name")
        _check_choice(self.kit_type, KIT_TYPES, "team.kit_type")
        _check(isinstance(self.kit, Kit), "team.kit", f"expected a Kit, got {self.kit!r}")

    @property
    def prompt_name(self) -> str:
        """The name as the prompt writes it: the name for a home kit, else ""."""
        return clean_text(self.name) if self.kit_type == "home" else ""


@dataclass(frozen=True)
class Person:
    """One visible person.

    ``team`` indexes :attr:`Scene.teams` (players, goalkeepers and coaches only). ``number`` is
    written only when ``number_visible``. ``action`` is a verb phrase ("kicking the ball";
    a leading "is" is accepted). ``kit`` overrides the team's kit for this person, e.g. a
    goalkeeper's or a referee's kit.
    """

    role: Role
    team: int | None = None
    number: int | None = None
    number_visible: bool = False
    hair: Hair = ""
    skin: SkinTone = ""
    action: str = ""
    kit: Kit | None = None

    def __post_init__(self) -> None:
        _check_choice(self.role, ROLES, "role")
        if self.team is not None:
            _check(
                isinstance(self.team, int) and not isinstance(self.team, bool) and self.team >= 0,
                "team",
                f"must be a team index (0 or more) or null, got {self.team!r}",
            )
            _check(
                self.role in TEAM_ROLES,
                "team",
                f"a {self.role} does not belong to a team (only {list(TEAM_ROLES)} do)",
            )
        if self.number is not None:
            _check(
                isinstance(self.number, int)
                and not isinstance(self.number, bool)
                and 0 <= self.number <= 99,
                "number",
                f"must be 0..99 or null, got {self.number!r}",
            )
        _check(
            isinstance(self.number_visible, bool),
            "number_visible",
            f"expected true/false, got {self.number_visible!r}",
        )
        _check(
            not self.number_visible or self.number is not None,
            "number",
            "is required when number_visible is true",
        )
        _check_choice(self.hair, HAIR_STYLES, "hair")
        _check_choice(self.skin, SKIN_TONES, "skin")
        _check_text(self.action, "action")
        _check(
            self.kit is None or isinstance(self.kit, Kit),
            "kit",
            f"expected a Kit or null, got {self.kit!r}",
        )

    @property
    def shown_number(self) -> int | None:
        """The number the prompt may write: only a visible one."""
        return self.number if self.number_visible else None

    def appearance(self) -> str:
        """ "short hair and light skin tone", "a ponytail", or ""."""
        parts = [HAIR_PHRASES[self.hair]] if self.hair else []
        if self.skin:
            parts.append(self.skin)
        return " and ".join(parts)

    def verb_phrase(self) -> str:
        """The action as a predicate: "is kicking the ball", or ""."""
        action = clean_text(self.action).rstrip(".")
        if not action:
            return ""
        if re.match(r"(?i)^(is|are|was|has)\b", action):
            return action[0].lower() + action[1:]
        return f"is {action}"


@dataclass(frozen=True)
class Scene(JsonDocument):
    """Everything the prompt says about a cutout. See the module docstring."""

    people: tuple[Person, ...] = ()
    teams: tuple[Team, ...] = ()
    #: The overall action, a sentence ("Two players are contesting possession of the ball").
    action: str = ""
    #: Spatial relations, one sentence each ("Player number 10 is positioned near the penalty box").
    spatial: tuple[str, ...] = ()
    stadium: Stadium = ""
    background: tuple[BackgroundElement, ...] = ()
    #: Anything else worth saying, appended verbatim as a sentence.
    extra: str = ""
    blurred_background: bool = False
    version: int = SCENE_SCHEMA_VERSION

    def __post_init__(self) -> None:
        _check(isinstance(self.people, tuple), "people", "must be a tuple of Person")
        _check(isinstance(self.teams, tuple), "teams", "must be a tuple of Team")
        _check(len(self.people) <= MAX_PEOPLE, "people", f"at most {MAX_PEOPLE} people")
        _check(len(self.teams) <= 8, "teams", "at most 8 teams")
        for i, p in enumerate(self.people):
            _check(isinstance(p, Person), f"people[{i}]", f"expected a Person, got {p!r}")
        for i, t in enumerate(self.teams):
            _check(isinstance(t, Team), f"teams[{i}]", f"expected a Team, got {t!r}")
        self.validate_team_refs()
        _check_text(self.action, "action")
        _check(isinstance(self.spatial, tuple), "spatial", "must be a tuple of strings")
        for i, s in enumerate(self.spatial):
            _check_text(s, f"spatial[{i}]", required=True)
        _check_choice(self.stadium, STADIUM_OCCUPANCY, "stadium")
        _check(isinstance(self.background, tuple), "background", "must be a tuple")
        for i, b in enumerate(self.background):
            _check_choice(b, BACKGROUND_ELEMENTS, f"background[{i}]")
        _check(len(set(self.background)) == len(self.background), "background", "has duplicates")
        _check(
            not (self.stadium == "empty" and "spectators out of focus" in self.background),
            "background",
            "'spectators out of focus' contradicts an empty stadium",
        )
        _check_text(self.extra, "extra")
        _check(
            isinstance(self.blurred_background, bool),
            "blurred_background",
            f"expected true/false, got {self.blurred_background!r}",
        )
        _check(self.version == SCENE_SCHEMA_VERSION, "version", f"must be {SCENE_SCHEMA_VERSION}")

    def validate_team_refs(self) -> None:
        """Raise :class:`RequestError` unless every ``person.team`` indexes an existing team."""
        for i, p in enumerate(self.people):
            if p.team is not None:
                _check(
                    p.team < len(self.teams),
                    f"people[{i}].team",
                    f"refers to team {p.team}, but the scene has {len(self.teams)} team(s)",
                )

    # -- editing helpers ---------------------------------------------------------------------

    def without_team(self, index: int) -> Scene:
        """This scene without team ``index``: its members lose their team, later indexes shift."""
        _check(0 <= index < len(self.teams), "teams", f"no team {index} to remove")
        people = []
        for p in self.people:
            if p.team == index:
                p = dataclasses.replace(p, team=None)
            elif p.team is not None and p.team > index:
                p = dataclasses.replace(p, team=p.team - 1)
            people.append(p)
        teams = self.teams[:index] + self.teams[index + 1 :]
        return dataclasses.replace(self, people=tuple(people), teams=teams)

    # -- derived facts -----------------------------------------------------------------------

    def role_counts(self) -> dict[Role, int]:
        """How many people of each role are visible, in :data:`ROLES` order, zeros left out."""
        counts = {r: sum(1 for p in self.people if p.role == r) for r in ROLES}
        return {r: n for r, n in counts.items() if n}

    def count_text(self) -> str:
        """ "two players and a goalkeeper" ("" for nobody)."""
        return join_words([count_phrase(r, n) for r, n in self.role_counts().items()])

    def carried_over(self) -> Scene:
        """What a new cutout inherits from this scene: the teams (with their kits) and the
        stadium. People, numbers, actions and positions belong to one moment and never carry."""
        return Scene(teams=self.teams, stadium=self.stadium)

    # -- prompt ------------------------------------------------------------------------------

    def to_prompt(self) -> str:
        """The FLUX prompt: deterministic, concise English (see the module docstring)."""
        return write_prompt(self)

    # -- JSON --------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scene:
        check_version(data, "scene", SCENE_SCHEMA_VERSION, what="a scene")
        return typing.cast(Scene, from_jsonable(cls, dict(data), "scene", rewrap=_prefixed))

    @classmethod
    def from_json(cls, text: str | bytes) -> Scene:
        return cls.from_dict(parse_json(text, "scene"))


def _prefixed(where: str, message: str) -> str:
    """Qualify a constructor's "field: message" with the JSON path of the object."""
    head, sep, rest = message.partition(": ")
    if not sep:
        return f"{where}: {message}"
    # Kit and Team name their fields "kit.jersey" / "team.name"; keep only the last part.
    leaf = head.split(".", 1)[1] if head.startswith(("kit.", "team.")) else head
    return f"{where}.{leaf}: {rest}"
