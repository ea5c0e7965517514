"""User super-resolution models: safe loading, architecture detection and inference via spandrel.

Any single-image SR model that spandrel recognises (SPAN, ESRGAN/RRDB, Compact/SRVGG, SwinIR,
HAT, DAT, OmniSR, RealCUGAN, ...) can be used, provided it maps RGB to RGB at scale 2x or more.

Safety. A ``.pth``/``.pt``/``.ckpt`` file is a Python pickle, and unpickling runs code. Those
files are only read with ``torch.load(weights_only=True)``, whose unpickler builds tensors and
plain containers and refuses every other global *before* calling it, so a payload never runs.
``.safetensors`` has no code at all; its header length is checked against the file size before
the header is parsed, so a hostile or truncated file cannot make us allocate gigabytes.

torchvision. spandrel 0.4.2 imports torchvision at module level in two architectures that are
not upscalers (LaMa inpainting, RestoreFormer face restoration), and importing ``spandrel``
imports every architecture. torchvision has no CPU build for our torch and is not a dependency,
so :func:`import_spandrel` imports spandrel behind a narrowly scoped import hook: while (and
only while) spandrel is being imported, ``torchvision`` and its submodules resolve to inert
placeholder modules whose every attribute is a :class:`_Unavailable` object that raises
:class:`ModelFileError` if it is ever called. Those placeholders are removed from
``sys.modules`` afterwards, so other code importing torchvision still gets the real package or
a normal ImportError; the real torchvision is never imported by us (a CUDA build next to a CPU
torch fails or half-registers operators at import). If torchvision was already imported by
the process, spandrel simply uses it.

Speed. spandrel's SPAN re-derives ("re-parameterises") every 3x3 convolution from its training
branches on every forward call. :func:`fuse_span` does it once at load and makes the forward
use the fused convolution directly: bit-identical in fp32, and the fused weights are computed
in fp32 before a cast to bf16/fp16 (spandrel would re-fuse in the low precision each call).
On CPUs with AVX512-BF16 or AMX, "auto" precision runs bf16 with channels_last.

Importing this module is cheap: torch and spandrel load on first use.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import pickle
import struct
import sys
import threading
import time
import types
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import Cancelled, ModelFileError, RequestError
from fbupscale_gui.engine.finite import require_finite
from fbupscale_gui.storage.weights_library import (
    MODEL_SUFFIXES,
    PICKLE_SUFFIXES,
    ModelInfo,
    ModelLibrary,
    file_sha256,
)

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from fbupscale_gui.core.job import Candidate, IsCancelled, OnProgress
    from fbupscale_gui.core.request import ReconstructionRequest

__all__ = [
    "MAX_SAFETENSORS_HEADER",
    "SR_ARCHITECTURES",
    "SrModel",
    "SrModelEngine",
    "check_safetensors_header",
    "cpu_bf16_supported",
    "describe",
    "fuse_span",
    "import_spandrel",
    "inspect_model",
    "load_model",
    "load_state_dict",
    "model_spec",
    "resolve_precision",
]

#: safetensors' own limit for the JSON header (100 MB); real SR models use a few KB.
MAX_SAFETENSORS_HEADER: Final = 100 * 1024 * 1024
#: A zip-format ``.pth`` may unpack to at most this many times its size (torch stores its
#: entries uncompressed, so a real checkpoint unpacks to about its own size) ...
MAX_ZIP_RATIO: Final = 4
#: ... and to at most this many bytes in all, checked before anything is decompressed.
MAX_ZIP_UNPACKED: Final = 8 * 1024**3
#: Architectures we test and document; any other spandrel SR architecture works too.
SR_ARCHITECTURES: Final = (
    "SPAN",
    "ESRGAN",
    "Compact",
    "SwinIR",
    "HAT",
    "DAT",
    "OmniSR",
    "RealCUGAN",
)
#: Reflect padding around the image before the network, cropped after (hides border effects).
PREPAD: Final = 8
_SAFETENSORS_DTYPES: Final = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
}
_CPU_BF16_FLAGS: Final = frozenset({"avx512_bf16", "amx_bf16"})
_PURPOSE_TEXT: Final = {
    "Inpainting": "an inpainting model",
    "FaceSR": "a face restoration model (it needs aligned face crops)",
    "Restoration": "a scale-1 restoration model (denoise/deblur/dejpeg), not an upscaler",
}


# -- spandrel without torchvision ----------------------------------------------------------


class _Unavailable:
    """Stands in for a torchvision name spandrel imports at module level; fails when used."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Unavailable:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{self._name}.{attr}")

    def __call__(self, *args: object, **kwargs: object) -> Any:
        raise ModelFileError(
            f"{self._name} needs torchvision, which fbupscale does not install; this "
            "architecture is not a super-resolution model fbupscale runs"
        )

    def __repr__(self) -> str:
        return f"<unavailable {self._name}>"


