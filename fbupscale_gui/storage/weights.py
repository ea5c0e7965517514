"""Finding models offline and fingerprinting them. Pure Python; huggingface_hub is optional.

:func:`locate` resolves a :class:`ModelRef` to a local folder (FLUX, ControlNet) or file (LoRA)
and fills in its path and SHA-256. Look-up order:

1. the explicit ``path`` of the ref (it must exist and look right, or the look-up fails there;
   for FLUX it may also be a single-file transformer, ``.safetensors``/``.sft``/``.gguf``);
2. the standard Hugging Face cache, strictly offline (``HF_HUB_CACHE`` / ``HF_HOME`` honoured);
3. ``<search_dir>/<repo name>`` (and ``<search_dir>/<owner>/<repo name>``) for each search dir,
   then the folders in ``FBUPSCALE_MODEL_DIRS`` (``os.pathsep``-separated).

Nothing is ever downloaded. :func:`fingerprint` hashes a file, or a folder as a digest over
(relative path, file SHA-256). Files in the Hugging Face cache are named by their SHA-256
already, and ``hf download --local-dir`` leaves the same hash in its metadata, so those cost
nothing; other large files are hashed once and remembered in ``fingerprints.json`` under the
user cache dir, keyed by (path, size, mtime).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, Literal

from fbupscale_gui.core.errors import ModelFileError, ModelNotFoundError
from fbupscale_gui.core.jsonable import parse_json
from fbupscale_gui.core.request import ModelRef
from fbupscale_gui.storage.atomic import atomic_write_bytes
from fbupscale_gui.storage.paths import read_regular, user_dir
from fbupscale_gui.storage.weight_files import (
    TOKENIZER_SETS,
    describe_file,
    is_single_file,
    is_tokenizer_dir,
)
from fbupscale_gui.storage.weights_library import file_sha256

__all__ = [
    "FINGERPRINT_CACHE_MIN_BYTES",
    "FLUX_BASE_PARTS",
    "PART_SOURCES",
    "LocatedModel",
    "ModelKind",
    "check_flux_base",
    "fingerprint",
    "hf_cache_dir",
    "locate",
    "user_cache_dir",
]

ModelKind = Literal[
    "flux",
    "flux_base",
    "controlnet",
    "lora",
    "vae",
    "text_encoder",
    "text_encoder_2",
    "tokenizer",
    "tokenizer_2",
]

#: Files at least this large are hashed once and remembered; smaller ones are just hashed.
FINGERPRINT_CACHE_MIN_BYTES: Final = 4 * 1024 * 1024
_SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_SKIP_DIRS: Final = frozenset({".cache", ".git", "__pycache__"})
_WEIGHT_SUFFIXES: Final = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
#: Libraries a pipeline folder's components may come from; anything else is custom code.
_COMPONENT_LIBRARIES: Final = frozenset({"diffusers", "transformers"})

_WHAT: Final[dict[str, str]] = {
    "flux": "FLUX.1-dev model folder",
    "flux_base": "FLUX base folder (text encoders, tokenizers, VAE)",
    "controlnet": "ControlNet upscaler folder",
    "lora": "LoRA file",
    "vae": "FLUX VAE",
    "text_encoder": "CLIP-L text encoder",
    "text_encoder_2": "T5-XXL text encoder",
    "tokenizer": "CLIP-L tokenizer",
    "tokenizer_2": "T5 tokenizer",
}
_OPTION: Final[dict[str, str]] = {
    "flux": "--flux",
    "flux_base": "--flux-base",
    "controlnet": "--controlnet",
    "lora": "--lora",
    "vae": "--vae",
    "text_encoder": "--clip-l",
    "text_encoder_2": "--t5",
    "tokenizer": "--tokenizers",
    "tokenizer_2": "--tokenizers",
}
_SHAPE: Final[dict[str, str]] = {
    "flux": (
        "a folder with model_index.json and its component folders, or a single-file "
        "transformer (.safetensors, .sft or .gguf)"
    ),
    "flux_base": "a diffusers FLUX folder with model_index.json",
    "controlnet": "a folder with config.json and .safetensors weights, or that .safetensors file",
    "lora": "a .safetensors file (or a folder holding exactly one)",
    "vae": "a .safetensors/.sft file or a folder with config.json and weights",
    "text_encoder": "a .safetensors/.sft file or a folder with config.json and weights",
    "text_encoder_2": "a .safetensors/.sft file or a folder with config.json and weights",
    "tokenizer": "a folder with vocab.json and merges.txt (or tokenizer.json)",
    "tokenizer_2": "a folder with spiece.model (or tokenizer.json)",
}


@dataclass(frozen=True)
class LocatedModel:
    """A model found on disk: the folder/file to load, and the ref with path and sha256 filled."""

    kind: str
    path: Path
    ref: ModelRef
    source: Literal["path", "hf-cache", "search-dir"]


# -- where to look ------------------------------------------------------------------------


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    return Path(home).expanduser() / "hub"


def user_cache_dir() -> Path:
    """fbupscale's cache folder (``FBUPSCALE_CACHE_DIR`` overrides the platform default)."""
    return user_dir("cache", "FBUPSCALE_CACHE_DIR")


