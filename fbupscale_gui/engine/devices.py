"""Where FLUX runs: device, precision and memory mode, resolved from a request.

``auto`` resolves to CUDA bf16, then Apple MPS bf16, then CPU fp32; explicit values are
honoured (and refused with a clear message when the hardware is missing). The memory mode
``auto`` picks the lightest offload that still fits the free VRAM, using the public FLUX.1-dev
figures below. Offload modes need CUDA: on CPU and MPS the mode falls back to ``none`` and the
runtime label says so.

torch is imported inside the functions, so importing this module stays cheap. Whether CUDA
exists is asked through NVML first: on a machine without an NVIDIA GPU (and in the app bundle,
which has no torch) resolving ``auto`` never imports torch.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.request import Device, MemoryMode, Precision

if TYPE_CHECKING:
    import torch

__all__ = [
    "GIB",
    "GROUP_OFFLOAD_MIN_FREE_GIB",
    "MEMORY_MODES_LIGHTER",
    "MODEL_OFFLOAD_MIN_FREE_GIB",
    "NO_OFFLOAD_MIN_FREE_GIB",
    "Runtime",
    "free_memory",
    "free_vram_bytes",
    "is_out_of_memory",
    "next_lighter_mode",
    "nvidia_gpu_count",
    "pick_memory_mode",
    "resolve_runtime",
    "torch_dtype",
]

GIB: Final = 1024**3

# Free VRAM (GiB, 16-bit weights) each memory mode needs for both stages at 1024 px, from the
# public FLUX.1-dev figures (anchors): no offload 33.9 GB + ControlNet 3.6 GB; model offload
# 22.6 GB for the transformer, plus the ControlNet which stays resident during stage 2 (the
# paper saw about 30 GB peak); group offload 11.7 GB; sequential offload 2.4 GB. Each adds
# headroom for activations and the CUDA context. fp32 weights need twice as much.
NO_OFFLOAD_MIN_FREE_GIB: Final = 34.0 + 3.6 + 2.4
MODEL_OFFLOAD_MIN_FREE_GIB: Final = 30.0
GROUP_OFFLOAD_MIN_FREE_GIB: Final = 11.7 + 2.3

#: From heaviest to lightest; the next one is what to retry with after running out of memory.
MEMORY_MODES_LIGHTER: Final[tuple[str, ...]] = ("none", "model", "group", "sequential")

_DTYPE_NAMES: Final = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class Runtime:
    """A resolved device / precision / memory mode.

    ``device`` is a torch device string ("cuda:0", "mps", "cpu"). ``note`` explains a fallback
    (e.g. an offload mode asked for on a machine without CUDA).
    """

    device: str
    precision: str
    memory_mode: str
    note: str = ""

    @property
    def label(self) -> str:
        """What :attr:`Candidate.runtime` says, e.g. "cuda:0 bf16 model" or "cpu fp32 none"."""
        base = f"{self.device} {self.precision} {self.memory_mode}"
        return f"{base} ({self.note})" if self.note else base

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype for "bf16" / "fp16" / "fp32". Raises RequestError for anything else."""
    import torch

    name = _DTYPE_NAMES.get(precision)
    if name is None:
        raise RequestError(f"precision: must be one of {sorted(_DTYPE_NAMES)}, got {precision!r}")
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def nvidia_gpu_count() -> int:
    """NVIDIA GPUs the driver reports, asked through NVML (``nvidia-ml-py``), not torch.

    0 when NVML, its library or a driver is missing. Cheap (no torch import, no CUDA context),
    so the fast engines and the app bundle, which ships without torch, can ask.
    """
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no usable GPU
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return 0
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _cuda_available() -> bool:
    """CUDA is usable: NVML sees a GPU first (no torch import without one), then torch agrees."""
    if nvidia_gpu_count() == 0:
        return False
    try:
        import torch
    except ImportError:  # the app bundle ships without torch
        return False
    return bool(torch.cuda.is_available())


def _mps_available() -> bool:
    if sys.platform != "darwin":
        return False
    try:
        import torch
    except ImportError:
        return False
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _resolve_device(requested: Device) -> str:
    if requested == "auto":
        if _cuda_available():
            return "cuda:0"
        if _mps_available():
            return "mps"
        return "cpu"
    if requested == "cuda":
        if not _cuda_available():
            raise RequestError(
                "device: CUDA was requested but no CUDA GPU is available; choose 'auto' or 'cpu'"
            )
        return "cuda:0"
    if requested == "mps":
        if not _mps_available():
            raise RequestError(
                "device: Apple MPS was requested but is not available; choose 'auto' or 'cpu'"
            )
        return "mps"
    return "cpu"


def _resolve_precision(requested: Precision, device: str) -> str:
    if requested != "auto":
        return requested
    return "fp32" if device == "cpu" else "bf16"


def free_vram_bytes(device: str) -> int | None:
    """Free memory on a CUDA device in bytes, or None when it cannot be measured."""
    if not device.startswith("cuda"):
        return None
    import torch

    try:
        free, _total = torch.cuda.mem_get_info(torch.device(device))
    except (RuntimeError, AssertionError):
        return None
    return int(free)


def pick_memory_mode(free_bytes: int, precision: str) -> str:
    """The heaviest (fastest) memory mode whose needs fit ``free_bytes`` of free VRAM."""
    factor = 2.0 if precision == "fp32" else 1.0
    free_gib = free_bytes / GIB
    if free_gib >= NO_OFFLOAD_MIN_FREE_GIB * factor:
        return "none"
    if free_gib >= MODEL_OFFLOAD_MIN_FREE_GIB * factor:
        return "model"
    if free_gib >= GROUP_OFFLOAD_MIN_FREE_GIB * factor:
        return "group"
    return "sequential"


def resolve_runtime(device: Device, precision: Precision, memory_mode: MemoryMode) -> Runtime:
    """Resolve a request's device, precision and memory mode for this machine.

    Raises RequestError when an explicitly requested device is not available.
    """
    dev = _resolve_device(device)
    prec = _resolve_precision(precision, dev)
    if not dev.startswith("cuda"):
        if memory_mode in ("auto", "none"):
            return Runtime(dev, prec, "none")
        kind = "CPU" if dev == "cpu" else "MPS"
        return Runtime(dev, prec, "none", note=f"'{memory_mode}' offload needs CUDA, not {kind}")
    if memory_mode != "auto":
        return Runtime(dev, prec, memory_mode)
    free = free_vram_bytes(dev)
    if free is None:
        return Runtime(dev, prec, "model", note="free VRAM unknown")
    return Runtime(dev, prec, pick_memory_mode(free, prec))


def next_lighter_mode(mode: str) -> str | None:
    """The memory mode to retry with after running out of memory, or None if none is left."""
    try:
        i = MEMORY_MODES_LIGHTER.index(mode)
    except ValueError:
        return None
    return MEMORY_MODES_LIGHTER[i + 1] if i + 1 < len(MEMORY_MODES_LIGHTER) else None


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error, or the MPS equivalent (a RuntimeError)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_memory() -> None:
    """Collect garbage and return cached accelerator memory to the driver.

    The cyclic collector runs only where automatic collection is on. A host that switched it
    off (the window does, so Qt objects caught in cycles are only ever destroyed in the GUI
    thread) owns collection: collecting here, in the engine thread, could destroy a widget
    outside its thread and crash the process. Pipelines are released by reference counting
    either way; only cyclic garbage waits for the host's next collection.
    """
    if gc.isenabled():
        gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and _mps_available():
        mps.empty_cache()
