"""Hostile and odd cutout files: each is handled correctly or refused with one clear message.

Every file is built here, at test time. A refusal is always an :class:`InputImageError` whose
message names the file; nothing else may escape :func:`load_cutout`.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fbupscale_gui.core.errors import InputImageError
from fbupscale_gui.core.images import (
    MAX_CUTOUT_BYTES,
    MAX_CUTOUT_SIDE,
    MIN_CUTOUT_SIDE,
    NEUTRAL_GREY,
    CutoutInfo,
)
from fbupscale_gui.storage.cutouts import load_cutout, load_cutout_with_notes


def player(width: int = 40, height: int = 64) -> Image.Image:
    """A recognisable RGB cutout: red top half, blue bottom half, a green left column."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[: height // 2] = (220, 30, 30)
    arr[height // 2 :] = (30, 30, 220)
    arr[:, :4] = (30, 200, 30)
    return Image.fromarray(arr)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def refused(source: Path | bytes, *words: str) -> InputImageError:
    """Loading ``source`` raises InputImageError naming the file and containing ``words``."""
    with pytest.raises(InputImageError) as info:
        load_cutout(source)
    message = str(info.value)
    expected_name = "<memory>" if isinstance(source, bytes) else str(source)
    assert message.startswith(f"{expected_name}: "), message
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word in message, message
    return info.value


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring ``width`` x ``height``, one tiny IDAT, IEND."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


# -- unreadable files ------------------------------------------------------------------------


def test_zero_byte_file(tmp_path: Path) -> None:
    refused(write(tmp_path / "empty.png", b""), "empty")
    refused(b"", "empty")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(tmp_path: Path, fmt: str) -> None:
    data = encode(player(64, 80), fmt)
    for cut in (len(data) // 2, 40, 8):
        refused(write(tmp_path / f"cut{cut}.{fmt.lower()}", data[:cut]))


def test_text_renamed_png(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.png", b"Team sheet: 4-4-2, kick-off 20:45\n")
    refused(path, "not an image")


def test_unsupported_format_is_refused(tmp_path: Path) -> None:
    """Pillow reads ICO (and EPS, which runs Ghostscript): cutouts are limited to a short list."""
    refused(write(tmp_path / "icon.png", encode(player(32, 32), "ICO")), "supported format")


def test_missing_path_and_folder(tmp_path: Path) -> None:
    refused(tmp_path / "gone.png", "no such file")
    (tmp_path / "folder.png").mkdir()
    refused(tmp_path / "folder.png", "folder")


def test_nul_byte_in_path_is_refused(tmp_path: Path) -> None:
    refused(Path(f"{tmp_path}/bad\x00name.png"))


def test_oversized_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with path.open("wb") as fh:  # sparse: no disk space used
        fh.truncate(MAX_CUTOUT_BYTES + 1)
    refused(path, "too large")


# -- decompression bombs: Pillow's limits stay on, and nothing is decoded --------------------


def test_bomb_over_pillows_error_limit(tmp_path: Path) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    path = write(tmp_path / "bomb.png", png_header_only(30000, 30000))
    refused(path, "refused", "decompression bomb")  # named, without allocating 2.7 GB
    assert limit == Image.MAX_IMAGE_PIXELS and limit is not None


def test_bomb_at_pillows_warning_level_is_refused(tmp_path: Path) -> None:
    """10000 x 10000 is over MAX_IMAGE_PIXELS (a warning in Pillow) but under twice it (the
    error): it must still be refused, also when warnings are turned into errors."""
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS < 10000 * 10000 < 2 * Image.MAX_IMAGE_PIXELS
    path = write(tmp_path / "warn_bomb.png", png_header_only(10000, 10000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        refused(path, "not a cutout")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        refused(path)


def test_not_a_cutout_beyond_the_documented_limit(tmp_path: Path) -> None:
    big = Image.new("RGB", (4000, 300), (10, 120, 30))
    refused(write(tmp_path / "frame.jpg", encode(big, "JPEG")), "not a cutout", "2048")
    edge = Image.new("RGB", (MAX_CUTOUT_SIDE, 16), (10, 120, 30))
    assert load_cutout(write(tmp_path / "edge.png", encode(edge, "PNG"))).size == edge.size


def test_one_pixel_is_refused_with_the_minimum(tmp_path: Path) -> None:
    one = write(tmp_path / "dot.png", encode(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"))
    refused(one, "1x1", f"minimum {MIN_CUTOUT_SIDE} px")
    ok = Image.new("RGB", (MIN_CUTOUT_SIDE, MIN_CUTOUT_SIDE), (255, 0, 0))
    assert load_cutout(encode(ok, "PNG")).size == ok.size


# -- odd but valid images --------------------------------------------------------------------


def test_16_bit_grey_png_is_scaled_not_clipped() -> None:
    levels = np.array([0, 257, 32896, 65535, 1000], np.uint16)  # -> 0, 1, 128, 255, 4
    arr = np.tile(levels, (16, 4))[:, :16]
    data = encode(Image.fromarray(arr), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = np.asarray(load_cutout(data))
    assert out.dtype == np.uint8 and out.shape == (16, 16, 3)
    assert list(out[0, :5, 0]) == [0, 1, 128, 255, 4]
    assert (out[..., 0] == out[..., 2]).all()  # still grey


def test_16_bit_rgb_png_keeps_its_colours() -> None:
    arr = np.zeros((16, 16, 3), np.uint16)
    arr[..., 0] = 65535
    arr[..., 2] = 32896
    raw = png_rgb16(arr)
    out = np.asarray(load_cutout(raw))
    assert abs(int(out[0, 0, 0]) - 255) <= 1 and abs(int(out[0, 0, 2]) - 128) <= 1
    assert out[0, 0, 1] == 0


def png_rgb16(arr: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG written by hand (Pillow cannot write one)."""
    h, w, _ = arr.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    data = encode(cmyk, "JPEG", quality=95)
    info = load_cutout_with_notes(data)
    assert info.original_mode == "CMYK" and info.image.mode == "RGB"
    r, g, b = info.image.getpixel((16, 16))  # type: ignore[misc]
    assert r > 230 and g < 30 and b < 30
    assert any("CMYK" in n for n in info.notes)


def test_grayscale() -> None:
    grey = Image.new("L", (20, 30), 77)
    out = load_cutout(encode(grey, "PNG"))
    assert out.mode == "RGB" and out.getpixel((5, 5)) == (77, 77, 77)


def test_palette_without_and_with_transparency() -> None:
    pal = player(32, 32).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    out = load_cutout(encode(pal, "PNG"))
    assert out.mode == "RGB"
    assert np.abs(np.asarray(out, np.int16) - np.asarray(player(32, 32), np.int16)).max() < 40

    # index 0 transparent: those pixels become neutral grey, the others keep their colour
    arr = np.zeros((16, 16), np.uint8)
    arr[:, 8:] = 1
    trans = Image.fromarray(arr, "P")
    trans.putpalette([255, 255, 0, 200, 0, 0] + [0, 0, 0] * 254)
    data = encode(trans, "PNG", transparency=0)
    info = load_cutout_with_notes(data)
    assert info.image.getpixel((0, 0)) == NEUTRAL_GREY
    assert info.image.getpixel((15, 0)) == (200, 0, 0)
    assert any("grey" in n for n in info.notes)


def test_rgba_is_composited_on_neutral_grey() -> None:
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 255))
    rgba.paste((0, 0, 255, 0), (0, 0, 8, 16))  # transparent blue: must not show
    rgba.paste((255, 255, 255, 128), (0, 0, 8, 4))  # half-transparent white
    out = load_cutout(encode(rgba, "PNG"))
    assert out.getpixel((12, 8)) == (255, 0, 0)
    assert out.getpixel((2, 8)) == NEUTRAL_GREY
    half = out.getpixel((2, 1))
    assert all(188 <= c <= 193 for c in half)  # type: ignore[union-attr]


def test_grey_with_alpha() -> None:
    la = Image.new("LA", (16, 16), (0, 0))
    out = load_cutout(encode(la, "PNG"))
    assert out.getpixel((3, 3)) == NEUTRAL_GREY


def test_exif_rotated_jpeg_is_turned_upright() -> None:
    """Stored 64 wide x 40 high with orientation 6 (rotate 90 CW to view): 40 x 64 upright."""
    stored = player(40, 64).rotate(90, expand=True)  # what a camera held sideways stores
    assert stored.size == (64, 40)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)
    info = load_cutout_with_notes(data)
    assert info.image.size == (40, 64)
    top, bottom = info.image.getpixel((20, 5)), info.image.getpixel((20, 58))
    assert top[0] > 150 and top[2] < 100  # type: ignore[index]  # red on top, as drawn
    assert bottom[2] > 150 and bottom[0] < 100  # type: ignore[index]
    assert any("orientation 6" in n for n in info.notes)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_first_frame_with_a_note(fmt: str) -> None:
    frames = [Image.new("RGB", (24, 24), c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=40, loop=0)
    info = load_cutout_with_notes(data)
    r, g, b = info.image.getpixel((12, 12))  # type: ignore[misc]
    assert r > 150 and g < 50 and b < 50  # the first frame
    assert info.notes and "first frame" in info.notes[0]
    still = load_cutout_with_notes(encode(frames[1], fmt))
    assert not any("frame" in n for n in still.notes)


def test_plain_rgb_has_no_notes() -> None:
    info = load_cutout_with_notes(encode(player(), "PNG"))
    assert isinstance(info, CutoutInfo)
    assert info.notes == () and info.format == "PNG" and info.original_mode == "RGB"
    assert np.array_equal(np.asarray(info.image), np.asarray(player()))


@pytest.mark.parametrize("name", ["Tor – Müller 13.png", "ゴール キーパー.png", "a b/c d.png"])
def test_unicode_and_spaces_in_paths(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    player().save(path)
    assert load_cutout(path).size == (40, 64)
    assert load_cutout(str(path)).size == (40, 64)
    refused(path.with_name(f"missing {path.name}"), "no such file")


def test_file_handle_is_not_kept_open(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    player().save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        image = load_cutout(path)
    path.unlink()  # the decoded image no longer needs the file
    assert image.getpixel((20, 5)) == (220, 30, 30)
