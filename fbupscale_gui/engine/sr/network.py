"""A user super-resolution network loaded for inference: device, precision, layout, tiling.

:func:`load_model` reads a weights file safely (:mod:`fbupscale_gui.engine.sr.safe_weights`), detects its architecture
(:mod:`fbupscale_gui.engine.sr.detect`), fuses SPAN (:mod:`fbupscale_gui.engine.sr.span_fuse`), picks the precision and memory layout, and
returns an :class:`SrModel` that upscales PIL images tile by tile (:mod:`fbupscale_gui.engine.fast.tiling`).

Precision. On CPUs with AVX512-BF16 or AMX, "auto" precision runs bf16 with channels_last.

Importing this module is cheap: torch and spandrel load on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.engine.pixels import to_rgb8, unit_floats
from fbupscale_gui.engine.sr.detect import describe, detect_architecture
from fbupscale_gui.engine.sr.safe_weights import load_state_dict
from fbupscale_gui.engine.sr.span_fuse import fuse_span
from fbupscale_gui.storage.weights_library import ModelInfo

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from fbupscale_gui.core.job import IsCancelled

__all__ = [
    "PREPAD",
    "SrModel",
    "cpu_bf16_supported",
    "load_model",
    "resolve_precision",
]

#: Reflect padding around the image before the network, cropped after (hides border effects).
PREPAD: Final = 8
_CPU_BF16_FLAGS: Final = frozenset({"avx512_bf16", "amx_bf16"})
_DTYPES: Final = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: Architectures measured faster in channels_last on the CPU in fp32 too.
_CHANNELS_LAST_FP32: Final = frozenset({"SPAN"})


def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16_supported() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX) and torch uses AVX512+.

    Without those, bf16 on the CPU is emulated and slower than fp32.
    """
    if not _cpu_flags() & _CPU_BF16_FLAGS:
        return False
    import torch

    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return False
    return capability.startswith(("AVX512", "AMX"))


def resolve_precision(requested: str, device: str, info: ModelInfo) -> str:
    """The precision to run ``info``'s model in on ``device`` ("fp32", "fp16" or "bf16").

    "auto": bf16 on CUDA where the GPU and the model support it, else fp16 where the model does;
    fp16 on MPS; bf16 on CPUs with native bf16 (see :func:`cpu_bf16_supported`); fp32 otherwise.
    Raises RequestError when an explicit precision is one the model does not support.
    """
    if requested != "auto":
        if requested not in info.precisions:
            raise RequestError(
                f"precision: {info.arch} does not run in {requested}; it supports "
                f"{', '.join(info.precisions)}"
            )
        return requested
    if device.startswith("cuda"):
        import torch

        if "bf16" in info.precisions and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp16" if "fp16" in info.precisions else "fp32"
    if device == "mps":
        return "fp16" if "fp16" in info.precisions else "fp32"
    if "bf16" in info.precisions and cpu_bf16_supported():
        return "bf16"
    return "fp32"


