"""The served engine's settings: a TOML file plus ``FBUPSCALE_TOKEN``. No Ray here.

Example ``fbupscale-serve.toml``::

    token = "a long random string"      # or FBUPSCALE_TOKEN (which wins)
    models_dirs = ["/srv/fbupscale/models"]
    host = "127.0.0.1"
    port = 8765
    cpu_replicas = 2                    # fast engines (Lanczos, Real-ESRGAN, user SR models)
    gpu_replicas = 1                    # FLUX, one GPU each ("auto": every GPU Ray sees)
    max_upload_bytes = 8388608
    max_requests_per_minute = 240
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fbupscale_gui.core.errors import FbError

__all__ = ["DEFAULT_FACTORY", "DEFAULT_PORT", "TOKEN_ENV", "ServeConfig", "ServeConfigError"]

TOKEN_ENV: Final = "FBUPSCALE_TOKEN"
DEFAULT_PORT: Final = 8765
DEFAULT_FACTORY: Final = "fbupscale_gui.host.server:make_engine"
#: The shortest token the server accepts: a guessable token is no lock.
MIN_TOKEN_CHARS: Final = 16


class ServeConfigError(FbError, ValueError):
    """The server's configuration cannot work (one line naming the setting)."""


def _read(path: Path) -> dict[str, Any]:
    """A TOML config file (a ``.json`` one is read as JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServeConfigError(f"{path}: cannot read ({exc})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib  # Python 3.11+

            data = tomllib.loads(text)
    except ImportError:
        raise ServeConfigError(f"{path}: TOML needs Python 3.11; use a .json file") from None
    except ValueError as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ServeConfigError(f"{path}: not valid {path.suffix[1:] or 'TOML'} ({exc})") from None
    if not isinstance(data, dict):
        raise ServeConfigError(f"{path}: expected a table of settings")
    return data


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``fbupscale serve`` needs; plain data so Ray can ship it to the replicas."""

    token: str = ""
    models_dirs: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    cpu_replicas: int = 1
    #: -1: one per GPU the Ray cluster has.
    gpu_replicas: int = -1
    cpus_per_replica: float = 1.0
    max_upload_bytes: int = 8 * 1024 * 1024
    max_requests_per_minute: int = 240
    #: Finished jobs kept (with their candidates) for clients that come back for them.
    keep_jobs: int = 64
    #: The engine each replica makes ("module:callable"; a test double in tests).
    factory: str = DEFAULT_FACTORY
    factory_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def check(self) -> ServeConfig:
        """This config, or :class:`ServeConfigError` for the first setting that cannot work."""
        if len(self.token) < MIN_TOKEN_CHARS:
            raise ServeConfigError(
                f"token: set {TOKEN_ENV} (or 'token' in the config file) to a random string of "
                f"at least {MIN_TOKEN_CHARS} characters; the server refuses to run without one"
            )
        if not 1 <= self.port <= 65535:
            raise ServeConfigError(f"port: must be 1..65535, got {self.port}")
        if self.cpu_replicas < 1:
            raise ServeConfigError(f"cpu_replicas: must be at least 1, got {self.cpu_replicas}")
        if self.gpu_replicas < -1:
            raise ServeConfigError(
                f"gpu_replicas: must be -1 (auto) or more, not {self.gpu_replicas}"
            )
        if self.max_upload_bytes < 1024:
            raise ServeConfigError(f"max_upload_bytes: too small ({self.max_upload_bytes})")
        if self.max_requests_per_minute < 1:
            raise ServeConfigError("max_requests_per_minute: must be at least 1")
        for folder in self.models_dirs:
            if not Path(folder).is_dir():
                raise ServeConfigError(f"models_dirs: {folder} is not a folder")
        return self

    def replace(self, **changes: Any) -> ServeConfig:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def load(cls, path: str | Path | None, environ: Mapping[str, str] | None = None) -> ServeConfig:
        """The config file at ``path`` (None: defaults), with the token from ``FBUPSCALE_TOKEN``
        when set. Raises :class:`ServeConfigError` for an unreadable file or unknown keys."""
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        if path is not None:
            data = _read(Path(path))
        known = {f.name for f in dataclasses.fields(cls)} - {"factory", "factory_kwargs"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ServeConfigError(f"{path}: unknown setting(s) {unknown}; known: {sorted(known)}")
        if "gpu_replicas" in data and data["gpu_replicas"] == "auto":
            data["gpu_replicas"] = -1
        for name, value in data.items():
            want = {f.name: f.type for f in dataclasses.fields(cls)}[name]
            ok = (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
                if name == "models_dirs"
                else isinstance(value, str)
                if want == "str"
                else isinstance(value, int | float) and not isinstance(value, bool)
            )
            if not ok:
                raise ServeConfigError(f"{path}: {name} has the wrong type ({value!r})")
        if "models_dirs" in data:
            data["models_dirs"] = tuple(str(Path(p).expanduser()) for p in data["models_dirs"])
        for name in ("port", "cpu_replicas", "gpu_replicas", "max_upload_bytes", "keep_jobs"):
            if name in data:
                data[name] = int(data[name])
        config = cls(**data)
        if env.get(TOKEN_ENV):
            config = dataclasses.replace(config, token=env[TOKEN_ENV])
        return config
