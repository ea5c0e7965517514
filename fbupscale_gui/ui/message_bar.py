"""Messages for the operator, inside the window: errors, warnings and notices.

Non-modal, so a failure never blocks the queue or the keyboard. Each message can carry one
action button (e.g. "Retry with 'sequential'") and is dismissed with ×.

One banner per topic: a message on a topic already shown (the FLUX weights, an export, one
cutout's failure) replaces that banner in place instead of stacking a second one, so what is
shown is always the latest word on it. A message without a topic is its own topic by its text.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from fbupscale_gui.ui.theme import set_style_property

__all__ = ["MessageBar", "MessageRow"]

_ICONS = {"info": "ℹ", "warning": "⚠", "error": "✖"}


class MessageRow(QFrame):
    dismissed = Signal()

    def __init__(
        self,
        level: str,
        text: str,
        action: tuple[str, Callable[[], object]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.level = level
        self.topic = ""
        self.setObjectName("messageRow")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        icon = QLabel(_ICONS.get(level, "•"))
        set_style_property(
            icon,
            "role",
            "error" if level == "error" else "warning" if level == "warning" else "hint",
        )
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if level in ("error", "warning"):
            set_style_property(self.label, "role", level)
        layout.addWidget(icon)
        layout.addWidget(self.label, 1)
        self.action_button: QPushButton | None = None
        if action is not None:
            label, callback = action
            self.action_button = QPushButton(label)
            self.action_button.clicked.connect(callback)
            self.action_button.clicked.connect(self.dismissed)
            layout.addWidget(self.action_button, 0, Qt.AlignmentFlag.AlignTop)
        close = QPushButton("×")
        close.setToolTip("Dismiss")
        close.setFixedWidth(32)
        close.clicked.connect(self.dismissed)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)


class MessageBar(QWidget):
    """The latest messages, one per topic (newest at the bottom, at most ``limit``)."""

    def __init__(self, limit: int = 4, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._limit = limit
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(6, 2, 6, 2)
        self._layout.setSpacing(2)
        self._rows: list[MessageRow] = []
        self.setVisible(False)

    def rows(self) -> list[MessageRow]:
        return list(self._rows)

    def texts(self) -> list[str]:
        return [r.label.text() for r in self._rows]

    def row_for(self, topic: str) -> MessageRow | None:
        """The banner shown on ``topic``, if any."""
        return next((r for r in self._rows if r.topic == topic), None)

    def show_message(
        self,
        level: str,
        text: str,
        action: tuple[str, Callable[[], object]] | None = None,
        topic: str = "",
    ) -> MessageRow:
        """Show ``text``; a banner already shown on the same topic is replaced in place."""
        row = MessageRow(level, text, action, self)
        row.topic = topic or f"text:{text}"
        row.dismissed.connect(self._on_dismissed)
        old = self.row_for(row.topic)
        if old is not None:
            index = self._rows.index(old)
            self._layout.insertWidget(self._layout.indexOf(old), row)
            self._rows.insert(index, row)
            self._remove(old)
        else:
            self._rows.append(row)
            self._layout.addWidget(row)
        while len(self._rows) > self._limit:
            self._remove(self._rows[0])
        self.setVisible(True)
        return row

    def _on_dismissed(self) -> None:
        sender = self.sender()
        if isinstance(sender, MessageRow):
            self._remove(sender)

    def _remove(self, row: MessageRow) -> None:
        if row in self._rows:
            self._rows.remove(row)
            self._layout.removeWidget(row)
            row.hide()
            row.setParent(None)  # Python owns it now; collected when unreferenced
        self.setVisible(bool(self._rows))

    def dismiss(self, topic: str) -> None:
        """Remove the banner on ``topic`` (what it said is no longer true)."""
        row = self.row_for(topic)
        if row is not None:
            self._remove(row)

    def clear(self) -> None:
        for row in list(self._rows):
            self._remove(row)
