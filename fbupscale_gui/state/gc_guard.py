"""Garbage collection only in the GUI thread.

CPython's cyclic collector runs in whichever thread happens to allocate when a threshold is
crossed -- here usually the engine thread, which allocates heavily. If a cycle holds a Qt
widget, the widget would then be destroyed outside the GUI thread and Qt crashes. This guard
(the pyqtgraph ``GarbageCollector`` pattern) switches automatic collection off and collects
from a GUI-thread timer instead, with the same thresholds.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer, Slot

__all__ = ["GuiThreadGarbageCollector"]


class GuiThreadGarbageCollector(QObject):
    """While started, cyclic garbage is collected by a GUI-thread timer (``interval_ms``)."""

    def __init__(self, interval_ms: int = 500, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.check)
        self._was_enabled = gc.isenabled()

    def start(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()

    @Slot()
    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds (as CPython would)."""
        counts = gc.get_count()
        thresholds = gc.get_threshold()
        for generation in (2, 1, 0):
            if counts[generation] > thresholds[generation]:
                gc.collect(generation)
                break
