"""Model files as operators have them: single files, GGUF, and ComfyUI/Forge model trees.

Pure Python (the ``gguf`` reader is numpy only and imported lazily). Nothing here loads
weights: :func:`describe_file` reads a file's header to name its key layout and
quantisation, and :func:`discover_models_root` finds FLUX parts in a ComfyUI/Forge/A1111
``models`` tree, honouring ComfyUI's ``extra_model_paths.yaml``.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fbupscale_gui.core.errors import ModelFileError
from fbupscale_gui.core.request import FluxParts, ModelRef

__all__ = [
    "MODEL_EXTENSIONS",
    "TOKENIZER_SETS",
    "FileDescription",
    "FluxFileSet",
    "describe_file",
    "discover_models_root",
    "find_tokenizers",
    "flux_sources",
    "is_single_file",
    "is_tokenizer_dir",
    "part_files_under",
    "read_extra_model_paths",
    "safetensors_header",
]

#: Extensions ComfyUI's folder_paths accepts for model files.
MODEL_EXTENSIONS: Final = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf")
_SINGLE_FILE_SUFFIXES: Final = (".safetensors", ".sft", ".gguf")
_HEADER_MAX: Final = 100 * 1024 * 1024

#: ComfyUI folder names per kind (the first is the current name, the rest aliases).
COMFY_FOLDERS: Final[dict[str, tuple[str, ...]]] = {
    "diffusion_models": ("diffusion_models", "unet", "Stable-diffusion", "checkpoints"),
    "vae": ("vae", "VAE"),
    "text_encoders": ("text_encoders", "clip", "text_encoder"),
    "controlnet": ("controlnet", "ControlNet", "xlabs/controlnets"),
    "loras": ("loras", "Lora", "LoRA"),
    "upscale_models": ("upscale_models", "ESRGAN", "RealESRGAN"),
}
#: extra_model_paths.yaml keys mapped to the kinds above.
_YAML_KINDS: Final[dict[str, str]] = {
    "diffusion_models": "diffusion_models",
    "unet": "diffusion_models",
    "checkpoints": "diffusion_models",
    "vae": "vae",
    "text_encoders": "text_encoders",
    "clip": "text_encoders",
    "controlnet": "controlnet",
    "loras": "loras",
    "upscale_models": "upscale_models",
}


def is_single_file(path: str | Path) -> bool:
    """Whether ``path`` is a single-file checkpoint (.safetensors, .sft or .gguf)."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() in _SINGLE_FILE_SUFFIXES


# -- describing a file --------------------------------------------------------------------


@dataclass(frozen=True)
class FileDescription:
    """What a model file holds, from its header alone.

    ``layout``: "bfl" (FLUX's own key names, ``double_blocks.N``), "comfy" (the same under
    ``model.diffusion_model.``), "diffusers" (``transformer_blocks.N``), "vae", "clip_l",
    "t5", "controlnet" or "unknown". ``quant``: "bf16", "fp16", "fp32", "fp8_e4m3fn",
    "fp8_e5m2", "fp8_scaled" (ComfyUI's per-weight ``scale_weight`` keys) or a GGUF type
    ("Q8_0", "Q4_K"...). ``container``: "safetensors" or "gguf".
    """

    path: Path
    container: str
    layout: str
    quant: str
    keys: int

    @property
    def format(self) -> str:
        return f"{self.container}-{self.layout}"


def safetensors_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a .safetensors/.sft file. Raises ModelFileError if it is not one."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                raise ModelFileError(f"{p}: too short to be a safetensors file")
            (size,) = struct.unpack("<Q", raw)
            if size <= 0 or size > _HEADER_MAX:
                raise ModelFileError(f"{p}: not a safetensors file (header size {size})")
            header = json.loads(f.read(size))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{p}: not a readable safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{p}: not a safetensors file (header is not an object)")
    return header


_ST_DTYPES: Final = {
    "BF16": "bf16",
    "F16": "fp16",
    "F32": "fp32",
    "F8_E4M3": "fp8_e4m3fn",
    "F8_E5M2": "fp8_e5m2",
}


def _layout(keys: Iterable[str]) -> str:
    keys = list(keys)
    if any(k.startswith("model.diffusion_model.double_blocks.") for k in keys):
        return "comfy"
    if any(k.startswith("double_blocks.") for k in keys):
        return "bfl"
    if any(k.startswith("controlnet_blocks.") for k in keys):
        return "controlnet"
    if any(k.startswith("transformer_blocks.") for k in keys):
        return "diffusers"
    if any(k.startswith(("decoder.", "encoder.down")) for k in keys):
        return "vae"
    if any(k.startswith("text_model.") for k in keys):
        return "clip_l"
    if any(k.startswith("encoder.block.") for k in keys):
        return "t5"
    return "unknown"


