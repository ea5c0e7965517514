"""The measured LoRA A/B the paper lacked: held-out frames, degraded, reconstructed twice.

For every held-out frame of a dataset (``OUT/holdout``, see
:mod:`fbupscale_gui.storage.lora_dataset_files`): the frame is the ground truth (long side
``size``); the broadcast degradation model (:mod:`fbupscale_gui.eval.degrade`) makes a cutout of
it; the FLUX engine reconstructs the cutout with and without the LoRA (the usual A/B: stage 1
once, stage 2 both ways, same seeds). Each result is scored against the ground truth (PSNR-Y,
SSIM-Y) and against the cutout (LR-consistency). :func:`write_report` writes ``report.json``,
``report.md`` (a table with means and the with-minus-without difference) and ``report.png``
(a bar plot per frame and metric).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.job import raise_if_cancelled
from fbupscale_gui.storage.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.request import ReconstructionRequest
    from fbupscale_gui.engine import Engine

__all__ = ["ABRow", "ab_rows", "report_markdown", "report_plot", "write_report"]

METRICS: Final = (("psnr_y", "PSNR-Y dB"), ("ssim_y", "SSIM-Y"), ("lr_consistency", "LR-cons. dB"))
_FRAME_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class ABRow:
    frame: str
    lora: bool
    variant: int
    psnr_y: float
    ssim_y: float
    lr_consistency: float


def _ground_truth(path: Path, size: int) -> Image.Image:
    from PIL import Image as PILImage
    from PIL import ImageOps

    with PILImage.open(path) as img:
        rgb = ImageOps.exif_transpose(img).convert("RGB")
    scale = size / max(rgb.size)
    target = (max(8, round(rgb.width * scale)), max(8, round(rgb.height * scale)))
    return rgb.resize(target, PILImage.Resampling.LANCZOS)


def ab_rows(
    dataset: Path,
    template: ReconstructionRequest,
    work: Path,
    *,
    engine: Engine | None = None,
    severity: str = "medium",
    seed: int = 0,
    on_frame: Callable[[int, int, str], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> list[ABRow]:
    """Score every held-out frame with and without the LoRA of ``template`` (which names the
    FLUX models, the LoRA with ``ab`` on, and the settings). Cutouts and results go to
    ``work``. Raises RequestError when there is no held-out frame or no LoRA."""
    from PIL import Image as PILImage

    from fbupscale_gui.engine import Engine as EngineClass
    from fbupscale_gui.eval.degrade import degrade
    from fbupscale_gui.eval.fidelity import lr_consistency, psnr_y, ssim_y
    from fbupscale_gui.storage.cutouts import make_source

    holdout = dataset / "holdout"
    frames = sorted(
        p for p in holdout.glob("*") if p.is_file() and p.suffix.lower() in _FRAME_SUFFIXES
    )
    if not frames:
        raise RequestError(
            f"{holdout}: no held-out frames; build the dataset with --holdout N first"
        )
    if template.lora.model is None or not template.lora.ab:
        raise RequestError("the A/B report needs a LoRA with A/B on")
    engine = engine or EngineClass()
    work.mkdir(parents=True, exist_ok=True)
    rows: list[ABRow] = []
    for index, frame in enumerate(frames):
        raise_if_cancelled(is_cancelled)
        if on_frame is not None:
            on_frame(index, len(frames), frame.name)
        gt = _ground_truth(frame, template.preprocess.size)
        cutout, _record = degrade(gt, severity, seed=seed)
        cut_path = work / f"{frame.stem}_cutout.png"
        cutout.save(cut_path)
        caption = frame.with_name(frame.stem + ".txt")
        prompt = caption.read_text(encoding="utf-8").strip() if caption.is_file() else ""
        request = template.replace(source=make_source(cut_path, cutout), prompt=prompt)
        for candidate in engine.run(request, is_cancelled=is_cancelled):
            if candidate.stage != max(k.stage for k in request.candidate_keys()):
                continue
            out = candidate.image.convert("RGB")
            tag = "lora" if candidate.lora else "nolora"
            out.save(work / f"{frame.stem}_v{candidate.key.variant}_{tag}.png")
            scored = (
                out if out.size == gt.size else out.resize(gt.size, PILImage.Resampling.LANCZOS)
            )
            rows.append(
                ABRow(
                    frame=frame.name,
                    lora=candidate.lora,
                    variant=candidate.key.variant,
                    psnr_y=psnr_y(gt, scored),
                    ssim_y=ssim_y(gt, scored),
                    lr_consistency=lr_consistency(cutout, out),
                )
            )
    return rows


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def report_markdown(rows: Sequence[ABRow], title: str = "LoRA A/B on held-out frames") -> str:
    """A table per frame (means over variants) and overall, with the LoRA's difference."""
    frames = list(dict.fromkeys(r.frame for r in rows))
    head = "| frame | " + " | ".join(
        f"{label} without | {label} with | Δ" for _key, label in METRICS
    )
    lines = [f"## {title}", "", head + " |", "|---" * (1 + 3 * len(METRICS)) + "|"]
    for name in [*frames, "mean"]:
        sel = rows if name == "mean" else [r for r in rows if r.frame == name]
        cells = []
        for key, _label in METRICS:
            off = _mean([getattr(r, key) for r in sel if not r.lora])
            on = _mean([getattr(r, key) for r in sel if r.lora])
            digits = 4 if key == "ssim_y" else 2
            cells += [f"{off:.{digits}f}", f"{on:.{digits}f}", f"{on - off:+.{digits}f}"]
        label = "**mean**" if name == "mean" else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report_plot(rows: Sequence[ABRow], width: int = 900, height: int = 320) -> Image.Image:
    """One panel per metric: per frame, a bar without (grey) and with (orange) the LoRA."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    img = PILImage.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    frames = list(dict.fromkeys(r.frame for r in rows))
    panel_w = width // len(METRICS)
    colours = {False: (150, 150, 150), True: (235, 130, 40)}
    for m, (key, label) in enumerate(METRICS):
        x0, top, bottom = m * panel_w + 40, 30, height - 40
        values = [getattr(r, key) for r in rows]
        lo, hi = min([*values, 0.0]), max([*values, 1e-9])
        draw.text((m * panel_w + 10, 8), label, fill="black")
        draw.line([(x0, bottom), (x0 + panel_w - 50, bottom)], fill="black")
        draw.text((x0 - 35, top), f"{hi:.3g}", fill="black")
        slot = (panel_w - 50) / max(1, len(frames))
        for f, name in enumerate(frames):
            for j, on in enumerate((False, True)):
                v = _mean([getattr(r, key) for r in rows if r.frame == name and r.lora is on])
                h = (v - lo) / ((hi - lo) or 1.0) * (bottom - top)
                bx = x0 + f * slot + 4 + j * (slot - 8) / 2
                draw.rectangle([bx, bottom - h, bx + (slot - 8) / 2 - 2, bottom], fill=colours[on])
            draw.text((x0 + f * slot + 4, bottom + 6), name[:10], fill="black")
    draw.text((10, height - 16), "grey: without LoRA   orange: with LoRA", fill="black")
    return img


def write_report(rows: Sequence[ABRow], out: Path, meta: dict[str, Any] | None = None) -> Path:
    """``report.json``, ``report.md`` and ``report.png`` in ``out``; returns the Markdown."""
    import io

    out.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta or {}, "rows": [asdict(r) for r in rows]}
    atomic_write_bytes(out / "report.json", json.dumps(data, indent=2).encode())
    md = report_markdown(rows)
    atomic_write_bytes(out / "report.md", md.encode())
    buf = io.BytesIO()
    report_plot(rows).save(buf, format="PNG")
    atomic_write_bytes(out / "report.png", buf.getvalue())
    return out / "report.md"
