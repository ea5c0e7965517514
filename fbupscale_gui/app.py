"""``fbupscale-gui [PATHS...]``: the operator's window.

Composition only: QApplication, dark theme, the qasync event loop (asyncio on the Qt loop, for
loading and exporting off the GUI thread), the settings, the session (state and jobs) and the
main window. Torch is never imported in this process: the engine runs in its own process
(:mod:`fbupscale_gui.host`), started once the window has painted (setting ``engine_prewarm``)
or on the first job.

``fbupscale-gui PATHS --engine NAME --run-all`` queues every cutout loaded from PATHS with
engine NAME at once (an operator queues a whole match folder and comes back later).

Start-up is progressive: the window (title, remembered geometry) is shown first, needing only
Qt; the models and panes are imported and built on the first turn of the event loop after it
has painted, then the qasync loop is attached to the already running Qt loop.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtCore import QObject
    from PySide6.QtWidgets import QApplication

    from fbupscale_gui.state.cutouts import LoadReport
    from fbupscale_gui.state.session import Session
    from fbupscale_gui.ui.main_window import MainWindow

__all__ = ["main"]

log = logging.getLogger("fbupscale_gui")


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    from fbupscale_gui import __version__

    parser = argparse.ArgumentParser(
        prog="fbupscale-gui",
        description="Reconstruct tiny football broadcast cutouts into 1024 px frames.",
    )
    parser.add_argument("paths", nargs="*", help="cutout files or folders to load")
    parser.add_argument(
        "--engine",
        help="engine to select: flux, realesrgan, lanczos or model:NAME (default: the last used)",
    )
    parser.add_argument(
        "--run-all",
        action="store_true",
        help="run every cutout loaded from PATHS at once (queue a whole folder)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args, _qt_args = parser.parse_known_args(list(argv))
    if args.run_all and not args.paths:
        parser.error("--run-all needs cutout files or folders to run")
    if args.engine is not None:
        from fbupscale_gui.core.request import BUILTIN_ENGINES, is_model_engine

        if args.engine not in BUILTIN_ENGINES and not is_model_engine(args.engine):
            parser.error(
                f"--engine: expected one of {', '.join(BUILTIN_ENGINES)} or model:NAME, "
                f"got {args.engine!r}"
            )
    return args


def _report(stage: str, started: float) -> None:
    """The start-up probe of bench/gui_startup.py and the bundle smoke test (packaging/launch.py)
    reads these lines (only with FBUPSCALE_QUIT_WHEN_SHOWN set)."""
    print(f"{stage} {time.perf_counter() - started:.4f}", flush=True)


def _build(
    app: QApplication,
    window: MainWindow,
    args: argparse.Namespace,
    started: float,
    resources: list[Callable[[], object]],
) -> None:
    """Second phase, inside the running Qt loop: asyncio (qasync), models, panes.

    Appends to ``resources`` what :func:`main` must release after the Qt loop ends.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import qasync

    from fbupscale_gui.state.gc_guard import GuiThreadGarbageCollector
    from fbupscale_gui.state.gpu import GpuMonitor
    from fbupscale_gui.state.session import Message as SessionMessage
    from fbupscale_gui.state.session import Session
    from fbupscale_gui.state.settings_model import SettingsModel

    loop = qasync.QEventLoop(app, already_running=True)
    # Plain threads for asyncio.to_thread (file loading, export): joined at exit, unlike the
    # QThreads qasync would start, which abort the process if still alive when destroyed.
    io_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fbupscale-io")
    loop.set_default_executor(io_pool)
    asyncio.set_event_loop(loop)
    resources.append(lambda: io_pool.shutdown(wait=True, cancel_futures=True))

    collector = GuiThreadGarbageCollector()  # Qt objects are only ever freed in this thread
    collector.start()
    resources.append(collector.stop)

    session = Session(SettingsModel())
    gpu = GpuMonitor()
    window.build(session, gpu)
    window.errors.install_hooks()  # an error in a slot or a thread is shown and logged
    loop.set_exception_handler(window.errors.asyncio_exception)  # and in an asyncio callback
    if os.environ.get("FBUPSCALE_QUIT_WHEN_SHOWN"):
        _report("ready", started)
        window.confirm_on_close = False
        window.close()
        return
    resources.append(session.recorder.close)  # the session writer thread, joined
    resources.append(lambda: session.shutdown(timeout_ms=10_000))  # the engine process too
    gpu.start()
    session.prewarm_engine()  # its own process: the window never waits for it
    session.check_models()  # in the engine thread; never blocks the window
    # the last session (or a new one): its candidates, picks and interrupted jobs come back
    session.open_session()
    if args.engine:
        try:
            session.engine.set_engine(args.engine)
        except ValueError as exc:  # e.g. model:NAME not in the models folder
            session.message.emit(SessionMessage("error", f"--engine: {exc}"))
    if args.run_all:
        run_all = _run_all(session)
        run_all.setParent(session)
    if args.paths:
        session.load(list(args.paths))  # decoded off the GUI thread (asyncio.to_thread)


def _run_all(session: Session) -> QObject:
    """``--run-all``: run every cutout the command line's paths load, once they are in."""
    from PySide6.QtCore import QObject, Slot

    class RunAll(QObject):
        @Slot(object)
        def on_loaded(self, report: LoadReport) -> None:
            session.cutouts.loaded.disconnect(self.on_loaded)
            session.run(report.added)

    runner = RunAll()
    session.cutouts.loaded.connect(runner.on_loaded)
    return runner


def main(argv: Sequence[str] | None = None) -> int:
    """Run the window until it is closed. Returns the process exit status."""
    started = time.perf_counter()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = _parse(arguments)
    logging.basicConfig(
        level=os.environ.get("FBUPSCALE_LOG", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    from fbupscale_gui.state.settings_model import default_store
    from fbupscale_gui.ui.main_window import MainWindow
    from fbupscale_gui.ui.theme import apply_dark_theme

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0]])
    app.setOrganizationName("fbupscale")
    app.setApplicationName("fbupscale-gui")
    apply_dark_theme(app)

    window = MainWindow(store=default_store())

    class _FirstPaint(QObject):
        """Builds the rest once the shell has painted (so the window is on screen first)."""

        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                window.removeEventFilter(self)
                if os.environ.get("FBUPSCALE_QUIT_WHEN_SHOWN"):
                    _report("shown", started)
                QTimer.singleShot(0, self.build)
            return False

        def build(self) -> None:
            try:
                _build(app, window, args, started, resources)
            except Exception as exc:  # show it in the window rather than a dead "Loading…"
                log.exception("start-up failed")
                window.show_startup_error(f"fbupscale could not start: {exc}")

    resources: list[Callable[[], object]] = []
    first_paint = _FirstPaint()
    window.installEventFilter(first_paint)
    window.show()
    status = app.exec()
    window.removeEventFilter(first_paint)
    for release in resources:
        release()
    return int(status)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
