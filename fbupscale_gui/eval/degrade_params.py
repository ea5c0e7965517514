"""The broadcast degradation model's parameters: one frozen, validated, JSON-exact dataclass
per step of the chain (:mod:`fbupscale_gui.eval.degrade` applies them), and the three named
severities seen in practice (:data:`SEVERITIES`, :func:`severity`).

Every value is checked when made: an invalid one raises :class:`RequestError` naming the field
(``degrade.video.bitrate_kbps: must be 1..100000, got 0``).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.jsonable import (
    JsonDocument,
    check_literals,
    check_version,
    from_jsonable,
    parse_json,
)

__all__ = [
    "DEGRADE_SCHEMA_VERSION",
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
    "severity",
]

DEGRADE_SCHEMA_VERSION: Final = 1

Severity = Literal["light", "medium", "heavy"]
SEVERITIES: Final[tuple[Severity, ...]] = ("light", "medium", "heavy")
ResizeFilter = Literal["area", "bicubic", "lanczos"]
FieldChoice = Literal["top", "bottom", "random"]
FieldRebuild = Literal["double", "resize"]
ChromaUpsample = Literal["nearest", "bilinear"]
VideoCodec = Literal["h264", "mpeg2"]
JpegSubsampling = Literal["4:4:4", "4:2:2", "4:2:0"]


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
class DegradeParams(JsonDocument):
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