class _TorchvisionPlaceholder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves placeholder ``torchvision[.*]`` modules while it sits on ``sys.meta_path``."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__fbupscale_placeholder__ = True  # type: ignore[attr-defined]

        def __getattr__(attr: str) -> _Unavailable:
            if attr.startswith("__"):
                raise AttributeError(attr)
            return _Unavailable(f"{spec.name}.{attr}")

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


_spandrel_lock = threading.Lock()
_spandrel: types.ModuleType | None = None


def _is_placeholder(module: object) -> bool:
    return bool(getattr(module, "__fbupscale_placeholder__", False))


@contextmanager
def _torchvision_placeholders() -> Iterator[None]:
    if "torchvision" in sys.modules and not _is_placeholder(sys.modules["torchvision"]):
        yield  # a real torchvision is already loaded: let spandrel use it
        return
    finder = _TorchvisionPlaceholder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            if _is_placeholder(sys.modules[name]):
                del sys.modules[name]


def import_spandrel() -> types.ModuleType:
    """Import spandrel without torchvision (see the module docstring) and return it.

    Raises ModelFileError when spandrel (or einops, which it needs) is not installed.
    """
    global _spandrel
    with _spandrel_lock:
        if _spandrel is not None:
            return _spandrel
        already = sys.modules.get("spandrel")
        if already is not None:
            _spandrel = already
            return already
        try:
            with _torchvision_placeholders():
                import spandrel
        except ImportError as exc:
            raise ModelFileError(
                f"user models need the spandrel package ({exc}); install it without its "
                "dependencies so torch stays as it is: pip install --no-deps spandrel==0.4.2 einops"
            ) from None
        except Exception as exc:  # e.g. a newer spandrel using torchvision in a class statement
            raise ModelFileError(
                f"spandrel could not be imported without torchvision ({type(exc).__name__}: "
                f"{exc}); use spandrel 0.4.2: pip install --no-deps spandrel==0.4.2"
            ) from None
        _spandrel = spandrel
        return spandrel


# -- reading files safely ------------------------------------------------------------------


