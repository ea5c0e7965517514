"""Which engine runs (flux / realesrgan / lanczos) and whether the FLUX weights are there.

The FLUX look-up (:func:`fbupscale_gui.core.models.locate`) walks folders and the Hugging Face
cache, so it runs in the engine thread, never on the GUI thread at start-up. If the weights are
missing the window is told once, with the paths searched and ``fbupscale doctor``, and the
choice falls back to Real-ESRGAN; the fast engines keep working.
"""

from __future__ import annotations

import functools
import logging
from typing import Final, get_args

from PySide6.QtCore import QObject, Signal, Slot

from fbupscale_gui.core.errors import ModelNotFoundError
from fbupscale_gui.core.request import (
    CONTROLNET_REPO_ID,
    FLUX_REPO_ID,
    EngineKind,
    ModelRef,
)
from fbupscale_gui.core.settings import Settings
from fbupscale_gui.worker.engine_thread import EngineThread

__all__ = [
    "ENGINES",
    "ENGINE_LABELS",
    "EngineChoice",
    "FluxStatus",
    "flux_missing_message",
    "probe_flux",
]

log = logging.getLogger(__name__)

ENGINES: Final[tuple[str, ...]] = tuple(get_args(EngineKind))
ENGINE_LABELS: Final = {
    "flux": "FLUX (two-stage, GPU)",
    "realesrgan": "Real-ESRGAN x4plus (CPU)",
    "lanczos": "Lanczos (instant)",
}
FALLBACK_ENGINE: Final = "realesrgan"


class FluxStatus:
    UNKNOWN = "unknown"
    AVAILABLE = "available"
    MISSING = "missing"


def probe_flux(settings: Settings) -> None:
    """Raise ModelNotFoundError if FLUX.1-dev or the ControlNet cannot be found offline."""
    from fbupscale_gui.core.models import locate

    cache = settings.hf_cache or None
    locate(
        ModelRef(path=settings.flux_dir, repo_id=FLUX_REPO_ID),
        "flux",
        hf_cache=cache,
        compute_fingerprint=False,
    )
    locate(
        ModelRef(path=settings.controlnet_dir, repo_id=CONTROLNET_REPO_ID),
        "controlnet",
        hf_cache=cache,
        compute_fingerprint=False,
    )


def flux_missing_message(error: ModelNotFoundError) -> tuple[str, str]:
    """(message, details): what is missing and where we looked; the install hint as details."""
    searched = "; ".join(error.searched) or "(nowhere configured)"
    repo = f" ({error.repo_id})" if error.repo_id else ""
    text = (
        f"FLUX weights not found: {error.what}{repo}. Searched: {searched}. "
        "Real-ESRGAN is selected; Real-ESRGAN and Lanczos work without them. "
        "Run `fbupscale doctor` for a full check and how to install the weights."
    )
    return text, error.hint


class EngineChoice(QObject):
    """The selected engine, and the FLUX availability found in the background."""

    engineChanged = Signal(str)
    fluxStatusChanged = Signal(str)
    #: Emitted once per distinct set of model folders: the message for the window.
    fluxMissing = Signal(str, str)  # message, install hint

    def __init__(
        self, engine_thread: EngineThread, initial: str = "flux", parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._thread = engine_thread
        self._engine = initial if initial in ENGINES else "flux"
        self._status = FluxStatus.UNKNOWN
        self._told_for: tuple[str, ...] | None = None
        self._pending_key: tuple[str, ...] | None = None
        self._checking = False
        engine_thread.worker.checked.connect(self._on_checked)

    @property
    def engine(self) -> str:
        return self._engine

    @property
    def flux_status(self) -> str:
        return self._status

    def set_engine(self, engine: str) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
        if engine != self._engine:
            self._engine = engine
            self.engineChanged.emit(engine)

    def check(self, settings: Settings) -> None:
        """Look for the FLUX weights in the engine thread; the answer comes back as signals."""
        self._pending_key = (settings.flux_dir, settings.controlnet_dir, settings.hf_cache)
        self._checking = True
        self._thread.check(functools.partial(probe_flux, settings))

    @Slot(object)
    def _on_checked(self, result: object) -> None:
        if not self._checking:
            return
        self._checking = False
        if isinstance(result, ModelNotFoundError):
            self.report_missing(result, self._pending_key)
        elif isinstance(result, BaseException):
            log.warning("FLUX look-up failed: %s", result)
            self._set_status(FluxStatus.UNKNOWN)
        else:
            self._set_status(FluxStatus.AVAILABLE)

    def report_missing(self, error: ModelNotFoundError, key: tuple[str, ...] | None = None) -> None:
        """FLUX is missing (from the probe or a failed job): fall back and tell once."""
        self._set_status(FluxStatus.MISSING)
        if self._engine == "flux":
            self.set_engine(FALLBACK_ENGINE)
        if self._told_for is None or (key is not None and key != self._told_for):
            self._told_for = key or ()
            self.fluxMissing.emit(*flux_missing_message(error))

    def _set_status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self.fluxStatusChanged.emit(status)
