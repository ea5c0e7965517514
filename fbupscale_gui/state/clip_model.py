"""The open clip of the video window, decoded off the GUI thread.

:class:`ClipModel` keeps one :class:`~fbupscale_gui.storage.video.ClipReader` in a decoder
:class:`QThread` of its own (a reader is not thread-safe, so it is only ever touched there).
The window asks for frames with :meth:`ClipModel.request_frame`; requests are coalesced, so a
slider dragged across a thousand frames decodes only the latest one asked for whenever the
decoder comes free, and the window never waits. Opening a clip also happens in that thread: the
new reader replaces the old one only once it has decoded its first frame, so a bad file
(missing, empty, corrupt, truncated, unsupported) leaves the open clip as it was and reports
one line naming the file.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtGui import QImage

from fbupscale_gui.storage.video import ClipError, ClipInfo, ClipReader, Cut, Field, Rect, cut_frame
from fbupscale_gui.worker.qimage import pil_to_qimage

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["ClipModel"]

log = logging.getLogger(__name__)


class _Latest:
    """The newest frame request, shared by the GUI and the decoder thread (lock-protected).

    :meth:`put` replaces any request not yet taken and says whether the decoder must be woken
    (it is idle); :meth:`take` hands the decoder the newest request, or None, and then marks it
    idle under the same lock, so no request is ever left behind.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: tuple[int, int] | None = None
        self._busy = False

    def put(self, token: int, index: int) -> bool:
        with self._lock:
            self._value = (token, index)
            if self._busy:
                return False
            self._busy = True
            return True

    def take(self) -> tuple[int, int] | None:
        with self._lock:
            value, self._value = self._value, None
            if value is None:
                self._busy = False
            return value

    def clear(self) -> None:
        with self._lock:
            self._value = None

    def busy(self) -> bool:
        with self._lock:
            return self._busy


