"""Hostile inputs on every surface: how many were tried, and how each was handled.

Builds every case in a temporary folder (nothing is downloaded) and prints one table row per
case and the counts ``tried, handled, crashed, hung, escaped``:

* ``images``: hostile and odd cutout files given to
  :func:`fbupscale_gui.storage.cutouts.load_cutout_with_notes` (in this process);
* ``cli``: the ``fbupscale`` command line (upscale, reproduce, score) on hostile scene files,
  candidate metadata, file names and concurrent runs;
* ``models``: the models folder (a hostile ``index.json``, hostile model files);
* ``video``: hostile times, outputs and clips;
* ``sessions``: damaged session folders opened by the session store;
* ``lora``: non-finite LoRA weights.

Every case but the images runs in its own process with a time limit (``hung`` when it is
exceeded) and an address-space limit (a runaway allocation ends as a crash, not a swapped
machine). A case is ``handled`` when it ends with a clear message (exit status 0, 1 or 2, no
traceback) and its own check passes; ``crashed`` on a traceback, a signal or a failed check;
``escaped`` when hostile input got through: a file outside its folder was deleted, one run's
output was overwritten by another's, a raw control character reached the terminal, or a
hostile value was accepted as if it were sound. The exit status is 1 when anything was not
handled.

    .venv/bin/python bench/hostile_images.py            # every case
    .venv/bin/python bench/hostile_images.py --fast     # the quick ones (the test suite runs these)
    .venv/bin/python bench/hostile_images.py --surface models --surface cli
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fbupscale_gui.core.errors import InputImageError  # noqa: E402
from fbupscale_gui.storage.cutouts import load_cutout_with_notes  # noqa: E402

SURFACES = ("images", "cli", "models", "video", "sessions", "lora")
OUTCOMES = ("handled", "crashed", "hung", "escaped")
#: Address-space limit of each case's process (torch alone maps about 2 GiB).
MEMORY_LIMIT = 6 * 1024**3
#: Time limit of each case's process, seconds.
TIME_LIMIT = 60.0
FAST_TIME_LIMIT = 20.0
#: Nesting deep enough to exhaust Python's recursion limit in ``json.loads``.
DEEP = 200_000


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, depth: int, rows: bytes, colour: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def _big_png(side: int) -> bytes:
    """A valid ``side`` x ``side`` all-black 1-bit PNG, compressed row by row (small)."""
    comp = zlib.compressobj(9)
    row = b"\0" * ((side + 7) // 8 + 1)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    )


def _player(w: int = 40, h: int = 64) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2] = (220, 30, 30)
    arr[h // 2 :] = (30, 30, 220)
    return Image.fromarray(arr)


# -- images (in this process) -----------------------------------------------------------------


def image_cases(folder: Path) -> list[tuple[str, Path]]:
    """(description, path) for every cutout-file case, written into ``folder``."""
    out: list[tuple[str, Path]] = []

    def add(name: str, filename: str, data: bytes | Callable[[Path], None]) -> None:
        path = folder / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            data(path)
        out.append((name, path))

    png = _encode(_player(), "PNG")
    jpeg = _encode(_player(), "JPEG")
    add("zero-byte file", "empty.png", b"")
    add("truncated PNG", "truncated.png", png[: len(png) // 2])
    add("truncated JPEG", "truncated.jpg", jpeg[: len(jpeg) // 2])
    add("text renamed .png", "notes.png", b"kick-off 20:45, 4-4-2\n")
    add("ICO renamed .png (unsupported format)", "icon.png", _encode(_player(32, 32), "ICO"))
    add("bomb: PNG declaring 30000x30000", "bomb.png", _png(30000, 30000, 8, b"\x00" * 16))
    add("bomb at warning level: 10000x10000", "warn_bomb.png", _png(10000, 10000, 8, b"\0" * 16))
    add("4000 px image", "frame.jpg", _encode(Image.new("RGB", (4000, 300)), "JPEG"))
    add("1x1 px", "dot.png", _encode(Image.new("RGB", (1, 1)), "PNG"))
    grey16 = np.tile(np.array([0, 257, 32896, 65535], np.uint16), (16, 4))
    add("16-bit grey PNG", "grey16.png", _encode(Image.fromarray(grey16), "PNG"))
    rgb16 = np.full((16, 16, 3), 40000, np.uint16)
    rows = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(16))
    add("16-bit RGB PNG", "rgb16.png", _png(16, 16, 16, rows))
    add("CMYK JPEG", "cmyk.jpg", _encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"))
    add("grayscale PNG", "grey.png", _encode(Image.new("L", (20, 30), 77), "PNG"))
    pal = _player(32, 32).convert("P")
    add("palette PNG", "palette.png", _encode(pal, "PNG"))
    add("palette PNG with transparency", "palette_t.png", _encode(pal, "PNG", transparency=0))
    add("RGBA PNG", "rgba.png", _encode(Image.new("RGBA", (16, 16), (255, 0, 0, 0)), "PNG"))
    exif = Image.Exif()
    exif[0x0112] = 6
    add("EXIF-rotated JPEG", "rotated.jpg", _encode(_player(64, 40), "JPEG", exif=exif.tobytes()))
    frames = [Image.new("RGB", (24, 24), c) for c in ((200, 0, 0), (0, 200, 0))]
    for fmt in ("GIF", "WEBP"):
        add(
            f"animated {fmt}",
            f"anim.{fmt.lower()}",
            _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=40),
        )
    add("unicode and spaces in path", "Tor – Müller ゴール 13.png", png)
    out.append(("missing path", folder / "gone.png"))
    (folder / "folder.png").mkdir()
    out.append(("folder", folder / "folder.png"))
    out.append(("NUL byte in path", Path(f"{folder}/bad\x00name.png")))
    return out


def run_image_cases(folder: Path) -> list[Row]:
    rows: list[Row] = []
    for name, path in image_cases(folder):
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                info = load_cutout_with_notes(path)
            outcome = "handled"
            detail = f"loaded {info.image.width}x{info.image.height} {info.original_mode}"
            if info.notes:
                detail += " — " + "; ".join(info.notes)
        except InputImageError as exc:
            outcome, detail = "handled", f"refused: {exc.reason}"
        except Exception as exc:
            outcome, detail = "crashed", f"{type(exc).__name__}: {exc}"
        rows.append(Row("images", name, outcome, time.perf_counter() - started, detail))
    return rows


# -- cases run in their own process ------------------------------------------------------------


@dataclass
class Proc:
    """What a process case ran: exit status, output, whether it ran out of time."""

    rc: int
    out: str
    err: str
    hung: bool
    peak_mb: float = 0.0


@dataclass
class Case:
    """One hostile input: ``prepare(folder)`` writes it and returns the command(s) to run.

    A command is an argv for ``python``; several run at the same time. ``check(folder,
    procs)`` returns ``(outcome, detail)`` to override the default classification, or None.
    """

    surface: str
    name: str
    prepare: Callable[[Path], list[list[str]]]
    check: Callable[[Path, list[Proc]], tuple[str, str] | None] | None = None
    fast: bool = True
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Row:
    surface: str
    name: str
    outcome: str
    seconds: float
    detail: str
    peak_mb: float = 0.0


def _cli(*args: str | Path) -> list[str]:
    return ["-m", "fbupscale_gui.cli", *(str(a) for a in args)]


def _code(source: str, *args: str | Path) -> list[str]:
    return ["-c", source, *(str(a) for a in args)]


def _limits() -> None:  # pragma: no cover - runs in the child
    os.setsid()
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _run_procs(argvs: list[list[str]], cwd: Path, env: dict[str, str], limit: float) -> list[Proc]:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), FBUPSCALE_MODELS_DIR=str(cwd / "models"))
    full_env.update(
        FBUPSCALE_SESSIONS_DIR=str(cwd / "sessions"),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONIOENCODING="utf-8",
    )
    full_env.update(env)
    deadline = time.monotonic() + limit
    running: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    for n, argv in enumerate(argvs):
        out_file, err_file = cwd / f".stdout{n}", cwd / f".stderr{n}"
        with open(out_file, "wb") as out, open(err_file, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, *argv],
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                preexec_fn=_limits,
            )
        running.append((proc, out_file, err_file))
    results: list[Proc] = []
    for proc, out_file, err_file in running:
        hung = False
        while True:  # os.wait4 reports the child's own peak memory
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                hung = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        results.append(
            Proc(
                proc.returncode,
                out_file.read_bytes().decode("utf-8", "replace"),
                err_file.read_bytes().decode("utf-8", "replace"),
                hung,
                usage.ru_maxrss / 1024,  # Linux reports KiB
            )
        )
    return results


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def classify(case: Case, folder: Path, procs: list[Proc]) -> tuple[str, str]:
    if any(p.hung for p in procs):
        return "hung", "still running at the time limit"
    override = case.check(folder, procs) if case.check is not None else None
    if override is not None and override[0] == "escaped":
        return override
    for p in procs:
        if "Traceback (most recent call last)" in p.err or p.rc not in (0, 1, 2, 130):
            return "crashed", f"rc {p.rc}: {_last_line(p.err)}"
    if override is not None:
        return override
    return "handled", f"rc {procs[0].rc}: {_last_line(procs[0].err) or _last_line(procs[0].out)}"


# -- shared artefacts --------------------------------------------------------------------------


def _cutout(
    folder: Path, name: str = "cutout.png", colour: tuple[int, int, int] = (200, 30, 30)
) -> Path:
    path = folder / name
    Image.new("RGB", (24, 36), colour).save(path)
    return path


def _candidate(folder: Path, **request_fields: object) -> Path:
    """A genuine lanczos candidate with its metadata (rendered in this process, no torch)."""
    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
    from fbupscale_gui.storage.cutouts import make_source
    from fbupscale_gui.storage.metadata import save_candidate

    src = _cutout(folder)
    image = Image.open(src).convert("RGB")
    fields: dict[str, object] = {"engine": "lanczos", **request_fields}
    request = ReconstructionRequest(source=make_source(src, image), **fields)  # type: ignore[arg-type]
    big = image.resize((64, 96), Image.Resampling.LANCZOS)
    candidate = Candidate(
        request=request, key=CandidateKey(variant=0, lora=False, stage=2), seed=5, image=big
    )
    return save_candidate(candidate, folder / "candidate.png", cutout=image)


def _rewrite_texts(src: Path, dst: Path, **texts: str) -> Path:
    """``src`` with some of its PNG text chunks replaced (compressed iTXt)."""
    with Image.open(src) as im:
        im.load()
        old = dict(getattr(im, "text", {}))
        pixels = im.convert("RGB")
    info = PngImagePlugin.PngInfo()
    for key, value in {**old, **texts}.items():
        info.add_itxt(key, value, zip=True)
    pixels.save(dst, format="PNG", pnginfo=info)
    return dst


def _deep_json() -> str:
    return "[" * DEEP + "]" * DEEP


def _cli_cases() -> list[Case]:
    cases: list[Case] = []

    def scene(target: Callable[[Path], str]) -> Callable[[Path], list[list[str]]]:
        def prepare(d: Path) -> list[list[str]]:
            return [_cli("upscale", _cutout(d), "-o", d / "out", "--engine", "lanczos",
                         "-q", "--scene", target(d))]  # fmt: skip

        return prepare

    def fifo(d: Path) -> str:
        os.mkfifo(d / "scene.json")
        return str(d / "scene.json")

    def big_scene(d: Path) -> str:
        path = d / "scene.json"
        with open(path, "wb") as fh:
            fh.truncate(512 * 1024 * 1024)  # sparse: 512 MB of NULs, nothing on disk
        return str(path)

    def nothing_written(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        if procs[0].rc == 0:
            return "escaped", "accepted the scene and rendered"
        return None

    cases.append(
        Case("cli", "upscale --scene /dev/zero", scene(lambda d: "/dev/zero"), nothing_written)
    )
    cases.append(Case("cli", "upscale --scene FIFO", scene(fifo), nothing_written))
    cases.append(
        Case("cli", "upscale --scene 512 MB sparse file", scene(big_scene), nothing_written)
    )
    cases.append(
        Case("cli", "upscale --scene deeply nested JSON",
             scene(lambda d: str(_write(d / "scene.json", _deep_json()))), nothing_written)
    )  # fmt: skip

    def degrade_fifo(d: Path) -> list[list[str]]:
        os.mkfifo(d / "params.json")
        big = d / "clean.png"
        Image.new("RGB", (256, 256), (90, 140, 60)).save(big)
        return [_cli("degrade", big, "-o", d / "low.png", "--params", d / "params.json")]

    cases.append(Case("cli", "degrade --params FIFO", degrade_fifo, refused_any))

    def flux_fifo(d: Path) -> list[list[str]]:
        (d / "flux").mkdir()
        os.mkfifo(d / "flux" / "model_index.json")
        return [_cli("upscale", _cutout(d), "-o", d / "out", "--flux", d / "flux", "-q")]

    cases.append(
        Case("cli", "--flux folder whose model_index.json is a FIFO", flux_fifo, refused_any)
    )

    def nested_meta(d: Path) -> Path:
        return _rewrite_texts(_candidate(d), d / "nested.png", fbupscale=_deep_json())

    def bomb_meta(side: int) -> Callable[[Path], Path]:
        def make(d: Path) -> Path:
            cutout = base64.b64encode(_big_png(side)).decode("ascii")
            return _rewrite_texts(_candidate(d), d / "bomb.png", **{"fbupscale-cutout": cutout})

        return make

    def refused(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        if procs[0].rc == 0:
            return "escaped", "accepted"
        return None

    for label, make in (
        ("deeply nested metadata JSON", nested_meta),
        ("embedded cutout 30000x30000 (bomb)", bomb_meta(30000)),
        ("embedded cutout 12000x12000", bomb_meta(12000)),
    ):
        fast = "30000" not in label and "12000" not in label

        def rep(d: Path, make: Callable[[Path], Path] = make) -> list[list[str]]:
            return [_cli("reproduce", make(d), "-o", d / "again.png", "-q")]

        def score(d: Path, make: Callable[[Path], Path] = make) -> list[list[str]]:
            return [_cli("score", _cutout(d, "c2.png"), make(d))]

        cases.append(Case("cli", f"reproduce: {label}", rep, refused, fast=fast))
        cases.append(Case("cli", f"score: {label}", score, None, fast=fast))

    def long_name(stem: str) -> Callable[[Path], list[list[str]]]:
        def prepare(d: Path) -> list[list[str]]:
            (d / "in").mkdir()
            _cutout(d / "in", f"{stem}.png")
            _cutout(d / "in", "zz-next.png", (20, 200, 20))
            return [_cli("upscale", d / "in", "-o", d / "out", "--engine", "lanczos", "-q")]

        return prepare

    def all_written(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        printed = [line for line in procs[0].out.splitlines() if line]
        files = sorted(p.name for p in (d / "out").glob("*.png")) if (d / "out").is_dir() else []
        if procs[0].rc != 0 or len(files) != 2 or len(printed) != 2:
            return (
                "crashed",
                f"rc {procs[0].rc}, {len(files)} of 2 written: {_last_line(procs[0].err)}",
            )
        return "handled", f"2 of 2 written, e.g. {files[0][:40]}..."

    cases.append(Case("cli", "input name of 240 characters", long_name("p" * 240), all_written))
    cases.append(Case("cli", "input name of 120 x 'é'", long_name("é" * 120), all_written))

    def control_names(d: Path) -> list[list[str]]:
        (d / "in").mkdir()
        _cutout(d / "in", "two\nlines.png")
        _cutout(d / "in", "\x1b[31mred\x1b[0m.png", (20, 200, 20))
        return [_cli("upscale", d / "in", "-o", d / "out", "--engine", "lanczos", "-q")]

    def one_path_per_line(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        lines = [line for line in procs[0].out.splitlines() if line]
        if "\x1b" in procs[0].out + procs[0].err or len(lines) != 2:
            return "escaped", f"{len(lines)} stdout lines for 2 files, ESC in output"
        return None

    cases.append(Case("cli", "newline and ESC in input names", control_names, one_path_per_line))

    def concurrent(d: Path) -> list[list[str]]:
        argvs = []
        for run in ("a", "b"):
            (d / run).mkdir()
            for i in range(6):
                _cutout(d / run, f"shot{i}.png", (40 * i, 100 if run == "a" else 200, 30))
            argvs.append(_cli("upscale", d / run, "-o", d / "out", "--engine", "lanczos", "-q"))
        return argvs

    def no_clobber(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        printed = [line for p in procs for line in p.out.splitlines() if line]
        files = list((d / "out").glob("*.png"))
        if len(set(printed)) != len(printed) or len(files) != len(printed):
            return "escaped", f"{len(printed)} paths printed, {len(files)} files exist"
        return "handled", f"{len(printed)} paths printed, {len(files)} files exist"

    cases.append(Case("cli", "two runs into one output folder", concurrent, no_clobber))

    def custom_code(d: Path) -> list[list[str]]:
        from fbupscale_gui.core.request import ModelRef

        flux = d / "FLUX.1-dev"
        _write(flux / "pipeline.py", "import os\nos.system('touch pwned')\n")
        index = {"_class_name": ["pipeline", "EvilPipeline"], "_diffusers_version": "0.32.0"}
        _write(flux / "model_index.json", json.dumps(index))
        cn = d / "controlnet"
        _write(cn / "config.json", json.dumps({"_class_name": "FluxControlNetModel"}))
        _write(cn / "diffusion_pytorch_model.safetensors", b"")
        src = _candidate(
            d, engine="flux", flux=ModelRef(path=str(flux)), controlnet=ModelRef(path=str(cn))
        )
        return [_cli("reproduce", src, "-o", d / "again.png", "-q", "--device", "cpu")]

    def not_run(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        if (d / "pwned").exists() or procs[0].rc == 0:
            return "escaped", "ran the folder's code or accepted it"
        return None

    cases.append(
        Case(
            "cli",
            "reproduce: model folder asking for custom code",
            custom_code,
            not_run,
            fast=False,
        )
    )

    def full_disk(d: Path) -> list[list[str]]:
        limit = "import resource,runpy,sys;resource.setrlimit(resource.RLIMIT_FSIZE,(2000,2000));"
        run = "sys.argv=['fbupscale',*sys.argv[1:]];runpy.run_module('fbupscale_gui.cli',run_name='__main__')"
        return [
            _code(limit + run, "upscale", _cutout(d), "-o", d / "out", "--engine", "lanczos", "-q")
        ]

    def names_file(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        err = procs[0].err.strip().splitlines()[0] if procs[0].err.strip() else ""
        if procs[0].rc != 1 or str(d / "out") not in err or "bytes" not in err:
            return (
                "crashed",
                f"rc {procs[0].rc}: {err} (the file or the amount written is not named)",
            )
        return None

    cases.append(Case("cli", "disk full while writing (file size limit)", full_disk, names_file))
    return cases


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def _index(d: Path, models: object) -> None:
    _write(d / "models" / "index.json", json.dumps({"version": 1, "models": models}))


def _models_cases() -> list[Case]:
    cases: list[Case] = []

    def escape(file: Callable[[Path], str], action: str) -> Callable[[Path], list[list[str]]]:
        def prepare(d: Path) -> list[list[str]]:
            _write(d / "victim.txt", "not yours to delete")
            _index(d, {"x": {"file": file(d), "sha256": "0" * 64, "arch": "SPAN", "scale": 2}})
            if action == "remove":
                return [_cli("models", "remove", "x")]
            return [_cli("models", "list")]

        return prepare

    def victim_kept(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        if not (d / "victim.txt").exists():
            return "escaped", f"deleted {d / 'victim.txt'} (rc {procs[0].rc})"
        if procs[0].rc == 0:
            return "escaped", "accepted the entry without a word"
        return None

    cases.append(
        Case("models", "index entry file=/abs/path, models remove",
             escape(lambda d: str(d / "victim.txt"), "remove"), victim_kept)
    )  # fmt: skip
    cases.append(
        Case("models", "index entry file=../x, models remove",
             escape(lambda d: "../victim.txt", "remove"), victim_kept)
    )  # fmt: skip

    def nested_index(d: Path) -> list[list[str]]:
        _write(d / "models" / "index.json", '{"version": 1, "models": ' + _deep_json() + "}")
        return [_cli("models", "list")]

    def fifo_index(d: Path) -> list[list[str]]:
        (d / "models").mkdir()
        os.mkfifo(d / "models" / "index.json")
        return [_cli("models", "list")]

    def zero_index(d: Path) -> list[list[str]]:
        (d / "models").mkdir()
        (d / "models" / "index.json").symlink_to("/dev/zero")
        return [_cli("models", "list")]

    cases.append(Case("models", "deeply nested index.json", nested_index))
    cases.append(Case("models", "index.json is a FIFO", fifo_index))
    cases.append(Case("models", "index.json is /dev/zero", zero_index))

    def add(make: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[list[str]]]:
        def prepare(d: Path) -> list[list[str]]:
            return [_cli("models", "add", make(d), *extra)]

        return prepare

    def zip_bomb(d: Path) -> Path:
        path = d / "bomb.pth"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
            zf.writestr("archive/version", "3\n")
            with zf.open("archive/data/0", "w", force_zip64=True) as fh:
                block = b"\0" * (16 * 1024 * 1024)
                for _ in range(64):  # 1 GiB of zeros, about 1 MB compressed
                    fh.write(block)
        return path

    def nested_safetensors(d: Path) -> Path:
        header = b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
        return _write(d / "nested.safetensors", struct.pack("<Q", len(header)) + header)

    def text_pth(d: Path) -> Path:
        return _write(d / "notes.pth", "this is a text file, not weights\n" * 10)

    def symlink(d: Path) -> Path:
        (d / "link.pth").symlink_to("/dev/zero")
        return d / "link.pth"

    def dangling(d: Path) -> Path:
        (d / "gone.safetensors").symlink_to(d / "nowhere.safetensors")
        return d / "gone.safetensors"

    cases.append(
        Case(
            "models",
            "models add zip-bomb .pth (1 GiB of zeros)",
            add(zip_bomb),
            refused_any,
            fast=False,
        )
    )
    cases.append(
        Case(
            "models",
            "models add nested safetensors header",
            add(nested_safetensors),
            refused_any,
            fast=False,
        )
    )
    cases.append(
        Case("models", "models add text file named .pth", add(text_pth), refused_any, fast=False)
    )
    cases.append(
        Case("models", "models add symlink to /dev/zero", add(symlink), refused_any, fast=False)
    )
    cases.append(Case("models", "models add dangling symlink", add(dangling), refused_any))

    def replace_escape(d: Path) -> list[list[str]]:
        from safetensors.numpy import save_file

        _write(d / "victim.txt", "not yours to delete")
        _index(d, {"x": {"file": "../victim.txt", "sha256": "0" * 64, "arch": "SPAN", "scale": 2}})
        save_file({"w": np.zeros((2,), np.float32)}, str(d / "x.safetensors"))
        return [_cli("models", "add", d / "x.safetensors", "--name", "x", "--replace")]

    def entry_named(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        kept = victim_kept(d, procs)
        if kept is None and "entry 'x'" not in procs[0].err:
            return "crashed", f"refused without naming the entry: {_last_line(procs[0].err)}"
        return kept

    cases.append(
        Case("models", "index entry file=../x, models add --replace", replace_escape, entry_named)
    )
    return cases


def refused_any(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
    if procs[0].rc == 0:
        return "escaped", "accepted"
    return None


_CLIP = (
    "import av,sys\n"
    "out=av.open(sys.argv[1],'w',format='mp4',options={'movflags':'faststart'})\n"
    "s=out.add_stream('libx264',rate=25);s.width,s.height,s.pix_fmt=64,48,'yuv420p'\n"
    "import numpy as np\n"
    "for i in range(50):\n"
    " a=np.random.default_rng(i).integers(0,255,(48,64,3),dtype=np.uint8)\n"
    " f=av.VideoFrame.from_ndarray(a,format='rgb24');f.pts=i\n"
    " [out.mux(p) for p in s.encode(f)]\n"
    "[out.mux(p) for p in s.encode()]\n"
    "out.close()\n"
)


def _clip(d: Path) -> Path:
    path = d / "clip.mp4"
    subprocess.run([sys.executable, "-c", _CLIP, str(path)], check=True)
    return path


def _video_cases() -> list[Case]:
    cases: list[Case] = []

    def cut(d: Path) -> list[list[str]]:
        clip = _clip(d)
        return [
            _cli("video", "cut", clip, "--time", "1e308", "--rect", "0,0,8,8", "-o", d / "c.png")
        ]

    def end(d: Path) -> list[list[str]]:
        clip = _clip(d)
        return [_cli("video", "upscale", clip, "--end", "1e308", "--engine", "lanczos",
                     "-q", "-o", d / "o.mp4")]  # fmt: skip

    def into_folder(d: Path) -> list[list[str]]:
        clip = _clip(d)
        (d / "exists").mkdir()
        return [_cli("video", "upscale", clip, "--end", "2f", "--engine", "lanczos",
                     "-q", "-o", d / "exists")]  # fmt: skip

    def names_given(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        err = _last_line(procs[0].err)
        if procs[0].rc != 1 or "exists-2" in err or str(d / "exists") not in err:
            return "crashed", f"rc {procs[0].rc}: {err} (not the folder the user gave)"
        return None

    def truncated(d: Path) -> list[list[str]]:
        clip = _clip(d)
        data = clip.read_bytes()
        clip.write_bytes(data[: len(data) * 6 // 10])  # the header (moov) is at the start
        return [_cli("video", "upscale", clip, "--engine", "lanczos", "-q", "-o", d / "o.mp4")]

    def says_short(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        if procs[0].rc == 0 and "(50 frames)" not in procs[0].err:
            return "escaped", f"wrote a short clip without a word: {_last_line(procs[0].err)}"
        return None

    def video_full(d: Path) -> list[list[str]]:
        clip = _clip(d)
        limit = "import resource,runpy,sys;resource.setrlimit(resource.RLIMIT_FSIZE,(4000,4000));"
        run = "sys.argv=['fbupscale',*sys.argv[1:]];runpy.run_module('fbupscale_gui.cli',run_name='__main__')"
        argv = ["video", "upscale", clip, "--engine", "lanczos", "-q", "-o", d / "o.mp4"]
        return [_code(limit + run, *argv)]

    def names_clip(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        err = _last_line(procs[0].err)
        if procs[0].rc != 1 or str(d / "o.mp4") not in err or "bytes" not in err:
            return (
                "crashed",
                f"rc {procs[0].rc}: {err} (the file or the amount written is not named)",
            )
        return None

    cases.append(
        Case("video", "disk full while writing a clip (file size limit)", video_full, names_clip)
    )
    cases.append(Case("video", "video cut --time 1e308", cut, refused_any))
    cases.append(Case("video", "video upscale --end 1e308", end, refused_any))
    cases.append(Case("video", "video upscale -o EXISTING_FOLDER", into_folder, names_given))
    cases.append(Case("video", "truncated MP4 (header says 50 frames)", truncated, says_short))
    return cases


_SESSION = """
import sys, sqlite3
from pathlib import Path
from fbupscale_gui.core.errors import FbError
from fbupscale_gui.storage.session_catalogue import last_session
from fbupscale_gui.storage.session_reader import read_snapshot
from fbupscale_gui.storage.session_store import SessionStore, create_session
root = Path(sys.argv[1]); kind = sys.argv[2]; candidate = Path(sys.argv[3])
path = create_session("hostile", root)
store = SessionStore(path); store.close()
if kind == "schema":
    con = sqlite3.connect(path / "session.sqlite")
    con.execute("UPDATE meta SET value='abc' WHERE key='schema_version'"); con.commit(); con.close()
