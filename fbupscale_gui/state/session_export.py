"""Exporting picks: the files written (now or off the GUI thread) and the export guards' lists.

:class:`ExportActions` is the export half of :class:`~fbupscale_gui.state.session.Session` (a
mixin that uses the session's models); it remembers which picks were exported, so the window
can say which picks would be lost on quit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import SignalInstance

from fbupscale_gui.core.errors import FbError
from fbupscale_gui.core.export import ExportItem, contradicting, low_fidelity
from fbupscale_gui.state.session_message import Message
from fbupscale_gui.storage.export import export_candidates

if TYPE_CHECKING:
    from fbupscale_gui.state.candidates import CandidateEntry, CandidateStore
    from fbupscale_gui.state.cutouts import Cutout, CutoutsModel
    from fbupscale_gui.state.session_persist import SessionRecorder
    from fbupscale_gui.state.settings_model import SettingsModel

__all__ = ["ExportActions"]

log = logging.getLogger(__name__)


class ExportActions:
    """The session's export actions (mixed into :class:`~fbupscale_gui.state.session.Session`)."""

    if TYPE_CHECKING:
        message: SignalInstance
        exported: SignalInstance
        settings: SettingsModel
        cutouts: CutoutsModel
        candidates: CandidateStore
        recorder: SessionRecorder
        _exported: set[int]

        def _report_task_error(self, task: asyncio.Task[object]) -> None: ...

    def _picked(self, cutout_ids: Iterable[int] | None) -> list[tuple[Cutout, CandidateEntry]]:
        wanted = None if cutout_ids is None else set(cutout_ids)
        out: list[tuple[Cutout, CandidateEntry]] = []
        for cutout in self.cutouts.cutouts():
            if wanted is not None and cutout.id not in wanted:
                continue
            entry = self.candidates.picked(cutout.id)
            if entry is not None:
                out.append((cutout, entry))
        return out

    def low_fidelity_picks(self, cutout_ids: Iterable[int] | None = None) -> list[ExportItem]:
        """Picks below the settings' LR-consistency threshold (none when it is off)."""
        threshold = self.settings.settings.export_min_lr_db
        # by score first: a restored pick's pixels are decoded only to be named here
        low = [
            (c, e)
            for c, e in self._picked(cutout_ids)
            if threshold and (e.lr_consistency is None or e.lr_consistency < threshold)
        ]
        return low_fidelity([_export_item(c, e) for c, e in low], threshold)

    def contradicting_picks(self, cutout_ids: Iterable[int] | None = None) -> list[ExportItem]:
        """Picks whose shirt numbers contradict their scene (the number check)."""
        return contradicting([_export_item(c, e) for c, e in self._picked(cutout_ids)])

    def unexported_picks(self) -> list[CandidateEntry]:
        """Picks that exist only in this window (lost on quit unless exported)."""
        return [e for _c, e in self._picked(None) if e.uid not in self._exported]

    def _write(
        self, picked: list[tuple[Cutout, CandidateEntry]], folder: str | Path | None
    ) -> list[Path]:
        s = self.settings.settings
        return export_candidates(
            [_export_item(c, e) for c, e in picked],
            folder if folder is not None else s.export_dir,
            s.export_template,
            match=s.match_name,
            fmt="jpeg" if s.export_format == "jpeg" else "png",
            badge=s.export_badge,
            # "refuse" is enforced here, on every path; "ask" is the window's question
            min_lr_db=s.export_min_lr_db if s.export_low_fidelity == "refuse" else None,
            refuse_contradicting=s.export_number_contradiction == "refuse",
        )

    def export(
        self, cutout_ids: Iterable[int] | None = None, folder: str | Path | None = None
    ) -> list[Path]:
        """Export picks now (calling thread). Raises ExportError with an actionable message."""
        picked = self._picked(cutout_ids)
        paths = self._write(picked, folder)
        self._exported.update(e.uid for _c, e in picked)
        self.recorder.record_exports([e for _c, e in picked], paths)
        return paths

    def export_in_background(
        self, cutout_ids: Iterable[int] | None = None, folder: str | Path | None = None
    ) -> None:
        """Export off the GUI thread on the qasync loop (now, if no loop runs); report by signal."""
        picked = self._picked(None if cutout_ids is None else list(cutout_ids))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._finish_export(picked, _call(lambda: self._write(picked, folder)))
            return

        async def work() -> None:
            result = await _to_thread_result(lambda: self._write(picked, folder))
            self._finish_export(picked, result)

        loop.create_task(work()).add_done_callback(self._report_task_error)

    def _finish_export(
        self,
        picked: list[tuple[Cutout, CandidateEntry]],
        result: list[Path] | BaseException,
    ) -> None:
        if isinstance(result, FbError):
            self.message.emit(Message("error", f"Export failed: {result}", topic="export"))
            return
        if isinstance(result, BaseException):
            log.error("export failed", exc_info=result)
            self.message.emit(
                Message("error", f"Export failed unexpectedly: {result}", topic="export")
            )
            return
        self._exported.update(e.uid for _c, e in picked)
        self.recorder.record_exports([e for _c, e in picked], result)
        self.exported.emit(result)
        folder = result[0].parent if result else ""
        self.message.emit(
            Message("info", f"Exported {len(result)} file(s) to {folder}", topic="export")
        )


def _export_item(cutout: Cutout, entry: CandidateEntry) -> ExportItem:
    return ExportItem(
        entry.candidate, cutout.name, cutout.image, entry.lr_consistency, entry.models
    )


def _call(fn: Callable[[], list[Path]]) -> list[Path] | BaseException:
    try:
        return fn()
    except Exception as exc:  # reported by _finish_export
        return exc


async def _to_thread_result(fn: Callable[[], list[Path]]) -> list[Path] | BaseException:
    try:
        return await asyncio.to_thread(fn)
    except Exception as exc:  # reported by _finish_export
        return exc