def check_safetensors_header(path: str | Path) -> dict[str, Any]:
    """Validate a ``.safetensors`` file's header without trusting it; return the parsed header.

    The 8-byte little-endian header length must fit in the file (and be at most
    :data:`MAX_SAFETENSORS_HEADER`), the header must be a JSON object of tensors with known
    dtypes, and every tensor's byte range must lie inside the file and match its shape.
    Raises ModelFileError naming the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ModelFileError(f"{path}: too short to be a safetensors file ({size} bytes)")
            (length,) = struct.unpack("<Q", head)
            if length > size - 8 or length > MAX_SAFETENSORS_HEADER or length < 2:
                raise ModelFileError(
                    f"{path}: not a valid safetensors file (header length {length} does not fit "
                    f"a file of {size} bytes)"
                )
            raw = fh.read(length)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ModelFileError(f"{path}: not a valid safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: not a valid safetensors file (header is not an object)")
    data_size = size - 8 - length
    tensors = 0
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype = meta["dtype"]
            shape = [int(d) for d in meta["shape"]]
            begin, end = (int(o) for o in meta["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{path}: tensor {key!r} has a malformed header entry") from None
        itemsize = _SAFETENSORS_DTYPES.get(dtype)
        numel = 1
        for d in shape:
            numel *= d
        if (
            itemsize is None
            or any(d < 0 for d in shape)
            or not 0 <= begin <= end <= data_size
            or end - begin != numel * itemsize
        ):
            raise ModelFileError(
                f"{path}: tensor {key!r} ({dtype} {shape}) does not fit the file; "
                "it is damaged or not a safetensors file"
            )
        tensors += 1
    if tensors == 0:
        raise ModelFileError(f"{path}: the safetensors file holds no tensors")
    return header


def check_zip_sizes(path: str | Path) -> None:
    """Refuse a zip-format ``.pth`` whose entries declare more than the limits unpacked.

    Reads only the zip's central directory (the declared sizes), never a compressed byte, so
    a zip bomb is refused in milliseconds. Files that are not zips (the legacy pickle format)
    pass; the safe loader reads them. Raises ModelFileError naming the file.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelFileError(f"{path}: damaged PyTorch zip file ({exc})") from None
    size = path.stat().st_size
    unpacked = sum(m.file_size for m in members)
    limit = min(MAX_ZIP_UNPACKED, MAX_ZIP_RATIO * size + 1024 * 1024)
    if unpacked > limit:
        raise ModelFileError(
            f"{path}: refused, its {len(members)} entries declare {unpacked} bytes unpacked from "
            f"a {size}-byte file (limit {limit}; a zip bomb?). Nothing was decompressed"
        )


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a model file's tensors onto the CPU without running any code from it.

    Raises ModelFileError for an unsupported file type, a damaged file, or a pickle that holds
    anything but tensors and plain containers (it is refused before any of it runs).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ModelFileError(
            f"{path}: unsupported model file type {suffix or '(none)'}; "
            f"expected one of {', '.join(MODEL_SUFFIXES)}"
        )
    if not path.exists():
        raise ModelFileError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFileError(f"{path}: not a regular file (a folder, device or FIFO)")
    if suffix == ".safetensors":
        check_safetensors_header(path)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path}: damaged safetensors file ({exc})") from None
    assert suffix in PICKLE_SUFFIXES
    check_zip_sizes(path)
    import torch

    try:
        with warnings.catch_warnings():
            # plain pickles (protocol 4/5) trip a notice in the weights-only unpickler
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=False)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "unsupported global" in text.lower():
            raise ModelFileError(
                f"{path}: refused, the file contains Python objects or code besides weights "
                "(unsafe pickle; nothing from it was run). Use a .safetensors version of the "
                "model, or one saved as a plain state dict"
            ) from None
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        raise ModelFileError(
            f"{path}: refused, not a plain weights pickle the safe loader can read "
            f"({detail[0] if detail else 'unknown format'}; nothing from it was run). "
            "Use a .safetensors version of the model"
        ) from None
    except MemoryError:
        raise ModelFileError(f"{path}: not enough memory to read this weights file") from None
    except Exception as exc:  # the legacy reader fails on text and junk in many ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a readable PyTorch weights file ({first})") from None
    if not isinstance(loaded, dict):
        raise ModelFileError(
            f"{path}: holds a {type(loaded).__name__}, not a state dict of named tensors"
        )
    return loaded


# -- detection -----------------------------------------------------------------------------


def _refusal(path: Path | str, descriptor: Any) -> str | None:
    """Why a detected model is not usable here, or None."""
    spandrel = import_spandrel()
    arch = descriptor.architecture.name
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        what = _PURPOSE_TEXT.get(descriptor.purpose, f"a {descriptor.purpose} model")
        return f"{path}: {arch} is {what}"
    if descriptor.purpose != "SR":
        what = _PURPOSE_TEXT.get(descriptor.purpose, f"a {descriptor.purpose} model")
        return f"{path}: {arch} is {what}"
    if descriptor.scale < 2:
        return (
            f"{path}: {arch} has scale {descriptor.scale}x (a restoration model, not an upscaler)"
        )
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        return (
            f"{path}: {arch} maps {descriptor.input_channels} to {descriptor.output_channels} "
            "channels; only RGB (3 -> 3) models are supported"
        )
    return None


