"""Broadcast degradation model: turn a clean high-resolution frame into a cutout like the operators'.

A documented, seeded chain of the losses a player's image goes through between the camera and
the operator's screen grab of a 1080i feed, in the order they happen:

1. ``optical_blur`` - lens and focus: a Gaussian of ``sigma`` cutout pixels;
2. ``motion_blur`` - a moving player or a panning camera: a line of ``length`` cutout pixels at
   ``angle`` degrees (0 = horizontal, counter-clockwise);
3. ``downscale`` - the crop ``box`` (fractions of the frame) sampled to a cutout whose long side
   is ``size`` px (60-100 px for real cutouts); ``jitter`` moves the sampling grid by a random
   sub-pixel phase, as where a player lands on the sensor grid is chance;
4. ``sharpen`` - the camera's detail enhancement: an unsharp mask whose overshoot leaves halos;
5. ``field_drop`` - 1080i: one field (every second line) is kept, then rebuilt to full height by
   line doubling (``double``, the jaggies of a cheap deinterlacer) or by interpolating the
   missing lines (``resize``);
6. ``chroma_420`` - 4:2:0 chroma subsampling: colour at half resolution in both directions;
7. ``video`` - H.264 (libx264) or MPEG-2 compression at ``bitrate_kbps`` through PyAV: the cutout,
   placed on the 16 px macroblock grid at a random offset (``jitter``), is encoded as ``frames``
   identical 25 fps frames in memory, and the last decoded frame is kept;
8. ``jpeg`` - the grab saved as JPEG at ``quality``.

Blur runs on the crop at up to 4x the cutout's resolution (so it is a blur of the scene, not of
the pixels), the rest at the cutout's resolution. Each step has an ``enabled`` switch. Three named
severities (:data:`SEVERITIES`) cover the range seen in practice; see :func:`severity`.

:func:`degrade` is deterministic for a seed: the seed draws the sampling phase, the field and the
macroblock offset (always in the same order, so switching one step off does not change the
others' draws). It returns the image and a record of every applied step with its parameters and
drawn values, which :func:`save_degraded` writes into a PNG text chunk ``fbupscale-degrade``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.jsonable import (
    check_literals,
    check_version,
    from_jsonable,
    parse_json,
    to_jsonable,
)

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "DEGRADE_SCHEMA_VERSION",
    "PNG_KEY",
    "SEVERITIES",
    "ChromaSubsampling",
    "DegradeParams",
    "Downscale",
    "FieldDrop",
    "JpegCompression",
    "MotionBlur",
    "OpticalBlur",
    "Severity",
    "Sharpen",
    "VideoCompression",
    "degrade",
    "read_degrade_record",
    "save_degraded",
    "severity",
]

DEGRADE_SCHEMA_VERSION: Final = 1
#: The PNG text chunk that carries the degradation record.
PNG_KEY: Final = "fbupscale-degrade"
#: The largest factor the blur steps oversample the cutout by.
_MAX_OVERSAMPLE: Final = 4
_FPS: Final = 25
_MACROBLOCK: Final = 16
#: Seeds are drawn by numpy's PCG64; the bound matches the request's seeds.
_SEED_LIMIT: Final = 2**63

Severity = Literal["light", "medium", "heavy"]
SEVERITIES: Final[tuple[Severity, ...]] = ("light", "medium", "heavy")
ResizeFilter = Literal["area", "bicubic", "lanczos"]
FieldChoice = Literal["top", "bottom", "random"]
FieldRebuild = Literal["double", "resize"]
ChromaUpsample = Literal["nearest", "bilinear"]
VideoCodec = Literal["h264", "mpeg2"]
JpegSubsampling = Literal["4:4:4", "4:2:2", "4:2:0"]

_ENCODERS: Final[dict[str, str]] = {"h264": "libx264", "mpeg2": "mpeg2video"}
_DECODERS: Final[dict[str, str]] = {"h264": "h264", "mpeg2": "mpeg2video"}


def _check(cond: bool, field_name: str, message: str) -> None:
    if not cond:
        raise RequestError(f"degrade.{field_name}: {message}")


@dataclass(frozen=True)
class OpticalBlur:
    """Lens/focus blur: a Gaussian whose standard deviation is ``sigma`` cutout pixels."""

    enabled: bool = True
    sigma: float = 0.6

    def __post_init__(self) -> None:
        _check(0.0 <= self.sigma <= 10.0, "optical_blur.sigma", f"must be 0..10, got {self.sigma}")


@dataclass(frozen=True)
class MotionBlur:
    """Motion blur: a line ``length`` cutout pixels long at ``angle`` degrees (0 = horizontal)."""

    enabled: bool = False
    length: float = 2.0
    angle: float = 0.0

    def __post_init__(self) -> None:
        _check(
            0.0 <= self.length <= 20.0, "motion_blur.length", f"must be 0..20, got {self.length}"
        )
        _check(
            -360.0 <= self.angle <= 360.0,
            "motion_blur.angle",
            f"must be -360..360 degrees, got {self.angle}",
        )


@dataclass(frozen=True)
class Downscale:
    """The crop and its sampling to cutout size.

    ``box`` is (left, top, right, bottom) as fractions of the input's width and height. ``size``
    is the cutout's long side in px; the short side keeps the box's aspect ratio. ``jitter``
    shifts the sampling grid by a seeded phase of up to half a cutout pixel in each direction.
    """

    enabled: bool = True
    box: tuple[float, ...] = (0.0, 0.0, 1.0, 1.0)
    size: int = 80
    filter: ResizeFilter = "area"
    jitter: bool = True

    def __post_init__(self) -> None:
        _check_literals_in(self, "downscale")
        _check(len(self.box) == 4, "downscale.box", f"needs 4 numbers, got {len(self.box)}")
        left, top, right, bottom = self.box
        _check(
            0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0,
            "downscale.box",
            f"must be fractions 0 <= left < right <= 1 and 0 <= top < bottom <= 1, got {self.box}",
        )
        _check(8 <= self.size <= 1024, "downscale.size", f"must be 8..1024 px, got {self.size}")


@dataclass(frozen=True)
class Sharpen:
    """Detail enhancement: Pillow's unsharp mask at cutout resolution (``radius`` px,
    ``percent`` strength, ``threshold`` levels). Strong settings leave bright/dark halos."""

    enabled: bool = False
    radius: float = 1.0
    percent: int = 80
    threshold: int = 0

    def __post_init__(self) -> None:
        _check(0.1 <= self.radius <= 10.0, "sharpen.radius", f"must be 0.1..10, got {self.radius}")
        _check(0 <= self.percent <= 500, "sharpen.percent", f"must be 0..500, got {self.percent}")
        _check(
            0 <= self.threshold <= 255, "sharpen.threshold", f"must be 0..255, got {self.threshold}"
        )


@dataclass(frozen=True)
class FieldDrop:
    """1080i: keep one field (``top`` = even lines, ``bottom`` = odd lines, ``random`` = seeded)
    and rebuild full height by line doubling or by linear interpolation of the missing lines."""

    enabled: bool = True
    field: FieldChoice = "random"
    rebuild: FieldRebuild = "double"

    def __post_init__(self) -> None:
        _check_literals_in(self, "field_drop")


@dataclass(frozen=True)
class ChromaSubsampling:
    """4:2:0: Cb and Cr (BT.601) averaged over 2x2 blocks, then upsampled back."""

    enabled: bool = True
    upsample: ChromaUpsample = "bilinear"

    def __post_init__(self) -> None:
        _check_literals_in(self, "chroma_420")


@dataclass(frozen=True)
class VideoCompression:
    """H.264 or MPEG-2 at ``bitrate_kbps`` (kbit/s of the encoded picture at 25 fps).

    The cutout is encoded on its own, padded to the 16 px macroblock grid, as ``frames``
    identical frames (an I frame then P frames) with a VBV buffer of two frames; the last decoded
    frame is kept. ``jitter`` places the cutout at a seeded offset on that grid.
    """

    enabled: bool = True
    codec: VideoCodec = "h264"
    bitrate_kbps: float = 200.0
    frames: int = 3
    jitter: bool = True

    def __post_init__(self) -> None:
        _check_literals_in(self, "video")
        _check(
            1.0 <= self.bitrate_kbps <= 100_000.0,
            "video.bitrate_kbps",
            f"must be 1..100000, got {self.bitrate_kbps}",
        )
        _check(1 <= self.frames <= 16, "video.frames", f"must be 1..16, got {self.frames}")


@dataclass(frozen=True)
class JpegCompression:
    """The grab saved as JPEG (Pillow/libjpeg) at ``quality`` with the given chroma subsampling."""

    enabled: bool = False
    quality: int = 85
    subsampling: JpegSubsampling = "4:2:0"

    def __post_init__(self) -> None:
        _check_literals_in(self, "jpeg")
        _check(1 <= self.quality <= 100, "jpeg.quality", f"must be 1..100, got {self.quality}")


@dataclass(frozen=True)
class DegradeParams:
    """Every parameter of the chain, one sub-object per step. Frozen, validated, JSON-exact.

    ``name`` is a free label (the severity a preset came from). Raises :class:`RequestError`
    naming the field for any invalid value.
    """

    name: str = ""
    optical_blur: OpticalBlur = field(default_factory=OpticalBlur)
    motion_blur: MotionBlur = field(default_factory=MotionBlur)
    downscale: Downscale = field(default_factory=Downscale)
    sharpen: Sharpen = field(default_factory=Sharpen)
    field_drop: FieldDrop = field(default_factory=FieldDrop)
    chroma_420: ChromaSubsampling = field(default_factory=ChromaSubsampling)
    video: VideoCompression = field(default_factory=VideoCompression)
    jpeg: JpegCompression = field(default_factory=JpegCompression)
    version: int = DEGRADE_SCHEMA_VERSION

    def __post_init__(self) -> None:
        _check(
            self.version == DEGRADE_SCHEMA_VERSION,
            "version",
            f"must be {DEGRADE_SCHEMA_VERSION}, got {self.version}",
        )

    def replace(self, **changes: Any) -> DegradeParams:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return typing.cast(dict[str, Any], to_jsonable(self))

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DegradeParams:
        """Strict: unknown fields, wrong types and out-of-range values raise :class:`RequestError`.
        Missing fields take their defaults; a newer schema version is refused."""
        check_version(
            data,
            "degrade",
            DEGRADE_SCHEMA_VERSION,
            what="degradation parameters",
            default=DEGRADE_SCHEMA_VERSION,
        )
        return typing.cast(DegradeParams, from_jsonable(cls, data, "degrade"))

    @classmethod
    def from_json(cls, text: str | bytes) -> DegradeParams:
        """Parse JSON text; raises :class:`RequestError` for invalid JSON or parameters."""
        return cls.from_dict(parse_json(text, "degrade"))


def _check_literals_in(obj: Any, step: str) -> None:
    try:
        check_literals(obj)
    except RequestError as exc:
        raise RequestError(f"degrade.{step}.{exc}") from None


_PRESETS: Final[dict[str, DegradeParams]] = {
    # A clean HD feed grabbed well: slight softness, a good deinterlacer, generous bitrate.
    "light": DegradeParams(
        name="light",
        optical_blur=OpticalBlur(sigma=0.4),
        motion_blur=MotionBlur(enabled=False),
        downscale=Downscale(size=100),
        sharpen=Sharpen(enabled=False),
        field_drop=FieldDrop(rebuild="resize"),
        chroma_420=ChromaSubsampling(),
        video=VideoCompression(codec="h264", bitrate_kbps=400.0),
        jpeg=JpegCompression(enabled=False),
    ),
    # A typical grab: a line-doubled field, camera detail on, H.264, saved as JPEG.
    "medium": DegradeParams(
        name="medium",
        optical_blur=OpticalBlur(sigma=0.6),
        motion_blur=MotionBlur(enabled=True, length=1.5, angle=0.0),
        downscale=Downscale(size=80),
        sharpen=Sharpen(enabled=True, radius=1.0, percent=60),
        field_drop=FieldDrop(rebuild="double"),
        chroma_420=ChromaSubsampling(),
        video=VideoCompression(codec="h264", bitrate_kbps=250.0),
        jpeg=JpegCompression(enabled=True, quality=85),
    ),
    # A fast player on an old MPEG-2 chain: motion blur, oversharpened halos, low bitrate, JPEG.
    "heavy": DegradeParams(
        name="heavy",
        optical_blur=OpticalBlur(sigma=0.8),
        motion_blur=MotionBlur(enabled=True, length=3.0, angle=20.0),
        downscale=Downscale(size=64),
        sharpen=Sharpen(enabled=True, radius=1.5, percent=150),
        field_drop=FieldDrop(rebuild="double"),
        chroma_420=ChromaSubsampling(upsample="nearest"),
        video=VideoCompression(codec="mpeg2", bitrate_kbps=150.0),
        jpeg=JpegCompression(enabled=True, quality=60),
    ),
}


def severity(name: str) -> DegradeParams:
    """The preset for ``light``, ``medium`` or ``heavy``; raises :class:`RequestError` otherwise."""
    try:
        return _PRESETS[name]
    except KeyError:
        raise RequestError(
            f"degrade.severity: must be one of {list(SEVERITIES)}, got {name!r}"
        ) from None


# -- the chain ------------------------------------------------------------------------------


def degrade(
    image: Image.Image, params: DegradeParams | str = "medium", seed: int = 0
) -> tuple[Image.Image, dict[str, Any]]:
    """Apply the chain to ``image`` (any Pillow mode; converted to RGB).

    ``params`` is a :class:`DegradeParams` or a severity name. Returns the degraded RGB image and
    the record: ``{"version", "seed", "severity", "input_size", "output_size", "params",
    "steps"}`` where ``steps`` lists every applied step in order with its parameters and the
    values drawn from the seed. Deterministic for a seed. Raises :class:`RequestError` for an
    unknown severity or a bad seed, and ValueError if the crop is smaller than the cutout size.
    """
    import numpy as np
    from PIL import Image as PILImage
    from PIL import ImageFilter

    p = severity(params) if isinstance(params, str) else params
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < _SEED_LIMIT:
        raise RequestError(f"degrade.seed: must be an integer 0..2^63-1, got {seed!r}")
    rng = np.random.default_rng(seed)
    # Every random value is drawn up front, in a fixed order, whatever is enabled.
    phase = rng.uniform(-0.5, 0.5, size=2)
    field_draw = int(rng.integers(0, 2))
    mb_offset = rng.integers(0, _MACROBLOCK, size=2)

    img = image.convert("RGB")
    steps: list[dict[str, Any]] = []
    in_w, in_h = img.size

    # Geometry: the crop box in input px, the cutout size and the working (oversampled) size.
    ds = p.downscale
    if ds.enabled:
        left, top, right, bottom = ds.box
        box = (left * in_w, top * in_h, right * in_w, bottom * in_h)
        crop_w, crop_h = box[2] - box[0], box[3] - box[1]
        if crop_w >= crop_h:
            out_w, out_h = ds.size, max(1, round(ds.size * crop_h / crop_w))
        else:
            out_w, out_h = max(1, round(ds.size * crop_w / crop_h)), ds.size
        if crop_w < out_w or crop_h < out_h:
            raise ValueError(
                f"the crop ({crop_w:.0f}x{crop_h:.0f} px) is smaller than the cutout "
                f"({out_w}x{out_h} px); the model only downscales"
            )
        scale_px = crop_w / out_w  # input px per cutout px
        source = img
        if ds.jitter:
            dx, dy = float(phase[0]) * scale_px, float(phase[1]) * scale_px
            box = (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)
        frame_box = box  # in input px; the phase may take it past the frame edge
        if box[0] < 0 or box[1] < 0 or box[2] > in_w or box[3] > in_h:
            # extend the frame by edge replication so the shifted box can be sampled
            pad = math.ceil(scale_px)
            arr = np.pad(np.asarray(img), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
            source = PILImage.fromarray(arr, "RGB")
            box = (box[0] + pad, box[1] + pad, box[2] + pad, box[3] + pad)
        factor = max(1, min(_MAX_OVERSAMPLE, math.floor(min(crop_w / out_w, crop_h / out_h))))
        work = source.resize((out_w * factor, out_h * factor), PILImage.Resampling.BOX, box=box)
    else:
        out_w, out_h, factor = in_w, in_h, 1
        frame_box = (0.0, 0.0, float(in_w), float(in_h))
        work = img

    ob = p.optical_blur
    if ob.enabled and ob.sigma > 0:
        work = work.filter(ImageFilter.GaussianBlur(ob.sigma * factor))
        steps.append(
            {"step": "optical_blur", "sigma": ob.sigma, "sigma_working_px": ob.sigma * factor}
        )

    mb = p.motion_blur
    if mb.enabled and mb.length > 0:
        kernel = _line_kernel(mb.length * factor, mb.angle)
        work = PILImage.fromarray(_convolve(np.asarray(work), kernel), "RGB")
        steps.append(
            {
                "step": "motion_blur",
                "length": mb.length,
                "angle": mb.angle,
                "kernel_px": list(kernel.shape),
            }
        )

    if ds.enabled:
        resample = {
            "area": PILImage.Resampling.BOX,
            "bicubic": PILImage.Resampling.BICUBIC,
            "lanczos": PILImage.Resampling.LANCZOS,
        }[ds.filter]
        img = work if work.size == (out_w, out_h) else work.resize((out_w, out_h), resample)
        steps.append(
            {
                "step": "downscale",
                "box": list(ds.box),
                "size": ds.size,
                "filter": ds.filter,
                "jitter": ds.jitter,
                "box_px": [round(v, 3) for v in frame_box],
                "phase": [round(float(v), 6) for v in phase] if ds.jitter else [0.0, 0.0],
                "oversample": factor,
                "cutout_size": [out_w, out_h],
            }
        )
    else:
        img = work

    sh = p.sharpen
    if sh.enabled:
        img = img.filter(ImageFilter.UnsharpMask(sh.radius, sh.percent, sh.threshold))
        steps.append(
            {
                "step": "sharpen",
                "radius": sh.radius,
                "percent": sh.percent,
                "threshold": sh.threshold,
            }
        )

    fd = p.field_drop
    if fd.enabled and img.height >= 2:
        parity = {"top": 0, "bottom": 1}.get(fd.field, field_draw)
        img = _field_drop(img, parity, fd.rebuild)
        steps.append(
            {
                "step": "field_drop",
                "field": fd.field,
                "rebuild": fd.rebuild,
                "kept": "top" if parity == 0 else "bottom",
            }
        )

    cs = p.chroma_420
    if cs.enabled:
        img = _chroma_420(img, cs.upsample)
        steps.append({"step": "chroma_420", "upsample": cs.upsample})

    vc = p.video
    if vc.enabled:
        offset = (int(mb_offset[0]), int(mb_offset[1])) if vc.jitter else (0, 0)
        img, info = _video_roundtrip(img, vc, offset)
        steps.append(
            {
                "step": "video",
                "codec": vc.codec,
                "encoder": _ENCODERS[vc.codec],
                "bitrate_kbps": vc.bitrate_kbps,
                "frames": vc.frames,
                "jitter": vc.jitter,
                **info,
            }
        )

    jp = p.jpeg
    if jp.enabled:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=jp.quality, subsampling=jp.subsampling)
        buf.seek(0)
        with PILImage.open(buf) as decoded:
            img = decoded.convert("RGB")
        steps.append(
            {
                "step": "jpeg",
                "quality": jp.quality,
                "subsampling": jp.subsampling,
                "bytes": buf.getbuffer().nbytes,
            }
        )

    record: dict[str, Any] = {
        "version": DEGRADE_SCHEMA_VERSION,
        "seed": seed,
        "severity": p.name if p.name in SEVERITIES else None,
        "input_size": [in_w, in_h],
        "output_size": [img.width, img.height],
        "params": p.to_dict(),
        "steps": steps,
    }
    return img, record


def _line_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised, anti-aliased line of ``length`` px through the centre at ``angle_deg``."""
    import numpy as np

    radius = max(1, math.ceil(length / 2))
    size = 2 * radius + 1
    kernel = np.zeros((size, size), dtype=np.float64)
    theta = math.radians(angle_deg)
    cx, cy = math.cos(theta), -math.sin(theta)  # image rows grow downwards
    samples = max(2, math.ceil(length * 8))
    for t in np.linspace(-length / 2, length / 2, samples):
        x, y = radius + t * cx, radius + t * cy
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        for yy, xx, w in (
            (y0, x0, (1 - fx) * (1 - fy)),
            (y0, x0 + 1, fx * (1 - fy)),
            (y0 + 1, x0, (1 - fx) * fy),
            (y0 + 1, x0 + 1, fx * fy),
        ):
            if 0 <= yy < size and 0 <= xx < size:
                kernel[yy, xx] += w
    return typing.cast("np.ndarray", kernel / kernel.sum())