class _Decoder(QObject):
    """Lives in the decoder thread and owns the reader; its signals are queued to the GUI."""

    opened = Signal(int, object, object, object)  # token, ClipInfo, PIL frame 0, QImage
    openFailed = Signal(int, str)  # token, message
    frameReady = Signal(int, int, object, object)  # token, index, PIL image, QImage
    frameFailed = Signal(int, int, str)  # token, index, message

    def __init__(self, latest: _Latest) -> None:
        super().__init__()
        self._latest = latest
        self._reader: ClipReader | None = None
        self._token = 0

    @Slot(int, str)
    def open(self, token: int, path: str) -> None:
        try:
            reader = ClipReader(path)
        except ClipError as exc:
            self.openFailed.emit(token, str(exc))
            return
        except Exception as exc:  # a clip must never take the window down
            log.exception("opening %s failed unexpectedly", path)
            self.openFailed.emit(token, f"{path}: cannot be opened ({type(exc).__name__}: {exc})")
            return
        try:
            image = reader.frame(0)
        except ClipError as exc:
            reader.close()
            self.openFailed.emit(token, str(exc))
            return
        old, self._reader = self._reader, reader
        self._token = token
        if old is not None:
            old.close()
        self.opened.emit(token, reader.info, image, pil_to_qimage(image))

    @Slot()
    def work(self) -> None:
        """Decode the newest requested frame until no request is left."""
        while (request := self._latest.take()) is not None:
            token, index = request
            reader = self._reader
            if reader is None or token != self._token:
                continue  # asked of a clip that is no longer (or not yet) open
            try:
                image = reader.frame(index)
            except ClipError as exc:
                self.frameFailed.emit(token, index, str(exc))
                continue
            except Exception as exc:
                log.exception("decoding frame %d failed unexpectedly", index)
                self.frameFailed.emit(token, index, f"frame {index}: {type(exc).__name__}: {exc}")
                continue
            self.frameReady.emit(token, index, image, pil_to_qimage(image))

    @Slot()
    def close(self) -> None:
        """Close the reader here, in its own thread, then end the thread's event loop."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        thread = QThread.currentThread()
        if thread is not None:
            thread.quit()


class ClipModel(QObject):
    """The open clip and the frame on show. GUI thread; decoding runs in its own thread.

    Signals: ``opened(ClipInfo)`` when a clip replaced the previous one (frame 0 is on show),
    ``openFailed(str)`` with one line naming the file (nothing changed), ``frameChanged(int)``
    when a decoded frame is on show, ``frameFailed(str)`` for a frame that cannot be decoded.
    """

    opened = Signal(object)
    openFailed = Signal(str)
    frameChanged = Signal(int)
    frameFailed = Signal(str)

    _open = Signal(int, str)
    _wake = Signal()
    _close = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._latest = _Latest()
        self._thread = QThread()
        self._thread.setObjectName("fbupscale-clip")
        self._decoder = _Decoder(self._latest)
        self._decoder.moveToThread(self._thread)
        self._open.connect(self._decoder.open)
        self._wake.connect(self._decoder.work)
        self._close.connect(self._decoder.close)
        self._decoder.opened.connect(self._on_opened)
        self._decoder.openFailed.connect(self._on_open_failed)
        self._decoder.frameReady.connect(self._on_frame)
        self._decoder.frameFailed.connect(self._on_frame_failed)
        self._tokens = 0
        self._token = 0  # the open clip's
        self._opening: set[int] = set()
        self.info: ClipInfo | None = None
        #: The frame on show: its index, pixels (exactly as decoded) and QImage.
        self.index = -1
        self.image: Image.Image | None = None
        self.qimage = QImage()
        #: The frame last asked for (the slider's position); ``index`` catches up with it.
        self.requested = -1

    # -- commands -------------------------------------------------------------------------

    def open(self, path: str | Path) -> None:
        """Open ``path`` in the decoder thread; ``opened`` or ``openFailed`` follows."""
        if not self._thread.isRunning():
            self._thread.start()
        self._tokens += 1
        self._opening.add(self._tokens)
        self._open.emit(self._tokens, str(Path(path).expanduser()))

    def is_opening(self) -> bool:
        return bool(self._opening)

    def request_frame(self, index: int) -> None:
        """Show frame ``index`` (clamped to the clip) once decoded; the newest request wins."""
        if self.info is None:
            return
        index = max(0, min(self.info.frame_count - 1, index))
        self.requested = index
        if index == self.index and not self._latest.busy():
            return  # on show already, and no other frame on its way
        if self._latest.put(self._token, index):
            self._wake.emit()

    def is_current(self) -> bool:
        """Whether the frame on show is the one last asked for."""
        return self.index == self.requested

    def cut(self, rect: Rect, field: Field | None) -> Cut:
        """The frame on show cut to ``rect`` (and one field), named ``<clip>_<timecode>.png``
        (see :func:`fbupscale_gui.storage.video.cut_frame`)."""
        if self.image is None or self.info is None:
            raise ClipError(self.info.path if self.info else "clip", "no frame is on show")
        return cut_frame(self.info, self.image, self.index, rect, field)

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Close the reader in its thread and wait for the thread to end."""
        self._latest.clear()
        if not self._thread.isRunning():
            return True
        self._close.emit()
        return bool(self._thread.wait(timeout_ms))

    # -- decoder signals ------------------------------------------------------------------

    @Slot(int, object, object, object)
    def _on_opened(self, token: int, info: ClipInfo, image: Image.Image, qimage: QImage) -> None:
        self._opening.discard(token)
        if token <= self._token:
            return  # the decoder opens in order; an older result is never newer
        # the decoder now reads this clip (opens run in order there, so follow each one)
        self._token = token
        self.info = info
        self.index = self.requested = 0
        self.image = image
        self.qimage = qimage
        self.opened.emit(info)
        self.frameChanged.emit(0)

    @Slot(int, str)
    def _on_open_failed(self, token: int, message: str) -> None:
        self._opening.discard(token)
        self.openFailed.emit(message)

    @Slot(int, int, object, object)
    def _on_frame(self, token: int, index: int, image: Image.Image, qimage: QImage) -> None:
        if token != self._token:
            return
        self.index = index
        self.image = image
        self.qimage = qimage
        self.frameChanged.emit(index)

    @Slot(int, int, str)
    def _on_frame_failed(self, token: int, index: int, message: str) -> None:
        if token == self._token:
            self.frameFailed.emit(message)
