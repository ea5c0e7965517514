"""``fbupscale doctor``: what this machine can run, and which models are there.

Everything is read-only and offline: versions, CUDA/MPS, the GPU and its VRAM (through NVML
when the NVIDIA driver is present), the models :func:`core.models.locate` finds (without
fingerprinting, so it stays fast), the Real-ESRGAN weights, and the memory mode ``auto`` picks.
"""

from __future__ import annotations

import contextlib
import importlib.util
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from fbupscale_gui.core.errors import FbError, ModelNotFoundError
from fbupscale_gui.core.request import CONTROLNET_REPO_ID, FLUX_REPO_ID, ModelRef
from fbupscale_gui.engine import devices
from fbupscale_gui.engine.flux.plan import CARDS_GIB, plan
from fbupscale_gui.storage.weight_files import discover_models_root
from fbupscale_gui.storage.weights import PART_SOURCES, locate

__all__ = ["nvml_summary", "report"]


def _version(module: str) -> str:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version(module)
    except PackageNotFoundError:
        return "not installed"


def nvml_summary() -> list[str]:
    """One line per NVIDIA GPU ("name — VRAM used / total"), or the CPU-mode line."""
    try:
        import pynvml
    except ImportError:
        return ["No NVIDIA GPU — CPU mode (nvidia-ml-py not installed)"]
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no usable NVIDIA GPU
        return ["No NVIDIA GPU — CPU mode"]
    try:
        lines = []
        driver = pynvml.nvmlSystemGetDriverVersion()
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            lines.append(
                f"GPU {i}: {name} — VRAM {mem.used / devices.GIB:.1f} / "
                f"{mem.total / devices.GIB:.1f} GiB used (driver {driver})"
            )
        return lines or ["No NVIDIA GPU — CPU mode"]
    except Exception as exc:  # NVML errors are not worth failing a diagnostic for
        return [f"NVIDIA GPU present but NVML failed: {exc}"]
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _model_line(
    label: str,
    ref: ModelRef,
    what: str,
    search_dirs: tuple[str | Path, ...],
    hf_cache: str | Path | None,
) -> str:
    try:
        found = locate(
            ref, what, search_dirs=search_dirs, hf_cache=hf_cache, compute_fingerprint=False
        )
    except ModelNotFoundError as exc:
        return f"{label}: NOT FOUND — {exc}"
    return f"{label}: {found.path} ({found.source})"


_PART_LABELS: Final = {
    "vae": "VAE",
    "text_encoder": "CLIP-L",
    "text_encoder_2": "T5",
    "tokenizer": "CLIP-L tokenizer",
    "tokenizer_2": "T5 tokenizer",
}


def _realesrgan_line() -> str:
    try:
        from fbupscale_gui.engine.fast.engines import realesrgan_model_files

        param, _weights = realesrgan_model_files()
    except ModelNotFoundError as exc:
        return f"Real-ESRGAN x4plus: NOT FOUND — {exc}"
    except ImportError as exc:
        return f"Real-ESRGAN x4plus: fast engine unavailable ({exc})"
    return f"Real-ESRGAN x4plus: {param.parent}"


