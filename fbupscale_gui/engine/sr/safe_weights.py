"""Reading weight files safely: tensors only, never code, never an unbounded allocation.

This is security code: a weights file comes from anywhere (a forum, a model hub, a colleague).

* A ``.pth``/``.pt``/``.ckpt`` file is a Python pickle, and unpickling runs code. Those files
  are only read with ``torch.load(weights_only=True)``, whose unpickler builds tensors and plain
  containers and refuses every other global *before* calling it, so a payload never runs.
* A zip-format pickle's entries are checked against its size from the zip's central directory
  before anything is decompressed (:func:`check_zip_sizes`), so a zip bomb is refused.
* ``.safetensors`` has no code at all; its header length is checked against the file size
  before the header is parsed, and every tensor's byte range against the file
  (:func:`check_safetensors_header`), so a hostile or truncated file cannot make us allocate
  gigabytes.

Every refusal is a :class:`ModelFileError` naming the file; nothing from a refused file runs.
"""

from __future__ import annotations

import json
import pickle
import struct
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import ModelFileError
from fbupscale_gui.storage.weights_library import PICKLE_SUFFIXES, check_weights_file

if TYPE_CHECKING:
    import torch

__all__ = [
    "MAX_SAFETENSORS_HEADER",
    "MAX_ZIP_RATIO",
    "MAX_ZIP_UNPACKED",
    "check_safetensors_header",
    "check_zip_sizes",
    "load_state_dict",
]

#: safetensors' own limit for the JSON header (100 MB); real SR models use a few KB.
MAX_SAFETENSORS_HEADER: Final = 100 * 1024 * 1024
#: A zip-format ``.pth`` may unpack to at most this many times its size (torch stores its
#: entries uncompressed, so a real checkpoint unpacks to about its own size) ...
MAX_ZIP_RATIO: Final = 4
#: ... and to at most this many bytes in all, checked before anything is decompressed.
MAX_ZIP_UNPACKED: Final = 8 * 1024**3
#: Architectures we test and document; any other spandrel SR architecture works too.
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
    suffix = check_weights_file(path)
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
