"""How a scene is written as the FLUX prompt: the caption rules and the English they use.

:func:`write_prompt` (behind :meth:`Scene.to_prompt <fbupscale_gui.core.scene.Scene.to_prompt>`)
follows the caption rules the football LoRA was trained on (paper section 3.3.1; the rules are
listed in :mod:`fbupscale_gui.core.scene`). The fixed phrases for each choice of the schema and
the small English helpers (articles, counts, lists, sentences) live here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from fbupscale_gui.core.scene import Person, Role, Scene

__all__ = [
    "ACCENT_NOUNS",
    "HAIR_PHRASES",
    "clean_text",
    "count_phrase",
    "join_words",
    "norm_colour",
    "sentence",
    "with_article",
    "write_prompt",
]

_PLURALS: Final[dict[str, str]] = {
    "player": "players",
    "goalkeeper": "goalkeepers",
    "referee": "referees",
    "assistant referee": "assistant referees",
    "coach": "coaches",
    "spectator": "spectators",
}
_NUMBER_WORDS: Final = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
)
HAIR_PHRASES: Final[dict[str, str]] = {
    "bald": "a bald head",
    "short hair": "short hair",
    "long hair": "long hair",
    "curly hair": "curly hair",
    "braids": "braids",
    "ponytail": "a ponytail",
}
_BACKGROUND_PHRASES: Final[dict[str, str]] = {
    "goal area": "the goal area",
    "goalposts": "the goalposts",
    "goal net": "the goal net",
    "penalty box": "the penalty box",
    "field markings": "field markings",
    "corner flag": "a corner flag",
    "advertising boards": "advertising boards",
    "bench": "the bench",
    "spectators out of focus": "out-of-focus spectators",
}
_STADIUM_PHRASES: Final[dict[str, str]] = {
    "empty": "an empty stadium with no spectators",
    "half full": "a partially filled stadium with a moderate crowd",
    "full": "a sold-out stadium at full capacity",
}
_STADIUM_WITH_SPECTATORS: Final[dict[str, str]] = {
    "half full": "a partially filled stadium with a moderate crowd of out-of-focus spectators",
    "full": "a sold-out stadium at full capacity with out-of-focus spectators",
}
#: An accent ending in one of these nouns ("white sleeves") is written as is, else "<x> accents".
ACCENT_NOUNS: Final = (
    "accents",
    "trim",
    "details",
    "sleeves",
    "stripe",
    "stripes",
    "collar",
    "sash",
    "band",
    "hoops",
    "cuffs",
    "panels",
)


def with_article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front ("an orange jersey", "a white jersey")."""
    word = phrase.strip().lower()
    vowel_sound = bool(word) and word[0] in "aeiou" and not word.startswith(("uni", "use", "one"))
    return f"{'an' if vowel_sound else 'a'} {phrase.strip()}"


def _number_word(n: int) -> str:
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else str(n)


def join_words(items: Sequence[str]) -> str:
    """English list: "a", "a and b", "a, b, and c" (serial comma, as in the captions)."""
    if len(items) <= 2:
        return " and ".join(items)
    return f"{', '.join(items[:-1])}, and {items[-1]}"


def count_phrase(role: str, count: int) -> str:
    """ "a goalkeeper", "an assistant referee", "two players", "21 spectators"."""
    if count == 1:
        return with_article(role)
    return f"{_number_word(count)} {_PLURALS.get(role, role + 's')}"


def clean_text(text: str) -> str:
    return " ".join(text.split())


def sentence(text: str) -> str:
    """Free text as one sentence: squeezed spaces, capital first letter, final full stop."""
    text = clean_text(text)
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def norm_colour(text: str) -> str:
    return clean_text(text).lower()


def write_prompt(scene: Scene) -> str:
    """The FLUX prompt for a scene: deterministic, concise English (see the module docstring)."""
    sentences: list[str] = []
    several = len(scene.people) > 1
    if several:
        sentences.append(sentence(f"{scene.count_text()} are visible"))
    counts = scene.role_counts()
    seen_roles: set[str] = set()
    described_teams: set[int] = set()
    for person in scene.people:
        text = _person_sentence(scene, person, counts, seen_roles, described_teams, several)
        if text:
            sentences.append(text)
    sentences.append(sentence(scene.action))
    sentences.extend(sentence(s) for s in scene.spatial)
    sentences.append(_background_sentence(scene))
    sentences.append(sentence(scene.extra))
    return " ".join(s for s in sentences if s)


def _person_sentence(
    scene: Scene,
    person: Person,
    counts: Mapping[Role, int],
    seen_roles: set[str],
    described_teams: set[int],
    several: bool,
) -> str:
    role = person.role
    if role in seen_roles:
        subject = f"another {role}"
    elif several and counts[role] == 1:
        subject = f"the {role}"
    else:
        subject = with_article(role)
    seen_roles.add(role)
    if person.team is not None and scene.teams[person.team].prompt_name:
        subject += f" from {scene.teams[person.team].prompt_name}"

    parts: list[str] = []
    appearance = person.appearance()
    if appearance:
        parts.append(f"with {appearance}")
    kit_part = ""
    if person.kit is not None:
        kit_part = f"wearing {person.kit.describe()}"
    elif person.team is not None:
        kit = scene.teams[person.team].kit
        if person.team in described_teams:
            kit_part = f"also wearing {with_article(kit.jersey_phrase)}"
        else:
            kit_part = f"wearing {kit.describe()}"
            described_teams.add(person.team)
    number = person.shown_number
    if number is not None:
        # The paper's "a green jersey and matching shorts with the number 99"; a kit that
        # already has a "with" gets the number as its own clause, as in its captions.
        if kit_part and not re.search(r"\bwith\b", kit_part):
            kit_part += f" with the number {number}"
        elif kit_part:
            parts.append(kit_part)
            kit_part = f"marked with the number {number}"
        else:
            kit_part = f"with the number {number}"
    if kit_part:
        parts.append(kit_part)
    verb = person.verb_phrase()
    if not verb and parts and parts[-1].startswith(("wearing ", "also wearing ")):
        verb = "is " + parts.pop()
    if not verb:
        if several and not parts:
            return ""  # the count sentence already names them
        verb = "is visible"
    if len(parts) >= 2 or (parts and parts[0].startswith("also ")):
        return sentence(f"{subject}, {', '.join(parts)}, {verb}")
    return sentence(" ".join([subject, *parts, verb]))


def _background_sentence(scene: Scene) -> str:
    items = [_BACKGROUND_PHRASES[b] for b in scene.background if b != "spectators out of focus"]
    spectators = "spectators out of focus" in scene.background
    if scene.stadium:
        table = _STADIUM_WITH_SPECTATORS if spectators else _STADIUM_PHRASES
        items.append(table[scene.stadium])
    elif spectators:
        items.append(_BACKGROUND_PHRASES["spectators out of focus"])
    blurred = "blurred " if scene.blurred_background else ""
    if items:
        return f"The scene unfolds on a soccer field, with the {blurred}background featuring {join_words(items)}."
    if scene.blurred_background:
        return "The scene unfolds on a soccer field, with a blurred background."
    return "The scene unfolds on a soccer field."