def _detect(path: Path, state_dict: dict[str, Any]) -> Any:
    """spandrel's descriptor for a state dict; raises ModelFileError if unusable."""
    spandrel = import_spandrel()
    try:
        canonical = spandrel.canonicalize_state_dict(state_dict)
        descriptor = spandrel.MAIN_REGISTRY.load(canonical)
    except spandrel.UnsupportedModelError:
        raise ModelFileError(
            f"{path}: not a model architecture fbupscale recognises (supported: "
            f"{', '.join(SR_ARCHITECTURES)} and the other spandrel SR architectures)"
        ) from None
    except ModelFileError:
        raise
    except Exception as exc:  # an architecture matched but its weights do not fit it
        raise ModelFileError(
            f"{path}: looks like a known architecture but its weights do not fit it "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    reason = _refusal(path, descriptor)
    if reason is not None:
        raise ModelFileError(
            f"{reason}. fbupscale needs an RGB super-resolution model of scale 2x or more"
        )
    return descriptor


def describe(descriptor: Any, size_bytes: int) -> ModelInfo:
    """The :class:`ModelInfo` of a loaded spandrel descriptor."""
    precisions = ["fp32"]
    if descriptor.supports_half:
        precisions.append("fp16")
    if descriptor.supports_bfloat16:
        precisions.append("bf16")
    params = sum(int(p.numel()) for p in descriptor.model.parameters())
    tiling = getattr(descriptor.tiling, "name", str(descriptor.tiling)).lower()
    return ModelInfo(
        arch=descriptor.architecture.name,
        arch_id=str(descriptor.architecture.id),
        scale=int(descriptor.scale),
        params=params,
        size_bytes=size_bytes,
        input_channels=int(descriptor.input_channels),
        output_channels=int(descriptor.output_channels),
        precisions=tuple(precisions),
        purpose=str(descriptor.purpose),
        tags=tuple(str(t) for t in descriptor.tags),
        tiling=tiling,
    )


def inspect_model(path: str | Path) -> ModelInfo:
    """Load ``path`` on the CPU, detect it and describe it. Raises ModelFileError if unusable."""
    path = Path(path)
    state = load_state_dict(path)
    descriptor = _detect(path, state)
    return describe(descriptor, path.stat().st_size)


# -- precision -----------------------------------------------------------------------------


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


# -- SPAN fusing -----------------------------------------------------------------------------


def _fused_conv3xc_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """Conv3XC.forward with the re-parameterisation done once, at load."""
    if self.training:  # training branches changed: fall back to spandrel's own forward
        return type(self).forward(self, x)
    out = self.eval_conv(x)
    if self.has_relu:
        import torch.nn.functional as F

        out = F.leaky_relu(out, negative_slope=0.05)
    return out


def fuse_span(model: torch.nn.Module) -> int:
    """Fuse every SPAN ``Conv3XC`` of ``model`` once; return how many were fused.

    Must run while the model is in fp32 and eval mode; the result is bit-identical to
    spandrel's per-call fusing in fp32. Models without Conv3XC are left alone (returns 0).
    """
    import torch

    fused = 0
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ != "Conv3XC" or not hasattr(module, "update_params"):
                continue
            conv: Any = module
            conv.update_params()
            conv.forward = types.MethodType(_fused_conv3xc_forward, conv)
            fused += 1
    return fused


# -- a loaded model ------------------------------------------------------------------------

_DTYPES: Final = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: Architectures measured faster in channels_last on the CPU in fp32 too.
_CHANNELS_LAST_FP32: Final = frozenset({"SPAN"})


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
        """The tile side (input px) that fits this device; see :mod:`.tiling`."""
        from fbupscale_gui.engine import tiling

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

        from fbupscale_gui.engine import tiling

        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) * np.float32(1.0 / 255.0)
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
        require_finite(out, f"the {self.info.arch} model")  # NaN would become black pixels
        pixels = (out[0].clamp(0, 1) * 255.0).round().to(torch.uint8)
        return PILImage.fromarray(pixels.permute(1, 2, 0).numpy(), "RGB")


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
    descriptor = _detect(path, state)
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


# -- the engine ----------------------------------------------------------------------------

ENGINE_PREFIX: Final = "model:"


def model_spec(request: ReconstructionRequest) -> tuple[str, str]:
    """The (name or path, expected sha256) a request's user model is given by.

    Reads ``request.sr_model`` (a ModelRef, when the request carries one) or the name after
    ``model:`` in ``request.engine``. Raises RequestError when the request names no user model.
    """
    ref = getattr(request, "sr_model", None)
    if ref is not None:
        return str(ref.path or ref.repo_id), str(ref.sha256 or "")
    engine = str(request.engine)
    if engine.startswith(ENGINE_PREFIX) and len(engine) > len(ENGINE_PREFIX):
        return engine[len(ENGINE_PREFIX) :], ""
    raise RequestError(f"engine: expected 'model:NAME_OR_PATH' for a user model, got {engine!r}")


@dataclass(frozen=True)
class _Key:
    path: str
    mtime_ns: int
    device: str
    precision: str


