"""GPU status for the status bar, read with NVML (nvidia-ml-py) about once a second.

NVML is loaded on the first poll, not at import. Without an NVIDIA driver the status is
"No NVIDIA GPU — CPU mode" and polling stops: no error, no retry storm.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

from PySide6.QtCore import QObject, QTimer, Signal, Slot

__all__ = ["NO_GPU_TEXT", "GpuMonitor", "GpuReading", "format_reading", "read_nvml"]

log = logging.getLogger(__name__)

NO_GPU_TEXT: Final = "No NVIDIA GPU — CPU mode"


@dataclass(frozen=True)
class GpuReading:
    name: str
    used_bytes: int
    total_bytes: int
    temperature_c: int | None
    power_w: float | None


def format_reading(r: GpuReading) -> str:
    gib = 1024**3
    parts = [r.name, f"VRAM {r.used_bytes / gib:.1f}/{r.total_bytes / gib:.1f} GiB"]
    if r.temperature_c is not None:
        parts.append(f"{r.temperature_c} °C")
    if r.power_w is not None:
        parts.append(f"{r.power_w:.0f} W")
    return " · ".join(parts)


def read_nvml(nvml: Any, index: int = 0) -> GpuReading:
    """One reading of GPU ``index`` (temperature and power are optional on some boards)."""
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = nvml.nvmlDeviceGetName(handle)
    if isinstance(name, bytes):
        name = name.decode(errors="replace")
    mem = nvml.nvmlDeviceGetMemoryInfo(handle)
    temp: int | None
    power: float | None
    try:
        temp = int(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
    except nvml.NVMLError:
        temp = None
    try:
        power = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
    except nvml.NVMLError:
        power = None
    return GpuReading(str(name), int(mem.used), int(mem.total), temp, power)


class GpuMonitor(QObject):
    """Emits ``statusChanged(text)`` about once a second while a GPU is present."""

    statusChanged = Signal(str)

    def __init__(self, interval_ms: int = 1000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._nvml: Any = None
        self._available: bool | None = None  # None: not probed yet
        self._text = ""
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)

    @property
    def text(self) -> str:
        return self._text

    @property
    def available(self) -> bool | None:
        return self._available

    def start(self) -> None:
        QTimer.singleShot(0, self.poll)  # first reading after the window is shown
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        if self._nvml is not None and self._available:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # shutting down a broken driver is not worth an error
                log.debug("nvmlShutdown failed", exc_info=True)
        self._available = None
        self._nvml = None

    def _set(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self.statusChanged.emit(text)

    def _probe(self) -> bool:
        try:
            import pynvml

            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() < 1:
                raise RuntimeError("no devices")
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded...
            log.info("NVML unavailable (%s): CPU mode", exc)
            return False
        self._nvml = pynvml
        return True

    @Slot()
    def poll(self) -> None:
        if self._available is None:
            self._available = self._probe()
        if not self._available:
            self._timer.stop()
            self._set(NO_GPU_TEXT)
            return
        try:
            self._set(format_reading(read_nvml(self._nvml)))
        except Exception as exc:  # a GPU that falls off the bus must not take the window down
            log.warning("NVML reading failed: %s", exc)
            self._set(f"GPU status unavailable ({exc})")
