"""Writing picked candidates as 1024 px frames (Pillow, no Qt): the names and guards come
from :mod:`fbupscale_gui.core.export`; every file is written by
:func:`fbupscale_gui.storage.metadata.save_candidate` with the export's provenance."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fbupscale_gui.core.export import (
    EXPORT_SIZE,
    ExportError,
    ExportFormat,
    contradicting,
    contradiction_text,
    low_fidelity,
    low_fidelity_text,
    plan_names,
)

if TYPE_CHECKING:
    from fbupscale_gui.core.export import ExportItem
    from fbupscale_gui.core.job import Candidate

__all__ = ["export_candidates"]


def _at_size(candidate: Candidate, size: int) -> Candidate:
    from PIL import Image

    img = candidate.image
    long_side = max(img.size)
    if long_side == size:
        return candidate
    scale = size / long_side
    resized = img.resize(
        (max(1, round(img.width * scale)), max(1, round(img.height * scale))),
        Image.Resampling.LANCZOS,
    )
    return dataclasses.replace(candidate, image=resized)


def export_candidates(
    items: Iterable[ExportItem],
    folder: str | Path,
    template: str,
    *,
    match: str,
    fmt: ExportFormat = "png",
    size: int = EXPORT_SIZE,
    now: datetime | None = None,
    badge: bool = False,
    min_lr_db: float | None = None,
    refuse_contradicting: bool = False,
) -> list[Path]:
    """Write each item as a ``size`` px (long side) image with embedded metadata.

    ``badge`` burns the visible "AI-reconstructed" label into the corner (recorded in the
    metadata, with the hash of the pixels before it). ``min_lr_db`` refuses the whole batch if
    any item scores below it (see :func:`low_fidelity`); ``refuse_contradicting`` refuses it if
    any item's shirt number contradicts its scene (see :func:`contradicting`).

    Returns the written paths, in order. Raises :class:`ExportError` for a bad template,
    format, an unwritable folder or a refused score; nothing existing is overwritten.
    """
    from fbupscale_gui.core.images import image_sha256
    from fbupscale_gui.storage.atomic import STALE_TEMP_S, clean_stale_temps
    from fbupscale_gui.storage.metadata import save_candidate
    from fbupscale_gui.storage.provenance import badge_text, draw_badge, provenance

    batch = list(items)
    if not batch:
        raise ExportError("nothing to export: pick a candidate first (keys 1-9)")
    low = low_fidelity(batch, min_lr_db)
    if low:
        raise ExportError(
            f"export refused: {len(low)} pick(s) below the LR-consistency threshold of "
            f"{min_lr_db:g} dB (Settings):\n{low_fidelity_text(low)}"
        )
    wrong = contradicting(batch) if refuse_contradicting else []
    if wrong:
        raise ExportError(
            f"export refused: {len(wrong)} pick(s) show a shirt number the scene contradicts "
            f"(Settings: export guard):\n{contradiction_text(wrong)}"
        )
    out = Path(folder).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(
            f"cannot create the export folder {out}: {exc.strerror or exc}; "
            "choose another folder in Settings"
        ) from None
    # a crash mid-write leaves a hidden ".<name>.png.<random>.tmp": remove only our own, and
    # only old ones (another export may be writing into this folder right now)
    clean_stale_temps(out, older_than_s=STALE_TEMP_S, final_suffixes=(".png", ".jpg", ".jpeg"))
    paths = plan_names(batch, out, template, match=match, fmt=fmt, now=now)
    written: list[Path] = []
    for item, path in zip(batch, paths, strict=True):
        sized = _at_size(item.candidate, size)
        label = badge_text(sized.request.engine) if badge else None
        record = provenance(
            sized.request,
            seed=sized.seed,
            lr_consistency_db=item.lr_consistency,
            models=item.models,
            badge=label,
            pixels_sha256=image_sha256(sized.image.convert("RGB")),
        )
        if label is not None:
            sized = dataclasses.replace(sized, image=draw_badge(sized.image, label))
        try:
            written.append(
                save_candidate(sized, path, cutout=item.cutout, fmt=fmt, provenance=record)
            )
        except OSError as exc:
            raise ExportError(
                f"cannot write {path}: {exc.strerror or exc}; "
                f"{len(written)} of {len(batch)} file(s) were written"
            ) from None
    return written