def _env_search_dirs() -> list[Path]:
    raw = os.environ.get("FBUPSCALE_MODEL_DIRS", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def _hint(kind: str, repo_id: str) -> str:
    option = _OPTION.get(kind, "")
    if kind == "lora":
        return (
            f"Choose the LoRA .safetensors file in Settings or pass {option} PATH "
            "(LoRA files are never downloaded)."
        )
    if kind in PART_SOURCES:
        return f"{PART_SOURCES[kind]}; pass {option} PATH."
    repo = repo_id or "<repo id>"
    name = repo.rsplit("/", 1)[-1]
    return (
        f"On a connected machine accept the licence at https://huggingface.co/{repo}, run "
        f"`hf download {repo} --local-dir <models>/{name}`, copy that folder to this machine, "
        f"then set the model folder in Settings or pass {option} PATH."
    )


def _looks_right(path: Path, kind: str) -> Path | None:
    """The loadable folder/file if ``path`` has the shape ``kind`` needs, else None."""
    if kind == "lora":
        if path.is_file() and path.suffix == ".safetensors":
            return path
        if path.is_dir():
            files = sorted(path.glob("*.safetensors"))
            preferred = [f for f in files if f.name == "pytorch_lora_weights.safetensors"]
            if preferred:
                return preferred[0]
            if len(files) == 1:
                return files[0]
        return None
    if kind in TOKENIZER_SETS:
        return path if is_tokenizer_dir(path, kind) else None
    if kind in ("flux", "controlnet", *_SINGLE_FILE_PARTS) and is_single_file(path):
        return path
    if not path.is_dir():
        return None
    if kind == "flux_base":
        return path if (path / "model_index.json").is_file() else None
    if kind == "flux":
        index = path / "model_index.json"
        if not index.is_file():
            return None
        try:
            data = parse_json(read_regular(index, "model_index.json"), str(index))
        except (OSError, ValueError):  # ValueError: a FIFO, a huge or broken file
            return None
        if not isinstance(data, dict):
            return None
        for name, value in data.items():
            if name.startswith("_") or not isinstance(value, list) or value[0] is None:
                continue
            if not (path / name).is_dir():
                return None  # an interrupted download: a component folder is missing
        return path
    # controlnet (and any single diffusers model)
    has_config = (path / "config.json").is_file()
    has_weights = any(p.suffix in _WEIGHT_SUFFIXES for p in path.iterdir() if p.is_file())
    return path if has_config and has_weights else None


def _hf_cached(repo_id: str, cache: Path) -> Path | None:
    """The cached snapshot folder of ``repo_id``, strictly offline, or None."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return None
    try:
        folder = snapshot_download(repo_id, cache_dir=str(cache), local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return Path(folder)


def _hub_dir(folder: Path) -> Path:
    """Accept either the hub cache itself or an ``HF_HOME`` folder that holds ``hub/``."""
    if (folder / "hub").is_dir() and not any(folder.glob("models--*")):
        return folder / "hub"
    return folder


def _repo_cache_folder(repo_id: str, cache: Path) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def locate(
    ref: ModelRef,
    what: str,
    *,
    search_dirs: Iterable[str | Path] = (),
    hf_cache: str | Path | None = None,
    compute_fingerprint: bool = True,
) -> LocatedModel:
    """Find a model offline; see the module docstring for the order.

    ``what`` is "flux", "controlnet" or "lora". Returns the folder/file to load and a copy of
    ``ref`` with ``path`` and (unless ``compute_fingerprint`` is False) ``sha256`` filled.
    Raises ModelNotFoundError naming the repo id, every place searched and how to fix it.
    """
    kind = what if what in _WHAT else "controlnet"
    label = _WHAT.get(what, what)
    searched: list[str] = []
    found: Path | None = None
    source: Literal["path", "hf-cache", "search-dir"] = "path"

    if ref.path:
        explicit = Path(ref.path).expanduser()
        searched.append(str(explicit))
        found = _looks_right(explicit, kind)
        if found is None:
            why = "does not exist" if not explicit.exists() else f"is not {_SHAPE[kind]}"
            raise ModelNotFoundError(
                label,
                ref.repo_id or None,
                searched,
                f"{explicit} {why}. {_hint(kind, ref.repo_id)}",
            )
    if found is None and ref.repo_id:
        cache = _hub_dir(Path(hf_cache).expanduser()) if hf_cache else hf_cache_dir()
        searched.append(str(_repo_cache_folder(ref.repo_id, cache)))
        snapshot = _hf_cached(ref.repo_id, cache)
        if snapshot is not None:
            found = _looks_right(snapshot, kind)
            source = "hf-cache"
        if found is None:
            name = ref.repo_id.rsplit("/", 1)[-1]
            for base in [*(Path(d).expanduser() for d in search_dirs), *_env_search_dirs()]:
                for candidate in (base / name, base / ref.repo_id):
                    if str(candidate) in searched:
                        continue
                    searched.append(str(candidate))
                    found = _looks_right(candidate, kind)
                    if found is not None:
                        source = "search-dir"
                        break
                if found is not None:
                    break
    if found is None:
        raise ModelNotFoundError(label, ref.repo_id or None, searched, _hint(kind, ref.repo_id))
    refuse_custom_code(found)
    digest = fingerprint(found) if compute_fingerprint else ref.sha256
    fmt, quant = ref.format, ref.quant
    if kind in ("flux", "controlnet", *_SINGLE_FILE_PARTS):
        if found.is_dir():
            fmt, quant = "diffusers", ""
        else:
            desc = describe_file(found)
            fmt, quant = desc.format, desc.quant
    return LocatedModel(
        kind=kind,
        path=found,
        ref=replace(ref, path=str(found), sha256=digest, format=fmt, quant=quant),
        source=source,
    )


_SINGLE_FILE_PARTS: Final = ("vae", "text_encoder", "text_encoder_2")
_FLUX_REPO: Final = "black-forest-labs/FLUX.1-dev"
#: Where an operator gets each part a single-file transformer lacks (nothing is downloaded).
PART_SOURCES: Final[dict[str, str]] = {
    "vae": (
        f"ae.safetensors from https://huggingface.co/{_FLUX_REPO} (licence to accept; "
        "ComfyUI keeps it in models/vae/)"
    ),
    "text_encoder": (
        "clip_l.safetensors from https://huggingface.co/comfyanonymous/flux_text_encoders "
        "(ComfyUI keeps it in models/text_encoders/ or models/clip/)"
    ),
    "text_encoder_2": (
        "t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors from "
        "https://huggingface.co/comfyanonymous/flux_text_encoders (ComfyUI: "
        "models/text_encoders/ or models/clip/)"
    ),
    "tokenizer": (
        "vocab.json and merges.txt: a ComfyUI install has them in comfy/sd1_tokenizer/, "
        "Forge in backend/huggingface/black-forest-labs/FLUX.1-dev/tokenizer/, or on a "
        f'connected machine `hf download {_FLUX_REPO} --include "tokenizer/*"`'
    ),
    "tokenizer_2": (
        "spiece.model or tokenizer.json: a ComfyUI install has tokenizer.json in "
        "comfy/text_encoders/t5_tokenizer/, Forge in "
        "backend/huggingface/black-forest-labs/FLUX.1-dev/tokenizer_2/, or on a connected "
        f'machine `hf download {_FLUX_REPO} --include "tokenizer_2/*"`'
    ),
}
#: What a single-file FLUX transformer lacks, as (component folder in a diffusers FLUX
#: folder, files any one set of which will do, what it is). The configs (scheduler, VAE,
#: text encoders) ship with fbupscale.
FLUX_BASE_PARTS: Final[tuple[tuple[str, tuple[tuple[str, ...], ...], str], ...]] = (
    ("tokenizer", TOKENIZER_SETS["tokenizer"], "CLIP-L tokenizer (vocab.json, merges.txt)"),
    ("tokenizer_2", TOKENIZER_SETS["tokenizer_2"], "T5 tokenizer (spiece.model)"),
    ("text_encoder", (("config.json",),), "CLIP-L text encoder (clip_l.safetensors)"),
    ("text_encoder_2", (("config.json",),), "T5-XXL text encoder (t5xxl_*.safetensors)"),
    ("vae", (("config.json",),), "VAE (ae.safetensors)"),
)


def check_flux_base(
    transformer_file: str | Path,
    base: str | Path | None,
    given: Iterable[str] = (),
) -> None:
    """Raise ModelNotFoundError naming exactly which parts a single-file transformer still
    lacks, and where to get each; None if complete. ``given`` names the parts supplied as
    files of their own (``FluxParts``); the rest must be in ``base``, a diffusers FLUX folder.
    """
    have = set(given)
    searched = [str(base)] if base is not None else []
    missing: list[str] = []
    sources: list[str] = []
    for folder, sets, what in FLUX_BASE_PARTS:
        if folder in have:
            continue
        sub = Path(base) / folder if base is not None else None
        if sub is None or not any(all((sub / f).is_file() for f in fs) for fs in sets):
            where = f"{sub}" if sub is not None else f"<base>/{folder}"
            missing.append(f"{what} in {where}/")
            sources.append(f"{what.split(' (')[0]}: {PART_SOURCES[folder]} ({_OPTION[folder]})")
    if not missing:
        return
    parts = " ".join(f'"{folder}/*"' for folder, _f, _w in FLUX_BASE_PARTS)
    hint = (
        f"{Path(transformer_file).name} holds only the transformer; missing: "
        f"{'; '.join(missing)}. Where to get them: {'; '.join(sources)}. A ComfyUI/Forge "
        "install holding them is found with --models-root DIR. Or, on a connected machine, "
        f"accept the licence at https://huggingface.co/{_FLUX_REPO}, run `hf download "
        f"{_FLUX_REPO} --include model_index.json {parts} --local-dir "
        "<models>/FLUX.1-dev-base` (about 10 GB, no transformer), copy that folder here and "
        "pass --flux-base <models>/FLUX.1-dev-base (or set it in Settings)."
    )
    raise ModelNotFoundError("FLUX parts of a single-file transformer", _FLUX_REPO, searched, hint)


def refuse_custom_code(folder: Path) -> None:
    """Raise ModelFileError if a model folder asks for code of its own to be run.

    A ``model_index.json`` whose pipeline class is a ``[module, class]`` pair, or whose
    components come from a library other than diffusers and transformers, and a
    ``config.json`` with an ``auto_map`` name Python files shipped with the folder; diffusers
    would stop at "Pass `trust_remote_code=True`". fbupscale never runs them.
    """
    if not folder.is_dir():
        return
    for name in ("model_index.json", "config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = parse_json(read_regular(path, name), str(path))
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{path}: unreadable ({exc})") from None
        if not isinstance(data, dict):
            raise ModelFileError(f"{path}: not a JSON object")
        asks = []
        if not isinstance(data.get("_class_name", ""), str):
            asks.append(f"_class_name {data['_class_name']!r}")
        if "auto_map" in data or "custom_pipeline" in data:
            asks.append("auto_map" if "auto_map" in data else "custom_pipeline")
        for key, value in data.items():
            if key.startswith("_") or not isinstance(value, list) or len(value) != 2:
                continue
            library = value[0]
            if library is not None and library not in _COMPONENT_LIBRARIES:
                asks.append(f"{key} from {library!r}")
        if asks:
            raise ModelFileError(
                f"{path}: refused, it asks for custom code ({', '.join(asks[:3])}); fbupscale "
                "only loads diffusers and transformers components and never runs a model "
                "folder's own Python files"
            )


# -- fingerprints -------------------------------------------------------------------------

_cache_lock = threading.Lock()


def fingerprint(path: str | Path) -> str:
    """SHA-256 of a file; for a folder, a SHA-256 over sorted (relative path, file SHA-256).

    Hidden tool folders (``.cache``, ``.git``) are skipped. Raises FileNotFoundError if
    ``path`` does not exist.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(str(p))
    memo = _FingerprintCache.load()
    try:
        if p.is_file():
            return _file_sha256(p, memo, local_root=None)
        h = hashlib.sha256()
        for rel in _folder_files(p):
            digest = _file_sha256(p / rel, memo, local_root=p)
            h.update(f"{rel.as_posix()}\0{digest}\n".encode())
        return h.hexdigest()
    finally:
        memo.save()


def _folder_files(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in filenames:
            out.append(Path(dirpath, name).relative_to(root))
    return sorted(out, key=lambda r: r.as_posix())


def _file_sha256(path: Path, memo: _FingerprintCache, *, local_root: Path | None) -> str:
    # Hugging Face cache: snapshot files link to blobs named by their SHA-256 (LFS files).
    real = Path(os.path.realpath(path))
    if real.parent.name == "blobs" and _SHA256_RE.match(real.name):
        return real.name
    stat = real.stat()
    if local_root is not None:
        etag = _local_dir_etag(local_root, path.relative_to(local_root), stat.st_mtime)
        if etag is not None:
            return etag
    if stat.st_size < FINGERPRINT_CACHE_MIN_BYTES:
        return file_sha256(real)
    key = f"{real}|{stat.st_size}|{stat.st_mtime_ns}"
    cached = memo.get(key)
    if cached is not None:
        return cached
    digest = file_sha256(real)
    memo.put(key, digest)
    return digest


def _local_dir_etag(root: Path, rel: Path, mtime: float) -> str | None:
    """The SHA-256 that ``hf download --local-dir`` recorded for an LFS file, if still valid."""
    meta = root / ".cache" / "huggingface" / "download" / (rel.as_posix() + ".metadata")
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
        etag, timestamp = lines[1].strip(), float(lines[2].strip())
    except (OSError, IndexError, ValueError):
        return None
    # Same rule as huggingface_hub: metadata is stale if the file changed after it was written.
    if _SHA256_RE.match(etag) and mtime - 1 <= timestamp:
        return etag
    return None


class _FingerprintCache:
    """SHA-256 of large files keyed by (real path, size, mtime_ns), in one JSON file."""

    def __init__(self, file: Path, entries: dict[str, str]) -> None:
        self.file = file
        self.entries = entries
        self.dirty = False

    @classmethod
    def load(cls) -> _FingerprintCache:
        file = user_cache_dir() / "fingerprints.json"
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            entries = {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError):
            entries = {}
        return cls(file, entries)

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, digest: str) -> None:
        self.entries[key] = digest
        self.dirty = True

    def save(self) -> None:
        """Write back new entries (merged with the file's), atomically; failures are ignored."""
        if not self.dirty:
            return
        with _cache_lock:
            try:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                merged = _FingerprintCache.load().entries if self.file.exists() else {}
                merged.update(self.entries)
                text = json.dumps(merged, indent=0, sort_keys=True)
                # a hidden temporary file in the same folder, fsynced, then renamed
                atomic_write_bytes(self.file, text.encode("utf-8"))
            except OSError:
                pass  # a read-only cache only costs a re-hash next time
        self.dirty = False
