"""Match clips: open, scrub, cut a region exactly as the operator would, batch-upscale a range.

The package's public names, gathered from where each job is done:

* :mod:`fbupscale_gui.core.timecode`: positions and SMPTE timecode (pure);
* :mod:`fbupscale_gui.core.clip`: what a clip is (:class:`ClipInfo`), fields and rectangles;
* :mod:`fbupscale_gui.core.frame_cut`: a region (and one field) cut out of a frame (pure);
* :mod:`.reader`: opening a clip and decoding frames accurately with PyAV (FFmpeg);
* :mod:`.cut`: a region of one frame, named after the clip and frame, saved as a PNG;
* :mod:`.encode`: a range upscaled frame by frame into a new H.264 clip, written atomically;
* :mod:`.audio`: the source's audio for that range, copied or re-encoded to AAC.

Everything runs on PyAV, numpy and Pillow; PyAV is imported only when a clip is touched, so
importing this package stays cheap. A clip that cannot be read raises :class:`ClipError`: one
line naming the file, and nothing changes.
"""

from __future__ import annotations

from fbupscale_gui.core.clip import (
    FIELDS,
    AudioStreamInfo,
    ClipInfo,
    Field,
    FieldOrder,
    FieldRestore,
    Rect,
)
from fbupscale_gui.core.frame_cut import clamp_rect, cut_region, extract_field
from fbupscale_gui.core.timecode import MAX_POSITION_S, Position, format_timecode, parse_position
from fbupscale_gui.storage.video.cut import Cut, cut_at, cut_frame, cutout_name, save_cut
from fbupscale_gui.storage.video.encode import (
    OUTPUT_SUFFIXES,
    UpscaleFn,
    UpscaleResult,
    lanczos_upscaler,
    upscale_range,
)
from fbupscale_gui.storage.video.reader import (
    SUPPORTED_CODECS,
    SUPPORTED_FORMATS,
    ClipError,
    ClipReader,
    open_clip,
    read_frame,
)

__all__ = [
    "FIELDS",
    "MAX_POSITION_S",
    "OUTPUT_SUFFIXES",
    "SUPPORTED_CODECS",
    "SUPPORTED_FORMATS",
    "AudioStreamInfo",
    "ClipError",
    "ClipInfo",
    "ClipReader",
    "Cut",
    "Field",
    "FieldOrder",
    "FieldRestore",
    "Position",
    "Rect",
    "UpscaleFn",
    "UpscaleResult",
    "clamp_rect",
    "cut_at",
    "cut_frame",
    "cut_region",
    "cutout_name",
    "extract_field",
    "format_timecode",
    "lanczos_upscaler",
    "open_clip",
    "parse_position",
    "read_frame",
    "save_cut",
    "upscale_range",
]
