"""The video window's transport bar: ``|< -1s -1f [slider] +1f +1s >|`` and the timecode.

A thin widget: the slider holds the frame asked for (the window follows ``slider.valueChanged``
to decode it), the buttons move the slider, and the timecode field shows the frame on show or
takes a position the operator types (``positionEntered``).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QSlider,
    QWidget,
)

from fbupscale_gui.core.clip import ClipInfo
from fbupscale_gui.ui.theme import set_style_property

__all__ = ["TransportBar"]


def _small(text: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the slider or frame
    button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
    return button


class TransportBar(QWidget):
    """Slider, step buttons and timecode. Emits ``positionEntered(text)`` on Enter."""

    positionEntered = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._fps = 1
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setSingleStep(1)
        self.slider.setAccessibleName("Frame")
        self.slider.setToolTip("Scrub: Left/Right one frame, Shift+Left/Right one second")
        self.first_button = _small("⇤", "First frame (Home)")
        self.back_second_button = _small("−1 s", "Back one second (Shift+Left)")
        self.back_button = _small("−1", "Previous frame (Left)")
        self.forward_button = _small("+1", "Next frame (Right)")
        self.forward_second_button = _small("+1 s", "Forward one second (Shift+Right)")
        self.last_button = _small("⇥", "Last frame (End)")
        self.timecode = QLineEdit("00:00:00:00")
        self.timecode.setToolTip(
            "Timecode HH:MM:SS:FF of the frame on show. Type a timecode, seconds or a frame "
            "number like 312f and press Enter to go there."
        )
        self.timecode.setAccessibleName("Timecode")
        font = self.timecode.font()
        font.setFamily("monospace")
        font.setStyleHint(font.StyleHint.Monospace)
        self.timecode.setFont(font)
        self.timecode.setFixedWidth(
            self.timecode.fontMetrics().horizontalAdvance("00:00:00:00") + 24
        )
        self.frame_label = QLabel("frame – / –")
        set_style_property(self.frame_label, "role", "hint")

        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for b in (self.first_button, self.back_second_button, self.back_button):
            layout.addWidget(b)
        layout.addWidget(self.slider, 1)
        for b in (self.forward_button, self.forward_second_button, self.last_button):
            layout.addWidget(b)
        layout.addWidget(self.timecode)
        layout.addWidget(self.frame_label)

        self.first_button.clicked.connect(self.go_first)
        self.back_second_button.clicked.connect(self.second_back)
        self.back_button.clicked.connect(self.step_back)
        self.forward_button.clicked.connect(self.step_forward)
        self.forward_second_button.clicked.connect(self.second_forward)
        self.last_button.clicked.connect(self.go_last)
        self.timecode.returnPressed.connect(lambda: self.positionEntered.emit(self.timecode.text()))

    def set_active(self, active: bool) -> None:
        """Enable the controls (not the frame number) once a clip is open."""
        for w in (
            self.slider,
            self.first_button,
            self.back_second_button,
            self.back_button,
            self.forward_button,
            self.forward_second_button,
            self.last_button,
            self.timecode,
        ):
            w.setEnabled(active)

    def set_clip(self, info: ClipInfo) -> None:
        """A new clip: its frames on the slider, frame 0 asked for (no ``valueChanged``)."""
        self._fps = max(1, round(info.fps))
        self.slider.blockSignals(True)
        self.slider.setRange(0, info.frame_count - 1)
        self.slider.setValue(0)
        self.slider.setPageStep(self._fps)
        self.slider.blockSignals(False)

    def show_position(self, info: ClipInfo, index: int) -> None:
        """Frame ``index`` is on show: its timecode (unless being typed) and number."""
        if not self.timecode.hasFocus():
            self.timecode.setText(info.timecode(index))
        self.frame_label.setText(f"frame {index} / {info.frame_count - 1}")

    def step(self, frames: int) -> None:
        self.slider.setValue(self.slider.value() + frames)

    @Slot()
    def step_back(self) -> None:
        self.step(-1)

    @Slot()
    def step_forward(self) -> None:
        self.step(+1)

    @Slot()
    def second_back(self) -> None:
        self.step(-self._fps)

    @Slot()
    def second_forward(self) -> None:
        self.step(+self._fps)

    @Slot()
    def go_first(self) -> None:
        self.slider.setValue(self.slider.minimum())

    @Slot()
    def go_last(self) -> None:
        self.slider.setValue(self.slider.maximum())
