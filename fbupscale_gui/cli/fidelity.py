"""The ``score`` and ``degrade`` subcommands of ``fbupscale``.

Register them on the main parser's subparsers with :func:`add_score_parser` and
:func:`add_degrade_parser`; each sets ``func`` to its command function, which takes the parsed
arguments (and an optional, unused cancel flag) and returns the exit status: 0 ok, 1 error with
one line on stderr naming the file. The commands handle their own errors.
Runs on its own too: ``python -m fbupscale_gui.cli.fidelity score CUTOUT CANDIDATE...``.

Imports stay light: numpy, Pillow and PyAV (degrade only), never torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbupscale_gui.cli.common import PROG, error

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.images import Placement
    from fbupscale_gui.core.request import ReconstructionRequest

__all__ = [
    "CandidateInfo",
    "add_degrade_parser",
    "add_score_parser",
    "cmd_degrade",
    "cmd_score",
    "main",
    "read_candidate_info",
]


class _CliError(Exception):
    """A user-facing failure: the message is one line and names the file."""


# -- reading files --------------------------------------------------------------------------


def _open_image(path: Path) -> Image.Image:
    """Open any image Pillow reads, EXIF-rotated, fully loaded. Raises _CliError naming it."""
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    if not path.exists():
        raise _CliError(f"{path}: no such file")
    if path.is_dir():
        raise _CliError(f"{path}: is a folder, not an image")
    try:
        with PILImage.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened) or opened
            image.load()
            image.info.update(getattr(opened, "text", {}) or {})
            return image
    except UnidentifiedImageError:
        raise _CliError(f"{path}: not an image Pillow can read") from None
    except PILImage.DecompressionBombError as exc:
        raise _CliError(f"{path}: refused, declared size is too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _CliError(f"{path}: unreadable or truncated image ({exc})") from None


@dataclass(frozen=True)
class CandidateInfo:
    """What a candidate's metadata says about it; None where it does not say."""

    seed: int | None = None
    lora: bool | None = None
    variant: int | None = None
    stage: int | None = None
    #: The request when the metadata carries a valid one.
    request: ReconstructionRequest | None = None


def read_candidate_info(path: str | Path, image: Image.Image | None = None) -> CandidateInfo:
    """Seed, LoRA state, variant, stage and request of a candidate file, from its metadata.

    Read by :func:`fbupscale_gui.storage.metadata.read_metadata`; when that refuses the file
    (no request, another release's), whatever the ``fbupscale`` chunk still says validly is
    used. Never raises for missing or malformed metadata (the fields are then None); raises
    OSError only if ``image`` is not given and the file cannot be read.
    """
    from fbupscale_gui.core.errors import FbError
    from fbupscale_gui.storage.metadata import JSON_KEY, read_metadata

    try:
        record = read_metadata(path)
    except FbError:
        if image is None:
            from PIL import Image as PILImage

            with PILImage.open(path) as im:
                return _from_chunk((getattr(im, "text", {}) or {}).get(JSON_KEY))
        return _from_chunk(image.info.get(JSON_KEY))
    key = record.key
    return CandidateInfo(record.seed, key.lora, key.variant, key.stage, record.request)