def describe_file(path: str | Path) -> FileDescription:
    """Layout and quantisation of a single model file, reading only its header."""
    p = Path(path)
    if p.suffix.lower() == ".gguf":
        return _describe_gguf(p)
    header = safetensors_header(p)
    tensors = {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    keys = list(tensors)
    if any(k.endswith("scale_weight") for k in keys) or "scaled_fp8" in keys:
        quant = "fp8_scaled"
    else:
        weights: Counter[str] = Counter()
        for name, info in tensors.items():
            if name.endswith(".weight") and len(info.get("shape", ())) == 2:
                weights[str(info.get("dtype", ""))] += 1
        dtype = weights.most_common(1)[0][0] if weights else ""
        quant = _ST_DTYPES.get(dtype, dtype.lower() or "unknown")
    return FileDescription(p, "safetensors", _layout(keys), quant, len(keys))


def _describe_gguf(path: Path) -> FileDescription:
    try:
        from gguf import GGUFReader
    except ImportError as exc:  # pragma: no cover - gguf is a dependency
        raise ModelFileError(f"{path}: reading GGUF needs the 'gguf' package ({exc})") from None
    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError, struct.error) as exc:
        raise ModelFileError(f"{path}: not a readable GGUF file ({exc})") from None
    types: Counter[str] = Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) == 2)
    keys = [t.name for t in reader.tensors]
    quant = types.most_common(1)[0][0] if types else "unknown"
    return FileDescription(path, "gguf", _layout(keys), quant, len(keys))


# -- ComfyUI / Forge model trees ----------------------------------------------------------


@dataclass(frozen=True)
class FluxFileSet:
    """FLUX parts found under a models root, each list best candidate first."""

    root: Path
    folders: dict[str, tuple[Path, ...]]
    transformers: tuple[Path, ...] = ()
    vaes: tuple[Path, ...] = ()
    clip_l: tuple[Path, ...] = ()
    t5: tuple[Path, ...] = ()
    controlnets: tuple[Path, ...] = ()
    loras: tuple[Path, ...] = ()
    #: tokenizer folders by component name ("tokenizer": CLIP-L, "tokenizer_2": T5)
    tokenizers: dict[str, Path] = field(default_factory=dict)
    notes: tuple[str, ...] = field(default=())


#: Where the tokenizer files sit, relative to a folder an operator points at: a diffusers
#: FLUX folder, a ComfyUI install (which ships them with its code), a Forge install.
_TOKENIZER_DIRS: Final[dict[str, tuple[str, ...]]] = {
    "tokenizer": (
        "tokenizer",
        "comfy/sd1_tokenizer",
        "sd1_tokenizer",
        "backend/huggingface/black-forest-labs/FLUX.1-dev/tokenizer",
    ),
    "tokenizer_2": (
        "tokenizer_2",
        "comfy/text_encoders/t5_tokenizer",
        "t5_tokenizer",
        "backend/huggingface/black-forest-labs/FLUX.1-dev/tokenizer_2",
    ),
}
#: The files that make a tokenizer folder usable: every file of one of these sets.
TOKENIZER_SETS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "tokenizer": (("vocab.json", "merges.txt"), ("tokenizer.json",)),
    "tokenizer_2": (("spiece.model",), ("tokenizer.json",)),
}


def is_tokenizer_dir(folder: Path, component: str) -> bool:
    """Whether ``folder`` holds the files of tokenizer ``component`` (see the sets above)."""
    sets = TOKENIZER_SETS[component]
    return folder.is_dir() and any(all((folder / f).is_file() for f in fs) for fs in sets)


def find_tokenizers(*roots: str | Path) -> dict[str, Path]:
    """The CLIP-L ("tokenizer") and T5 ("tokenizer_2") tokenizer folders under ``roots``.

    Each root may hold ``tokenizer/`` and ``tokenizer_2/`` (a diffusers FLUX folder), or be a
    ComfyUI or Forge install (their code ships the files). The first root that has one wins,
    per tokenizer.
    """
    found: dict[str, Path] = {}
    for root in roots:
        base = Path(root).expanduser()
        for component, subs in _TOKENIZER_DIRS.items():
            if component in found:
                continue
            for sub in subs:
                folder = base / sub
                if is_tokenizer_dir(folder, component):
                    found[component] = folder
                    break
    return found


def read_extra_model_paths(yaml_file: str | Path) -> dict[str, list[Path]]:
    """Folders per kind from a ComfyUI ``extra_model_paths.yaml``.

    Each top-level section has an optional ``base_path`` and per-type entries holding one
    folder or several (one per line); relative folders are relative to ``base_path``, and a
    relative ``base_path`` to the YAML file's folder, as in ComfyUI. Unknown types are
    ignored. Raises ModelFileError for a file that is not valid YAML.
    """
    import yaml

    p = Path(yaml_file)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelFileError(f"{p}: not a readable extra_model_paths.yaml ({exc})") from None
    out: dict[str, list[Path]] = {}
    if not isinstance(data, dict):
        return out
    for section in data.values():
        if not isinstance(section, dict):
            continue
        base = Path(str(section.get("base_path", "") or "")).expanduser()
        if not base.is_absolute():
            base = p.parent / base
        for key, value in section.items():
            kind = _YAML_KINDS.get(str(key))
            if kind is None or value is None:
                continue
            for line in str(value).splitlines():
                line = line.strip()
                if line:
                    folder = Path(line).expanduser()
                    out.setdefault(kind, []).append(
                        folder if folder.is_absolute() else base / folder
                    )
    return out


