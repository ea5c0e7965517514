"""Hostile and odd cutout files: how many were tried, and how each was handled.

Builds every case in a temporary folder (nothing is downloaded), loads it with
:func:`fbupscale_gui.core.images.load_cutout_with_notes` and prints one table row per case:
``loaded`` (size and notes) or ``refused`` (the one-line message). Anything else escaping the
loader is counted as ``CRASH`` and makes the exit status 1.

    .venv/bin/python bench/hostile_images.py
"""

from __future__ import annotations

import io
import struct
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fbupscale_gui.core.errors import InputImageError
from fbupscale_gui.core.images import load_cutout_with_notes


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, depth: int, rows: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def _player(w: int = 40, h: int = 64) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2] = (220, 30, 30)
    arr[h // 2 :] = (30, 30, 220)
    return Image.fromarray(arr)


def cases(folder: Path) -> list[tuple[str, Path]]:
    """(description, path) for every case, written into ``folder``."""
    out: list[tuple[str, Path]] = []

    def add(name: str, filename: str, data: bytes | Callable[[Path], None]) -> None:
        path = folder / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            data(path)
        out.append((name, path))

    png = _encode(_player(), "PNG")
    jpeg = _encode(_player(), "JPEG")
    add("zero-byte file", "empty.png", b"")
    add("truncated PNG", "truncated.png", png[: len(png) // 2])
    add("truncated JPEG", "truncated.jpg", jpeg[: len(jpeg) // 2])
    add("text renamed .png", "notes.png", b"kick-off 20:45, 4-4-2\n")
    add("ICO renamed .png (unsupported format)", "icon.png", _encode(_player(32, 32), "ICO"))
    add("bomb: PNG declaring 30000x30000", "bomb.png", _png(30000, 30000, 8, b"\x00" * 16))
    add("bomb at warning level: 10000x10000", "warn_bomb.png", _png(10000, 10000, 8, b"\0" * 16))
    add("4000 px image", "frame.jpg", _encode(Image.new("RGB", (4000, 300)), "JPEG"))
    add("1x1 px", "dot.png", _encode(Image.new("RGB", (1, 1)), "PNG"))
    grey16 = np.tile(np.array([0, 257, 32896, 65535], np.uint16), (16, 4))
    add("16-bit grey PNG", "grey16.png", _encode(Image.fromarray(grey16), "PNG"))
    rgb16 = np.full((16, 16, 3), 40000, np.uint16)
    rows = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(16))
    add("16-bit RGB PNG", "rgb16.png", _png(16, 16, 16, rows))
    add("CMYK JPEG", "cmyk.jpg", _encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"))
    add("grayscale PNG", "grey.png", _encode(Image.new("L", (20, 30), 77), "PNG"))
    pal = _player(32, 32).convert("P")
    add("palette PNG", "palette.png", _encode(pal, "PNG"))
    add("palette PNG with transparency", "palette_t.png", _encode(pal, "PNG", transparency=0))
    add("RGBA PNG", "rgba.png", _encode(Image.new("RGBA", (16, 16), (255, 0, 0, 0)), "PNG"))
    exif = Image.Exif()
    exif[0x0112] = 6
    add("EXIF-rotated JPEG", "rotated.jpg", _encode(_player(64, 40), "JPEG", exif=exif.tobytes()))
    frames = [Image.new("RGB", (24, 24), c) for c in ((200, 0, 0), (0, 200, 0))]
    for fmt in ("GIF", "WEBP"):
        add(
            f"animated {fmt}",
            f"anim.{fmt.lower()}",
            _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=40),
        )
    add("unicode and spaces in path", "Tor – Müller ゴール 13.png", png)
    out.append(("missing path", folder / "gone.png"))
    (folder / "folder.png").mkdir()
    out.append(("folder", folder / "folder.png"))
    out.append(("NUL byte in path", Path(f"{folder}/bad\x00name.png")))
    return out


def main() -> int:
    crashes = 0
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="fbupscale-hostile-") as tmp:
        folder = Path(tmp)
        for name, path in cases(folder):
            started = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    info = load_cutout_with_notes(path)
                outcome = "loaded"
                detail = f"{info.image.width}x{info.image.height} {info.original_mode}"
                if info.notes:
                    detail += " — " + "; ".join(info.notes)
            except InputImageError as exc:
                outcome, detail = "refused", exc.reason
            except Exception as exc:
                crashes += 1
                outcome, detail = "CRASH", f"{type(exc).__name__}: {exc}"
            ms = f"{(time.perf_counter() - started) * 1000:.1f}"
            rows.append((name, outcome, ms, detail))
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'outcome':<8} {'ms':>6}  detail")
    for name, outcome, ms, detail in rows:
        print(f"{name:<{width}}  {outcome:<8} {ms:>6}  {detail[:110]}")
    handled = len(rows) - crashes
    print(f"\n{len(rows)} hostile or odd inputs tried, {handled} handled, {crashes} crashed")
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
