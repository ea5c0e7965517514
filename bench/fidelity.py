"""Paired fidelity benchmark: real photographs, the broadcast degradation model, every engine.

Ground truth is a set of real photographs shipped inside the scikit-image wheel
(``skimage/data``), each centre-cropped to a square and resized with Lanczos to 1024 x 1024.
Each is degraded with :mod:`fbupscale_gui.eval.degrade` at the three severities (cutouts of
100, 80 and 64 px), then reconstructed by every engine available here:

* ``nearest`` - a reference, not an engine: every cutout pixel as a block. It is exactly
  consistent with the cutout (LR-consistency 99 dB) and still the worst picture, which is the
  point: LR-consistency checks fidelity, not quality;
* ``lanczos`` and ``realesrgan`` (Real-ESRGAN x4plus, ncnn on the CPU) through the fast engine;
* ``flux`` (the two-stage reconstruction, stage-2 candidate of variant 0) only with CUDA and
  the weights; otherwise a printed "skipped" note.

Per engine and severity it reports luma PSNR and SSIM against the ground truth at the output
size (1024 x 1024), LR-consistency against the cutout, and run time; per image too. It prints a
Markdown table, writes it between the ``bench:begin``/``bench:end`` markers of ``docs/fidelity.md``
(``--no-docs`` to skip) and writes a contact sheet (one row per image and severity, one column
per engine) to ``--out``.

    .venv/bin/python bench/fidelity.py            # quick set, about a minute on 2 CPU cores
    .venv/bin/python bench/fidelity.py --full     # every image of the set
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fbupscale_gui.core.request import ReconstructionRequest  # noqa: E402
from fbupscale_gui.eval.degrade import degrade  # noqa: E402
from fbupscale_gui.eval.degrade_params import SEVERITIES  # noqa: E402
from fbupscale_gui.eval.fidelity import (  # noqa: E402
    deviation_heatmap,
    lr_consistency,
    psnr_y,
    ssim_y,
)

#: Ground truth: colour photographs first (people, objects, fur, machinery), then grey ones that
#: stand for what matters on a pitch (printed characters like shirt numbers, grass texture).
QUICK_SET = ("astronaut", "chelsea", "coffee", "text")
FULL_SET = (*QUICK_SET, "motorcycle_left", "rocket", "camera", "grass")
GT_SIZE = 1024
THUMB = 176
SEVERITY_SEED = 0

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"

Engine = Callable[[Image.Image], Image.Image]


@dataclass
class Row:
    image: str
    severity: str
    engine: str
    cutout: tuple[int, int]
    psnr: float
    ssim: float
    lr: float
    seconds: float


def skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("scikit-image is not installed: the ground truth photographs ship inside it")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def ground_truth(name: str) -> Image.Image:
    """The photograph, centre-cropped to a square and Lanczos-resized to GT_SIZE."""
    data = skimage_data_dir()
    path = next((p for p in (data / f"{name}.png", data / f"{name}.jpg") if p.exists()), None)
    if path is None:
        sys.exit(f"{name}: not found in {data}")
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    square = rgb.crop((left, top, left + side, top + side))
    return square.resize((GT_SIZE, GT_SIZE), Image.Resampling.LANCZOS)


def ncnn_names() -> list[str]:
    from fbupscale_gui.engine.fast.ncnn_sr import VARIANTS

    return list(VARIANTS)


# -- engines --------------------------------------------------------------------------------


def make_engines(names: Sequence[str], threads: int = 1) -> dict[str, Engine]:
    engines: dict[str, Engine] = {}
    if "nearest" in names:
        engines["nearest"] = lambda cut: cut.resize((GT_SIZE, GT_SIZE), Image.Resampling.NEAREST)
    fast = None
    wanted = [
        n for n in names if n in ("lanczos", "faithful", "realesrgan") or n.startswith("ncnn:")
    ]
    if wanted:
        try:
            from fbupscale_gui.engine.fast.engines import FastEngine

            fast = FastEngine(num_threads=threads)
        except ImportError as exc:
            print(f"fast engines: skipped: fast engine not importable ({exc})")
    if fast is not None:
        fast_engine = fast

        def run_fast(kind: str) -> Engine:
            request = ReconstructionRequest(engine=kind)
            return lambda cut: fast_engine.run(request, cut).image

        for name in wanted:
            try:
                if name != "lanczos":  # load once, outside the timings
                    fast.run(ReconstructionRequest(engine=name), Image.new("RGB", (16, 16)))
                engines[name] = run_fast(name)
            except Exception as exc:  # ModelNotFoundError and ncnn failures alike
                print(f"{name}: skipped: {exc}")
    if "flux" in names:
        flux = make_flux()
        if flux is not None:
            engines["flux"] = flux
    engines.update(make_user_models(threads))
    return engines


def make_user_models(threads: int) -> dict[str, Engine]:
    """Every model in the user's models folder (``fbupscale models add``), by library name."""
    from fbupscale_gui.storage.weights_library import ModelLibrary

    entries = ModelLibrary().entries()
    if not entries:
        print("user models: skipped: the models folder is empty (fbupscale models add FILE)")
        return {}
    import torch

    from fbupscale_gui.engine.sr.engine import SrModelEngine

    torch.set_num_threads(threads)
    sr = SrModelEngine()
    engines: dict[str, Engine] = {}
    for entry in entries:
        request = ReconstructionRequest(
            engine=f"model:{entry.name}", sr_model=ModelLibrary().ref(entry.name)
        )
        sr.model(entry.name)  # load once, outside the timings
        engines[f"model:{entry.name}"] = lambda cut, r=request: sr.run(r, cut).image
    return engines


