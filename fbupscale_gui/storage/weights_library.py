"""The user's super-resolution models folder: list, add and remove models. Pure Python.

A model is one weights file (``.safetensors``, or ``.pth``/``.pt``/``.ckpt`` read only through a
weights-only loader) that the engine recognises as an RGB upscaler. Added models are copied into
the models folder and recorded in ``index.json`` there::

    {"version": 1, "models": {"2x-span": {"file": "2x-span.safetensors", "sha256": "...",
     "arch": "SPAN", "scale": 2, ...}}}

The folder is ``FBUPSCALE_MODELS_DIR`` when set, otherwise ``models`` under the platform's user
data folder. The index and the model copies are written atomically (a temporary file in the
same folder, flushed and then renamed over the old one), so a crash never leaves a
half-written index or model; the temporary file a killed copy leaves is removed when the
library is next listed or changed (:meth:`ModelLibrary.clean_leftovers`).

This module never loads a model itself: :meth:`ModelLibrary.add` takes the validating function
(the engine's ``inspect_model``) as an argument, so ``core`` stays free of torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from fbupscale_gui.core.errors import ModelFileError, ModelNotFoundError, RequestError
from fbupscale_gui.core.jsonable import parse_json
from fbupscale_gui.core.request import ModelRef
from fbupscale_gui.storage.atomic import (
    STALE_TEMP_S,
    TEMP_SUFFIX,
    atomic_write,
    atomic_write_bytes,
    clean_stale_temps,
)
from fbupscale_gui.storage.paths import (
    NotRegularFileError,
    PathEscapeError,
    contained,
    read_regular,
    user_dir,
)

__all__ = [
    "INDEX_NAME",
    "INDEX_VERSION",
    "MODEL_SUFFIXES",
    "PICKLE_SUFFIXES",
    "LibraryEntry",
    "ModelFileError",
    "ModelInfo",
    "ModelLibrary",
    "check_weights_file",
    "file_sha256",
    "models_dir",
    "valid_model_name",
]

INDEX_NAME: Final = "index.json"
INDEX_VERSION: Final = 1
#: Files the library accepts. Pickle-based ones are only ever read weights-only.
MODEL_SUFFIXES: Final = (".safetensors", ".pth", ".pt", ".ckpt")
PICKLE_SUFFIXES: Final = (".pth", ".pt", ".ckpt")
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,79}$")
_HASH_CHUNK: Final = 4 * 1024 * 1024
#: Earlier releases named a model copy's temporary file ``.<name>.<8 random>.part``.
_LEGACY_SUFFIX: Final = ".part"


@dataclass(frozen=True)
class ModelInfo:
    """What the engine found in a model file.

    ``precisions`` lists what the architecture runs in ("fp32" always, then "fp16"/"bf16");
    ``tiling`` is "supported", "discouraged" or "internal" (the model tiles by itself).
    """

    arch: str
    arch_id: str
    scale: int
    params: int
    size_bytes: int
    input_channels: int
    output_channels: int
    precisions: tuple[str, ...]
    purpose: str = "SR"
    tags: tuple[str, ...] = ()
    tiling: str = "supported"

    @property
    def summary(self) -> str:
        """One line for lists and tooltips, e.g. "SPAN 2x, 0.41 M params, 1.6 MB, fp32/fp16/bf16"."""
        params = f"{self.params / 1e6:.2f} M params"
        size = f"{self.size_bytes / 1e6:.1f} MB"
        tags = f" ({', '.join(self.tags)})" if self.tags else ""
        return f"{self.arch}{tags} {self.scale}x, {params}, {size}, {'/'.join(self.precisions)}"


@dataclass(frozen=True)
class LibraryEntry:
    """One model in the library: its file (relative to the folder) and what was detected."""

    name: str
    file: str
    sha256: str
    arch: str
    scale: int
    params: int = 0
    size_bytes: int = 0
    precisions: tuple[str, ...] = ("fp32",)
    licence: str = ""
    source: str = ""
    added: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("name")
        data["precisions"] = list(self.precisions)
        return data

    @classmethod
    def from_json(cls, name: str, data: Any) -> LibraryEntry:
        """Raises ModelFileError when the record is malformed."""
        if not isinstance(data, dict):
            raise ModelFileError(f"models index: entry {name!r} is not an object")
        try:
            return cls(
                name=name,
                file=str(data["file"]),
                sha256=str(data["sha256"]),
                arch=str(data.get("arch", "")),
                scale=int(data.get("scale", 0)),
                params=int(data.get("params", 0)),
                size_bytes=int(data.get("size_bytes", 0)),
                precisions=tuple(str(p) for p in data.get("precisions", ["fp32"])),
                licence=str(data.get("licence", "")),
                source=str(data.get("source", "")),
                added=str(data.get("added", "")),
                extra={str(k): str(v) for k, v in dict(data.get("extra", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"models index: entry {name!r} is malformed ({exc})") from None

    @property
    def summary(self) -> str:
        lic = f", licence: {self.licence}" if self.licence else ""
        return f"{self.arch} {self.scale}x, {self.size_bytes / 1e6:.1f} MB, {'/'.join(self.precisions)}{lic}"


def models_dir() -> Path:
    """The models folder: ``FBUPSCALE_MODELS_DIR``, else ``<user data dir>/fbupscale/models``."""
    return user_dir("data", "FBUPSCALE_MODELS_DIR", "models")


def valid_model_name(name: str) -> bool:
    """Names are 1-80 characters of letters, digits and ``._+-``, starting with a letter/digit."""
    return bool(_NAME_RE.match(name))


def check_weights_file(path: Path) -> str:
    """The lower-case suffix of ``path``, once it is known to be a weights file we can read.

    Raises ModelFileError for another file type, a missing path, or one that is not a regular
    file (a folder, device or FIFO).
    """
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
    return suffix


def _name_from_stem(stem: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "-", stem).strip("-._+")[:80]
    return cleaned or "model"


def file_sha256(path: str | Path, copy_to: IO[bytes] | None = None) -> str:
    """SHA-256 of a file's bytes (hex), read once; with ``copy_to`` the bytes are also
    written there (a copy checked by the hash of what was copied). Raises OSError when the
    file cannot be read or the copy written."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
            if copy_to is not None:
                copy_to.write(chunk)
    return digest.hexdigest()


