"""Application settings: a typed schema with defaults and validation. Pure Python.

Each setting is declared once (:data:`SPECS`) with its default, a one-line description and a
validator. :meth:`Settings.from_mapping` reads raw stored values (QSettings gives strings):
a bad value falls back to its default and is logged, so a corrupt settings file never stops
the application. :meth:`Settings.replace` validates and raises :class:`SettingsError` naming
the setting, for the settings dialog.

Persistence is the Qt side's business (:mod:`fbupscale_gui.state.settings_model`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args

from fbupscale_gui.core.errors import FbError
from fbupscale_gui.core.export import validate_template
from fbupscale_gui.core.request import (
    BUILTIN_ENGINES,
    MemoryMode,
    canonical_engine,
    is_model_engine,
)

__all__ = ["SPECS", "ExportFormat", "SettingSpec", "Settings", "SettingsError"]

log = logging.getLogger(__name__)

ExportFormat = str  # "png" | "jpeg" (validated below)
_EXPORT_FORMATS: Final = ("png", "jpeg")
_MEMORY_MODES: Final = tuple(get_args(MemoryMode))


class SettingsError(FbError, ValueError):
    """A setting value is invalid; the message names the setting and what is allowed."""


def _default_export_dir() -> str:
    return str(Path.home() / "fbupscale-exports")


def _path_value(value: Any) -> str:
    """A folder/file path setting: any string; empty means "not set" (use the default search)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a path (text), got {type(value).__name__}")
    text = value.strip()
    if "\x00" in text:
        raise ValueError("contains a NUL character")
    return text