def _convolve(arr: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve an H x W x C uint8 array with a small symmetric kernel (edge-padded)."""
    import numpy as np

    r = kernel.shape[0] // 2
    h, w = arr.shape[:2]
    padded = np.pad(arr.astype(np.float32), ((r, r), (r, r), (0, 0)), mode="edge")
    out = np.zeros((h, w, arr.shape[2]), dtype=np.float32)
    for ky, kx in zip(*np.nonzero(kernel), strict=True):
        out += np.float32(kernel[ky, kx]) * padded[ky : ky + h, kx : kx + w]
    return typing.cast("np.ndarray", np.clip(np.rint(out), 0, 255).astype(np.uint8))


def _field_drop(img: Image.Image, parity: int, rebuild: FieldRebuild) -> Image.Image:
    """Keep the lines of one field (``parity`` 0 = even, 1 = odd) and rebuild the others."""
    import numpy as np
    from PIL import Image as PILImage

    arr = np.asarray(img)
    h = arr.shape[0]
    kept = arr[parity::2]  # non-empty: the caller passes at least 2 lines
    if rebuild == "double":
        # Each kept line fills its pair of frame lines (2k, 2k+1), whichever field it came from.
        out = np.repeat(kept, 2, axis=0)[:h]
        if out.shape[0] < h:
            out = np.concatenate([out, out[-1:]], axis=0)
    else:
        # Field line k sits on frame line 2k + parity; the others are linear in between.
        pos = np.clip((np.arange(h) - parity) / 2.0, 0.0, kept.shape[0] - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, kept.shape[0] - 1)
        t = (pos - lo)[:, None, None].astype(np.float32)
        mixed = (1 - t) * kept[lo].astype(np.float32) + t * kept[hi].astype(np.float32)
        out = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return PILImage.fromarray(np.ascontiguousarray(out), "RGB")


def _chroma_420(img: Image.Image, upsample: ChromaUpsample) -> Image.Image:
    """BT.601 Cb/Cr averaged over 2x2 blocks and upsampled back; luma untouched."""
    from PIL import Image as PILImage

    y, cb, cr = img.convert("YCbCr").split()
    half = ((img.width + 1) // 2, (img.height + 1) // 2)
    up = PILImage.Resampling.NEAREST if upsample == "nearest" else PILImage.Resampling.BILINEAR
    cb = cb.resize(half, PILImage.Resampling.BOX).resize(img.size, up)
    cr = cr.resize(half, PILImage.Resampling.BOX).resize(img.size, up)
    return PILImage.merge("YCbCr", (y, cb, cr)).convert("RGB")


def _video_roundtrip(
    img: Image.Image, vc: VideoCompression, offset: tuple[int, int]
) -> tuple[Image.Image, dict[str, Any]]:
    """Encode ``img`` as identical frames with PyAV and decode the last one.

    Raises RuntimeError if PyAV lacks the codec or yields no frame.
    """
    import av
    import numpy as np
    from PIL import Image as PILImage

    arr = np.asarray(img)
    h, w = arr.shape[:2]
    ox, oy = offset
    pad_w = -(-(w + ox) // _MACROBLOCK) * _MACROBLOCK
    pad_h = -(-(h + oy) // _MACROBLOCK) * _MACROBLOCK
    canvas = np.pad(arr, ((oy, pad_h - h - oy), (ox, pad_w - w - ox), (0, 0)), mode="edge")
    bitrate = int(vc.bitrate_kbps * 1000)
    try:
        enc = typing.cast("av.VideoCodecContext", av.CodecContext.create(_ENCODERS[vc.codec], "w"))
        dec = typing.cast("av.VideoCodecContext", av.CodecContext.create(_DECODERS[vc.codec], "r"))
    except (av.FFmpegError, ValueError) as exc:  # pragma: no cover - codecs ship with PyAV
        raise RuntimeError(f"PyAV cannot {vc.codec}: {exc}") from None
    enc.width, enc.height = pad_w, pad_h
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, _FPS)
    enc.framerate = Fraction(_FPS, 1)
    enc.bit_rate = bitrate
    enc.gop_size = 12
    enc.thread_count = 1  # one thread: bit-exact output for a given input
    options = {"maxrate": str(bitrate), "bufsize": str(2 * bitrate // _FPS)}
    if vc.codec == "h264":
        options["preset"] = "medium"
    enc.options = options
    source = av.VideoFrame.from_ndarray(np.ascontiguousarray(canvas), format="rgb24")
    yuv = source.reformat(format="yuv420p")
    packets = []
    for i in range(vc.frames):
        frame = yuv.reformat(format="yuv420p")  # a fresh frame object per encode call
        frame.pts = i
        packets.extend(enc.encode(frame))
    packets.extend(enc.encode(None))
    decoded = []
    for packet in packets:
        decoded.extend(dec.decode(packet))
    decoded.extend(dec.decode(None))
    if not decoded:  # pragma: no cover - an encoder that emits nothing is a PyAV fault
        raise RuntimeError(f"{_ENCODERS[vc.codec]} produced no decodable frame")
    out = decoded[-1].to_ndarray(format="rgb24")[oy : oy + h, ox : ox + w]
    info = {
        "offset": [ox, oy],
        "encoded_size": [pad_w, pad_h],
        "bytes": sum(packet.size for packet in packets),
    }
    return PILImage.fromarray(np.ascontiguousarray(out), "RGB"), info


# -- files ----------------------------------------------------------------------------------


def save_degraded(image: Image.Image, record: Mapping[str, Any], path: str | Path) -> None:
    """Write ``image`` as PNG with ``record`` as JSON in the ``fbupscale-degrade`` text chunk.

    Raises OSError if the file cannot be written.
    """
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PNG_KEY, json.dumps(record, sort_keys=True, ensure_ascii=True))
    image.save(Path(path), "PNG", pnginfo=info)


def read_degrade_record(path: str | Path) -> dict[str, Any] | None:
    """The degradation record of a PNG written by :func:`save_degraded`, or None if it has none.

    Raises OSError if the file cannot be read and ValueError if the chunk is not a JSON object.
    """
    from PIL import Image as PILImage

    with PILImage.open(Path(path)) as im:
        text = getattr(im, "text", {}).get(PNG_KEY)
    if text is None:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the {PNG_KEY} chunk is not a JSON object")
    return data
