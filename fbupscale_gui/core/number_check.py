"""The number check: do the shirt numbers read in a candidate agree with the operator's scene?

At 64→1024 the diffusion stages invent digits, and LR-consistency cannot catch a 9 that
became an 8: at cutout size the two differ by a few pixels. The operator's scene already holds
the ground truth, because a number is written only when marked fully visible (paper 3.3.1).

The engine reads the digit strings in a candidate (OCR, :mod:`fbupscale_gui.engine.numbers`);
this module, pure Python, turns those readings and the scene into a verdict:

* ``agrees``: every number the scene marks visible was read, and nothing conflicting was;
* ``contradicts``: a digit string was read, confidently, that no visible person wears (8 where
  the scene says 9, or 19 where it says 9);
* ``unreadable``: a visible number was not legible (nothing read, or only some of them);
* ``unchecked``: the scene marks no number as visible, so there is nothing to check.

Readings below :data:`DECISIVE_CONFIDENCE` are recorded but never make a candidate
contradict: a false alarm would teach the operator to ignore the badge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.jsonable import check_literals, from_jsonable, to_jsonable

__all__ = [
    "DECISIVE_CONFIDENCE",
    "NumberCheck",
    "NumberReading",
    "Verdict",
    "badge_text",
    "digit_strings",
    "expected_from_scene_json",
    "expected_numbers",
    "judge",
    "suggestable",
    "suggestion_text",
]

Verdict = Literal["agrees", "contradicts", "unreadable", "unchecked"]

#: A reading at or above this OCR confidence counts; lower ones are kept for the record only.
DECISIVE_CONFIDENCE: Final = 0.8

_DIGITS = re.compile(r"^\d{1,2}$")


@dataclass(frozen=True)
class NumberReading:
    """One digit string read in an image: its text, the OCR's confidence (0..1) and its box,
    four (x, y) corners in the image's pixels, clockwise from the top left."""

    text: str
    confidence: float
    box: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.text, str) and _DIGITS.match(self.text)):
            raise RequestError(f"number reading: text must be 1-2 digits, got {self.text!r}")
        conf = self.confidence
        if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0 <= conf <= 1:
            raise RequestError(f"number reading: confidence must be 0..1, got {conf!r}")

    @property
    def value(self) -> int:
        return int(self.text)

    @property
    def decisive(self) -> bool:
        return self.confidence >= DECISIVE_CONFIDENCE


