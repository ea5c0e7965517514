"""The window's one error channel: what it shows is logged, and an exception escaping a Qt slot
or a thread is shown in the message bar and logged (the hooks), never only printed, and the
window keeps working."""

from __future__ import annotations

import errno
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QObject, Signal, Slot

from fbupscale_gui.state.session import Message
from fbupscale_gui.ui.error_channel import UNEXPECTED_TOPIC
from fbupscale_gui.ui.main_window import MainWindow

CHANNEL_LOG = "fbupscale_gui.ui.error_channel"


@pytest.fixture
def hooked(window: MainWindow) -> Iterator[MainWindow]:
    """The window with its hooks installed, as the application installs them."""
    before = (sys.excepthook, threading.excepthook)
    window.errors.install_hooks()
    yield window
    window.errors.uninstall_hooks()
    assert (sys.excepthook, threading.excepthook) == before


class _Emitter(QObject):
    fired = Signal()


def _unexpected_banner(window: MainWindow) -> str:
    row = window.messages.row_for(UNEXPECTED_TOPIC)
    return row.label.text() if row is not None else ""


@pytest.mark.qt_no_exception_capture
def test_an_exception_in_a_qt_slot_reaches_the_bar_and_the_log(
    hooked: MainWindow, qtbot, caplog: pytest.LogCaptureFixture
) -> None:
    window = hooked

    def broken_slot() -> None:
        raise RuntimeError("slot went wrong")

    emitter = _Emitter()
    emitter.fired.connect(broken_slot)
    with caplog.at_level(logging.ERROR, logger=CHANNEL_LOG):
        emitter.fired.emit()  # Qt calls the slot; the exception goes to sys.excepthook
        qtbot.waitUntil(lambda: "slot went wrong" in _unexpected_banner(window))
    assert _unexpected_banner(window) == (
        "unexpected error (RuntimeError: slot went wrong); the details are in the log"
    )
    row = window.messages.row_for(UNEXPECTED_TOPIC)
    assert row is not None and "broken_slot" in row.toolTip()  # the traceback
    logged = [r for r in caplog.records if r.name == CHANNEL_LOG]
    assert logged and logged[0].exc_info is not None
    assert logged[0].exc_info[1] is not None and "slot went wrong" in str(logged[0].exc_info[1])
    # the window still works
    window.session.message.emit(Message("warning", "still here"))
    assert "still here" in window.messages.texts()


@pytest.mark.qt_no_exception_capture
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_an_exception_in_a_thread_reaches_the_bar_and_the_log(
    hooked: MainWindow, qtbot, caplog: pytest.LogCaptureFixture
) -> None:
    window = hooked

    def broken_work() -> None:
        raise ValueError("thread went wrong")

    with caplog.at_level(logging.ERROR, logger=CHANNEL_LOG):
        worker = threading.Thread(target=broken_work, name="broken-worker")
        worker.start()
        worker.join()
        qtbot.waitUntil(lambda: "thread went wrong" in _unexpected_banner(window))
    assert _unexpected_banner(window) == (
        "thread broken-worker: unexpected error (ValueError: thread went wrong); "
        "the details are in the log"
    )
    logged = [r for r in caplog.records if r.name == CHANNEL_LOG]
    assert logged and "broken-worker" in logged[0].getMessage()
    assert logged[0].exc_info is not None


