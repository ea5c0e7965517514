"""The window's one error channel: what it shows the operator also goes to the log.

Every message the window shows (the session's errors, warnings and news, the window's own) goes
through :meth:`ErrorChannel.report`: errors and warnings are logged, then shown (a banner in the
message bar, or passing news in the status bar). An exception caught where it was not expected
goes through :meth:`ErrorChannel.report_exception`: logged with its traceback, shown as one line
(:func:`~fbupscale_gui.core.errors.error_line`) with the traceback in the banner's tooltip.

:meth:`ErrorChannel.install_hooks` installs ``sys.excepthook`` (an exception escaping a Qt slot
or event handler) and ``threading.excepthook`` (one escaping a thread) so that such an error is
shown in the window and logged instead of only printed, and the window keeps running. A hook
that was installed before (a test runner's, a debugger's) is still called after ours. The
application also hands the asyncio loop's errors (callbacks, tasks) to
:meth:`ErrorChannel.asyncio_exception`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import traceback
from types import TracebackType
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal, Slot

from fbupscale_gui.core.errors import error_line

if TYPE_CHECKING:
    from fbupscale_gui.state.session import Message

__all__ = ["UNEXPECTED_TOPIC", "ErrorChannel"]

log = logging.getLogger(__name__)

#: The banner topic of unexpected errors: the latest replaces the one before.
UNEXPECTED_TOPIC = "unexpected"
_LOG_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING}


class ErrorChannel(QObject):
    """Logs messages and emits ``display(message)``: the window draws it (message bar or
    status bar). A signal, not a stored callback, so the channel keeps no reference to the
    window (a reference cycle would leave a closed window to the garbage collector)."""

    display = Signal(object)  # Message
    #: An exception and where it happened, carried to the GUI thread.
    _caught = Signal(object, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._previous: tuple[Any, Any] | None = None
        self._caught.connect(self._on_caught)

    @Slot(object)
    def report(self, message: Message) -> None:
        """Log ``message`` (errors and warnings) and show it. GUI thread."""
        level = _LOG_LEVELS.get(message.level)
        if level is not None:
            log.log(level, "%s", message.text)
        self.display.emit(message)

    def report_exception(self, exc: BaseException, where: str = "") -> None:
        """Log ``exc`` with its traceback now and show it in the window (from any thread)."""
        log.error("unexpected error%s", f" in {where}" if where else "", exc_info=exc)
        self._caught.emit(exc, where)

    @Slot(object, str)
    def _on_caught(self, exc: BaseException, where: str) -> None:
        from fbupscale_gui.state.session import Message

        details = "".join(traceback.format_exception(exc)).strip()
        text = error_line(exc, unexpected=True)
        self.display.emit(
            Message(
                "error",
                f"{where}: {text}" if where else text,
                details=details,
                topic=UNEXPECTED_TOPIC,
            )
        )

    # -- hooks ------------------------------------------------------------------------

    def install_hooks(self) -> None:
        """Route uncaught exceptions (slots, threads) here; :meth:`uninstall_hooks` undoes it."""
        if self._previous is None:
            self._previous = (sys.excepthook, threading.excepthook)
            sys.excepthook = self._excepthook
            threading.excepthook = self._thread_excepthook

    def uninstall_hooks(self) -> None:
        """Put back the hooks found at :meth:`install_hooks` (if ours are still in place)."""
        if self._previous is None:
            return
        previous_sys, previous_thread = self._previous
        self._previous = None
        if sys.excepthook == self._excepthook:
            sys.excepthook = previous_sys
        if threading.excepthook == self._thread_excepthook:
            threading.excepthook = previous_thread

    def _excepthook(
        self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        previous = self._previous[0] if self._previous is not None else sys.__excepthook__
        if not issubclass(kind, Exception):  # KeyboardInterrupt, SystemExit: not ours to show
            previous(kind, exc, tb)
            return
        self._deliver(exc.with_traceback(tb), "")
        if previous is not sys.__excepthook__:  # a test runner or debugger wants it too
            previous(kind, exc, tb)

    def _thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        previous = self._previous[1] if self._previous is not None else threading.__excepthook__
        exc = args.exc_value
        if exc is None or not issubclass(args.exc_type, Exception):
            previous(args)
            return
        name = args.thread.name if args.thread is not None else "a thread"
        self._deliver(exc.with_traceback(args.exc_traceback), f"thread {name}")
        if previous is not threading.__excepthook__:
            previous(args)

    def asyncio_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The asyncio loop's exception handler (``loop.set_exception_handler``): an error in
        a callback or a task nobody awaited is shown and logged like one in a slot."""
        exc = context.get("exception")
        if isinstance(exc, Exception):
            self._deliver(exc, "")
        else:
            loop.default_exception_handler(context)

    def _deliver(self, exc: BaseException, where: str) -> None:
        try:
            self.report_exception(exc, where)
        except Exception:  # the window is gone (shutting down): print it, as Python would
            sys.__excepthook__(type(exc), exc, exc.__traceback__)
