"""The quality cost of a non-exact FLUX speed mode, per candidate, where it was measured.

A candidate rendered in ``fast``, ``fast-mag`` or ``compiled`` has an ``exact`` twin when the
same cutout also holds a candidate of the same key whose request differs only in the speed
mode (same models, seed, parameters, storage...). Where both carry an LR-consistency score,
the delta (the mode's minus exact's, in dB; the target is within 0.2 dB) is what the candidate
tiles show beside the score. Without a twin nothing is claimed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
from fbupscale_gui.eval.scoring import format_db

__all__ = ["SPEED_DELTA_TARGET_DB", "ScoredRender", "SpeedDelta", "score_text", "speed_delta"]

#: The issue's bound on a fast mode's LR-consistency cost against exact.
SPEED_DELTA_TARGET_DB: Final = 0.2


@dataclass(frozen=True)
class ScoredRender:
    """What a tile knows of a candidate: its key, request and LR-consistency (None: unscored)."""

    key: CandidateKey
    request: ReconstructionRequest
    lr_consistency: float | None


@dataclass(frozen=True)
class SpeedDelta:
    speed: str
    delta_db: float

    @property
    def within_target(self) -> bool:
        return abs(self.delta_db) <= SPEED_DELTA_TARGET_DB

    def text(self) -> str:
        """``"fast −0.03 dB vs exact"``."""
        return f"{self.speed} {self.delta_db:+.2f} dB vs exact".replace("-", "−")

    def short_text(self) -> str:
        """``"−0.03 vs exact"``, as a tile shows it after its score."""
        return f"{self.delta_db:+.2f} vs exact".replace("-", "−")


def score_text(lr_consistency: float | None, delta: SpeedDelta | None) -> str:
    """A candidate's score as the tiles and the compare view show it: ``"31.2 dB"``, ``"—"``
    (unscored), or with the speed mode's delta ``"31.2 dB (−0.03 vs exact)"``."""
    text = format_db(lr_consistency)
    return f"{text} ({delta.short_text()})" if delta is not None else text


def _twin_request(request: ReconstructionRequest) -> ReconstructionRequest:
    return request.replace(speed="exact", only=None)


def speed_delta(render: ScoredRender, others: Iterable[ScoredRender]) -> SpeedDelta | None:
    """The LR-consistency delta of ``render`` against its ``exact`` twin among ``others``
    (None: an exact render, no twin, or a score missing on either side)."""
    if render.request.speed == "exact" or render.lr_consistency is None:
        return None
    want = _twin_request(render.request)
    for other in others:
        if (
            other.key == render.key
            and other.request.speed == "exact"
            and other.lr_consistency is not None
            and _twin_request(other.request) == want
        ):
            return SpeedDelta(render.request.speed, render.lr_consistency - other.lr_consistency)
    return None