class ModelLibrary:
    """The models folder and its index. Thread-safe within a process.

    Every method re-reads the index, so two windows or a GUI and the CLI see each other's
    changes. Raises ModelFileError when the index is corrupt (it is never silently replaced).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else models_dir()
        self._lock = threading.RLock()

    @property
    def index_path(self) -> Path:
        return self.root / INDEX_NAME

    # -- reading ----------------------------------------------------------------------------

    def _read(self) -> dict[str, LibraryEntry]:
        try:
            raw = read_regular(self.index_path, "models index")
        except FileNotFoundError:
            return {}
        except NotRegularFileError as exc:
            raise ModelFileError(f"{exc}; replace it with the folder's index.json") from None
        try:
            data = parse_json(raw, str(self.index_path))
        except RequestError as exc:
            raise ModelFileError(
                f"{exc}: the models index is damaged; "
                "fix or delete it (the model files next to it are untouched)"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise ModelFileError(f"{self.index_path}: not an fbupscale models index")
        version = data.get("version")
        if not isinstance(version, int) or version > INDEX_VERSION:
            raise ModelFileError(
                f"{self.index_path}: index version {version!r} is newer than this release "
                f"reads ({INDEX_VERSION}); update fbupscale"
            )
        return {str(k): LibraryEntry.from_json(str(k), v) for k, v in data["models"].items()}

    def _write(self, entries: dict[str, LibraryEntry]) -> None:
        payload = {
            "version": INDEX_VERSION,
            "models": {name: entries[name].to_json() for name in sorted(entries)},
        }
        text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write_bytes(self.index_path, text.encode("utf-8"))

    def clean_leftovers(self) -> list[Path]:
        """Remove the temporary files of model copies that a crash or a kill left in the
        folder (model-sized; untouched for :data:`STALE_TEMP_S`, so a copy another process is
        making now is left alone), also the ``.part`` names of earlier releases."""
        return clean_stale_temps(
            self.root, older_than_s=STALE_TEMP_S, temp_suffixes=(TEMP_SUFFIX, _LEGACY_SUFFIX)
        )

    def entries(self) -> list[LibraryEntry]:
        """Every model, sorted by name (opening the list also cleans leftovers)."""
        with self._lock:
            self.clean_leftovers()
            found = self._read()
        return [found[name] for name in sorted(found)]

    def __iter__(self) -> Iterator[LibraryEntry]:
        return iter(self.entries())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in {e.name for e in self.entries()}

    def get(self, name: str) -> LibraryEntry:
        """The entry called ``name``. Raises ModelNotFoundError when there is none."""
        with self._lock:
            found = self._read()
        if name not in found:
            known = ", ".join(sorted(found)) or "none yet"
            raise ModelNotFoundError(
                f"SR model {name!r}",
                None,
                [self.root],
                f"Models in the library: {known}. Add one with: fbupscale models add FILE",
            )
        return found[name]

    def file_of(self, entry: LibraryEntry) -> Path:
        """Where an entry's file is, which must be inside the folder: the index is untrusted.

        Raises ModelFileError naming the entry for an absolute path, ``..`` or a symbolic
        link leading out of the folder (nothing is read, replaced or deleted there).
        """
        try:
            return contained(self.root, entry.file, f"models index entry {entry.name!r}")
        except PathEscapeError as exc:
            raise ModelFileError(f"{exc}; fix or remove that entry in {self.index_path}") from None

    def path_of(self, entry: LibraryEntry | str) -> Path:
        """The file of an entry (or of the entry called so). Raises ModelNotFoundError, and
        ModelFileError for an entry whose file lies outside the folder."""
        if isinstance(entry, str):
            entry = self.get(entry)
        path = self.file_of(entry)
        if not path.is_file():
            raise ModelNotFoundError(
                f"SR model {entry.name!r}",
                None,
                [path],
                "Its file is gone from the models folder; remove it and add it again.",
            )
        return path

    def resolve(self, name_or_path: str) -> tuple[Path, LibraryEntry | None]:
        """A library name, or a path to a model file outside the library.

        Library names win over relative paths of the same spelling. Raises ModelNotFoundError
        when it is neither.
        """
        with self._lock:
            found = self._read()
        if name_or_path in found:
            entry = found[name_or_path]
            return self.path_of(entry), entry
        path = Path(name_or_path).expanduser()
        if path.is_file():
            return path, None
        known = ", ".join(sorted(found)) or "none yet"
        raise ModelNotFoundError(
            f"SR model {name_or_path!r}",
            None,
            [self.root, path],
            f"It is neither a library model ({known}) nor a model file.",
        )

    def ref(self, name_or_path: str) -> ModelRef:
        """The :class:`ModelRef` (file path and SHA-256) a request records for a user model.

        Library models reuse the recorded hash; other files are hashed now. Raises
        ModelNotFoundError (see :meth:`resolve`) and OSError.
        """
        path, entry = self.resolve(name_or_path)
        digest = entry.sha256 if entry is not None else file_sha256(path)
        return ModelRef(path=str(path.resolve()), sha256=digest)

    # -- changing ---------------------------------------------------------------------------

    def add(
        self,
        file: str | Path,
        inspect: Callable[[Path], ModelInfo],
        *,
        name: str | None = None,
        licence: str = "",
        source: str = "",
        replace: bool = False,
    ) -> LibraryEntry:
        """Validate ``file`` with ``inspect`` and copy it into the library.

        ``name`` defaults to the file's stem, cleaned. The copy is written under a temporary
        name and renamed, then the index is updated; on any error nothing changes.
        Raises ModelFileError (bad suffix, bad name, name taken without ``replace``, the same
        file already added under another name, or whatever ``inspect`` refuses) and OSError.
        """
        src = Path(file).expanduser()
        suffix = check_weights_file(src)
        name = name if name is not None else _name_from_stem(src.stem)
        if not valid_model_name(name):
            raise ModelFileError(
                f"model name {name!r}: use 1-80 letters, digits and ._+- (starting with a "
                "letter or digit)"
            )
        if replace:  # an entry leading out of the folder is refused before any work
            with self._lock, contextlib.suppress(ModelNotFoundError):
                self.file_of(self.get(name))
        info = inspect(src)  # raises ModelFileError for anything unusable
        digest = file_sha256(src)
        with self._lock:
            entries = self._read()
            if name in entries and not replace:
                raise ModelFileError(
                    f"model name {name!r} is already in the library; remove it first or "
                    "choose another name"
                )
            old = entries.get(name)
            old_file = self.file_of(old) if old is not None else None  # refused before any copy
            for other in entries.values():
                if other.sha256 == digest and other.name != name:
                    raise ModelFileError(
                        f"{src}: this file is already in the library as {other.name!r}"
                    )
            self.root.mkdir(parents=True, exist_ok=True)
            self.clean_leftovers()
            target = self.root / f"{name}{suffix}"

            def copy(fh: IO[bytes]) -> None:
                if file_sha256(src, copy_to=fh) != digest:
                    raise ModelFileError(f"{src}: the file changed while it was being copied")

            atomic_write(target, copy)  # a temporary file, fsynced, renamed; nothing on error
            entry = LibraryEntry(
                name=name,
                file=target.name,
                sha256=digest,
                arch=info.arch,
                scale=info.scale,
                params=info.params,
                size_bytes=info.size_bytes,
                precisions=info.precisions,
                licence=licence,
                source=source or str(src),
                added=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
            entries[name] = entry
            self._write(entries)
            if old_file is not None and old_file != target.resolve():
                with contextlib.suppress(OSError):
                    old_file.unlink()
        return entry

    def remove(self, name: str) -> LibraryEntry:
        """Remove a model from the index and delete its file. Raises ModelNotFoundError."""
        with self._lock:
            self.clean_leftovers()
            entries = self._read()
            if name not in entries:
                self.get(name)  # raises with the list of known names
            entry = entries.pop(name)
            file = self.file_of(entry)  # refused, with nothing changed, if it leads outside
            self._write(entries)
            in_use = {e.file for e in entries.values()}
            if entry.file not in in_use:
                with contextlib.suppress(FileNotFoundError):
                    file.unlink()
        return entry