@dataclass(frozen=True)
class NumberCheck:
    """The verdict for one image, with what was read and what the scene expected."""

    verdict: Verdict
    expected: tuple[int, ...] = ()
    readings: tuple[NumberReading, ...] = ()
    #: One line for the operator: "8 read where the scene says 9".
    detail: str = ""
    #: The conflicting reading and the number it stands in for, for the badge ("8≠9").
    conflict_read: str = ""
    conflict_with: int | None = None

    def __post_init__(self) -> None:
        check_literals(self)

    def to_dict(self) -> dict[str, Any]:
        return dict(to_jsonable(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumberCheck:
        """Strict: unknown fields, wrong types and impossible values raise RequestError."""
        result: NumberCheck = from_jsonable(cls, data, "number_check")
        return result


def expected_numbers(scene: Any) -> tuple[int, ...]:
    """The numbers a :class:`~fbupscale_gui.core.scene.Scene` marks fully visible, sorted."""
    return tuple(sorted({p.shown_number for p in scene.people if p.shown_number is not None}))


def expected_from_scene_json(scene_json: str) -> tuple[int, ...]:
    """The visible numbers of a request's recorded scene; () for none or an unreadable one
    (the request was validated when made; a scene it cannot parse checks nothing)."""
    if not scene_json:
        return ()
    from fbupscale_gui.core.scene import Scene

    try:
        return expected_numbers(Scene.from_json(scene_json))
    except RequestError:
        return ()


def digit_strings(
    results: Iterable[tuple[Sequence[Sequence[float]], str, float]],
) -> tuple[NumberReading, ...]:
    """Keep the OCR results that are shirt numbers: 1-2 digits once spaces are dropped.

    ``results`` are (box, text, confidence) triples, as OCR engines give them. Longer digit
    runs (a clock, a score line, an advert's phone number) are not shirt numbers and are left out.
    """
    out = []
    for box, text, conf in results:
        cleaned = re.sub(r"\s+", "", str(text))
        if _DIGITS.match(cleaned):
            corners = tuple((float(x), float(y)) for x, y in box)
            out.append(NumberReading(cleaned, round(min(max(float(conf), 0.0), 1.0), 4), corners))
    return tuple(out)


def judge(expected: Sequence[int], readings: Sequence[NumberReading]) -> NumberCheck:
    """The verdict for ``readings`` when the scene marks ``expected`` numbers visible."""
    want = tuple(sorted(set(expected)))
    readings = tuple(readings)
    if not want:
        return NumberCheck(
            "unchecked", want, readings, "the scene marks no shirt number as visible"
        )
    decisive = [r for r in readings if r.decisive]
    read = {r.value for r in decisive}
    # A reading that is part of an expected number ("8" of 88, "1" of 10) is a digit hidden
    # by a fold or an arm, not a different number: it makes the check unreadable, not wrong.
    conflicts = [
        r for r in decisive if r.value not in want and not any(r.text in str(n) for n in want)
    ]
    if conflicts:
        bad = max(conflicts, key=lambda r: r.confidence)
        missing = [n for n in want if n not in read]
        stands_for = _closest(bad.text, missing or list(want))
        return NumberCheck(
            "contradicts",
            want,
            readings,
            f"{bad.text} read where the scene says {_words(want)}",
            bad.text,
            stands_for,
        )
    missing = [n for n in want if n not in read]
    if not missing:
        return NumberCheck("agrees", want, readings, f"read {_words(want)} as the scene says")
    if read:
        detail = f"read {_words(sorted(read))}; {_words(missing)} not fully legible"
    else:
        detail = f"no shirt number legible (the scene says {_words(want)})"
    return NumberCheck("unreadable", want, readings, detail)


def _closest(text: str, candidates: Sequence[int]) -> int:
    """The expected number ``text`` most plausibly replaced: most shared digits in place."""

    def shared(n: int) -> int:
        s = str(n)
        return sum(a == b for a, b in zip(text[::-1], s[::-1], strict=False))

    return max(candidates, key=lambda n: (shared(n), -abs(n - int(text))))


def _words(numbers: Sequence[int]) -> str:
    items = [str(n) for n in numbers]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def suggestion_text(readings: Sequence[NumberReading]) -> str:
    """What the scene form says after reading the cutout: a suggestion with confidences, never
    a value filled in ("The cutout may show 9 (96 % sure) or 19 (41 %)...")."""
    best: dict[str, float] = {}
    for r in readings:
        best[r.text] = max(best.get(r.text, 0.0), r.confidence)
    if not best:
        return (
            "No shirt number is legible in the cutout, even enlarged. If one is fully visible "
            "to you, add it to that person yourself."
        )
    ranked = sorted(best.items(), key=lambda kv: -kv[1])[:3]
    first, rest = ranked[0], ranked[1:]
    shown = f"{first[0]} ({first[1]:.0%} sure)" + "".join(f" or {t} ({c:.0%})" for t, c in rest)
    return (
        f"The cutout may show {shown}. Only a suggestion: set the number on its person and "
        "tick 'fully visible' only if you can read it yourself."
    )


def badge_text(check: NumberCheck | None) -> str:
    """The tile badge: "✓ 9", "✗ 8≠9", "?" or "" (nothing to check / not checked)."""
    if check is None or check.verdict == "unchecked":
        return ""
    if check.verdict == "agrees":
        return "✓ " + " ".join(str(n) for n in check.expected)
    if check.verdict == "contradicts":
        return f"✗ {check.conflict_read}≠{check.conflict_with}"
    return "?"


def suggestable(checks: Sequence[NumberCheck | None]) -> list[bool]:
    """Which candidates "Suggest pick" may choose: never a contradicting one while any
    candidate agrees with the scene."""
    any_agrees = any(c is not None and c.verdict == "agrees" for c in checks)
    return [not (any_agrees and c is not None and c.verdict == "contradicts") for c in checks]
