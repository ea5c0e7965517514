"""The resolved runtime: where and how a candidate was actually rendered. Pure data.

A request asks for ``device="auto"``, ``precision="auto"``; the engine resolves that to a
concrete device, precision, memory mode and backend (Real-ESRGAN runs through ncnn on the CPU
but through torch on CUDA). The same request gives pixel-identical output only on the same
resolved runtime, so every candidate records it, the export metadata carries it, and
``fbupscale reproduce`` names each field that differs today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from fbupscale_gui.core.errors import RequestError

__all__ = ["ResolvedRuntime"]

_FIELD_NAMES: Final = (
    "device",
    "precision",
    "memory_mode",
    "backend",
    "torch_version",
    "diffusers_version",
)


@dataclass(frozen=True)
class ResolvedRuntime:
    """``device``: "cpu", "cuda:0", "mps"; ``precision``: "fp32", "bf16", "fp16", "uint8";
    ``memory_mode``: "none", "model", "group", "sequential"; ``backend``: "torch", "ncnn",
    "pillow" (or a test double's name). The versions are "" when the package is absent."""

    device: str
    precision: str
    memory_mode: str = "none"
    backend: str = "torch"
    torch_version: str = ""
    diffusers_version: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResolvedRuntime:
        """Read a recorded runtime; unknown fields are ignored (a newer writer), missing ones
        read as ""."""
        if not isinstance(data, Mapping):
            raise RequestError("resolved_runtime: expected an object")
        values: dict[str, str] = {}
        for f in fields(cls):
            value = data.get(f.name, "")
            if not isinstance(value, str):
                raise RequestError(f"resolved_runtime.{f.name}: expected text, got {value!r}")
            values[f.name] = value
        return cls(**values)

    def differences(self, other: ResolvedRuntime) -> list[str]:
        """``["device: cuda:0 -> cpu", ...]`` for each field that differs from ``other``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{name}: {mine[name] or '(none)'} -> {theirs[name] or '(none)'}"
            for name in _FIELD_NAMES
            if mine[name] != theirs[name]
        ]

    @property
    def label(self) -> str:
        """E.g. "cuda:0 bf16 model (torch 2.13.0, diffusers 0.36.0)"."""
        versions = ", ".join(
            f"{name} {v}"
            for name, v in (("torch", self.torch_version), ("diffusers", self.diffusers_version))
            if v
        )
        base = f"{self.device} {self.precision} {self.memory_mode} {self.backend}"
        return f"{base} ({versions})" if versions else base
