"""Small widget helpers the panes and dialogs share: a hint label, a one-line label that
elides instead of widening the window, and emptying a layout."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel, QLayout, QWidget

__all__ = ["ElidedLabel", "empty_layout", "hint_label", "release_widgets", "resize_within_screen"]


def hint_label(text: str = "", *, wrap: bool = True) -> QLabel:
    """A label in the theme's quiet hint colour (the stylesheet's ``role="hint"``)."""
    label = QLabel(text)
    label.setProperty("role", "hint")
    label.setWordWrap(wrap)
    return label


#: Room left for the window frame and title bar under the screen's available height.
FRAME_ALLOWANCE = 40


def resize_within_screen(window: QWidget, width: int, height: int) -> None:
    """Resize ``window`` to ``width`` x ``height``, or less where its screen is smaller (a
    1366x768 desk screen must show the whole window, its frame included)."""
    screen = window.screen()
    if screen is not None:
        room = screen.availableGeometry()
        width = min(width, room.width())
        height = min(height, room.height() - FRAME_ALLOWANCE)
    window.resize(width, height)


def release_widgets(widgets: Iterable[QWidget], layout: QLayout) -> None:
    """Take ``widgets`` out of ``layout``: hidden and Python-owned (released when unreferenced,
    never through ``deleteLater``)."""
    for widget in widgets:
        layout.removeWidget(widget)
        widget.hide()
        widget.setParent(None)


def empty_layout(layout: QLayout) -> None:
    """Take every item out of ``layout``; its widgets are released as by :func:`release_widgets`."""
    widgets: list[QWidget] = []
    while layout.count():
        item = layout.takeAt(0)
        widget = item.widget() if item is not None else None
        if widget is not None:
            widgets.append(widget)
    release_widgets(widgets, layout)


class ElidedLabel(QLabel):
    """A one-line label that shortens its text with an ellipsis instead of being cut off, and
    never asks for more width than it gets (a long line cannot widen the window)."""

    def setText(self, text: str) -> None:
        """The text, whole in the tooltip (the label may show it shortened)."""
        super().setText(text)
        self.setToolTip(text)

    def minimumSizeHint(self) -> QSize:
        return QSize(0, super().minimumSizeHint().height())

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setPen(self.palette().color(self.foregroundRole()))
        rect = self.contentsRect()
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, rect.width())
        p.drawText(rect, int(self.alignment()), text)
        p.end()