elif kind == "outside":
    from fbupscale_gui.storage.metadata import read_metadata
    (root.parent / "outside.png").write_bytes(candidate.read_bytes())
    key = "a" * 64
    (path / "cutouts").mkdir(exist_ok=True)
    (path / "cutouts" / f"{key}.png").write_bytes((candidate.parent / "cutout.png").read_bytes())
    request = read_metadata(candidate).request.to_json()
    con = sqlite3.connect(path / "session.sqlite")
    con.execute(
        "INSERT INTO cutouts (key, seq, name, source, file) VALUES (?, 1, 'c.png', '{}', ?)",
        (key, f"cutouts/{key}.png"),
    )
    con.execute(
        "INSERT INTO candidates (id, job_id, cutout_key, run, file, variant, lora, stage, seed,"
        " request) VALUES (1, 1, ?, 0, '../../outside.png', 0, 0, 2, 5, ?)",
        (key, request),
    )
    con.commit(); con.close()
elif kind == "last":
    (root.parent / "elsewhere").mkdir()
    (root.parent / "elsewhere" / "session.sqlite").write_bytes(b"")
    (root / "last-session").write_text("../elsewhere")
    found = last_session(root)
    if found is not None and root.resolve() not in found.resolve().parents:
        print("ESCAPED", found); sys.exit(0)