def report(
    *,
    flux: ModelRef | None = None,
    flux_base: ModelRef | None = None,
    controlnet: ModelRef | None = None,
    lora: ModelRef | None = None,
    search_dirs: tuple[str | Path, ...] = (),
    hf_cache: str | Path | None = None,
    models_root: str | Path | None = None,
    parts: Mapping[str, str] | None = None,
) -> str:
    """The doctor report as text. Never raises for a missing model or GPU: it reports them.
    ``parts``: a single-file transformer's part files given on their own (component name ->
    path: "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")."""
    lines = [f"Python {platform.python_version()} ({sys.executable})"]
    try:
        import torch
    except ImportError as exc:  # e.g. the app bundle without torch: fast engines still work
        lines.append(f"torch: not installed ({exc}); FLUX needs it, Lanczos/Real-ESRGAN do not")
        lines.extend(nvml_summary())
        lines.append(_realesrgan_line())
        return "\n".join(lines)
    lines += [
        f"torch {torch.__version__}, diffusers {_version('diffusers')}, "
        f"transformers {_version('transformers')}, peft {_version('peft')}, "
        f"accelerate {_version('accelerate')}",
    ]
    if torch.cuda.is_available():
        lines.append(
            f"CUDA: available (CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s))"
        )
    else:
        lines.append("CUDA: not available")
    mps = getattr(torch.backends, "mps", None)
    lines.append(
        f"Apple MPS: {'available' if mps is not None and mps.is_available() else 'not available'}"
    )
    lines.extend(nvml_summary())

    flux_ref = flux or ModelRef(repo_id=FLUX_REPO_ID)
    cn_ref = controlnet or ModelRef(repo_id=CONTROLNET_REPO_ID)
    lines.append(_model_line("FLUX.1-dev", flux_ref, "flux", search_dirs, hf_cache))
    quant = _flux_quant(flux_ref, search_dirs, hf_cache)
    if models_root is not None:
        lines.extend(models_root_lines(models_root))
    if flux_base is not None:
        lines.append(_model_line("FLUX base", flux_base, "flux_base", search_dirs, hf_cache))
    for name, path in (parts or {}).items():
        label = _PART_LABELS.get(name, name)
        lines.append(_model_line(label, ModelRef(path=path), name, search_dirs, hf_cache))
    lines.append(_model_line("ControlNet upscaler", cn_ref, "controlnet", search_dirs, hf_cache))
    if lora is not None:
        lines.append(_model_line("LoRA", lora, "lora", search_dirs, hf_cache))
    lines.append(_realesrgan_line())

    try:
        rt = devices.resolve_runtime("auto", "auto", "auto")
    except FbError as exc:
        lines.append(f"Runtime: {exc}")
    else:
        free = devices.free_vram_bytes(rt.device)
        free_text = f", {free / devices.GIB:.1f} GiB free" if free is not None else ""
        why = "" if rt.is_cuda else " (offload needs CUDA)"
        lines.append(f"Runtime (auto): {rt.device} {rt.precision}{free_text}")
        lines.append(f"Memory mode (auto): {rt.memory_mode}{why}")
        if free is not None:
            nf4 = importlib.util.find_spec("bitsandbytes") is not None
            this_card = plan(free / devices.GIB, quant, nf4=nf4)
            lines.append(f"Memory plan (this card): {this_card.describe()}")
    lines.extend(plan_lines(quant))
    return "\n".join(lines)


def _flux_quant(
    ref: ModelRef, search_dirs: tuple[str | Path, ...], hf_cache: str | Path | None
) -> str:
    """The FLUX transformer's quantisation ("bf16" for a diffusers folder or when unknown)."""
    try:
        found = locate(
            ref, "flux", search_dirs=search_dirs, hf_cache=hf_cache, compute_fingerprint=False
        )
    except FbError:
        return "bf16"
    return found.ref.quant or "bf16"


def models_root_lines(root: str | Path) -> list[str]:
    """What a ComfyUI/Forge models tree holds for FLUX, best candidate first."""
    try:
        found = discover_models_root(root)
    except FbError as exc:
        return [f"Models root: {exc}"]
    lines = [
        f"Models root {found.root}: " + ("; ".join(found.notes) or "no extra_model_paths.yaml")
    ]
    for label, files in (
        ("transformer", found.transformers),
        ("VAE", found.vaes),
        ("CLIP-L", found.clip_l),
        ("T5", found.t5),
        ("ControlNet", found.controlnets),
        ("LoRA", found.loras),
    ):
        lines.append(f"  {label}: {', '.join(str(f) for f in files) or 'none found'}")
    for name, label in (("tokenizer", "CLIP-L tokenizer"), ("tokenizer_2", "T5 tokenizer")):
        folder = found.tokenizers.get(name)
        lines.append(f"  {label}: {folder if folder else 'none found — ' + PART_SOURCES[name]}")
    return lines


def plan_lines(quant: str) -> list[str]:
    """The memory plan and predicted peak for 16, 24, 48 and 80 GB CUDA cards (NF4 where it
    helps: it needs CUDA and bitsandbytes)."""
    return [f"Memory plan ({quant} transformer, 1024 px, both stages, CUDA cards):"] + [
        f"  {plan(card, quant, nf4=True).describe()}" for card in CARDS_GIB
    ]
