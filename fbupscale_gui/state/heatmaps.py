"""Deviation heatmaps of candidates, made once per candidate off the GUI thread and cached."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from fbupscale_gui.core.errors import error_line

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.state.candidates import CandidateEntry

__all__ = ["HeatmapCache"]

log = logging.getLogger(__name__)


def _rgba_qimage(image: Image.Image) -> QImage:
    rgba = image.convert("RGBA")
    data = rgba.tobytes("raw", "RGBA")
    q = QImage(data, rgba.width, rgba.height, rgba.width * 4, QImage.Format.Format_RGBA8888)
    return q.copy()  # own the pixels


def _make_heatmap(cutout: Image.Image, entry: CandidateEntry) -> QImage | None:
    from fbupscale_gui.eval.scoring import candidate_heatmap

    heat = candidate_heatmap(cutout, entry.candidate)
    return None if heat is None else _rgba_qimage(heat)


def _make_safely(cutout: Image.Image, entry: CandidateEntry) -> tuple[QImage | None, str]:
    """The heatmap, or None and why it failed (a failure is logged and never raised)."""
    try:
        return _make_heatmap(cutout, entry), ""
    except Exception as exc:
        log.exception("deviation heatmap failed")
        return None, error_line(exc, unexpected=True)


class HeatmapCache(QObject):
    """Deviation heatmaps (RGBA QImage at the candidate's size), one per entry, made once.

    :meth:`request` returns a cached heatmap at once; otherwise it starts making it in a worker
    thread of the running asyncio (qasync) loop, about half a second for a 1024 px candidate,
    and emits ``ready(entry)`` when done. Without a running loop (tests, scripts) it is made in
    the calling thread. A heatmap that could not be made is cached as None with the reason
    (:meth:`error`), so the window says why instead of guessing.
    """

    ready = Signal(object)  # CandidateEntry

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cache: dict[int, tuple[CandidateEntry, QImage | None, str]] = {}
        self._pending: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # referenced until done

    def get(self, entry: CandidateEntry) -> QImage | None:
        hit = self._cache.get(id(entry))
        return hit[1] if hit is not None and hit[0] is entry else None

    def error(self, entry: CandidateEntry) -> str:
        """Why ``entry``'s heatmap could not be made ("" when it was, or is on its way)."""
        hit = self._cache.get(id(entry))
        return hit[2] if hit is not None and hit[0] is entry else ""

    def has(self, entry: CandidateEntry) -> bool:
        hit = self._cache.get(id(entry))
        return hit is not None and hit[0] is entry

    def is_pending(self, entry: CandidateEntry) -> bool:
        return id(entry) in self._pending

    def request(self, entry: CandidateEntry, cutout: Image.Image) -> QImage | None:
        if self.has(entry):
            return self.get(entry)
        if id(entry) in self._pending:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._store(entry, *_make_safely(cutout, entry))
            return self.get(entry)
        self._pending.add(id(entry))
        pixels = cutout.copy()  # the worker thread gets its own

        async def work() -> None:
            heat, error = await asyncio.to_thread(_make_safely, pixels, entry)
            self._pending.discard(id(entry))
            self._store(entry, heat, error)

        task = loop.create_task(work())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    def _store(self, entry: CandidateEntry, heat: QImage | None, error: str = "") -> None:
        self._cache[id(entry)] = (entry, heat, error)
        self.ready.emit(entry)
