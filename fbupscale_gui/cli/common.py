"""What every ``fbupscale`` subcommand shares: exit statuses, the one cancel flag, the one
progress bar, the one output-naming helper, one-line errors and notes on stderr.

Imports stay light (tqdm only when a bar is drawn): ``fbupscale --help`` loads this module.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import FbError
from fbupscale_gui.storage.paths import shown

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.job import Candidate, Progress


PROG: Final = "fbupscale"


EXIT_ERROR: Final = 1


EXIT_USAGE: Final = 2


EXIT_CANCELLED: Final = 130


class UsageError(Exception):
    """A command line that cannot work (exit status 2)."""


def note(message: str) -> None:
    print(f"{PROG}: {shown(message)}", file=sys.stderr, flush=True)


def one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, FbError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return " ".join(str(exc).split()) or type(exc).__name__


class CancelFlag:
    """First Ctrl-C asks the engine to stop after the current step; the second one quits."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self) -> bool:
        return self.event.is_set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.event.is_set():
                raise KeyboardInterrupt
            self.event.set()
            note("cancelling after the current step (Ctrl-C again to quit now)")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class ProgressBar:
    """tqdm progress bars on stderr, one per run, driven by Progress events."""

    def __init__(self, label: str, *, quiet: bool) -> None:
        self.label = label
        self.quiet = quiet
        self._bar: Any = None

    def __call__(self, progress: Progress) -> None:
        from tqdm import tqdm

        if progress.note is not None:  # shown even with --quiet: it is not progress
            prefix = "warning: " if progress.note.level == "warning" else ""
            tqdm.write(f"{PROG}: {prefix}{progress.note.text}", file=sys.stderr)
        if self.quiet:
            return

        total = max(1, progress.job_total)
        if self._bar is None or self._bar.total != total:
            self.close()
            self._bar = tqdm(
                total=total,
                file=sys.stderr,
                unit="step",
                leave=False,
                dynamic_ncols=True,
                disable=None,  # no bar when stderr is not a terminal (logs stay readable)
            )
        self._bar.set_description_str(f"{self.label} {progress.stage}", refresh=False)
        self._bar.n = min(total, progress.job_step)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def candidate_filename(stem: str, candidate: Candidate) -> str:
    """``{stem}_v{variant}_s{stage}_{lora|nolora}_seed{seed}.png``."""
    key = candidate.key
    lora = "lora" if key.lora else "nolora"
    return f"{stem}_v{key.variant}_s{key.stage}_{lora}_seed{candidate.seed}.png"


def save_new(candidate: Candidate, path: Path, cutout: Image.Image) -> Path:
    """Save to ``path`` or a ``-2``, ``-3``... variant claimed exclusively (never overwriting
    a file, not even one another run is writing right now); returns where it went."""
    from fbupscale_gui.storage.metadata import save_candidate

    return save_candidate(candidate, path, cutout=cutout, exclusive=True)


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