class SrModel:
    """A user model loaded for inference: spandrel descriptor, device, precision and layout.

    Calling it maps a ``1 x 3 x H x W`` float tensor in 0..1 (any device/dtype) to
    ``1 x 3 x sH x sW`` float32 on the CPU. Use :meth:`upscale` for PIL images (tiled).
    """

    def __init__(
        self,
        descriptor: Any,
        info: ModelInfo,
        *,
        path: Path | None,
        sha256: str = "",
        device: str,
        precision: str,
        channels_last: bool,
        fused: int,
    ) -> None:
        self.descriptor = descriptor
        self.info = info
        self.path = path
        self.sha256 = sha256
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.fused = fused

    @property
    def scale(self) -> int:
        return self.info.scale

    @property
    def runtime(self) -> str:
        """E.g. "cpu bf16 channels_last SPAN fused"."""
        parts = [self.device, self.precision]
        if self.channels_last:
            parts.append("channels_last")
        parts.append(self.info.arch)
        if self.fused:
            parts.append("fused")
        return " ".join(parts)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        import torch

        dtype = getattr(torch, _DTYPES[self.precision])
        x = image.to(device=self.device, dtype=dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.descriptor(x)
        # a clone outside inference mode is an ordinary tensor callers may modify in place
        return out.to(device="cpu", dtype=torch.float32).clone()

    def tile_size(self) -> int:
        """The tile side (input px) that fits this device; see :mod:`fbupscale_gui.engine.fast.tiling`."""
        from fbupscale_gui.engine.fast import tiling as tiling

        if self.info.tiling == "internal":
            return tiling.NO_TILING
        if not self.device.startswith("cuda"):
            # spandrel marks some models as tiling badly: give them bigger tiles
            discouraged = self.info.tiling == "discouraged"
            return tiling.DEFAULT_CPU_TILE * (2 if discouraged else 1)
        from fbupscale_gui.engine.devices import free_vram_bytes

        free = free_vram_bytes(self.device)
        if free is None:
            return tiling.DEFAULT_GPU_TILE
        return tiling.fit_tile_size(free, self._bytes_per_pixel())

    def _bytes_per_pixel(self) -> float:
        """Peak CUDA memory per input pixel, measured once on a small probe."""
        cached: float | None = getattr(self, "_bpp", None)
        if cached is not None:
            return cached
        import torch

        side = 64
        torch.cuda.synchronize(self.device)
        base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self(torch.rand(1, 3, side, side))
        peak = torch.cuda.max_memory_allocated(self.device)
        value = max(1.0, (peak - base) / (side * side))
        self._bpp = value
        return value

    def upscale(
        self,
        image: Image.Image,
        *,
        tile: int | None = None,
        overlap: int | None = None,
        on_tile: Any = None,
        is_cancelled: IsCancelled | None = None,
    ) -> Image.Image:
        """Upscale an RGB image by :attr:`scale` (tiled, reflect-padded at the borders).

        ``on_tile(done, total)`` is called after each tile; ``is_cancelled`` is polled before
        each tile and raises :class:`Cancelled`.
        """
        import numpy as np
        import torch
        from PIL import Image as PILImage

        from fbupscale_gui.engine.fast import tiling as tiling

        rgb = unit_floats(image.convert("RGB"))
        h, w = rgb.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]
        pad = PREPAD if min(h, w) > PREPAD else 0
        if pad:
            x = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
        side = tile if tile is not None else self.tile_size()
        out = tiling.tiled_apply(
            self,
            x,
            self.scale,
            tile=side,
            overlap=overlap if overlap is not None else tiling.DEFAULT_OVERLAP,
            on_tile=on_tile,
            is_cancelled=is_cancelled,
        )
        s = self.scale
        if pad:
            out = out[:, :, pad * s : (pad + h) * s, pad * s : (pad + w) * s]
        pixels = to_rgb8(out[0].permute(1, 2, 0).numpy(), f"the {self.info.arch} model")
        return PILImage.fromarray(pixels, "RGB")


def load_model(
    path: str | Path,
    *,
    device: str = "cpu",
    precision: str = "auto",
    channels_last: bool | None = None,
    fuse: bool = True,
    sha256: str = "",
) -> SrModel:
    """Load, check and prepare a model file for inference.

    ``precision`` is "auto" or one of the model's :attr:`ModelInfo.precisions` (see
    :func:`resolve_precision`). ``channels_last`` defaults to on for fp16/bf16, on CUDA, and for SPAN.
    ``fuse`` fuses SPAN's re-parameterised convolutions once (see :func:`fuse_span`).
    Raises ModelFileError for an unusable file and RequestError for a precision it lacks.
    """
    import torch

    path = Path(path)
    state = load_state_dict(path)
    descriptor = detect_architecture(path, state)
    info = describe(descriptor, path.stat().st_size)
    prec = resolve_precision(precision, device, info)
    descriptor.eval()
    for p in descriptor.model.parameters():
        p.requires_grad_(False)
    fused = fuse_span(descriptor.model) if fuse else 0
    dtype = getattr(torch, _DTYPES[prec])
    descriptor.to(torch.device(device))
    descriptor.to(dtype)
    if channels_last is None:
        # Measured on an AVX512-BF16 CPU (bench/sr_models.py): channels_last speeds bf16 up
        # (oneDNN's bf16 convolutions are NHWC; RRDB 1.7x, SPAN 1.2x over bf16 NCHW); in fp32
        # it helps SPAN (1.17x) but slows RRDB down (~10 %). cuDNN prefers NHWC for fp16/bf16.
        channels_last = (
            prec != "fp32" or device.startswith("cuda") or info.arch in _CHANNELS_LAST_FP32
        )
    if channels_last:
        descriptor.model.to(memory_format=torch.channels_last)
    return SrModel(
        descriptor,
        info,
        path=path,
        sha256=sha256,
        device=device,
        precision=prec,
        channels_last=channels_last,
        fused=fused,
    )