def test_a_hook_installed_before_is_still_called(
    window: MainWindow, qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test runner's or debugger's hook keeps seeing the exceptions (after ours)."""
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda _t, exc, _tb: seen.append(exc))
    window.errors.install_hooks()
    try:
        error = KeyError("missing")
        sys.excepthook(KeyError, error, None)
    finally:
        window.errors.uninstall_hooks()
    assert seen == [error]
    qtbot.waitUntil(lambda: "KeyError" in _unexpected_banner(window))


def test_what_the_window_shows_is_logged(
    window: MainWindow, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=CHANNEL_LOG):
        window.session.message.emit(Message("error", "Export failed: disk full", topic="export"))
        window.session.message.emit(Message("info", "Exported 1 file(s)"))
    assert "Export failed: disk full" in window.messages.texts()
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == CHANNEL_LOG]
    assert logged == [(logging.ERROR, "Export failed: disk full")]  # news is not an error


class _Received(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    @Slot(str)
    def take(self, text: str) -> None:
        self.texts.append(text)


def test_a_bug_in_a_session_write_is_shown_every_time(qtbot, tmp_path: Path) -> None:
    """A full disk is reported once until a write succeeds again; a bug in a write is shown
    each time, even while the disk problem stands (it was only logged)."""
    from fbupscale_gui.state.session_writer import SessionWriter

    def disk_full(_store: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def bug(_store: object) -> None:
        raise KeyError("row")

    received = _Received()
    writer = SessionWriter(tmp_path / "session")
    writer.failed.connect(received.take)
    writer.start()
    try:
        for op in (disk_full, disk_full, bug, bug):
            writer.submit(op)
        assert writer.flush(10)
        qtbot.waitUntil(lambda: len(received.texts) == 3)
    finally:
        writer.close(10)
    disk, first_bug, second_bug = received.texts
    assert "the disk is full" in disk
    assert "unexpected error (KeyError: 'row'); the details are in the log" in first_bug
    assert first_bug == second_bug


def test_a_failed_background_load_is_shown(
    qapp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A bug in a background task (here: loading cutouts) was only logged."""
    import asyncio

    from PySide6.QtCore import QSettings

    import fbupscale_gui.state.session as session_module
    from fbupscale_gui.state.session import Session
    from fbupscale_gui.state.settings_model import SettingsModel
    from fbupscale_gui.worker.testing import FakeRunner

    def broken(_paths: object) -> list[object]:
        raise AttributeError("decoder bug")

    monkeypatch.setattr(session_module, "decode_paths", broken)
    settings = SettingsModel(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    session = Session(settings, runner_factory=FakeRunner)
    messages: list[Message] = []
    session.message.connect(messages.append)

    async def load() -> None:
        session.load([str(tmp_path)])
        for _ in range(500):
            await asyncio.sleep(0.01)
            if messages:
                return

    try:
        asyncio.run(load())
    finally:
        session.shutdown(timeout_ms=5_000)
    assert [(m.level, m.text) for m in messages] == [
        (
            "error",
            "A background task failed: unexpected error (AttributeError: decoder bug); "
            "the details are in the log",
        )
    ]


def test_an_exception_in_an_asyncio_callback_reaches_the_bar(
    window: MainWindow, qtbot, caplog: pytest.LogCaptureFixture
) -> None:
    """The application hands its asyncio loop's errors to the channel too."""
    import asyncio

    def broken_callback() -> None:
        raise LookupError("callback went wrong")

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(window.errors.asyncio_exception)
        loop.call_soon(broken_callback)
        await asyncio.sleep(0.05)

    with caplog.at_level(logging.ERROR, logger=CHANNEL_LOG):
        asyncio.run(run())
        qtbot.waitUntil(lambda: "callback went wrong" in _unexpected_banner(window))
    assert any(r.exc_info for r in caplog.records if r.name == CHANNEL_LOG)


def test_a_closed_window_is_freed_without_the_garbage_collector(qapp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The channel reaches the window by a signal, not a stored callback: no reference cycle,
    so a closed window is destroyed at once, never later by the collector in the middle of
    something else (which crashed an unrelated test)."""
    import gc
    import weakref

    from PySide6.QtCore import QSettings

    from fbupscale_gui.state.session import Session
    from fbupscale_gui.state.settings_model import SettingsModel
    from fbupscale_gui.worker.testing import FakeRunner

    settings = SettingsModel(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    window = MainWindow(Session(settings, runner_factory=FakeRunner))
    window.confirm_on_close = False
    window.close()
    gone = weakref.ref(window)
    gc.collect()
    gc.disable()
    try:
        del window
        assert gone() is None
    finally:
        gc.enable()
