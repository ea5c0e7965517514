"""A cut: the region of one frame of a clip, named after the clip and the frame, saved as a PNG.

The one implementation behind the video window's "Send to queue" (the frame on show, see
:meth:`fbupscale_gui.state.clip_model.ClipModel.cut`) and ``fbupscale video cut`` (the frame
at a time): the region is cut by :func:`~fbupscale_gui.core.frame_cut.cut_region` (one field
of interlaced material when asked, aspect restored) and named ``<clip>_<timecode>.png``.
:func:`save_cut` writes it atomically under a name no other file has: a killed run leaves no
empty or partial file under that name, only a hidden temporary that a later save into the same
folder removes once it is stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fbupscale_gui.core.clip import ClipInfo, Field, FieldRestore, Rect
from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.frame_cut import cut_region
from fbupscale_gui.core.timecode import Position, parse_position
from fbupscale_gui.storage.atomic import atomic_write
from fbupscale_gui.storage.video.reader import ClipReader

__all__ = ["Cut", "cut_at", "cut_frame", "cutout_name", "save_cut"]


@dataclass(frozen=True)
class Cut:
    """A region cut from frame ``index``: its pixels, its name and the field it came from."""

    image: Image.Image
    index: int
    name: str
    field: Field | None


def cutout_name(info: ClipInfo, index: int) -> str:
    """``<clip>_<timecode>.png``: the name a cut from frame ``index`` gets in the cutouts list."""
    return f"{Path(info.path).stem}_{info.timecode(index)}.png"


def cut_frame(
    info: ClipInfo,
    frame: Image.Image,
    index: int,
    rect: Rect,
    field: Field | None = None,
    *,
    restore: FieldRestore = "interpolate",
) -> Cut:
    """Cut ``rect`` (and one field) out of ``frame``, frame ``index`` of the clip ``info``.

    Raises RequestError for a rectangle outside the frame, an unknown field or restore method.
    """
    image = cut_region(frame, rect, field, restore=restore)
    return Cut(image=image, index=index, name=cutout_name(info, index), field=field)


def cut_at(
    reader: ClipReader,
    position: Position | str,
    rect: Rect,
    field: Field | None = None,
    *,
    restore: FieldRestore = "interpolate",
) -> Cut:
    """Cut ``rect`` out of the frame at ``position`` (index, seconds or text a user typed).

    Raises :class:`~fbupscale_gui.storage.video.reader.ClipError` for a frame that cannot be
    decoded and RequestError for a position or rectangle that is not valid.
    """
    info = reader.info
    if isinstance(position, str):
        position = parse_position(position, info.frame_rate)
    index = info.index_of(position)
    return cut_frame(info, reader.frame(index), index, rect, field, restore=restore)


def save_cut(cut: Cut, path: str | Path) -> Path:
    """Write ``cut`` as a PNG at ``path``, or at the first free ``stem-2.png``...; the path.

    The name is taken only by the complete file (published with a hard link), so two saves
    never share a name and an existing file is never replaced; the stale temporary files a
    killed save left in the folder are removed (by
    :func:`~fbupscale_gui.storage.atomic.atomic_write`). Raises RequestError when the folder
    does not exist, OSError (naming the file) when it cannot be written.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise RequestError(f"output: folder {target.parent} does not exist")
    return atomic_write(target, lambda fh: cut.image.save(fh, format="PNG"), exclusive=True)