else:
    (path / "candidates").mkdir(exist_ok=True)
    (path / "candidates" / "000007.png").write_bytes(candidate.read_bytes())
try:
    store = SessionStore(path)
    store.close()
    snap = read_snapshot(path)
except FbError as exc:
    print("refused:", exc, file=sys.stderr); sys.exit(1)
try:  # what the window shows: the restored candidates
    from fbupscale_gui.state.session_restore import load_restored
    shown = [str(c.stored.path) for c in load_restored(snap).candidates]
except ImportError:  # older releases show the index's rows as they are
    shown = [str(path / row.file) for row in snap.candidates]
for file in shown:
    if path.resolve() not in Path(file).resolve().parents:
        print("ESCAPED", file)
"""


def _sessions_cases() -> list[Case]:
    def session(kind: str, make: Callable[[Path], Path]) -> Callable[[Path], list[list[str]]]:
        def prepare(d: Path) -> list[list[str]]:
            return [_code(_SESSION, d / "sessions", kind, make(d))]

        return prepare

    def nested(d: Path) -> Path:
        return _rewrite_texts(_candidate(d), d / "nested.png", fbupscale=_deep_json())

    def bomb(d: Path) -> Path:
        cutout = base64.b64encode(_big_png(30000)).decode("ascii")
        return _rewrite_texts(_candidate(d), d / "bomb.png", **{"fbupscale-cutout": cutout})

    def inside(d: Path, procs: list[Proc]) -> tuple[str, str] | None:
        if "ESCAPED" in procs[0].out:
            return "escaped", procs[0].out.strip()
        return None

    return [
        Case(
            "sessions", "candidate row file='../../x.png'", session("outside", _candidate), inside
        ),
        Case(
            "sessions",
            "last-session pointing out of the folder",
            session("last", _candidate),
            inside,
        ),
        Case("sessions", "unindexed candidate with nested metadata", session("orphan", nested)),
        Case(
            "sessions",
            "unindexed candidate with a bomb cutout",
            session("orphan", bomb),
            fast=False,
        ),
        Case("sessions", "meta.schema_version = 'abc'", session("schema", _candidate)),
    ]


_LORA = """
import sys, math
from fbupscale_gui.core.errors import FbError
from fbupscale_gui.engine.lora.files import read_lora_file
try:
    data = read_lora_file(sys.argv[1])
