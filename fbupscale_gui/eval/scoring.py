"""LR-consistency of engine candidates, for the window: score and heatmap with the right geometry.

:mod:`fbupscale_gui.eval.fidelity` compares an image with a cutout; this module knows how an
engine :class:`~fbupscale_gui.core.job.Candidate` relates to its cutout (cropped to the content
box, or the padded square when ``preprocess.crop_to_content`` is off) and never raises: a
candidate that cannot be compared gets ``None`` and the window says "no score".

The engine thread scores every candidate as it arrives (a few tens of ms); the heatmap, about
half a second for a 1024 px candidate, is made on demand off the GUI thread and cached.
numpy and Pillow only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from fbupscale_gui.eval.fidelity import deviation_heatmap, lr_consistency

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.images import Placement
    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import ReconstructionRequest

__all__ = [
    "HEATMAP_FLOOR",
    "LR_TOOLTIP",
    "candidate_heatmap",
    "format_db",
    "placement_for",
    "score_candidate",
]

log = logging.getLogger(__name__)

#: Luma error (0..255 levels) below which the window's heatmap stays transparent.
HEATMAP_FLOOR: Final = 4.0

#: What the number on every tile means, in one sentence (tile tooltip, settings, docs).
LR_TOOLTIP: Final = (
    "LR-consistency: how well the candidate, shrunk back to the cutout's size, matches the "
    "cutout — higher is more faithful. It checks the candidate does not contradict what the "
    "camera recorded (a changed number, an extra leg); it is not a quality score."
)


def placement_for(cutout: Image.Image, request: ReconstructionRequest) -> Placement | None:
    """How to undo padding for a candidate of ``request``: None when it is cropped to content."""
    if request.preprocess.crop_to_content:
        return None
    from fbupscale_gui.core.images import standardise

    return standardise(cutout, request.preprocess)[1]


def score_candidate(cutout: Image.Image, candidate: Candidate) -> float | None:
    """LR-consistency in dB of ``candidate`` against ``cutout``, or None if they do not compare
    (another aspect ratio: not this cutout's candidate)."""
    try:
        return lr_consistency(cutout, candidate.image, placement_for(cutout, candidate.request))
    except (ValueError, ZeroDivisionError) as exc:
        log.warning("cannot score candidate %s: %s", candidate.key.label, exc)
        return None


def candidate_heatmap(
    cutout: Image.Image, candidate: Candidate, *, floor: float = HEATMAP_FLOOR
) -> Image.Image | None:
    """The RGBA deviation heatmap at the candidate's size, or None if they do not compare.

    Errors up to ``floor`` luma levels stay clear (the cutout's own compression noise), so the
    colour lands where the candidate really departs from the cutout.
    """
    try:
        return deviation_heatmap(
            cutout, candidate.image, placement_for(cutout, candidate.request), floor=floor
        )
    except (ValueError, ZeroDivisionError) as exc:
        log.warning("cannot map candidate %s: %s", candidate.key.label, exc)
        return None


def format_db(score: float | None) -> str:
    """``"31.2 dB"``; ``"—"`` when there is no score."""
    return "—" if score is None else f"{score:.1f} dB"
