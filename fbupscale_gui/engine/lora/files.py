"""Reading a LoRA file: its tensors, its LoRA config, and a refusal of values that cannot be right.

Only ``.safetensors`` is read (pickled weights are refused). diffusers / PEFT files written by
diffusers' ``save_lora_weights`` (and the trainers that use it) carry ``lora_alpha``, ``r`` and
per-module ``alpha_pattern`` / ``rank_pattern`` in the safetensors header
(``__metadata__["lora_adapter_metadata"]``, diffusers' ``LORA_ADAPTER_METADATA_KEY``); PEFT's
own ``save_pretrained`` pair (``adapter_model.safetensors`` with ``adapter_config.json`` beside
it) is read the same way. NaN, Inf and absurdly large values are refused here, before anything
is converted or loaded: they would render an all-black candidate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import LoraError, RequestError
from fbupscale_gui.core.jsonable import parse_json

if TYPE_CHECKING:
    import torch

__all__ = ["ADAPTER_METADATA_KEY", "MAX_LORA_WEIGHT", "LoraFile", "read_lora", "read_lora_file"]

#: The safetensors header entry diffusers writes its LoRA config to (its
#: ``LORA_ADAPTER_METADATA_KEY``), as JSON with ``transformer.``-prefixed LoraConfig fields.
ADAPTER_METADATA_KEY: Final = "lora_adapter_metadata"
#: PEFT's own file pair (``save_pretrained``): weights, and the LoraConfig beside them.
_PEFT_WEIGHTS: Final = "adapter_model.safetensors"
_PEFT_CONFIG: Final = "adapter_config.json"
_MAX_CONFIG: Final = 1 << 20
#: Refused above this: LoRA weights are normally far below 10, so this is a damaged file (and
#: would overflow 16-bit activations into NaN: an all-black candidate).
MAX_LORA_WEIGHT: Final = 1e3


@dataclass(frozen=True)
class LoraFile:
    """A LoRA file's tensors and, when diffusers wrote it, its LoRA config from the header.

    ``adapter_metadata`` holds the transformer's LoraConfig fields with the ``transformer.``
    prefix removed (None: the file has none). ``metadata_source`` says where it was read:
    "header", or PEFT's own "adapter_config.json" beside an ``adapter_model.safetensors``.
    """

    path: Path
    tensors: dict[str, torch.Tensor]
    adapter_metadata: dict[str, Any] | None = None
    metadata_source: str = "header"


def read_lora(path: str | Path) -> LoraFile:
    """Read a LoRA ``.safetensors`` file with its header's LoRA config, refusing bad values.

    Raises LoraError when the file is missing, unreadable, empty, its header config is not
    valid JSON, or a tensor holds NaN, Inf or a value above :data:`MAX_LORA_WEIGHT`.
    """
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if p.suffix != ".safetensors":
        raise LoraError(f"{p}: LoRA files must be .safetensors (pickled weights are refused)")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except FileNotFoundError:
        raise LoraError(f"{p}: no such LoRA file") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise LoraError(f"{p}: not a readable .safetensors file ({exc})") from None
    if not tensors:
        raise LoraError(f"{p}: the LoRA file holds no tensors")
    _check_values(p, tensors)
    metadata = _adapter_metadata(p, header.get(ADAPTER_METADATA_KEY))
    if metadata is None and p.name == _PEFT_WEIGHTS:
        metadata = _peft_config_beside(p)
        if metadata is not None:
            return LoraFile(p, tensors, metadata, _PEFT_CONFIG)
    return LoraFile(p, tensors, metadata)


def read_lora_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a LoRA file (see :func:`read_lora`)."""
    return read_lora(path).tensors


def _adapter_metadata(path: Path, raw: str | None) -> dict[str, Any] | None:
    """The transformer's LoraConfig fields from diffusers' header entry (prefix removed)."""
    if not raw:
        return None
    try:
        data = parse_json(raw, f"{path}: the header's {ADAPTER_METADATA_KEY}")
    except RequestError as exc:
        raise LoraError(str(exc)) from None
    if not isinstance(data, dict):
        raise LoraError(f"{path}: the header's {ADAPTER_METADATA_KEY} is not a JSON object")
    prefix = "transformer."
    own = {
        k[len(prefix) :]: v for k, v in data.items() if isinstance(k, str) and k.startswith(prefix)
    }
    return own or None


def _peft_config_beside(path: Path) -> dict[str, Any] | None:
    """PEFT's ``save_pretrained`` puts the config in ``adapter_config.json`` beside
    ``adapter_model.safetensors`` (diffusers' loader does not read it; its header has none).

    None when there is no such file. Raises LoraError when there is one but it cannot be read
    (not a regular file, too large, not UTF-8 JSON): the LoRA would load at the wrong strength.
    """
    from fbupscale_gui.storage.paths import NotRegularFileError, read_regular

    config = path.with_name(_PEFT_CONFIG)
    if not config.exists():
        return None
    try:
        text = read_regular(config, "the LoRA's config", _MAX_CONFIG).decode("utf-8")
    except NotRegularFileError as exc:
        raise LoraError(str(exc)) from None
    except OSError as exc:
        raise LoraError(f"{config}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise LoraError(f"{config}: not a UTF-8 text file, so not PEFT's LoRA config") from None
    try:
        data = parse_json(text, str(config))
    except RequestError as exc:
        raise LoraError(str(exc)) from None
    if not isinstance(data, dict) or data.get("peft_type", "LORA") != "LORA":
        return None
    return {str(k): v for k, v in data.items()}


def _check_values(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse NaN, Inf and absurdly large values: they render an all-black candidate."""
    import torch

    bad: list[str] = []
    huge: list[tuple[str, float]] = []
    for key, value in tensors.items():
        if not value.is_floating_point() or value.numel() == 0:
            continue
        v = value.float()
        if not bool(torch.isfinite(v).all()):
            bad.append(key)
            continue
        peak = float(v.abs().max())
        if peak > MAX_LORA_WEIGHT and not key.endswith(".alpha"):
            huge.append((key, peak))
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise LoraError(
            f"{path}: the LoRA holds NaN or infinite values ({bad[0]}{more}); the file is "
            "damaged, or the training diverged: it would render black images"
        )
    if huge:
        key, peak = max(huge, key=lambda kv: kv[1])
        raise LoraError(
            f"{path}: the LoRA holds values up to {peak:.3g} ({key}; LoRA weights are normally "
            f"far below 10, the limit is {MAX_LORA_WEIGHT:g}); the file is damaged or not a LoRA"
        )
