"""What the FLUX engine needs on disk, what was found, and how to get what is missing.

The Models page (``ui/flux_models_dialog.py``) shows this for FLUX.1-dev, the ControlNet
upscaler and the LoRAs. :func:`survey` looks offline only (the same :func:`locate` the engine
uses), in a folder the operator chooses, the folders in Settings and the Hugging Face cache;
for each model it gives the size on disk, the licence its files state and, for a missing one,
the exact command to run on a connected machine. Hashing large files takes a while, so
:class:`FluxSetup` surveys and hashes in a background thread and reports with signals.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from PySide6.QtCore import QObject, Signal

from fbupscale_gui.core.errors import ModelNotFoundError
from fbupscale_gui.core.request import CONTROLNET_REPO_ID, FLUX_REPO_ID, ModelRef
from fbupscale_gui.core.settings import Settings
from fbupscale_gui.storage.weights import fingerprint, locate

__all__ = [
    "LORA_FOLDER",
    "FluxSetup",
    "ModelStatus",
    "default_folder",
    "download_command",
    "settings_for",
    "survey",
]

log = logging.getLogger(__name__)

#: The LoRAs' subfolder of a models folder (ComfyUI's name for it).
LORA_FOLDER: Final = "loras"
#: What the files of the two FLUX repositories are published under, when their README is absent.
_KNOWN_LICENCES: Final = {
    FLUX_REPO_ID: "FLUX.1 [dev] Non-Commercial License",
    CONTROLNET_REPO_ID: "FLUX.1 [dev] Non-Commercial License",
}
_LABELS: Final = {"flux": "FLUX.1-dev", "controlnet": "ControlNet upscaler"}
_LICENCE_LINE: Final = re.compile(r"^(license_name|license)\s*:\s*(.+?)\s*$", re.MULTILINE)
_HEADER_MAX: Final = 16 * 1024 * 1024


@dataclass(frozen=True)
class ModelStatus:
    """One model the FLUX engine uses, as found (``path`` set) or missing."""

    kind: str  # "flux", "controlnet" or "lora"
    label: str
    repo_id: str
    path: Path | None
    #: Where it was found: "folder", "settings", "hf-cache" ("" when missing).
    source: str = ""
    size_bytes: int = 0
    #: SHA-256 (a folder's is over its files); "" until hashed.
    sha256: str = ""
    licence: str = ""
    #: Why it is missing (the places searched).
    problem: str = ""
    #: For a missing model: the exact line to run on a connected machine.
    command: str = ""

    @property
    def found(self) -> bool:
        return self.path is not None


def default_folder() -> Path:
    """Where the page suggests putting the models when no folder is chosen or set."""
    return Path.home() / "fbupscale-models"


def download_command(repo_id: str, folder: str | Path) -> str:
    """The command that puts ``repo_id`` where :func:`survey` finds it in ``folder``."""
    name = repo_id.rsplit("/", 1)[-1]
    return f'hf download {repo_id} --local-dir "{Path(folder) / name}"'


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for p in path.rglob("*"):
        if ".cache" in p.parts or not p.is_file():
            continue
        try:
            total += p.stat().st_size  # follows the Hugging Face cache's links
        except OSError:
            continue
    return total


def _readme_licence(folder: Path) -> str:
    """The licence a Hugging Face model card's front matter states (``license_name`` first)."""
    readme = folder / "README.md"
    try:
        text = readme.read_text(encoding="utf-8", errors="replace")[:8000]
    except OSError:
        return ""
    if not text.startswith("---"):
        return ""
    front = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    found = dict((m.group(1), m.group(2).strip("\"'")) for m in _LICENCE_LINE.finditer(front))
    return found.get("license_name") or found.get("license", "")


