"""Synthetic shirt-number renders: the test and bench set for the number check.

A render is the back of a shirt at candidate size (1024 px by default): a kit colour with
cloth-like shading, a number in one of the fonts that ship with the system (DejaVu, installed
by the setup) or with Pillow, then the harm a reconstruction or a broadcast does to it: rotation,
perspective, a cloth warp, blur, JPEG and a partial occlusion (an arm). Everything is drawn from
a seeded generator, so a render is reproducible from its :class:`JerseySpec`. Pillow and numpy.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["BANDS", "Band", "JerseySpec", "fonts", "render", "render_pair", "spec_for"]

Band = Literal["clear", "moderate", "hard"]
BANDS: Final[tuple[Band, ...]] = ("clear", "moderate", "hard")

_FONT_DIRS: Final = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/TTF")
_FONT_FILES: Final = (
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSans.ttf",
)
#: Kit and number colours: (shirt, number); the last ones are low contrast on purpose.
_HIGH_CONTRAST: Final = (
    ((200, 30, 30), (255, 255, 255)),
    ((20, 40, 140), (255, 255, 255)),
    ((245, 245, 245), (20, 20, 20)),
    ((250, 210, 0), (10, 40, 120)),
    ((10, 120, 50), (255, 255, 255)),
    ((20, 20, 20), (250, 200, 0)),
)
_LOW_CONTRAST: Final = (
    ((200, 30, 30), (235, 120, 110)),
    ((20, 40, 140), (90, 120, 200)),
    ((245, 245, 245), (185, 185, 175)),
)


@cache
def fonts() -> tuple[str, ...]:
    """The font files found (paths), or ``("",)`` for Pillow's own font when none are."""
    found = []
    for name in _FONT_FILES:
        for folder in _FONT_DIRS:
            if Path(folder, name).is_file():
                found.append(str(Path(folder, name)))
                break
    return tuple(found) or ("",)


