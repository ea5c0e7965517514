"""Draw the synthetic sample cutouts in ``resources/samples`` (deterministic, nothing downloaded).

Each sample is drawn at high resolution with Pillow (pitch with mowing stripes and white lines,
simple player figures in kit colours, goal net / advertising boards / corner flag), then
degraded like a cutout from a 1080i broadcast: one field dropped and the other line-doubled,
downscaled to 60-100 px, mildly blurred and JPEG-compressed at quality 55, and saved as PNG.
Next to each ``<name>.png`` goes ``<name>.scene.json``, the :class:`Scene` describing it.

Usage: ``.venv/bin/python scripts/make_samples.py [OUT_DIR]`` (default ``resources/samples``).
"""

from __future__ import annotations

import io
import math
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fbupscale_gui.core.scene import Kit, Person, Scene, Team  # noqa: E402

RGB = tuple[int, int, int]
#: Drawing scale: samples are drawn this many times larger than their final size.
SCALE = 10
JPEG_QUALITY = 55

COLOURS: dict[str, RGB] = {
    "red": (200, 30, 40),
    "black": (25, 25, 30),
    "white": (238, 238, 235),
    "green": (40, 160, 70),
    "lime": (150, 235, 60),
    "blue": (30, 70, 170),
    "yellow": (245, 205, 30),
    "navy": (25, 35, 80),
    "grey": (120, 120, 125),
}
SKIN: dict[str, RGB] = {
    "light skin tone": (232, 190, 160),
    "medium skin tone": (190, 140, 100),
    "dark skin tone": (110, 72, 50),
}
HAIR_COLOUR: RGB = (40, 30, 25)


# -- figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureKit:
    jersey: RGB
    shorts: RGB
    socks: RGB
    stripe: RGB | None = None  # vertical stripes of this colour
    sleeves: RGB | None = None
    number: int | None = None


@dataclass(frozen=True)
class Pose:
    """Limb angles in degrees from straight down (positive: outwards), and a body tilt."""

    arm_l: tuple[float, float] = (15, 5)
    arm_r: tuple[float, float] = (-15, -5)
    leg_l: tuple[float, float] = (6, 0)
    leg_r: tuple[float, float] = (-6, 0)
    tilt: float = 0.0  # rotation of the whole figure, degrees counter-clockwise


POSES: dict[str, Pose] = {
    "stand": Pose(),
    "run": Pose(arm_l=(35, 55), arm_r=(25, 65), leg_l=(20, -15), leg_r=(3, 30), tilt=-4),
    "kick": Pose(arm_l=(60, 20), arm_r=(75, 10), leg_l=(4, 0), leg_r=(55, 25), tilt=-6),
    "dive": Pose(arm_l=(165, 0), arm_r=(160, 5), leg_l=(8, 10), leg_r=(14, 20), tilt=75),
    "jog": Pose(arm_l=(25, 45), arm_r=(20, 40), leg_l=(12, -6), leg_r=(4, 18)),
}


def _limb(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    angles: tuple[float, float],
    lengths: tuple[float, float],
    widths: tuple[float, float],
    colours: tuple[RGB, RGB],
) -> tuple[float, float]:
    """Two-segment limb from ``start``; returns the end point."""
    x, y = start
    a1 = math.radians(angles[0])
    mid = (x + lengths[0] * math.sin(a1), y + lengths[0] * math.cos(a1))
    a2 = math.radians(angles[0] + angles[1])
    end = (mid[0] + lengths[1] * math.sin(a2), mid[1] + lengths[1] * math.cos(a2))
    for (p, q), w, c in (
        ((start, mid), widths[0], colours[0]),
        ((mid, end), widths[1], colours[1]),
    ):
        draw.line([p, q], fill=c, width=max(1, int(w)))
        r = w / 2
        draw.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], fill=c)
        draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=c)
    return end


