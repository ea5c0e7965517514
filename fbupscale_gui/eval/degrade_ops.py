"""The pixel operations of the broadcast degradation chain (:mod:`fbupscale_gui.eval.degrade`):
a motion-blur line kernel and its convolution, the 1080i field drop, 4:2:0 chroma and the
H.264/MPEG-2 round trip through PyAV. numpy, Pillow and PyAV, imported when called.
"""

from __future__ import annotations

import math
import typing
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.eval.degrade_params import ChromaUpsample, FieldRebuild, VideoCompression

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

__all__ = [
    "ENCODERS",
    "MACROBLOCK",
    "chroma_420",
    "convolve",
    "field_drop",
    "line_kernel",
    "video_roundtrip",
]

_FPS: Final = 25
MACROBLOCK: Final = 16

ENCODERS: Final[dict[str, str]] = {"h264": "libx264", "mpeg2": "mpeg2video"}
_DECODERS: Final[dict[str, str]] = {"h264": "h264", "mpeg2": "mpeg2video"}


def line_kernel(length: float, angle_deg: float) -> np.ndarray:
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


def convolve(arr: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve an H x W x C uint8 array with a small symmetric kernel (edge-padded)."""
    import numpy as np

    r = kernel.shape[0] // 2
    h, w = arr.shape[:2]
    padded = np.pad(arr.astype(np.float32), ((r, r), (r, r), (0, 0)), mode="edge")
    out = np.zeros((h, w, arr.shape[2]), dtype=np.float32)
    for ky, kx in zip(*np.nonzero(kernel), strict=True):
        out += np.float32(kernel[ky, kx]) * padded[ky : ky + h, kx : kx + w]
    return typing.cast("np.ndarray", np.clip(np.rint(out), 0, 255).astype(np.uint8))


def field_drop(img: Image.Image, parity: int, rebuild: FieldRebuild) -> Image.Image:
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


def chroma_420(img: Image.Image, upsample: ChromaUpsample) -> Image.Image:
    """BT.601 Cb/Cr averaged over 2x2 blocks and upsampled back; luma untouched."""
    from PIL import Image as PILImage

    y, cb, cr = img.convert("YCbCr").split()
    half = ((img.width + 1) // 2, (img.height + 1) // 2)
    up = PILImage.Resampling.NEAREST if upsample == "nearest" else PILImage.Resampling.BILINEAR
    cb = cb.resize(half, PILImage.Resampling.BOX).resize(img.size, up)
    cr = cr.resize(half, PILImage.Resampling.BOX).resize(img.size, up)
    return PILImage.merge("YCbCr", (y, cb, cr)).convert("RGB")


def video_roundtrip(
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
    pad_w = -(-(w + ox) // MACROBLOCK) * MACROBLOCK
    pad_h = -(-(h + oy) // MACROBLOCK) * MACROBLOCK
    canvas = np.pad(arr, ((oy, pad_h - h - oy), (ox, pad_w - w - ox), (0, 0)), mode="edge")
    bitrate = int(vc.bitrate_kbps * 1000)
    try:
        enc = typing.cast("av.VideoCodecContext", av.CodecContext.create(ENCODERS[vc.codec], "w"))
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
        raise RuntimeError(f"{ENCODERS[vc.codec]} produced no decodable frame")
    out = decoded[-1].to_ndarray(format="rgb24")[oy : oy + h, ox : ox + w]
    info = {
        "offset": [ox, oy],
        "encoded_size": [pad_w, pad_h],
        "bytes": sum(packet.size for packet in packets),
    }
    return PILImage.fromarray(np.ascontiguousarray(out), "RGB"), info
