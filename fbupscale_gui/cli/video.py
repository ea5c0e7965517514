"""The ``video`` subcommand of ``fbupscale``: match clips from the command line.

* ``fbupscale video info CLIP [--json]``: container, codec, size, frame rate, duration, frame
  count, interlacing and audio streams.
* ``fbupscale video cut CLIP --time T --rect X,Y,W,H [--field top|bottom] -o CUTOUT.png``: the
  frame at ``T`` cut exactly as the operator would (one field of interlaced material when
  ``--field`` is given, aspect restored), written as a PNG ready for ``fbupscale upscale``.
* ``fbupscale video upscale CLIP --start T --end T [--engine realesrgan|lanczos]
  [--temporal none|median|blend] [--rect X,Y,W,H] [--field top|bottom] -o OUT.mp4``: a range
  upscaled x4 by a fast engine into a new H.264 clip with the source's audio.

Times: seconds (``12.5``), ``[HH:]MM:SS[.fff]``, timecode ``HH:MM:SS:FF`` (``;`` drop-frame)
or a frame number (``312f``). Existing files are never overwritten: ``-2``, ``-3``... is added.
Each written path is printed on stdout; progress goes to stderr.

Register on the main parser with :func:`add_video_parser`; it sets ``func`` to
:func:`cmd_video`, which takes the parsed arguments (and optionally a cancel flag) and returns
the exit status: 0 done, 1 an error (one line on stderr naming the file), 130 cancelled.
Imports stay light: numpy, Pillow and PyAV; ncnn only for ``--engine realesrgan``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.cli.common import EXIT_CANCELLED, CancelFlag, ProgressBar, error, note
from fbupscale_gui.storage.paths import shown

if TYPE_CHECKING:
    from fbupscale_gui.storage.video import ClipInfo

__all__ = ["add_video_parser", "cmd_video", "main"]

PROG: Final = "fbupscale video"
#: Output frames larger than this many pixels get a note suggesting --rect.
_LARGE_OUTPUT_PX: Final = 3840 * 2160


def _rect(text: str) -> tuple[int, int, int, int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or values[2] < 1 or values[3] < 1 or min(values[:2]) < 0:
        raise argparse.ArgumentTypeError(
            f"expected X,Y,W,H in frame pixels (W and H at least 1), got {text!r}"
        )
    x, y, w, h = values
    return (x, y, w, h)


def add_video_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``video {info,cut,upscale}`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "video",
        help="match clips: info, cut a region, batch-upscale a range",
        description="Work from match clips (MP4/MOV/MKV/TS; H.264, HEVC, MPEG-2).",
    )
    sub = p.add_subparsers(dest="video_command", metavar="VIDEO_COMMAND", required=True)

    info = sub.add_parser("info", help="what a clip is", description="Describe a clip.")
    info.add_argument("clip", type=Path, help="the clip")
    info.add_argument("--json", action="store_true", help="print one JSON object")

    cut = sub.add_parser(
        "cut",
        help="cut a region of one frame to a PNG",
        description="Cut a region of the frame at a time, as the operator would, to a PNG.",
    )
    cut.add_argument("clip", type=Path, help="the clip")
    cut.add_argument("--time", required=True, metavar="T", help="seconds, timecode or 312f")
    cut.add_argument("--rect", required=True, type=_rect, metavar="X,Y,W,H", help="frame px")
    cut.add_argument(
        "--field", choices=["top", "bottom"], help="take one field of interlaced video"
    )
    cut.add_argument(
        "--restore",
        choices=["interpolate", "double"],
        default="interpolate",
        help="how a field gets its full height back (default: interpolate)",
    )
    cut.add_argument("-o", "--output", required=True, type=Path, metavar="CUTOUT.png")

    up = sub.add_parser(
        "upscale",
        help="upscale a time range x4 into a new clip",
        description=(
            "Upscale a range of a clip x4 with a fast engine into a new H.264 clip "
            "(same frame rate, audio copied or re-encoded to AAC)."
        ),
    )
    up.add_argument("clip", type=Path, help="the clip")
    up.add_argument("--start", default="0", metavar="T", help="first frame's time (default 0)")
    up.add_argument("--end", metavar="T", help="end time, exclusive (default: end of the clip)")
    up.add_argument("--engine", choices=["realesrgan", "lanczos"], default="realesrgan")
    up.add_argument(
        "--temporal",
        choices=["none", "median", "blend"],
        default="none",
        help="steady per-frame flicker: median (locked-off camera) or blend (follows pans)",
    )
    up.add_argument("--rect", type=_rect, metavar="X,Y,W,H", help="upscale only this region")
    up.add_argument("--field", choices=["top", "bottom"], help="take one field of each frame")
    up.add_argument("--crf", type=int, default=18, help="H.264 quality, 0..51 (default 18)")
    up.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.mp4")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p.set_defaults(func=cmd_video)
    return p


# -- commands ----------------------------------------------------------------------------------


def _output(path: Path, suffix: str) -> Path:
    """The file the user named with ``-o``; RequestError naming it when it is a folder."""
    from fbupscale_gui.core.errors import RequestError

    if path.is_dir():
        raise RequestError(
            f"-o {path}: is a folder; give a file name such as {path / ('clip' + suffix)}"
        )
    return path


def _info_dict(info: ClipInfo) -> dict[str, Any]:
    return {
        "path": info.path,
        "container": info.container,
        "codec": info.codec,
        "width": info.width,
        "height": info.height,
        "frame_rate": str(info.frame_rate),
        "fps": round(info.fps, 4),
        "duration": round(info.duration, 4),
        "frame_count": info.frame_count,
        "interlaced": info.interlaced,
        "field_order": info.field_order,
        "pixel_format": info.pixel_format,
        "sample_aspect_ratio": str(info.sample_aspect_ratio) if info.sample_aspect_ratio else None,
        "start_time": round(info.start_time, 6),
        "audio": [
            {
                "index": a.index,
                "codec": a.codec,
                "sample_rate": a.sample_rate,
                "channels": a.channels,
                "layout": a.layout,
                "language": a.language,
            }
            for a in info.audio
        ],
    }


def _cmd_info(args: argparse.Namespace) -> int:
    from fbupscale_gui.storage.video import open_clip

    info = open_clip(args.clip)
    if args.json:
        print(json.dumps(_info_dict(info), indent=2, ensure_ascii=False))
        return 0
    scan = {
        "progressive": "progressive",
        "tff": "interlaced, top field first",
        "bff": "interlaced, bottom field first",
        "unknown": "interlaced (field order not stated)" if info.interlaced else "scan not stated",
    }[info.field_order]
    print(f"{info.path}")
    print(
        f"  {info.container}, {info.codec} {info.width}x{info.height} {info.pixel_format}, {scan}"
    )
    print(
        f"  {info.fps:.3f} fps ({info.frame_rate}), {info.duration:.3f} s, "
        f"{info.frame_count} frames, ends {info.timecode(info.frame_count)}"
    )
    for a in info.audio:
        lang = f" [{a.language}]" if a.language and a.language != "und" else ""
        print(f"  audio #{a.index}: {a.codec} {a.sample_rate} Hz {a.layout or a.channels}{lang}")
    if not info.audio:
        print("  no audio")
    return 0


def _cmd_cut(args: argparse.Namespace) -> int:
    from fbupscale_gui.storage.video import ClipReader, cut_at, save_cut

    with ClipReader(args.clip) as reader:
        cut = cut_at(reader, args.time, args.rect, args.field, restore=args.restore)
        timecode = reader.info.timecode(cut.index)
    output = _output(args.output, ".png")
    out = save_cut(cut, output if output.suffix else output.with_suffix(".png"))
    field = f", {args.field} field" if args.field else ""
    print(shown(out))
    print(
        f"frame {cut.index} ({timecode}){field}: {cut.image.width}x{cut.image.height} px",
        file=sys.stderr,
    )
    return 0


def _cmd_upscale(args: argparse.Namespace, cancel: Callable[[], bool] | None) -> int:
    from fbupscale_gui.engine.facade import make_upscaler
    from fbupscale_gui.storage.video import open_clip, upscale_range

    info = open_clip(args.clip)  # a bad clip is reported before a model loads
    w, h = (args.rect[2], args.rect[3]) if args.rect else (info.width, info.height)
    if w * h * 16 > _LARGE_OUTPUT_PX:
        print(
            f"note: {w}x{h} becomes {4 * w}x{4 * h} per frame; --rect X,Y,W,H upscales a region",
            file=sys.stderr,
        )
    output = _output(args.output, ".mp4")
    upscale = make_upscaler(args.engine)  # loaded now: a missing model is reported first
    bar = ProgressBar(quiet=args.quiet, unit="frame")
    with contextlib.closing(bar):
        result = upscale_range(
            args.clip,
            args.start,
            args.end,
            upscale,
            output,
            rect=args.rect,
            field=args.field,
            temporal=args.temporal,
            crf=args.crf,
            exclusive=True,
            on_progress=bar,
            is_cancelled=cancel,
        )
    print(shown(result.path))
    audio = ", ".join(result.audio) if result.audio else "no audio"
    print(
        f"frames {result.start_index}-{result.end_index - 1} "
        f"({info.timecode(result.start_index)}-{info.timecode(result.end_index)}): "
        f"{result.frames} frames {result.width}x{result.height} at {float(result.frame_rate):.3f} "
        f"fps, {audio}, temporal {result.temporal}, "
        f"{result.frames / max(result.seconds, 1e-9):.2f} fps",
        file=sys.stderr,
    )
    if args.end is None and info.container == "MP4/MOV" and result.end_index < info.frame_count:
        # MP4/MOV headers state the frame count exactly (others are estimates)
        print(
            f"note: wrote {result.frames} frames, fewer than the header of {shown(args.clip)} "
            f"says ({info.frame_count} frames): the clip is truncated or damaged after frame "
            f"{result.end_index - 1}",
            file=sys.stderr,
        )
    return 0


def cmd_video(args: argparse.Namespace, cancel: Callable[[], bool] | None = None) -> int:
    """Run ``video info|cut|upscale``; 0 ok, 1 error (one line naming the file), 130 cancelled.

    ``cancel`` is polled between frames of ``upscale`` (the main CLI passes its Ctrl-C flag).
    """
    from fbupscale_gui.core.errors import Cancelled, FbError

    try:
        if args.video_command == "info":
            return _cmd_info(args)
        if args.video_command == "cut":
            return _cmd_cut(args)
        return _cmd_upscale(args, cancel)
    except Cancelled:
        note("cancelled", f"{PROG} {args.video_command}")
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        note("interrupted", f"{PROG} {args.video_command}")
        return EXIT_CANCELLED
    except (FbError, OSError) as exc:
        return error(exc, f"{PROG} {args.video_command}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fbupscale_gui.cli.video video {info,cut,upscale} ...``; the exit status."""
    parser = argparse.ArgumentParser(prog="fbupscale")
    sub = parser.add_subparsers(dest="command", required=True)
    add_video_parser(sub)
    args = parser.parse_args(argv)
    with CancelFlag().installed("frame") as cancel:
        return int(args.func(args, cancel))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