# Stroke digits on a 0..1 x 0..2 grid: robust to font availability, so output is deterministic.
_DIGITS: dict[str, list[tuple[tuple[float, float], ...]]] = {
    "0": [((0, 0), (1, 0), (1, 2), (0, 2), (0, 0))],
    "1": [((0.3, 0.3), (0.6, 0), (0.6, 2))],
    "2": [((0, 0), (1, 0), (1, 1), (0, 1), (0, 2), (1, 2))],
    "3": [((0, 0), (1, 0), (1, 2), (0, 2)), ((0.2, 1), (1, 1))],
    "4": [((0, 0), (0, 1), (1, 1)), ((1, 0), (1, 2))],
    "5": [((1, 0), (0, 0), (0, 1), (1, 1), (1, 2), (0, 2))],
    "6": [((1, 0), (0, 0), (0, 2), (1, 2), (1, 1), (0, 1))],
    "7": [((0, 0), (1, 0), (0.5, 2))],
    "8": [((0, 0), (1, 0), (1, 2), (0, 2), (0, 0)), ((0, 1), (1, 1))],
    "9": [((1, 1), (0, 1), (0, 0), (1, 0), (1, 2), (0, 2))],
}


def _draw_number(
    draw: ImageDraw.ImageDraw, number: int, cx: float, cy: float, height: float, colour: RGB
) -> None:
    text = str(number)
    w = height * 0.42
    gap = height * 0.22
    total = len(text) * w + (len(text) - 1) * gap
    stroke = max(1, int(height * 0.16))
    for i, ch in enumerate(text):
        x0 = cx - total / 2 + i * (w + gap)
        y0 = cy - height / 2
        for path in _DIGITS[ch]:
            pts = [(x0 + px * w, y0 + py * height / 2) for px, py in path]
            draw.line(pts, fill=colour, width=stroke, joint="curve")


