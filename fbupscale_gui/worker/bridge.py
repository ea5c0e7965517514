"""What both engine links hand the GUI thread: a message, and for a candidate its QImages.

:class:`ReadyCandidate` is made off the GUI thread (the link's reader thread), so the window
only stores and shows it: the QImage, the tile thumbnail, and what the engine computed (the
LR-consistency score, the weights' hashes; the typed runtime is on the candidate).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from PySide6.QtGui import QImage

from fbupscale_gui.core.job import Candidate
from fbupscale_gui.core.messages import CandidateReady, Message
from fbupscale_gui.worker.qimage import THUMB_SIDE, pil_to_qimage, tile_thumbnail

__all__ = ["THUMB_SIDE", "Delivery", "ReadyCandidate", "deliver"]


@dataclass(frozen=True, eq=False)
class ReadyCandidate:
    """A finished candidate with its QImage and tile thumbnail, both made off the GUI thread."""

    candidate: Candidate
    image: QImage
    thumb: QImage
    #: LR-consistency in dB against the cutout, computed by the engine (None: no score).
    lr_consistency: float | None = None
    #: Weights the request does not name (e.g. Real-ESRGAN's): {name: {ref, sha256}}.
    models: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Delivery:
    """One engine message for the GUI thread; ``ready`` is set for a ``CandidateReady``."""

    message: Message
    ready: ReadyCandidate | None = None


def deliver(message: Message) -> Delivery:
    """Wrap ``message``, decoding a candidate's pixels into QImages (call off the GUI thread)."""
    if not isinstance(message, CandidateReady):
        return Delivery(message)
    candidate = message.candidate()
    image = pil_to_qimage(candidate.image)
    ready = ReadyCandidate(
        candidate,
        image,
        tile_thumbnail(image),
        message.lr_consistency,
        {k: dict(v) for k, v in message.weights.items()},
    )
    return Delivery(message, ready)
