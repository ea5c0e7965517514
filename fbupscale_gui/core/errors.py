"""The application's own error types.

Every error a user can cause or meet carries a one-line, actionable message. Anything else
reaching the user is a bug. :func:`error_line` is the one way an exception becomes a line for
the operator (the window's message bar, a command's stderr, a problem in a list).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "Cancelled",
    "FbError",
    "GpuOutOfMemoryError",
    "InputImageError",
    "LoraError",
    "ModelFileError",
    "ModelNotFoundError",
    "RenderError",
    "RequestError",
    "error_line",
]


class FbError(Exception):
    """Base class of every error the application reports to the user."""


class Cancelled(FbError):
    """The user cancelled the job. Finished candidates were already delivered; nothing partial is."""

    def __init__(self, message: str = "cancelled by the user") -> None:
        super().__init__(message)


class RequestError(FbError, ValueError):
    """A request (or its JSON) is invalid: the message names the field and the allowed values."""


class InputImageError(FbError):
    """A cutout could not be read or is not usable as a cutout."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelNotFoundError(FbError):
    """A model (FLUX, ControlNet, LoRA, fast-engine weights) is not available offline."""

    def __init__(
        self, what: str, repo_id: str | None, searched: Sequence[str | Path], hint: str
    ) -> None:
        self.what = what
        self.repo_id = repo_id
        self.searched = [str(p) for p in searched]
        self.hint = hint
        where = "; ".join(self.searched) if self.searched else "(nowhere configured)"
        repo = f" ({repo_id})" if repo_id else ""
        super().__init__(f"{what}{repo} not found offline. Searched: {where}. {hint}")


class ModelFileError(FbError, ValueError):
    """A model file is unreadable, unsafe, or not an RGB super-resolution model we can run.

    The message is one line and names the file.
    """


class LoraError(FbError):
    """A LoRA file is unreadable, of an unknown format, or matches nothing in the model."""


class RenderError(FbError):
    """An engine produced unusable pixels (NaN or infinite values): nothing is saved."""


class GpuOutOfMemoryError(FbError):
    """The GPU ran out of memory. `next_mode` is the memory mode to retry with (None: none left)."""

    def __init__(self, mode: str, next_mode: str | None, detail: str = "") -> None:
        self.mode = mode
        self.next_mode = next_mode
        advice = (
            f"retry with memory mode '{next_mode}'"
            if next_mode
            else "no lighter memory mode is left: lower the size or the number of variants"
        )
        extra = f" ({detail})" if detail else ""
        super().__init__(f"GPU out of memory in memory mode '{mode}'{extra}; {advice}.")


def error_line(
    exc: BaseException, *, where: bool = True, limit: int = 0, unexpected: bool = False
) -> str:
    """``exc`` as one line for the operator.

    - An operating-system error (:class:`OSError` that is not one of ours) reads
      ``FILE: reason`` (its ``strerror``), or just the reason with ``where=False`` (the caller
      names the file already).
    - Any other error reads as its message; ``unexpected=True`` marks an error that is neither
      ours nor the operating system's as a bug: ``unexpected error (TypeName: message); the
      details are in the log``.
    - Line breaks and runs of spaces become one space; an empty message is the type's name.
    - ``limit`` > 0 cuts the line to at most that many characters, ending in "…".
    """
    if isinstance(exc, OSError) and not isinstance(exc, FbError):
        text = str(exc.strerror or exc)
        if where and exc.filename:
            text = f"{exc.filename}: {text}"
    elif unexpected and not isinstance(exc, FbError):
        text = f"unexpected error ({type(exc).__name__}: {exc}); the details are in the log"
    else:
        text = str(exc)
    text = " ".join(text.split()) or type(exc).__name__
    if 0 < limit < len(text):
        text = text[: limit - 1] + "…"
    return text
