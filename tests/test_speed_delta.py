"""The per-candidate quality delta of a non-exact speed mode against its exact twin."""

from __future__ import annotations

from fbupscale_gui.core.request import CandidateKey, ModelRef, ReconstructionRequest
from fbupscale_gui.state.speed_delta import ScoredRender, speed_delta

KEY = CandidateKey(0, False, 2)
BASE = ReconstructionRequest(flux=ModelRef(path="/m/flux1-dev.safetensors", sha256="a" * 64))


def scored(
    request: ReconstructionRequest, lr: float | None, key: CandidateKey = KEY
) -> ScoredRender:
    return ScoredRender(key, request, lr)


def test_a_fast_candidate_shows_its_delta_against_the_exact_twin() -> None:
    fast = scored(BASE.replace(speed="fast"), 30.95)
    others = [
        scored(BASE, 31.0, CandidateKey(1, False, 2)),  # another variant: not the twin
        scored(BASE.replace(seed=6), 40.0),  # another seed: not the twin
        scored(BASE, 31.0),
    ]
    delta = speed_delta(fast, others)
    assert delta is not None and abs(delta.delta_db - (-0.05)) < 1e-9
    assert delta.within_target and delta.text() == "fast −0.05 dB vs exact"
    far = speed_delta(scored(BASE.replace(speed="fast-mag"), 30.5), others)
    assert far is not None and not far.within_target


def test_no_delta_is_claimed_without_a_measured_twin() -> None:
    fast = scored(BASE.replace(speed="fast"), 30.95)
    assert speed_delta(fast, []) is None
    assert speed_delta(fast, [scored(BASE, None)]) is None  # the twin is not scored
    assert speed_delta(fast, [scored(BASE.replace(storage="fp8"), 31.0)]) is None
    assert speed_delta(scored(BASE, 31.0), [scored(BASE, 31.0)]) is None  # exact itself
    assert speed_delta(scored(BASE.replace(speed="fast"), None), [scored(BASE, 31.0)]) is None
    # a reproduction of one candidate (only=...) still finds its twin
    only = BASE.replace(speed="compiled").with_only(KEY)
    assert speed_delta(scored(only, 31.0), [scored(BASE, 31.0)]) is not None
