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

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.eval.degrade_ops import (
    ENCODERS,
    MACROBLOCK,
    chroma_420,
    convolve,
    field_drop,
    line_kernel,
    video_roundtrip,
)
from fbupscale_gui.eval.degrade_params import (
    DEGRADE_SCHEMA_VERSION,
    SEVERITIES,
    DegradeParams,
    severity,
)

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["PNG_KEY", "degrade", "read_degrade_record", "save_degraded"]

#: The PNG text chunk that carries the degradation record.
PNG_KEY: Final = "fbupscale-degrade"
#: The largest factor the blur steps oversample the cutout by.
_MAX_OVERSAMPLE: Final = 4
#: Seeds are drawn by numpy's PCG64; the bound matches the request's seeds.
_SEED_LIMIT: Final = 2**63


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
    mb_offset = rng.integers(0, MACROBLOCK, size=2)

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
        kernel = line_kernel(mb.length * factor, mb.angle)
        work = PILImage.fromarray(convolve(np.asarray(work), kernel), "RGB")
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
        img = field_drop(img, parity, fd.rebuild)
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
        img = chroma_420(img, cs.upsample)
        steps.append({"step": "chroma_420", "upsample": cs.upsample})

    vc = p.video
    if vc.enabled:
        offset = (int(mb_offset[0]), int(mb_offset[1])) if vc.jitter else (0, 0)
        img, info = video_roundtrip(img, vc, offset)
        steps.append(
            {
                "step": "video",
                "codec": vc.codec,
                "encoder": ENCODERS[vc.codec],
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


# -- files ----------------------------------------------------------------------------------


def save_degraded(image: Image.Image, record: Mapping[str, Any], path: str | Path) -> None:
    """Write ``image`` as PNG with ``record`` as JSON in the ``fbupscale-degrade`` text chunk,
    atomically (a crash never leaves half a file at ``path``).

    Raises OSError if the file cannot be written.
    """
    from PIL.PngImagePlugin import PngInfo

    from fbupscale_gui.storage.atomic import atomic_write

    info = PngInfo()
    info.add_text(PNG_KEY, json.dumps(record, sort_keys=True, ensure_ascii=True))
    atomic_write(Path(path), lambda fh: image.save(fh, "PNG", pnginfo=info))


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