def draw_figure(
    height: int, kit: FigureKit, pose: Pose, skin: RGB, hair: str = "short"
) -> Image.Image:
    """An RGBA figure ``height`` px tall (feet at the bottom centre), seen from behind."""
    h = float(height)
    w = int(h * 0.9)
    img = Image.new("RGBA", (w, int(h * 1.05)), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    cx = w / 2
    shoulder_y, waist_y, hip_y = 0.17 * h, 0.44 * h, 0.5 * h
    sleeves = kit.sleeves or kit.jersey
    # legs behind the shorts: thigh in skin above the knee, sock below, boot at the end
    for side, angles in ((-1, pose.leg_l), (1, pose.leg_r)):
        end = _limb(
            d,
            (cx + side * 0.05 * h, hip_y),
            (side * angles[0], side * angles[1]),
            (0.22 * h, 0.24 * h),
            (0.075 * h, 0.06 * h),
            (skin, kit.socks),
        )
        d.ellipse(
            [end[0] - 0.045 * h, end[1] - 0.025 * h, end[0] + 0.045 * h, end[1] + 0.02 * h],
            fill=(20, 20, 20),
        )
    # shorts
    d.polygon(
        [
            (cx - 0.1 * h, waist_y),
            (cx + 0.1 * h, waist_y),
            (cx + 0.115 * h, 0.585 * h),
            (cx - 0.115 * h, 0.585 * h),
        ],
        fill=kit.shorts,
    )
    # torso with optional stripes, clipped to the jersey shape
    torso = [
        (cx - 0.13 * h, shoulder_y),
        (cx + 0.13 * h, shoulder_y),
        (cx + 0.105 * h, waist_y + 0.02 * h),
        (cx - 0.105 * h, waist_y + 0.02 * h),
    ]
    d.polygon(torso, fill=kit.jersey)
    if kit.stripe is not None:
        mask = Image.new("L", img.size, 0)
        ImageDraw.Draw(mask).polygon(torso, fill=255)
        stripes = Image.new("RGBA", img.size, (0, 0, 0, 0))
        sd = ImageDraw.Draw(stripes)
        sw = 0.045 * h
        x = cx - 0.15 * h
        while x < cx + 0.15 * h:
            sd.rectangle([x, 0, x + sw, h], fill=(*kit.stripe, 255))
            x += 2 * sw
        img.paste(stripes, (0, 0), Image.composite(stripes, Image.new("RGBA", img.size), mask))
        d = ImageDraw.Draw(img)
    if kit.number is not None:
        dark = sum(kit.jersey) < 330 or kit.stripe is not None
        _draw_number(
            d, kit.number, cx, 0.3 * h, 0.13 * h, (245, 245, 245) if dark else (15, 15, 15)
        )
    # arms: sleeve then forearm in skin
    for side, angles in ((-1, pose.arm_l), (1, pose.arm_r)):
        _limb(
            d,
            (cx + side * 0.125 * h, shoulder_y + 0.02 * h),
            (side * angles[0], side * angles[1]),
            (0.16 * h, 0.15 * h),
            (0.06 * h, 0.045 * h),
            (sleeves, skin),
        )
    # neck and head, hair from behind
    d.rectangle([cx - 0.03 * h, 0.12 * h, cx + 0.03 * h, shoulder_y + 0.01 * h], fill=skin)
    r = 0.065 * h
    hy = 0.08 * h
    d.ellipse([cx - r, hy - r, cx + r, hy + r], fill=skin)
    if hair != "bald":
        top = hy - r * 1.05
        bottom = hy + (r * 0.9 if hair in ("long", "curly") else r * 0.45)
        d.ellipse([cx - r * 1.05, top, cx + r * 1.05, bottom + r * 0.3], fill=HAIR_COLOUR)
        if hair == "long":
            d.rectangle([cx - r * 0.9, hy, cx + r * 0.9, hy + r * 1.6], fill=HAIR_COLOUR)
        if hair == "ponytail":
            d.ellipse([cx - r * 0.3, hy + r * 0.3, cx + r * 0.3, hy + r * 1.7], fill=HAIR_COLOUR)
    if pose.tilt:
        img = img.rotate(pose.tilt, resample=Image.Resampling.BICUBIC, expand=True)
    return img


def paste_figure(canvas: Image.Image, fig: Image.Image, foot_x: float, foot_y: float) -> None:
    """Paste ``fig`` so its bottom centre sits at (foot_x, foot_y), with a soft shadow."""
    shadow = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    sw = fig.width * 0.45
    ImageDraw.Draw(shadow).ellipse(
        [foot_x - sw, foot_y - sw * 0.12, foot_x + sw * 0.8, foot_y + sw * 0.12],
        fill=(0, 30, 0, 90),
    )
    shadow = shadow.filter(ImageFilter.GaussianBlur(fig.width * 0.04))
    canvas.alpha_composite(shadow)
    bbox = fig.getbbox() or (0, 0, fig.width, fig.height)
    canvas.alpha_composite(fig, (int(foot_x - fig.width / 2), int(foot_y - bbox[3])))


# -- scenery --------------------------------------------------------------------------------


def pitch(
    size: tuple[int, int], rng: random.Random, angle: float = 18, band: float = 0.28
) -> Image.Image:
    """Grass with mowing stripes (two greens, slanted bands) and a little texture."""
    w, h = size
    img = Image.new("RGBA", size, (52, 128, 58, 255))
    d = ImageDraw.Draw(img)
    bw = band * max(w, h)
    t = math.tan(math.radians(angle))
    x = -h * abs(t) - bw
    i = 0
    while x < w + h * abs(t) + bw:
        if i % 2:
            d.polygon(
                [(x, 0), (x + bw, 0), (x + bw + h * t, h), (x + h * t, h)], fill=(66, 148, 70, 255)
            )
        x += bw
        i += 1
    for _ in range(w * h // 60):
        px, py = rng.randrange(w), rng.randrange(h)
        g = rng.randint(-18, 18)
        d.point((px, py), fill=(52 + g // 2, 138 + g, 60 + g // 2, 255))
    return img


def line(d: ImageDraw.ImageDraw, pts: Sequence[tuple[float, float]], width: float) -> None:
    d.line(list(pts), fill=(235, 238, 230, 255), width=max(1, int(width)), joint="curve")


def boards(d: ImageDraw.ImageDraw, y0: float, y1: float, width: int, rng: random.Random) -> None:
    """A row of advertising boards with abstract (brand-free) logo shapes."""
    palette = [
        (20, 60, 160),
        (200, 30, 40),
        (240, 240, 240),
        (20, 20, 20),
        (250, 190, 20),
        (0, 140, 90),
    ]
    x = -rng.uniform(0, 80)
    seg = (y1 - y0) * 5.5
    while x < width:
        bg = palette[rng.randrange(len(palette))]
        fg = palette[rng.randrange(len(palette))]
        if fg == bg:
            fg = (255, 255, 255) if sum(bg) < 400 else (20, 20, 20)
        d.rectangle([x, y0, x + seg, y1], fill=(*bg, 255))
        bh = (y1 - y0) * 0.36
        cy = (y0 + y1) / 2
        d.rounded_rectangle(
            [x + seg * 0.18, cy - bh / 2, x + seg * 0.62, cy + bh / 2],
            radius=bh / 3,
            fill=(*fg, 255),
        )
        d.ellipse(
            [x + seg * 0.68, cy - bh * 0.6, x + seg * 0.68 + bh * 1.2, cy + bh * 0.6],
            fill=(*fg, 255),
        )
        d.line([x + seg, y0, x + seg, y1], fill=(10, 10, 10, 255), width=2)
        x += seg


def crowd(
    d: ImageDraw.ImageDraw,
    box: tuple[float, float, float, float],
    density: float,
    rng: random.Random,
) -> None:
    """Stands: dark rows with spectators as small coloured blobs (``density`` 0..1)."""
    x0, y0, x1, y1 = box
    d.rectangle(box, fill=(45, 45, 55, 255))
    for yy in range(int(y0), int(y1), 6):
        d.line([x0, yy, x1, yy], fill=(60, 60, 72, 255), width=2)
    n = int((x1 - x0) * (y1 - y0) / 90 * density)
    for _ in range(n):
        px, py = rng.uniform(x0, x1), rng.uniform(y0, y1)
        c = rng.choice(
            [
                (200, 30, 40),
                (30, 60, 160),
                (230, 230, 230),
                (30, 30, 30),
                (210, 170, 130),
                (120, 80, 60),
            ]
        )
        r = rng.uniform(3, 6)
        d.ellipse([px - r, py - r, px + r, py + r], fill=(*c, 255))


def goal(
    d: ImageDraw.ImageDraw, x0: float, y0: float, x1: float, y1: float, depth: float, post: float
) -> None:
    """A goal seen from the front-side: net grid behind white posts and crossbar."""
    d.polygon(
        [(x0, y0), (x1, y0), (x1 + depth, y0 + depth * 0.6), (x1 + depth, y1), (x0 + depth, y1)],
        fill=(38, 110, 50, 255),
    )
    step = post * 1.6
    yy = y0
    while yy < y1:
        d.line(
            [x0, yy, x1 + depth, yy + depth * 0.3],
            fill=(215, 220, 215, 200),
            width=max(1, int(post * 0.18)),
        )
        yy += step
    xx = x0
    while xx < x1 + depth:
        d.line(
            [xx, y0, xx + depth * 0.2, y1],
            fill=(215, 220, 215, 200),
            width=max(1, int(post * 0.18)),
        )
        xx += step
    white = (245, 245, 245, 255)
    d.rectangle([x0 - post / 2, y0 - post / 2, x1 + post / 2, y0 + post / 2], fill=white)
    d.rectangle([x0 - post / 2, y0, x0 + post / 2, y1], fill=white)
    d.rectangle([x1 - post / 2, y0, x1 + post / 2, y1], fill=white)


def soften(img: Image.Image, box: tuple[int, int, int, int], radius: float) -> None:
    """Blur a region in place: the out-of-focus background of a long-lens broadcast shot."""
    region = img.crop(box).filter(ImageFilter.GaussianBlur(radius))
    img.paste(region, box[:2])


def ball(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    d.ellipse(
        [cx - r, cy - r, cx + r, cy + r],
        fill=(248, 248, 248, 255),
        outline=(60, 60, 60, 255),
        width=max(1, int(r * 0.12)),
    )
    for k in range(3):
        a = math.radians(40 + 120 * k)
        px, py = cx + r * 0.45 * math.cos(a), cy + r * 0.45 * math.sin(a)
        d.ellipse(
            [px - r * 0.25, py - r * 0.25, px + r * 0.25, py + r * 0.25], fill=(40, 40, 40, 255)
        )


def corner_flag(d: ImageDraw.ImageDraw, x: float, y: float, height: float, colour: RGB) -> None:
    d.line([x, y, x, y - height], fill=(240, 240, 240, 255), width=max(2, int(height * 0.04)))
    d.polygon(
        [(x, y - height), (x + height * 0.45, y - height * 0.88), (x, y - height * 0.74)],
        fill=(*colour, 255),
    )


# -- degradation ----------------------------------------------------------------------------


def degrade(hi: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Turn a high-resolution drawing into a 1080i-style broadcast cutout of ``size``."""
    w, h = size
    # the cutout as it sat in the broadcast frame, a little larger than the final crop
    frame = hi.convert("RGB").resize((w * 3 // 2, h * 3 // 2), Image.Resampling.LANCZOS)
    # deinterlace badly: keep one field (every other line) and line-double it
    rows = np.asarray(frame)
    doubled = Image.fromarray(np.repeat(rows[0::2], 2, axis=0)[: frame.height])
    small = doubled.resize(size, Image.Resampling.BILINEAR)
    small = small.filter(ImageFilter.GaussianBlur(0.6))
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=2)
    buf.seek(0)
    with Image.open(buf) as jpeg:
        return jpeg.convert("RGB")


# -- the samples ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    size: tuple[int, int]
    draw: Callable[[Image.Image, random.Random], None]
    scene: Scene
    notes: list[str] = field(default_factory=list)


def _canvas(size: tuple[int, int], rng: random.Random, **kw: float) -> Image.Image:
    return pitch((size[0] * SCALE, size[1] * SCALE), rng, **kw)


def draw_gk_save(img: Image.Image, rng: random.Random) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img)
    goal(d, -0.1 * w, 0.04 * h, 0.95 * w, 0.44 * h, 0.12 * w, 0.028 * w)
    soften(img, (0, 0, w, int(0.5 * h)), 0.006 * w)
    line(d, [(-10, 0.62 * h), (w + 10, 0.58 * h)], 0.02 * w)  # goal line
    line(d, [(0.82 * w, 0.6 * h), (w + 10, 0.95 * h)], 0.02 * w)
    kit = FigureKit(
        jersey=COLOURS["lime"], shorts=COLOURS["lime"], socks=COLOURS["lime"], number=99
    )
    fig = draw_figure(int(0.8 * h), kit, POSES["dive"], SKIN["light skin tone"], hair="short")
    paste_figure(img, fig, 0.58 * w, 0.9 * h)
    ball(d, 0.22 * w, 0.82 * h, 0.045 * w)


def draw_striker(img: Image.Image, rng: random.Random) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img)
    crowd(d, (0, 0, w, 0.14 * h), 0.9, rng)
    boards(d, 0.14 * h, 0.22 * h, w, rng)
    soften(img, (0, 0, w, int(0.23 * h)), 0.012 * w)
    line(d, [(-10, 0.5 * h), (w + 10, 0.44 * h)], 0.025 * w)
    kit = FigureKit(
        jersey=COLOURS["red"],
        stripe=COLOURS["black"],
        shorts=COLOURS["white"],
        socks=COLOURS["black"],
        number=9,
    )
    fig = draw_figure(int(0.7 * h), kit, POSES["kick"], SKIN["medium skin tone"], hair="short")
    paste_figure(img, fig, 0.45 * w, 0.92 * h)
    ball(d, 0.78 * w, 0.9 * h, 0.06 * w)


def draw_duel(img: Image.Image, rng: random.Random) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img)
    crowd(d, (0, 0, w, 0.16 * h), 0.5, rng)
    boards(d, 0.16 * h, 0.25 * h, w, rng)
    soften(img, (0, 0, w, int(0.26 * h)), 0.01 * w)
    line(d, [(0.1 * w, h + 10), (0.35 * w, 0.3 * h)], 0.018 * w)
    blue = FigureKit(
        jersey=COLOURS["blue"], shorts=COLOURS["white"], socks=COLOURS["blue"], number=10
    )
    white = FigureKit(jersey=COLOURS["white"], shorts=COLOURS["black"], socks=COLOURS["white"])
    paste_figure(
        img,
        draw_figure(int(0.64 * h), white, POSES["run"], SKIN["dark skin tone"], hair="curly"),
        0.62 * w,
        0.9 * h,
    )
    paste_figure(
        img,
        draw_figure(int(0.66 * h), blue, POSES["jog"], SKIN["light skin tone"], hair="short"),
        0.38 * w,
        0.93 * h,
    )
    ball(d, 0.5 * w, 0.9 * h, 0.035 * w)


def draw_corner(img: Image.Image, rng: random.Random) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img)
    crowd(d, (0, 0, w, 0.12 * h), 1.0, rng)
    boards(d, 0.12 * h, 0.22 * h, w, rng)
    soften(img, (0, 0, w, int(0.23 * h)), 0.012 * w)
    line(d, [(0.05 * w, 0.5 * h), (w + 10, 0.47 * h)], 0.022 * w)  # touch line
    line(d, [(0.08 * w, 0.5 * h), (0.0 * w, h + 10)], 0.022 * w)  # goal line
    d.arc(
        [0.0 * w, 0.42 * h, 0.16 * w, 0.58 * h],
        0,
        90,
        fill=(235, 238, 230, 255),
        width=int(0.02 * w),
    )
    corner_flag(d, 0.08 * w, 0.5 * h, 0.28 * h, (250, 200, 20))
    kit = FigureKit(
        jersey=COLOURS["yellow"],
        shorts=COLOURS["black"],
        socks=COLOURS["yellow"],
        sleeves=COLOURS["yellow"],
    )
    paste_figure(
        img,
        draw_figure(int(0.62 * h), kit, POSES["run"], SKIN["light skin tone"], hair="ponytail"),
        0.55 * w,
        0.92 * h,
    )
    ball(d, 0.17 * w, 0.56 * h, 0.04 * w)


def draw_box(img: Image.Image, rng: random.Random) -> None:
    w, h = img.size
    d = ImageDraw.Draw(img)
    boards(d, 0.0, 0.1 * h, w, rng)
    line(d, [(-10, 0.34 * h), (w + 10, 0.3 * h)], 0.016 * w)  # penalty box edge
    line(d, [(0.72 * w, 0.32 * h), (0.9 * w, h + 10)], 0.016 * w)
    d.arc(
        [0.2 * w, 0.05 * h, 0.6 * w, 0.55 * h],
        20,
        160,
        fill=(235, 238, 230, 255),
        width=int(0.016 * w),
    )
    red = FigureKit(jersey=COLOURS["red"], shorts=COLOURS["white"], socks=COLOURS["red"], number=7)
    white = FigureKit(jersey=COLOURS["white"], shorts=COLOURS["blue"], socks=COLOURS["white"])
    ref = FigureKit(jersey=COLOURS["yellow"], shorts=COLOURS["black"], socks=COLOURS["black"])
    paste_figure(
        img,
        draw_figure(int(0.52 * h), ref, POSES["stand"], SKIN["medium skin tone"], hair="bald"),
        0.86 * w,
        0.68 * h,
    )
    paste_figure(
        img,
        draw_figure(int(0.62 * h), white, POSES["jog"], SKIN["light skin tone"], hair="long"),
        0.22 * w,
        0.84 * h,
    )
    paste_figure(
        img,
        draw_figure(int(0.66 * h), red, POSES["run"], SKIN["dark skin tone"], hair="short"),
        0.5 * w,
        0.94 * h,
    )
    ball(d, 0.36 * w, 0.9 * h, 0.03 * w)


def samples() -> list[Sample]:
    generic_blue = Team("", "away", Kit("blue", "white"))
    generic_white = Team("", "away", Kit("white", "black"))
    return [
        Sample(
            "gk_save",
            (64, 64),
            draw_gk_save,
            Scene(
                people=(
                    Person(
                        "goalkeeper",
                        number=99,
                        number_visible=True,
                        hair="short hair",
                        action="diving low to make a save",
                        kit=Kit("green", "green"),
                    ),
                ),
                action="The ball is on the ground ahead of the goalkeeper",
                background=("goal net", "goalposts", "field markings"),
                blurred_background=True,
            ),
        ),
        Sample(
            "striker",
            (72, 96),
            draw_striker,
            Scene(
                teams=(
                    Team("A.C. Milan", "home", Kit("red and black", "white", pattern="striped")),
                ),
                people=(
                    Person(
                        "player",
                        team=0,
                        number=9,
                        number_visible=True,
                        hair="short hair",
                        skin="medium skin tone",
                        action="kicking the ball",
                    ),
                ),
                stadium="full",
                background=("advertising boards", "field markings", "spectators out of focus"),
                blurred_background=True,
            ),
        ),
        Sample(
            "duel",
            (100, 80),
            draw_duel,
            Scene(
                teams=(generic_blue, generic_white),
                people=(
                    Person(
                        "player",
                        team=0,
                        number=10,
                        number_visible=True,
                        action="running with the ball",
                    ),
                    Person(
                        "player",
                        team=1,
                        hair="curly hair",
                        skin="dark skin tone",
                        action="closing in to win the ball back",
                    ),
                ),
                action="Two players are contesting possession of the ball",
                stadium="half full",
                background=("advertising boards", "field markings", "spectators out of focus"),
                blurred_background=True,
            ),
        ),
        Sample(
            "corner",
            (60, 60),
            draw_corner,
            Scene(
                teams=(Team("Borussia Dortmund", "home", Kit("yellow", "black")),),
                people=(
                    Person(
                        "player",
                        team=0,
                        hair="ponytail",
                        action="running towards the ball to take a corner kick",
                    ),
                ),
                spatial=("The ball is placed next to the corner flag",),
                stadium="full",
                background=(
                    "corner flag",
                    "field markings",
                    "advertising boards",
                    "spectators out of focus",
                ),
                blurred_background=True,
            ),
        ),
        Sample(
            "box",
            (88, 66),
            draw_box,
            Scene(
                teams=(
                    Team("", "third", Kit("red", "white")),
                    Team("", "away", Kit("white", "blue")),
                ),
                people=(
                    Person(
                        "player",
                        team=0,
                        number=7,
                        number_visible=True,
                        hair="short hair",
                        skin="dark skin tone",
                        action="running into the penalty box",
                    ),
                    Person("player", team=1, hair="long hair", action="tracking back to defend"),
                    Person(
                        "referee",
                        hair="bald",
                        action="following the play",
                        kit=Kit("yellow", "black"),
                    ),
                ),
                spatial=("Player number 7 is positioned near the edge of the penalty box",),
                background=("penalty box", "field markings", "advertising boards"),
                blurred_background=False,
            ),
        ),
    ]


def make(sample: Sample, out_dir: Path, seed: int) -> Path:
    rng = random.Random(seed)
    hi = _canvas(sample.size, rng)
    sample.draw(hi, rng)
    small = degrade(hi, sample.size)
    path = out_dir / f"{sample.name}.png"
    small.save(path, format="PNG", optimize=True)
    (out_dir / f"{sample.name}.scene.json").write_text(
        sample.scene.to_json(indent=2) + "\n", encoding="utf-8"
    )
    return path


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out_dir = Path(args[0]) if args else ROOT / "resources" / "samples"
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, sample in enumerate(samples()):
        path = make(sample, out_dir, seed=1000 + i)
        print(f"{path}  {sample.size[0]}x{sample.size[1]}  {sample.scene.to_prompt()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