def _from_chunk(text: Any) -> CandidateInfo:
    """The valid parts of an ``fbupscale`` chunk that the full reader refused; None elsewhere."""
    from fbupscale_gui.core.errors import RequestError
    from fbupscale_gui.core.request import ReconstructionRequest

    try:
        data = json.loads(text) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply
        data = None
    if not isinstance(data, dict):
        return CandidateInfo()
    key = data.get("key")
    key = key if isinstance(key, dict) else {}
    try:
        request = ReconstructionRequest.from_dict(data["request"])
    except (KeyError, TypeError, RequestError):
        request = None

    def number(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    lora = key.get("lora")
    return CandidateInfo(
        seed=number(data.get("seed")),
        lora=lora if isinstance(lora, bool) else None,
        variant=number(key.get("variant")),
        stage=number(key.get("stage")),
        request=request,
    )


def _placement_for(
    cutout: Image.Image, candidate: Image.Image, info: CandidateInfo
) -> tuple[Placement | None, str]:
    """How to undo padding: from the candidate's request, else assume the default centring."""
    from fbupscale_gui.core.images import standardise
    from fbupscale_gui.core.request import Preprocess
    from fbupscale_gui.eval.scoring import placement_for

    if info.request is not None:
        placement = placement_for(cutout, info.request)
        return placement, "content" if placement is None else "padded"
    w, h = candidate.size
    if w == h and cutout.width != cutout.height:
        # An uncropped square without a request: the engine centres content the same way
        # whatever the size, so the default geometry (scaled) is the candidate's.
        return standardise(cutout, Preprocess(crop_to_content=False))[1], "assumed-centred"
    return None, "content"


# -- score ----------------------------------------------------------------------------------


def add_score_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``score CUTOUT CANDIDATE... [--json]`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "score",
        help="rank candidates by LR-consistency with their cutout",
        description=(
            "LR-consistency of each candidate: its content, area-averaged (BOX) down to the "
            "cutout's size, compared with the cutout as BT.601 luma PSNR in dB (capped at 99). "
            "Higher is more faithful to what the camera recorded. No ground truth needed."
        ),
    )
    p.add_argument("cutout", type=Path, help="the cutout the candidates were made from")
    p.add_argument("candidates", type=Path, nargs="+", metavar="candidate", help="candidate images")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument(
        "--scene",
        type=Path,
        metavar="FILE.json",
        help=(
            "check the shirt numbers the scene marks visible against what each candidate shows "
            "(default: the scene recorded in each candidate's metadata, if any)"
        ),
    )
    p.set_defaults(func=cmd_score)
    return p


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def cmd_score(args: argparse.Namespace, _cancel: object = None) -> int:
    """Run ``score``; 0 on success, 1 with one line on stderr naming the file on failure.

    ``_cancel`` is accepted (and unused) so the main CLI can dispatch it like its own commands.
    """
    try:
        result = _score(args.cutout, list(args.candidates), getattr(args, "scene", None))
    except _CliError as exc:
        return error(str(exc), f"{PROG} score")
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0
    cut = result["cutout"]
    print(f"cutout: {cut['path']} ({cut['width']}x{cut['height']} px)")
    header = (
        f"{'rank':>4}  {'LR-cons dB':>10}  {'seed':>6}  {'lora':>4}  {'var':>3}  {'stage':>5}  "
        f"{'numbers':<12}  file"
    )
    print(header)
    for row in result["candidates"]:
        print(
            f"{row['rank']:>4}  {row['lr_consistency_db']:>10.2f}  {_fmt(row['seed']):>6}  "
            f"{_fmt(row['lora']):>4}  {_fmt(row['variant']):>3}  {_fmt(row['stage']):>5}  "
            f"{row['number_check']:<12}  {row['path']}"
        )
        if row["number_check"] == "contradicts":
            print(f"      number check: {row['number_detail']}")
    best = result["candidates"][result["best"]]
    print(
        f"best: {best['path']} ({best['lr_consistency_db']:.2f} dB, seed {_fmt(best['seed'])}, "
        f"LoRA {_fmt(best['lora'])})"
    )
    return 0


def _scene_numbers(scene_path: Path | None, info: CandidateInfo) -> tuple[int, ...]:
    """The numbers to check: from ``--scene``, else from the candidate's recorded scene.

    ``--scene`` is read as ``upscale --scene`` reads it: a regular file of bounded size only."""
    from fbupscale_gui.cli.common import scene_prompt
    from fbupscale_gui.core.errors import RequestError
    from fbupscale_gui.core.number_check import expected_from_scene_json

    if scene_path is not None:
        try:
            _prompt, scene_json = scene_prompt(str(scene_path))
        except RequestError as exc:
            raise _CliError(str(exc)) from None
        return expected_from_scene_json(scene_json)
    return expected_from_scene_json(info.request.scene_json) if info.request else ()


def _number_fields(image: Image.Image, expected: tuple[int, ...]) -> dict[str, Any]:
    from fbupscale_gui.engine.numbers import check_numbers

    check = check_numbers(image, expected)
    return {
        "numbers": [
            {"text": r.text, "confidence": r.confidence, "box": [list(p) for p in r.box]}
            for r in check.readings
        ],
        "number_check": check.verdict,
        "number_expected": list(check.expected),
        "number_detail": check.detail,
    }


def _score(
    cutout_path: Path, candidate_paths: Sequence[Path], scene_path: Path | None = None
) -> dict[str, Any]:
    from fbupscale_gui.core.errors import FbError, InputImageError
    from fbupscale_gui.eval.fidelity import lr_consistency
    from fbupscale_gui.storage.cutouts import load_cutout

    try:
        cutout = load_cutout(cutout_path)
    except InputImageError as exc:
        raise _CliError(str(exc)) from None
    rows: list[dict[str, Any]] = []
    for path in candidate_paths:
        image = _open_image(path)
        info = read_candidate_info(path, image)
        placement, geometry = _placement_for(cutout, image, info)
        try:
            score = lr_consistency(cutout, image, placement)
        except ValueError as exc:
            raise _CliError(f"{path}: {exc}") from None
        try:
            numbers = _number_fields(image, _scene_numbers(scene_path, info))
        except FbError as exc:
            raise _CliError(f"{path}: {exc}") from None
        rows.append(
            {
                "path": str(path),
                "width": image.width,
                "height": image.height,
                "lr_consistency_db": round(score, 4),
                "seed": info.seed,
                "lora": info.lora,
                "variant": info.variant,
                "stage": info.stage,
                "geometry": geometry,
                **numbers,
            }
        )
    order = sorted(range(len(rows)), key=lambda i: (-rows[i]["lr_consistency_db"], i))
    for rank, i in enumerate(order, start=1):
        rows[i]["rank"] = rank
    return {
        "cutout": {"path": str(cutout_path), "width": cutout.width, "height": cutout.height},
        "metric": "lr_consistency_db: BT.601 luma PSNR of the BOX-downscaled candidate, cap 99",
        "candidates": rows,
        "best": order[0],
    }


# -- degrade --------------------------------------------------------------------------------


def add_degrade_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``degrade INPUT -o OUT.png [--severity] [--seed] [--params FILE.json] [--json]``."""
    from fbupscale_gui.eval.degrade_params import SEVERITIES

    p = subparsers.add_parser(
        "degrade",
        help="turn a clean frame into a broadcast-like cutout (seeded, recorded)",
        description=(
            "Apply the broadcast degradation chain (blur, downscale to a cutout, sharpening, "
            "1080i field drop, 4:2:0, H.264/MPEG-2, JPEG). The PNG carries the record of every "
            "step in its 'fbupscale-degrade' text chunk."
        ),
    )
    p.add_argument("input", type=Path, help="a clean high-resolution image")
    p.add_argument("-o", "--output", type=Path, required=True, help="the cutout to write (.png)")
    p.add_argument(
        "--severity", choices=SEVERITIES, default=None, help="a preset (default: medium)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    p.add_argument(
        "--params", type=Path, default=None, help="a DegradeParams JSON file instead of a preset"
    )
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.set_defaults(func=cmd_degrade)
    return p


def cmd_degrade(args: argparse.Namespace, _cancel: object = None) -> int:
    """Run ``degrade``; 0 on success, 1 with one line on stderr naming the file on failure.

    ``_cancel`` is accepted (and unused) so the main CLI can dispatch it like its own commands.
    """
    try:
        record = _degrade(args)
    except _CliError as exc:
        return error(str(exc), f"{PROG} degrade")
    if args.json:
        print(json.dumps(record, indent=2, ensure_ascii=False))
    else:
        w, h = record["output_size"]
        iw, ih = record["input_size"]
        label = record["params"].get("name") or "custom"
        steps = ", ".join(step["step"] for step in record["steps"]) or "no steps"
        print(
            f"{args.output}: {w}x{h} px from {iw}x{ih} px ({label}, seed {record['seed']}): {steps}"
        )
    return 0


def _degrade(args: argparse.Namespace) -> dict[str, Any]:
    from fbupscale_gui.core.errors import RequestError
    from fbupscale_gui.eval.degrade import degrade, save_degraded
    from fbupscale_gui.eval.degrade_params import DegradeParams, severity
    from fbupscale_gui.storage.paths import read_regular

    out: Path = args.output
    if out.suffix.lower() != ".png":
        raise _CliError(f"{out}: must be a .png (the record goes into a PNG text chunk)")
    if not 0 <= args.seed < 2**63:
        raise _CliError(f"--seed: must be 0..2^63-1, got {args.seed}")
    if args.params is not None and args.severity is not None:
        raise _CliError(f"{args.params}: give --params or --severity, not both")
    if args.params is not None:
        try:
            params = DegradeParams.from_json(read_regular(args.params, "--params"))
        except OSError as exc:
            raise _CliError(f"{args.params}: cannot read ({exc.strerror or exc})") from None
        except (RequestError, ValueError) as exc:  # ValueError: a device, FIFO or huge file
            raise _CliError(f"{args.params}: {exc}") from None
    else:
        params = severity(args.severity or "medium")
    image = _open_image(Path(args.input))
    try:
        result, record = degrade(image, params, args.seed)
    except (ValueError, RuntimeError) as exc:  # crop smaller than the cutout; codec missing
        raise _CliError(f"{args.input}: {exc}") from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_degraded(result, record, out)
    except OSError as exc:
        raise _CliError(f"{out}: cannot write ({exc.strerror or exc})") from None
    return record


# -- standalone -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fbupscale_gui.cli.fidelity {score,degrade} ...``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="fbupscale")
    sub = parser.add_subparsers(dest="command", required=True)
    add_score_parser(sub)
    add_degrade_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