def _safetensors_licence(path: Path) -> str:
    """The licence a .safetensors file's metadata states (kohya/modelspec keys), or ""."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > _HEADER_MAX:
                return ""
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error):
        return ""
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        return ""
    for key in ("modelspec.license", "license", "ss_license"):
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _flux_model(kind: str, repo_id: str, settings: Settings, folder: str) -> ModelStatus:
    label = _LABELS[kind]
    configured = settings.flux_dir if kind == "flux" else settings.controlnet_dir
    searched: list[str] = []
    cache = settings.hf_cache or None
    attempts: list[tuple[str, ModelRef, tuple[str, ...]]] = []
    if folder:
        attempts.append(("folder", ModelRef(path=folder, repo_id=repo_id), ()))
        attempts.append(("folder", ModelRef(repo_id=repo_id), (folder,)))
    if configured:
        attempts.append(("settings", ModelRef(path=configured, repo_id=repo_id), ()))
    attempts.append(("hf-cache", ModelRef(repo_id=repo_id), ()))
    for source, ref, dirs in attempts:
        try:
            found = locate(ref, kind, search_dirs=dirs, hf_cache=cache, compute_fingerprint=False)
        except ModelNotFoundError as exc:
            searched.extend(s for s in exc.searched if s not in searched)
            continue
        where = "hf-cache" if found.source == "hf-cache" else source
        licence = _readme_licence(found.path) or _KNOWN_LICENCES.get(repo_id, "")
        return ModelStatus(
            kind, label, repo_id, found.path, where, _size(found.path), licence=licence
        )
    target = folder or (str(Path(configured).parent) if configured else str(default_folder()))
    return ModelStatus(
        kind,
        label,
        repo_id,
        None,
        licence=_KNOWN_LICENCES.get(repo_id, ""),
        problem="Searched: " + ("; ".join(searched) or "(nowhere configured)"),
        command=download_command(repo_id, target),
    )


def _loras(settings: Settings, folder: str) -> list[ModelStatus]:
    files: list[Path] = []
    if folder:
        for base in (Path(folder) / LORA_FOLDER, Path(folder)):
            if base.is_dir():
                files.extend(sorted(base.glob("*.safetensors")))
    if settings.lora_path and Path(settings.lora_path).is_file():
        files.append(Path(settings.lora_path))
    seen: set[Path] = set()
    out: list[ModelStatus] = []
    for f in files:
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        source = "settings" if str(f) == settings.lora_path else "folder"
        licence = _safetensors_licence(f) or "not stated in the file"
        out.append(ModelStatus("lora", f.name, "", f, source, _size(f), licence=licence))
    if not out:
        target = Path(folder or default_folder()) / LORA_FOLDER
        out.append(
            ModelStatus(
                "lora",
                "LoRA (optional)",
                "",
                None,
                problem=(
                    "No LoRA .safetensors found. LoRAs are never downloaded: copy the football "
                    f"LoRA file into {target}, or choose it in Settings."
                ),
                command=f'mkdir -p "{target}" && cp football_lora.safetensors "{target}/"',
            )
        )
    return out


def survey(settings: Settings, folder: str = "") -> list[ModelStatus]:
    """FLUX.1-dev, the ControlNet and the LoRAs: found (with size and licence) or missing
    (with the command that gets them). Offline; hashes are left to :func:`hash_found`."""
    return [
        _flux_model("flux", FLUX_REPO_ID, settings, folder),
        _flux_model("controlnet", CONTROLNET_REPO_ID, settings, folder),
        *_loras(settings, folder),
    ]


def hash_found(statuses: list[ModelStatus]) -> list[ModelStatus]:
    """The same list with each found model's SHA-256 (remembered between runs)."""
    out = []
    for s in statuses:
        if s.path is not None and not s.sha256:
            try:
                s = replace(s, sha256=fingerprint(s.path))
            except OSError as exc:
                log.warning("could not hash %s: %s", s.path, exc)
        out.append(s)
    return out


def settings_for(settings: Settings, statuses: list[ModelStatus]) -> Settings:
    """``settings`` pointing at what the survey found in a folder (the cache needs nothing)."""
    out = settings
    for s in statuses:
        if s.path is None or s.source != "folder":
            continue
        if s.kind == "flux":
            out = replace(out, flux_dir=str(s.path))
        elif s.kind == "controlnet":
            out = replace(out, controlnet_dir=str(s.path))
        elif s.kind == "lora" and not settings.lora_path:
            out = replace(out, lora_path=str(s.path))
    return out


class FluxSetup(QObject):
    """Surveys in a background thread: ``surveyed`` with the list, then ``hashed`` with
    the same list and the SHA-256 of each found model. A newer survey supersedes older ones."""

    surveyed = Signal(object)  # list[ModelStatus]
    hashed = Signal(object)  # list[ModelStatus]

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._generation = 0
        self._lock = threading.Lock()
        self.statuses: list[ModelStatus] = []

    def start(self, settings: Settings, folder: str = "") -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation
        thread = threading.Thread(
            target=self._work, args=(settings, folder, generation), daemon=True
        )
        thread.start()

    def _current(self, generation: int) -> bool:
        with self._lock:
            return generation == self._generation

    def _work(self, settings: Settings, folder: str, generation: int) -> None:
        try:
            statuses = survey(settings, folder)
        except Exception as exc:  # a survey must never take the window down
            log.exception("model survey failed")
            statuses = [ModelStatus("flux", "FLUX.1-dev", FLUX_REPO_ID, None, problem=str(exc))]
        if not self._current(generation):
            return
        self.statuses = statuses
        self.surveyed.emit(statuses)
        hashed = hash_found(statuses)
        if self._current(generation):
            self.statuses = hashed
            self.hashed.emit(hashed)