def make_flux() -> Engine | None:
    """The FLUX engine when CUDA and the weights are there, else None with a printed note."""
    if importlib.util.find_spec("torch") is None:
        print("flux: skipped: torch is not installed")
        return None
    import torch

    if not torch.cuda.is_available():
        print("flux: skipped: no CUDA")
        return None
    from fbupscale_gui.core.errors import FbError
    from fbupscale_gui.engine import Engine as FluxEngine
    from fbupscale_gui.storage.cutouts import make_source

    engine = FluxEngine()
    tmp = Path(tempfile.mkdtemp(prefix="fbupscale-bench-"))

    def run(cut: Image.Image) -> Image.Image:
        path = tmp / f"cutout_{time.monotonic_ns()}.png"
        cut.save(path)
        request = ReconstructionRequest(engine="flux", source=make_source(path, cut), variants=1)
        final = [c for c in engine.run(request) if c.stage == 2]
        return final[-1].image

    try:  # one tiny probe so missing weights show as a note, not a crash mid-table
        run(Image.new("RGB", (64, 64), (90, 120, 60)))
    except FbError as exc:
        print(f"flux: skipped: {exc}")
        return None
    return run


# -- the run --------------------------------------------------------------------------------


def bench(
    images: Sequence[str], severities: Sequence[str], engines: dict[str, Engine]
) -> tuple[list[Row], list[tuple[str, str, dict[str, Image.Image]]]]:
    rows: list[Row] = []
    sheet: list[tuple[str, str, dict[str, Image.Image]]] = []
    for name in images:
        gt = ground_truth(name)
        for sev in severities:
            cut, _record = degrade(gt, sev, seed=SEVERITY_SEED)
            outputs: dict[str, Image.Image] = {}
            for engine_name, engine in engines.items():
                start = time.perf_counter()
                out = engine(cut).convert("RGB")
                seconds = time.perf_counter() - start
                if out.size != gt.size:
                    out = out.resize(gt.size, Image.Resampling.LANCZOS)
                outputs[engine_name] = out
                rows.append(
                    Row(
                        image=name,
                        severity=sev,
                        engine=engine_name,
                        cutout=cut.size,
                        psnr=psnr_y(gt, out),
                        ssim=ssim_y(gt, out),
                        lr=lr_consistency(cut, out),
                        seconds=seconds,
                    )
                )
                print(
                    f"  {name:16s} {sev:6s} {engine_name:10s} PSNR-Y {rows[-1].psnr:6.2f}  "
                    f"SSIM-Y {rows[-1].ssim:.4f}  LR {rows[-1].lr:6.2f}  {seconds:6.2f} s",
                    flush=True,
                )
            columns = {"ground truth": gt}
            if "nearest" not in outputs:
                columns["cutout"] = cut
            columns.update(outputs)
            # the overlay the window shows, on the most inventive engine that ran
            last = list(outputs)[-1]
            overlay = outputs[last].convert("RGBA")
            overlay.alpha_composite(deviation_heatmap(cut, outputs[last]))
            columns[f"{last} deviation"] = overlay.convert("RGB")
            sheet.append((name, sev, columns))
    return rows, sheet