class SrModelEngine:
    """Runs user SR models ("model:NAME_OR_PATH"); keeps the last models loaded.

    Not thread-safe beyond a lock that serialises calls: one per worker, like the Engine.
    ``library`` is where names are looked up (default: the user's models folder).
    """

    def __init__(self, *, library: ModelLibrary | None = None, keep: int = 2) -> None:
        self.library = library if library is not None else ModelLibrary()
        self.keep = max(1, keep)
        self._models: dict[_Key, SrModel] = {}
        self._lock = threading.RLock()

    def model(
        self, name_or_path: str | Path, *, device: str = "cpu", precision: str = "auto"
    ) -> SrModel:
        """A loaded model, by library name or file path (cached). Raises ModelNotFoundError,
        ModelFileError, RequestError."""
        if isinstance(name_or_path, Path):
            path, entry = name_or_path, None
        else:
            path, entry = self.library.resolve(name_or_path)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError as exc:
            raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        key = _Key(str(path.resolve()), mtime, device, precision)
        with self._lock:
            cached = self._models.pop(key, None)
            if cached is None:
                # a file outside the library is hashed once per load, so a request's
                # recorded hash is checked for it too
                digest = entry.sha256 if entry is not None else file_sha256(path)
                cached = load_model(path, device=device, precision=precision, sha256=digest)
            self._models[key] = cached  # most recently used last
            while len(self._models) > self.keep:
                self._models.pop(next(iter(self._models)))
            return cached

    def release(self) -> None:
        """Drop every loaded model."""
        with self._lock:
            self._models.clear()

    def upscale(
        self,
        image: Image.Image,
        model: SrModel,
        on_progress: OnProgress | None = None,
        is_cancelled: IsCancelled | None = None,
    ) -> Image.Image:
        """``image`` upscaled by ``model.scale`` (tiled; progress per tile, stage "fast").

        For chaining (e.g. SPAN 2x, then FLUX). Raises Cancelled between tiles.
        """
        from fbupscale_gui.core.job import Progress

        def on_tile(done: int, total: int) -> None:
            if on_progress is not None:
                on_progress(
                    Progress.single(
                        "fast", done, total, f"{model.info.arch} {model.scale}x tile {done}/{total}"
                    )
                )

        with self._lock:
            return model.upscale(image, on_tile=on_tile, is_cancelled=is_cancelled)

    def run(
        self,
        request: ReconstructionRequest,
        cutout: Image.Image,
        on_progress: OnProgress | None = None,
        is_cancelled: IsCancelled | None = None,
        *,
        model: SrModel | None = None,
    ) -> Candidate:
        """Render the one candidate of a user-model request, with FastEngine's geometry.

        The cutout is upscaled by the model, then Lanczos-resized so the content's long side
        is ``request.preprocess.size`` (padded square when ``crop_to_content`` is off).
        ``model`` overrides the request's model (tests, chaining). Raises RequestError,
        ModelNotFoundError, ModelFileError, and Cancelled (before work and between tiles).
        """
        import dataclasses

        from fbupscale_gui.core.images import crop_to_content, standardise
        from fbupscale_gui.core.job import Candidate, Progress
        from fbupscale_gui.core.request import CandidateKey
        from fbupscale_gui.engine.devices import resolve_runtime

        if is_cancelled is not None and is_cancelled():
            raise Cancelled()
        start = time.perf_counter()
        if model is None:
            name, expected = model_spec(request)
            device = resolve_runtime(request.device, "fp32", "none").device
            if on_progress is not None:
                on_progress(Progress.single("load", 0, 1, f"loading {name}"))
            model = self.model(name, device=device, precision=request.precision)
            if expected and model.sha256 and expected != model.sha256:
                raise ModelFileError(
                    f"{name}: the model file changed since the request was made "
                    f"(sha256 {model.sha256[:12]} != {expected[:12]})"
                )
        upscaled = self.upscale(cutout, model, on_progress, is_cancelled)
        pre = request.preprocess
        square, placement = standardise(upscaled, dataclasses.replace(pre, intermediate=None))
        image = crop_to_content(square, placement) if pre.crop_to_content else square
        return Candidate(
            key=CandidateKey(variant=0, lora=False, stage=2),
            seed=request.seed,
            image=image,
            request=request,
            timings={"fast": time.perf_counter() - start},
            runtime=model.runtime,
        )
