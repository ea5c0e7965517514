"""``fbupscale reproduce CANDIDATE.png -o OUT.png``: render that one candidate again from its
embedded request (using the embedded cutout when the source file is gone or changed), and say
whether the pixels and the runtime match the recorded ones."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from fbupscale_gui.cli import render
from fbupscale_gui.cli.common import EXIT_CANCELLED, CancelFlag, ProgressBar, note, save_new
from fbupscale_gui.core.errors import Cancelled, InputImageError
from fbupscale_gui.core.request import Device
from fbupscale_gui.storage.paths import shown

if TYPE_CHECKING:
    from fbupscale_gui.core.job import Candidate

__all__ = ["add_reproduce_parser", "cmd_reproduce"]


def add_reproduce_parser(sub: Any) -> None:
    """Add ``reproduce CANDIDATE.png -o OUT.png`` to an argparse subparsers object."""
    rep = sub.add_parser(
        "reproduce",
        help="render one candidate again from its embedded request",
        description="Render a candidate again from the request embedded in its file.",
    )
    rep.add_argument("candidate", metavar="CANDIDATE.png")
    rep.add_argument("-o", "--output", required=True, metavar="OUT.png")
    rep.add_argument("--device", choices=get_args(Device), help="override the recorded device")
    rep.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    rep.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace, cancel: CancelFlag) -> int:
    from fbupscale_gui.core.errors import RequestError
    from fbupscale_gui.core.images import image_sha256
    from fbupscale_gui.storage.cutouts import load_source
    from fbupscale_gui.storage.metadata import read_metadata
    from fbupscale_gui.storage.store import store_cutout

    src = Path(args.candidate).expanduser()
    record = read_metadata(src)
    request = record.request.replace(only=None)
    source = request.source
    if source is None:
        raise RequestError(f"{src}: the embedded request names no cutout")
    if args.device:
        request = request.replace(device=args.device)
    try:
        cutout = load_source(source)
    except InputImageError as exc:
        if record.cutout is None:
            raise InputImageError(
                src, f"{exc} and the candidate carries no embedded cutout"
            ) from None
        if image_sha256(record.cutout) != source.sha256:
            raise InputImageError(
                src, "the embedded cutout does not match the request's source hash"
            ) from None
        note(f"note: {source.path} is missing or changed; using the embedded cutout")
        request = request.replace(source=store_cutout(record.cutout, source.name))
        cutout = record.cutout
    target = Path(args.output).expanduser()
    bars = ProgressBar(src.name, quiet=args.quiet)
    engine = render.make_engine()
    result: Candidate | None = None
    try:
        for candidate in render.candidates(engine, request.with_only(record.key), bars, cancel):
            if candidate.key == record.key or request.engine != "flux":
                result = candidate
    except Cancelled:
        note("cancelled; nothing written")
        return EXIT_CANCELLED
    finally:
        bars.close()
    if result is None:
        raise RequestError(f"{src}: the engine did not render candidate {record.key.label}")
    _compare_runtime(src, record, result)
    result = dataclasses.replace(result, request=request)
    target = save_new(result, target, cutout)
    print(shown(target), flush=True)
    _compare(src, record, result)
    return 0


def _compare_runtime(src: Path, record: Any, result: Candidate) -> None:
    """Say which field of the resolved runtime differs from the recorded one (a note on
    stderr): the same request is pixel-identical only on the same runtime."""
    if record.resolved is None or result.resolved is None:
        return
    changed = record.resolved.differences(result.resolved)
    if changed:
        note(
            f"today's runtime differs from the one {src.name} was rendered on: "
            + "; ".join(changed)
            + " (pixels may differ)"
        )


def _compare(src: Path, record: Any, result: Candidate) -> None:
    """Say whether the new render has the candidate's pixels (a note on stderr)."""
    from PIL import Image as PILImage

    from fbupscale_gui.core.images import image_sha256

    provenance = record.provenance or {}
    expected: str | None = None
    if (provenance.get("badge") or {}).get("applied") and provenance.get("pixels_sha256"):
        expected = str(provenance["pixels_sha256"])  # the pixels before the visible badge
    else:
        with contextlib.suppress(OSError, ValueError), PILImage.open(src) as original:
            if original.format == "PNG":  # JPEG pixels are lossy: nothing to compare
                expected = image_sha256(original.convert("RGB"))
    if expected is None:
        return
    if image_sha256(result.image.convert("RGB")) == expected:
        note(f"identical to {src.name} ({result.runtime})")
    else:
        note(
            f"differs from {src.name}: recorded on '{record.runtime}', "
            f"rendered on '{result.runtime}'"
        )
