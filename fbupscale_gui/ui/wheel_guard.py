"""The mouse wheel scrolls forms; it changes a dropdown or spin box only once it has focus.

Without this, a form that scrolls stops scrolling whenever the pointer passes over a
dropdown, and the wheel silently changes that dropdown's value instead (a kit colour, the
stadium, a step count). Installed once on the application by the main window.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractScrollArea, QAbstractSpinBox, QComboBox, QWidget

__all__ = ["WheelGuard"]


class WheelGuard(QObject):
    """An application event filter: wheel over an unfocused combo or spin box scrolls the
    scroll area around it (if any) and never changes the value."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.Wheel:
            return False
        if not isinstance(watched, QComboBox | QAbstractSpinBox) or watched.hasFocus():
            return False
        area = _scroll_area(watched)
        if area is not None:
            QCoreApplication.sendEvent(area.verticalScrollBar(), event)
        return True  # the value stays as it is


def _scroll_area(widget: QWidget) -> QAbstractScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None:
        if (
            isinstance(parent, QAbstractScrollArea)
            and parent.verticalScrollBarPolicy() != Qt.ScrollBarPolicy.ScrollBarAlwaysOff
        ):
            return parent
        parent = parent.parentWidget()
    return None