def _font(path: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if path:
        return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


@dataclass(frozen=True)
class JerseySpec:
    """Everything that decides one render's pixels."""

    number: int
    band: Band
    font: str
    shirt: tuple[int, int, int]
    ink: tuple[int, int, int]
    rotation: float
    perspective: float
    warp: float
    blur: float
    jpeg: int
    occlusion: float
    seed: int
    size: int = 1024


def spec_for(number: int, band: Band, seed: int, *, size: int = 1024) -> JerseySpec:
    """A random spec of ``band`` difficulty for ``number``, drawn from ``seed``."""
    rng = random.Random(f"{number}-{band}-{seed}")
    hard = band == "hard"
    moderate = band == "moderate"
    palette = _LOW_CONTRAST if hard and rng.random() < 0.5 else _HIGH_CONTRAST
    shirt, ink = rng.choice(palette)
    limit = 20.0 if hard else 10.0 if moderate else 4.0
    return JerseySpec(
        number=number,
        band=band,
        font=rng.choice(fonts()),
        shirt=shirt,
        ink=ink,
        rotation=rng.uniform(-limit, limit),
        perspective=rng.uniform(0.0, 0.25 if hard else 0.12 if moderate else 0.0),
        warp=rng.uniform(0.0, 14.0 if hard else 6.0 if moderate else 0.0),
        blur=rng.uniform(2.5, 5.0) if hard else rng.uniform(1.0, 2.5) if moderate else 0.5,
        jpeg=rng.randint(25, 50) if hard else rng.randint(50, 80) if moderate else 92,
        occlusion=rng.uniform(0.1, 0.25) if hard else rng.uniform(0.0, 0.1) if moderate else 0.0,
        seed=seed,
        size=size,
    )


def _shirt(spec: JerseySpec, rng: np.random.Generator) -> Image.Image:
    """The kit colour with soft folds (low-frequency shading) and a little fabric noise."""
    n = spec.size
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / n
    phase = rng.uniform(0, 6.28, size=2)
    shade = 0.88 + 0.08 * np.sin(7 * x + 3 * y + phase[0]) + 0.04 * np.sin(13 * y + phase[1])
    base = np.asarray(spec.shirt, dtype=np.float32)[None, None, :] * shade[..., None]
    base += rng.normal(0, 3, size=base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _draw_number(
    image: Image.Image, text: str, spec: JerseySpec, centre: tuple[float, float], height: float
) -> None:
    draw = ImageDraw.Draw(image)
    font = _font(spec.font, int(height))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = centre[0] - (left + right) / 2
    y = centre[1] - (top + bottom) / 2
    draw.text((x, y), text, font=font, fill=spec.ink)


def _perspective(image: Image.Image, amount: float, rng: random.Random) -> Image.Image:
    if amount <= 0:
        return image
    w, h = image.size
    d = amount * w / 2
    # Quad corners (ul, ll, lr, ur) of the source that map onto the output's corners.
    quad = (
        rng.uniform(0, d),
        rng.uniform(0, d),
        rng.uniform(0, d),
        h - rng.uniform(0, d),
        w - rng.uniform(0, d),
        h - rng.uniform(0, d),
        w - rng.uniform(0, d),
        rng.uniform(0, d),
    )
    return image.transform(image.size, Image.Transform.QUAD, quad, Image.Resampling.BICUBIC)


def _cloth_warp(image: Image.Image, amount: float, rng: np.random.Generator) -> Image.Image:
    """Displace pixels along smooth sine waves, as a shirt's folds bend a printed number."""
    if amount <= 0:
        return image
    a = np.asarray(image)
    n_y, n_x = a.shape[:2]
    y, x = np.mgrid[0:n_y, 0:n_x].astype(np.float32)
    ph = rng.uniform(0, 6.28, size=2)
    dx = amount * np.sin(2 * np.pi * y / (n_y / 2.5) + ph[0])
    dy = amount * np.sin(2 * np.pi * x / (n_x / 3.0) + ph[1])
    sx = np.clip(np.rint(x + dx), 0, n_x - 1).astype(np.intp)
    sy = np.clip(np.rint(y + dy), 0, n_y - 1).astype(np.intp)
    return Image.fromarray(a[sy, sx])


def _occlude(image: Image.Image, box: tuple[int, int, int, int], frac: float, rng: random.Random):
    """Cover ``frac`` of the number's width with an arm-coloured band from one side."""
    if frac <= 0:
        return
    left, top, right, bottom = box
    width = int((right - left) * frac)
    draw = ImageDraw.Draw(image)
    skin = rng.choice(((224, 172, 140), (141, 85, 36), (60, 40, 30)))
    if rng.random() < 0.5:
        draw.rectangle((left - 40, top - 40, left + width, bottom + 40), fill=skin)
    else:
        draw.rectangle((right - width, top - 40, right + 40, bottom + 40), fill=skin)


def _finish(image: Image.Image, spec: JerseySpec) -> Image.Image:
    rng = random.Random(spec.seed * 7919 + spec.number)
    image = image.rotate(spec.rotation, Image.Resampling.BICUBIC, fillcolor=spec.shirt)
    image = _perspective(image, spec.perspective, rng)
    image = _cloth_warp(image, spec.warp, np.random.default_rng(spec.seed + 1))
    if spec.blur > 0:
        image = image.filter(ImageFilter.GaussianBlur(spec.blur))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=spec.jpeg)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB")


def render(spec: JerseySpec) -> Image.Image:
    """The render of ``spec``: one number on the back of a shirt."""
    image = _shirt(spec, np.random.default_rng(spec.seed))
    n = spec.size
    height = n * 0.36
    _draw_number(image, str(spec.number), spec, (n / 2, n * 0.5), height)
    rng = random.Random(spec.seed)
    digits = len(str(spec.number))
    half_w = height * 0.32 * digits
    box = (
        int(n / 2 - half_w),
        int(n * 0.5 - height / 2),
        int(n / 2 + half_w),
        int(n * 0.5 + height / 2),
    )
    _occlude(image, box, spec.occlusion, rng)
    return _finish(image, spec)


def render_pair(left: JerseySpec, right_number: int) -> Image.Image:
    """Two players side by side: ``left.number`` on the left, ``right_number`` on the right,
    both in ``left``'s kit and harm (a two-player candidate)."""
    image = _shirt(left, np.random.default_rng(left.seed))
    n = left.size
    height = n * 0.24
    _draw_number(image, str(left.number), left, (n * 0.27, n * 0.5), height)
    _draw_number(image, str(right_number), left, (n * 0.73, n * 0.5), height)
    return _finish(image, left)
