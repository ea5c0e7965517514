"""What every ``fbupscale`` subcommand shares: exit statuses, the one cancel flag, the one
progress bar, the one output-naming helper, one-line errors and notes on stderr.

Imports stay light (tqdm only when a bar is drawn): ``fbupscale --help`` loads this module.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import FbError, error_line
from fbupscale_gui.storage.paths import shown

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.job import Candidate, Progress

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "PROG",
    "SERVE_PACKAGES",
    "CancelFlag",
    "MissingExtraError",
    "ProgressBar",
    "UsageError",
    "error",
    "missing_extra",
    "note",
    "output_name",
    "save_new",
    "scene_prompt",
]

PROG: Final = "fbupscale"
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_CANCELLED: Final = 130


class UsageError(Exception):
    """A command line that cannot work (exit status 2)."""


class MissingExtraError(FbError):
    """A subcommand needs an optional extra that is not installed (exit status 1)."""

    def __init__(self, command: str, package: str, extra: str) -> None:
        self.extra = extra
        super().__init__(
            f"'{PROG} {command}' needs the optional '{extra}' extra ({package} is not "
            f"installed): pip install 'fbupscale-gui[{extra}]'"
        )


#: The packages of the optional ``serve`` extra (Ray Serve and its web stack).
SERVE_PACKAGES: Final = ("ray", "fastapi", "starlette", "uvicorn")


def missing_extra(
    exc: ImportError, command: str, extra: str, packages: tuple[str, ...]
) -> ImportError | MissingExtraError:
    """What to raise for ``exc``: :class:`MissingExtraError` saying what to install when the
    module not found is one of the optional ``extra``'s ``packages``, else ``exc`` itself (a
    fault of this install, never disguised as a missing extra)."""
    missing = (exc.name or "").split(".")[0] if isinstance(exc, ModuleNotFoundError) else ""
    if missing and missing in packages:
        return MissingExtraError(command, missing, extra)
    return exc


# -- messages on stderr ---------------------------------------------------------------------


def note(message: str, prog: str = PROG) -> None:
    """``fbupscale: MESSAGE`` on stderr (control characters escaped)."""
    print(f"{prog}: {shown(message)}", file=sys.stderr, flush=True)


def error(exc: BaseException | str, prog: str = PROG) -> int:
    """``PROG: error: ONE LINE`` on stderr; returns :data:`EXIT_ERROR`."""
    message = exc if isinstance(exc, str) else error_line(exc)
    print(f"{prog}: error: {shown(message)}", file=sys.stderr, flush=True)
    return EXIT_ERROR


# -- cancelling -----------------------------------------------------------------------------


class CancelFlag:
    """The command line's one cancel flag: call it to ask whether to stop.

    While :meth:`installed`, the first Ctrl-C sets it (the work stops after the current step)
    and the second one quits at once; :meth:`on_sigterm` makes SIGTERM (what a window's
    ``QProcess.terminate`` sends) set it too. ``also`` is another flag it follows (a caller's).
    Signal handlers are only installed in the main thread.
    """

    def __init__(self, also: Callable[[], bool] | None = None) -> None:
        self.event = threading.Event()
        self._also = also

    def __call__(self) -> bool:
        return self.event.is_set() or (self._also is not None and self._also())

    @contextlib.contextmanager
    def installed(self, unit: str = "step") -> Iterator[CancelFlag]:
        """Ctrl-C cancels after the current ``unit``; a second Ctrl-C quits."""

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.event.is_set():
                raise KeyboardInterrupt
            self.event.set()
            note(f"cancelling after the current {unit} (Ctrl-C again to quit now)")

        with self._handling(signal.SIGINT, handler):
            yield self

    @contextlib.contextmanager
    def on_sigterm(self) -> Iterator[CancelFlag]:
        """SIGTERM cancels after the current step."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self.event.set()

        with self._handling(signal.SIGTERM, handler):
            yield self

    @contextlib.contextmanager
    def _handling(self, signum: signal.Signals, handler: Any) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signum, handler)
        try:
            yield
        finally:
            signal.signal(signum, previous)


# -- progress -------------------------------------------------------------------------------


class ProgressBar:
    """A tqdm bar on stderr driven by Progress events: ``label`` and the stage as its
    description, the event's message after it. No bar with ``quiet``, nor when stderr is not
    a terminal (logs stay readable); an event's note is printed in any case."""

    def __init__(self, label: str = "", *, quiet: bool = False, unit: str = "step") -> None:
        self.label = label
        self.quiet = quiet
        self.unit = unit
        self._bar: Any = None

    def __call__(self, progress: Progress) -> None:
        if progress.note is not None:  # shown even with --quiet: it is not progress
            from tqdm import tqdm

            prefix = "warning: " if progress.note.level == "warning" else ""
            tqdm.write(f"{PROG}: {prefix}{progress.note.text}", file=sys.stderr)
        if self.quiet:
            return
        from tqdm import tqdm

        total = max(1, progress.job_total, progress.job_step)  # a frame count may be low
        if self._bar is None:
            self._bar = tqdm(
                total=total,
                file=sys.stderr,
                unit=self.unit,
                leave=False,
                dynamic_ncols=True,
                disable=None,
            )
        self._bar.total = total
        if self.label:
            self._bar.set_description_str(f"{self.label} {progress.stage}", refresh=False)
        if progress.message:
            self._bar.set_postfix_str(progress.message, refresh=False)
        self._bar.n = progress.job_step
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# -- output files ---------------------------------------------------------------------------


def output_name(stem: str, candidate: Candidate, folder: str | Path = ".") -> str:
    """The file name of ``candidate`` made from the cutout ``stem``: named as an export names it
    (:func:`fbupscale_gui.core.export.candidate_tag`): ``{stem}_v{variant}_s{stage}_{lora|nolora}
    _seed{seed}.png`` for FLUX, ``{stem}_{engine}.png`` for a one-pass engine. A stem too long
    for ``folder``'s name limit is shortened and ends in ``~`` and a hash."""
    from fbupscale_gui.core.export import candidate_tag
    from fbupscale_gui.storage.paths import fit_name

    return fit_name(stem, candidate_tag(candidate) + ".png", folder)


def save_new(candidate: Candidate, path: Path, cutout: Image.Image) -> Path:
    """Save to ``path`` or a ``-2``, ``-3``... variant claimed exclusively (never overwriting
    a file, not even one another run is writing right now); returns where it went."""
    from fbupscale_gui.storage.metadata import save_candidate

    return save_candidate(candidate, path, cutout=cutout, exclusive=True)


# -- inputs ---------------------------------------------------------------------------------


def scene_prompt(scene_file: str) -> tuple[str, str]:
    """(prompt, scene JSON) from a scene file; errors name the file.

    Only a regular file of bounded size is read (never a device, FIFO or huge file)."""
    from fbupscale_gui.core.errors import RequestError
    from fbupscale_gui.core.scene import Scene
    from fbupscale_gui.storage.paths import NotRegularFileError, read_regular

    path = Path(scene_file).expanduser()
    try:
        text = read_regular(path, "scene file").decode("utf-8")
    except NotRegularFileError as exc:
        raise RequestError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RequestError(f"{path}: cannot read the scene file ({reason})") from None
    try:
        scene = Scene.from_json(text)
        return scene.to_prompt(), scene.to_json()
    except RequestError as exc:
        raise RequestError(f"{path}: {exc}") from None