def _model_files(folders: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for f in sorted(folder.rglob("*")):
            if f.is_file() and f.suffix.lower() in MODEL_EXTENSIONS and f not in found:
                found.append(f)
    return found


def _rank(paths: Iterable[Path], prefer: tuple[str, ...]) -> tuple[Path, ...]:
    """Files whose name contains one of ``prefer`` first (in that order), then the rest."""

    def score(p: Path) -> tuple[int, str]:
        name = p.name.lower()
        for i, word in enumerate(prefer):
            if word in name:
                return (i, name)
        return (len(prefer), name)

    return tuple(sorted(paths, key=score))


def discover_models_root(root: str | Path) -> FluxFileSet:
    """FLUX parts under a ComfyUI/Forge/A1111 ``models`` folder (or the folder above it).

    An ``extra_model_paths.yaml`` in ``root``, its parent, or ``root/..`` (ComfyUI keeps it
    next to ``models/``) adds its folders. Files are sorted into transformer, VAE, CLIP-L,
    T5, ControlNet and LoRA candidates by folder and name; FLUX-looking names come first.
    Raises ModelFileError when ``root`` is not a folder.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ModelFileError(f"{base}: the models root is not a folder")
    models = base / "models" if (base / "models").is_dir() else base
    folders: dict[str, list[Path]] = {}
    for kind, names in COMFY_FOLDERS.items():
        for name in names:
            if (models / name).is_dir():
                folders.setdefault(kind, []).append(models / name)
    notes: list[str] = []
    for yaml_dir in dict.fromkeys((base, models, models.parent)):
        yaml_file = yaml_dir / "extra_model_paths.yaml"
        if yaml_file.is_file():
            for kind, extra in read_extra_model_paths(yaml_file).items():
                for folder in extra:
                    if folder not in folders.setdefault(kind, []):
                        folders[kind].append(folder)
            notes.append(f"read {yaml_file}")
    files = {kind: _model_files(paths) for kind, paths in folders.items()}
    diffusion = [
        f for f in files.get("diffusion_models", []) if f.suffix.lower() in _SINGLE_FILE_SUFFIXES
    ]
    encoders = files.get("text_encoders", [])
    return FluxFileSet(
        root=base,
        folders={k: tuple(v) for k, v in folders.items()},
        transformers=_rank((f for f in diffusion if "flux" in f.name.lower()), ("dev", "schnell")),
        vaes=_rank(files.get("vae", []), ("ae.", "flux")),
        clip_l=_rank((f for f in encoders if "clip_l" in f.name.lower()), ("clip_l",)),
        t5=_rank((f for f in encoders if "t5" in f.name.lower()), ("fp16", "fp8", "t5")),
        controlnets=_rank(files.get("controlnet", []), ("upscal", "flux")),
        loras=tuple(files.get("loras", [])),
        tokenizers=find_tokenizers(base, models.parent),
        notes=tuple(notes),
    )


def part_files_under(root: str | Path) -> dict[str, Path]:
    """The parts a single-file FLUX transformer lacks, as a ComfyUI/Forge install or models
    tree holds them: component name ("vae", "text_encoder", "text_encoder_2", "tokenizer",
    "tokenizer_2") -> its best file or folder. Parts not found are left out."""
    found = discover_models_root(root)
    out: dict[str, Path] = {}
    for name, files in (
        ("vae", found.vaes),
        ("text_encoder", found.clip_l),
        ("text_encoder_2", found.t5),
    ):
        if files:
            out[name] = files[0]
    out.update(found.tokenizers)
    return out


def flux_sources(flux: str, base: str) -> tuple[ModelRef | None, FluxParts]:
    """``flux_base`` and ``parts`` of a request from the Settings' FLUX and base fields: the
    base field names a diffusers FLUX folder, or (for a single-file transformer) a
    ComfyUI/Forge install whose files supply the transformer's parts."""
    if not base:
        return None, FluxParts()
    root = Path(base).expanduser()
    if (root / "model_index.json").is_file() or not is_single_file(Path(flux).expanduser()):
        return ModelRef(path=base), FluxParts()
    parts = part_files_under(root) if root.is_dir() else {}
    if not parts:
        return ModelRef(path=base), FluxParts()  # the look-up names what this folder is not
    return None, FluxParts(**{k: ModelRef(path=str(v)) for k, v in parts.items()})