except FbError as exc:
    print("refused:", exc, file=sys.stderr); sys.exit(1)
bad = [k for k, t in data.items() if not bool(t.float().isfinite().all())]
print("accepted; non-finite tensors:", bad, file=sys.stderr)
"""


def _lora_cases() -> list[Case]:
    def lora(value: float) -> Callable[[Path], list[list[str]]]:
        def prepare(d: Path) -> list[list[str]]:
            from safetensors.numpy import save_file

            tensors = {
                "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": np.full(
                    (4, 64), value, np.float32
                ),
                "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": np.full(
                    (64, 4), value, np.float32
                ),
            }
            save_file(tensors, str(d / "lora.safetensors"))
            return [_code(_LORA, d / "lora.safetensors")]

        return prepare

    return [
        Case("lora", "LoRA full of NaN", lora(float("nan")), refused_any, fast=False),
        Case("lora", "LoRA full of Inf", lora(float("inf")), refused_any, fast=False),
    ]


def process_cases() -> list[Case]:
    return [*_cli_cases(), *_models_cases(), *_video_cases(), *_sessions_cases(), *_lora_cases()]


def run(*, fast: bool = False, surfaces: Sequence[str] = SURFACES, match: str = "") -> list[Row]:
    """Run the cases of ``surfaces`` (only the quick ones with ``fast``, only those whose name
    contains ``match``); one row per case."""
    rows: list[Row] = []
    limit = FAST_TIME_LIMIT if fast else TIME_LIMIT
    with tempfile.TemporaryDirectory(prefix="fbupscale-hostile-") as tmp:
        if "images" in surfaces:
            images = Path(tmp) / "images"
            images.mkdir()
            rows.extend(run_image_cases(images))
        for n, case in enumerate(process_cases()):
            if case.surface not in surfaces or (fast and not case.fast) or match not in case.name:
                continue
            folder = Path(tmp) / f"case{n}"
            folder.mkdir()
            try:
                argvs = case.prepare(folder)
            except Exception as exc:  # a case that cannot be built here (a codec missing)
                rows.append(Row(case.surface, case.name, "crashed", 0.0, f"setup: {exc!r}"))
                continue
            started = time.perf_counter()  # the run, not building the input
            procs = _run_procs(argvs, folder, case.env, limit)
            outcome, detail = classify(case, folder, procs)
            elapsed = time.perf_counter() - started
            peak = max(p.peak_mb for p in procs)
            rows.append(Row(case.surface, case.name, outcome, elapsed, detail, peak))
    return rows


def counts(rows: Sequence[Row]) -> dict[str, int]:
    out = {"tried": len(rows)}
    out.update({o: sum(r.outcome == o for r in rows) for o in OUTCOMES})
    return out


def report(rows: Sequence[Row]) -> str:
    width = max(len(r.name) for r in rows)
    head = f"{'surface':<9} {'case':<{width}}  {'outcome':<8} {'s':>6} {'peak MB':>7}  detail"
    lines = [head]
    for r in rows:
        detail = " ".join(r.detail.split())[:110].encode("unicode_escape").decode("ascii")
        peak = f"{r.peak_mb:>7.0f}" if r.peak_mb else f"{'-':>7}"
        lines.append(
            f"{r.surface:<9} {r.name:<{width}}  {r.outcome:<8} {r.seconds:>6.1f} {peak}  {detail}"
        )
    lines.append("")
    for surface in SURFACES:
        mine = [r for r in rows if r.surface == surface]
        if mine:
            c = counts(mine)
            lines.append(f"{surface:<9} " + ", ".join(f"{c[k]} {k}" for k in c))
    c = counts(rows)
    lines.append(f"{'all':<9} " + ", ".join(f"{c[k]} {k}" for k in c))
    slowest = max(rows, key=lambda r: r.seconds)
    largest = max(rows, key=lambda r: r.peak_mb)
    lines.append(
        f"slowest case {slowest.seconds:.1f} s ({slowest.name}); largest peak "
        f"{largest.peak_mb:.0f} MB ({largest.name}); limits {TIME_LIMIT:.0f} s "
        f"({FAST_TIME_LIMIT:.0f} s quick), {MEMORY_LIMIT / 1024**3:.0f} GiB address space"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="only the quick cases")
    parser.add_argument("--surface", action="append", choices=SURFACES, help="only these")
    parser.add_argument("--case", default="", metavar="TEXT", help="only cases naming TEXT")
    args = parser.parse_args(argv)
    rows = run(fast=args.fast, surfaces=tuple(args.surface or SURFACES), match=args.case)
    print(report(rows))
    return 0 if all(r.outcome == "handled" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