def _choice(allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {list(allowed)}, got {value!r}")
        return str(value)

    return check


def _engine_value(value: Any) -> str:
    """A built-in engine, or "model:NAME" (a library model; it may since have been removed)."""
    if isinstance(value, str):
        value = canonical_engine(value)
    if not isinstance(value, str) or not (value in BUILTIN_ENGINES or is_model_engine(value)):
        raise ValueError(f"must be one of {list(BUILTIN_ENGINES)} or model:NAME, got {value!r}")
    return value


#: The default template before it named the engine; a stored copy reads as the new default.
_OLD_DEFAULT_TEMPLATE: Final = "{match}_{cutout}_{seed}_{lora}.png"
DEFAULT_TEMPLATE: Final = "{match}_{cutout}_{engine}_{seed}_{lora}.png"


def _template(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty file-name template")
    validate_template(value)  # raises ExportError (a ValueError) naming the unknown field
    value = value.strip()
    return DEFAULT_TEMPLATE if value == _OLD_DEFAULT_TEMPLATE else value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return value.strip()


def _db_threshold(value: Any) -> float:
    """0 (off) or a threshold in dB, 1..99; QSettings hands back text."""
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of dB (0 = off), got {value!r}") from None
    if number != number or not (number == 0.0 or 1.0 <= number <= 99.0):  # NaN included
        raise ValueError(f"must be 0 (off) or between 1 and 99 dB, got {value!r}")
    return number


def _flag(value: Any) -> bool:
    """A yes/no setting; QSettings hands back ``"true"``/``"false"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise ValueError(f"expected true or false, got {value!r}")


def _grace_seconds(value: Any) -> float:
    """1..600 seconds; QSettings hands back text."""
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if number != number or not 1.0 <= number <= 600.0:  # NaN included
        raise ValueError(f"must be between 1 and 600 seconds, got {value!r}")
    return number


def _server_url(value: Any) -> str:
    """ "" (this computer's engine process) or an http(s):// address of ``fbupscale serve``."""
    text = value.strip() if isinstance(value, str) else ""
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {value!r}")
    if text and not (text.startswith(("http://", "https://")) and len(text) > len("https://")):
        raise ValueError(f"expected an http:// or https:// address, got {text!r}")
    return text.rstrip("/")


@dataclass(frozen=True)
class SettingSpec:
    """One setting: its name, default, description and validator (returns the clean value)."""

    name: str
    default: Callable[[], Any]
    description: str
    validate: Callable[[Any], Any]


SPECS: Final[tuple[SettingSpec, ...]] = (
    SettingSpec(
        "flux_dir",
        lambda: "",
        "FLUX.1-dev model folder or single-file transformer (empty: the Hugging Face cache)",
        _path_value,
    ),
    SettingSpec(
        "flux_base_dir",
        lambda: "",
        "FLUX base folder or ComfyUI/Forge install, for a single-file transformer",
        _path_value,
    ),
    SettingSpec(
        "controlnet_dir",
        lambda: "",
        "FLUX ControlNet upscaler folder (empty: the Hugging Face cache)",
        _path_value,
    ),
    SettingSpec(
        "lora_path",
        lambda: "",
        "Football LoRA file or folder (empty: no LoRA)",
        _path_value,
    ),
    SettingSpec(
        "hf_cache",
        lambda: "",
        "Hugging Face cache folder (empty: HF_HOME or ~/.cache/huggingface)",
        _path_value,
    ),
    SettingSpec(
        "memory_mode",
        lambda: "auto",
        "Default GPU memory mode",
        _choice(_MEMORY_MODES),
    ),
    SettingSpec(
        "engine",
        lambda: "faithful",
        "Engine selected at start",
        _engine_value,
    ),
    SettingSpec(
        "export_dir",
        _default_export_dir,
        "Folder exports are written to",
        _path_value,
    ),
    SettingSpec(
        "export_template",
        lambda: DEFAULT_TEMPLATE,
        "Export file-name template",
        _template,
    ),
    SettingSpec(
        "export_format",
        lambda: "png",
        "Export file format",
        _choice(_EXPORT_FORMATS),
    ),
    SettingSpec(
        "match_name",
        lambda: "match",
        "Match name used in export file names",
        _text,
    ),
    SettingSpec(
        "export_min_lr_db",
        lambda: 0.0,
        "Export guard: LR-consistency threshold in dB (0 = off)",
        _db_threshold,
    ),
    SettingSpec(
        "export_low_fidelity",
        lambda: "ask",
        "Below the threshold, export",
        _choice(("ask", "refuse")),
    ),
    SettingSpec(
        "export_number_contradiction",
        lambda: "ask",
        "A pick whose shirt number contradicts the scene: export",
        _choice(("ask", "refuse")),
    ),
    SettingSpec(
        "export_badge",
        lambda: False,
        "Burn a visible 'AI-reconstructed' badge into exported pixels",
        _flag,
    ),
    SettingSpec(
        "engine_prewarm",
        lambda: True,
        "Start the engine process as soon as the window is shown (else on the first job)",
        _flag,
    ),
    SettingSpec(
        "cancel_grace_s",
        lambda: 10.0,
        "Seconds a cancelled job may take before the engine is stopped hard and restarted",
        _grace_seconds,
    ),
    SettingSpec(
        "engine_server",
        lambda: "",
        "Engine: empty for this computer, or the address of an 'fbupscale serve' server",
        _server_url,
    ),
    SettingSpec(
        "engine_token",
        lambda: "",
        "The server's token (empty: FBUPSCALE_TOKEN)",
        _text,
    ),
)

_BY_NAME: Final = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True)
class Settings:
    """The validated settings. Construct with :meth:`defaults` or :meth:`from_mapping`."""

    flux_dir: str = ""
    flux_base_dir: str = ""
    controlnet_dir: str = ""
    lora_path: str = ""
    hf_cache: str = ""
    memory_mode: str = "auto"
    engine: str = "faithful"
    export_dir: str = ""
    export_template: str = DEFAULT_TEMPLATE
    export_format: str = "png"
    match_name: str = "match"
    export_min_lr_db: float = 0.0
    export_low_fidelity: str = "ask"
    export_number_contradiction: str = "ask"
    export_badge: bool = False
    engine_prewarm: bool = True
    cancel_grace_s: float = 10.0
    engine_server: str = ""
    engine_token: str = ""

    @classmethod
    def defaults(cls) -> Settings:
        return cls(**{spec.name: spec.default() for spec in SPECS})

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Settings:
        """Settings from stored values. Missing keys take their default; bad ones are logged
        and replaced by their default (never raises)."""
        values: dict[str, Any] = {}
        for spec in SPECS:
            if spec.name not in raw or raw[spec.name] is None:
                values[spec.name] = spec.default()
                continue
            try:
                values[spec.name] = spec.validate(raw[spec.name])
            except ValueError as exc:
                default = spec.default()
                log.warning(
                    "setting %r: stored value %r is invalid (%s); using the default %r",
                    spec.name,
                    raw[spec.name],
                    exc,
                    default,
                )
                values[spec.name] = default
        return cls(**values)

    def to_mapping(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` validated. Raises :class:`SettingsError` naming the setting."""
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            spec = _BY_NAME.get(name)
            if spec is None:
                raise SettingsError(f"unknown setting {name!r}; known: {sorted(_BY_NAME)}")
            try:
                clean[name] = spec.validate(value)
            except ValueError as exc:
                raise SettingsError(f"{spec.description} ({name}): {exc}") from None
        return dataclasses.replace(self, **clean)

    @staticmethod
    def describe(name: str) -> str:
        return _BY_NAME[name].description
