"""Small widget helpers the panes and dialogs share: a hint label, and emptying a layout."""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtWidgets import QLabel, QLayout, QWidget

__all__ = ["empty_layout", "hint_label", "release_widgets"]


def hint_label(text: str = "", *, wrap: bool = True) -> QLabel:
    """A label in the theme's quiet hint colour (the stylesheet's ``role="hint"``)."""
    label = QLabel(text)
    label.setProperty("role", "hint")
    label.setWordWrap(wrap)
    return label


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
