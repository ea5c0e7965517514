"""What the session tells the operator: one :class:`Message` per event, with its banner topic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from fbupscale_gui.state.job_queue import Job

__all__ = ["FLUX_TOPIC", "Level", "Message"]

Level = Literal["info", "warning", "error"]
#: The topic of every message about the FLUX weights (one banner, always the latest).
FLUX_TOPIC: Final = "flux"


@dataclass(frozen=True, eq=False)
class Message:
    """Something to tell the operator. ``retry`` is a failed job that can be re-queued with
    ``retry_changes`` (e.g. a lighter memory mode after running out of GPU memory)."""

    level: Level
    text: str
    retry: Job | None = None
    retry_label: str = ""
    retry_changes: dict[str, object] | None = None
    #: Longer help (shown as a tooltip).
    details: str = ""
    #: Interrupted jobs (restored from the session) that the action re-runs.
    rerun: tuple[Job, ...] = ()
    #: What the message is about ("flux", "export", "cutout:NAME"): the window shows one
    #: banner per topic, the latest replacing the one before. Empty: the text is the topic.
    topic: str = ""