def summary_table(rows: Sequence[Row], engines: Sequence[str], severities: Sequence[str]) -> str:
    lines = [
        "| engine | severity | cutout px | PSNR-Y dB ↑ | SSIM-Y ↑ | LR-consistency dB | time s |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for engine in engines:
        for sev in severities:
            sel = [r for r in rows if r.engine == engine and r.severity == sev]
            if not sel:
                continue
            size = sel[0].cutout
            lines.append(
                f"| {engine} | {sev} | {size[0]}x{size[1]} | "
                f"{np.mean([r.psnr for r in sel]):.2f} | {np.mean([r.ssim for r in sel]):.4f} | "
                f"{np.mean([r.lr for r in sel]):.2f} | {np.mean([r.seconds for r in sel]):.2f} |"
            )
    return "\n".join(lines)


def detail_table(rows: Sequence[Row]) -> str:
    lines = [
        "| image | severity | engine | PSNR-Y dB | SSIM-Y | LR-consistency dB | time s |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.image} | {r.severity} | {r.engine} | {r.psnr:.2f} | {r.ssim:.4f} | {r.lr:.2f} | "
        f"{r.seconds:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import av
    import PIL

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"{cpu}, {cores} cores{load}, no GPU in use; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__}, "
        f"PyAV {av.__version__}"
    )


def contact_sheet(sheet: Sequence[tuple[str, str, dict[str, Image.Image]]], path: Path) -> None:
    if not sheet:
        return
    columns = list(sheet[0][2])
    label_w, header_h = 120, 24
    font = ImageFont.load_default()
    canvas = Image.new(
        "RGB", (label_w + THUMB * len(columns), header_h + THUMB * len(sheet)), (24, 24, 24)
    )
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(columns):
        label = "cutout (nearest)" if title == "nearest" else title
        draw.text((label_w + c * THUMB + 6, 6), label, fill=(235, 235, 235), font=font)
    for r, (name, sev, images) in enumerate(sheet):
        y = header_h + r * THUMB
        draw.text((6, y + 6), f"{name}\n{sev}", fill=(235, 235, 235), font=font)
        for c, title in enumerate(columns):
            image = images[title]
            filt = (
                Image.Resampling.NEAREST
                if title in ("cutout", "nearest")
                else Image.Resampling.LANCZOS
            )
            canvas.paste(image.resize((THUMB, THUMB), filt), (label_w + c * THUMB, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def write_docs(path: Path, block: str) -> None:
    """Replace the text between the markers in ``path`` (appending them if absent)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Fidelity benchmark\n"
    new_block = f"{BEGIN}\n{block}\n{END}"
    if BEGIN in text and END in text:
        text = re.sub(
            re.escape(BEGIN) + r".*?" + re.escape(END), lambda _m: new_block, text, flags=re.S
        )
    else:
        text = text.rstrip("\n") + "\n\n" + new_block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--quick", action="store_true", help=f"images {', '.join(QUICK_SET)} (default)"
    )
    group.add_argument("--full", action="store_true", help=f"images {', '.join(FULL_SET)}")
    parser.add_argument("--images", nargs="+", help="explicit image names from skimage/data")
    parser.add_argument("--severities", nargs="+", choices=SEVERITIES, default=list(SEVERITIES))
    parser.add_argument(
        "--engines",
        nargs="+",
        metavar="ENGINE",
        default=["nearest", "lanczos", "realesrgan", "faithful", "flux"],
        help="nearest, lanczos, realesrgan, faithful, flux, ncnn:NAME, or all-ncnn for every "
        f"wheel model ({', '.join(ncnn_names())})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for Real-ESRGAN (default 1: on a shared 2-core machine 2 threads "
        "contend and run several times slower)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "fidelity_sheet.png")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "fidelity.md")
    parser.add_argument("--no-docs", action="store_true", help="do not update the docs table")
    args = parser.parse_args(argv)

    images = args.images or (FULL_SET if args.full else QUICK_SET)
    names: list[str] = []
    for name in args.engines:
        names += [f"ncnn:{n}" for n in ncnn_names()] if name == "all-ncnn" else [name]
    engines = make_engines(names, args.threads)
    if not engines:
        print("no engine available")
        return 1
    started = time.perf_counter()
    rows, sheet = bench(images, args.severities, engines)
    total = time.perf_counter() - started

    summary = summary_table(rows, list(engines), args.severities)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = "\n".join(
        [
            f"Run {stamp} on {machine()}.",
            f"Images: {', '.join(images)}; severities: {', '.join(args.severities)} "
            f"(seed {SEVERITY_SEED}); output 1024 x 1024; Real-ESRGAN on {args.threads} "
            f"thread(s). Total {total:.0f} s.",
            "",
            summary,
            "",
            "<details><summary>Per image</summary>",
            "",
            detail_table(rows),
            "",
            "</details>",
        ]
    )
    print()
    print(block)
    contact_sheet(sheet, args.out)
    print(f"\ncontact sheet: {args.out}")
    if not args.no_docs:
        write_docs(args.docs, block)
        print(f"table written to {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
