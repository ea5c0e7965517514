"""Session restore: how soon a reopened 200-candidate session is on screen and usable.

Builds a session of ``--cutouts`` x ``--per-cutout`` candidates (default 20 x 10 = 200) of
1024 px photo-like PNGs (scikit-image sample photos, each candidate with its own noise and
gradient, so no two files compress alike) in a temporary ``FBUPSCALE_SESSIONS_DIR``, then
launches the real app in fresh offscreen subprocesses, several repeats, and prints the medians
(seconds from spawning ``python``):

* ``first paint``: the window's first paint event (the shell);
* ``structure``: the first paint after the session's cutouts, candidates and picks are in the
  models (the cutout list and the grid's layout);
* ``tiles``: the selected cutout's grid shows every one of its tiles with its image;
* ``all``: every candidate of the session has its tile image and full-resolution pixels.

A bare PySide6 QMainWindow's first paint is printed for reference. Target: structure < 1 s.
The children run with a bytecode cache (``PYTHONPYCACHEPREFIX`` in the temporary folder,
filled by a warm-up launch), as an installed app does. No asserts.

    .venv/bin/python bench/session_restore.py [--repeats 5] [--cutouts 20] [--per-cutout 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BARE = """
import os, time
t0 = float(os.environ["FBUPSCALE_BENCH_T0"])
from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(["bare"])
w = QMainWindow()
w.resize(1600, 960)
class FirstPaint(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            w.removeEventFilter(self)
            print(f"first_paint {time.monotonic() - t0:.4f}", flush=True)
            w.close()
        return False
f = FirstPaint()
w.installEventFilter(f)
w.show()
app.exec()
"""

#: The real app (fbupscale_gui.app.main), with probes: an application-wide paint filter and a
#: poll of the models and the candidates grid every 5 ms once the panes are built.
APP = """
import os, sys, time
t0 = float(os.environ["FBUPSCALE_BENCH_T0"])
expected = int(os.environ["FBUPSCALE_BENCH_N"])
def mark(name):
    print(f"{name} {time.monotonic() - t0:.4f}", flush=True)
from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication
import fbupscale_gui.app as app_module
qapp = QApplication([sys.argv[0]])
state = {"first": False, "armed": False, "structure": False, "tiles": False}
class Paints(QObject):
    def eventFilter(self, obj, event):
        if event.type() == QEvent.Type.Paint:
            if not state["first"]:
                state["first"] = True
                mark("first_paint")
            elif state["armed"] and not state["structure"]:
                state["structure"] = True
                mark("structure")
        return False
paints = Paints()
qapp.installEventFilter(paints)
real_build = app_module._build
def loaded(entry):
    return not entry.thumb.isNull() and getattr(entry, "is_loaded", True)
def build(qapp_, window, paths, started, resources):
    real_build(qapp_, window, paths, started, resources)
    session = window.session
    panel = window.candidates
    def on_restored():
        if len(session.cutouts) and session.candidates.all_picks():
            state["armed"] = True
    session.restored.connect(on_restored)
    timer = QTimer(window)
    def poll():
        if not state["tiles"]:
            tiles = panel.tiles()
            cur = window.cutouts.current()
            want = len(session.candidates.entries(cur.id)) if cur is not None else -1
            if want > 0 and len(tiles) == want and all(not t.entry.thumb.isNull() for t in tiles):
                state["tiles"] = True
                mark("tiles")
        entries = [e for c in session.cutouts.cutouts() for e in session.candidates.entries(c.id)]
        if len(entries) == expected and all(loaded(e) for e in entries) and state["tiles"]:
            mark("all")
            timer.stop()
            window.confirm_on_close = False
            window.close()
    timer.timeout.connect(poll)
    timer.start(5)
app_module._build = build
sys.exit(app_module.main([]))
"""

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "coffee")


def _photos(count: int) -> list[object]:
    """``count`` 1024 px RGB base photos (scikit-image samples, else smooth synthetic ones)."""
    import numpy as np
    from PIL import Image

    bases: list[Image.Image] = []
    try:
        from skimage import data

        for name in PHOTOS:
            arr = getattr(data, name)()
            if arr.ndim == 3 and arr.shape[2] >= 3:
                bases.append(Image.fromarray(arr[..., :3]).resize((1024, 1024)))
    except Exception:  # no sample data: synthetic gradients
        yy, xx = np.mgrid[0:1024, 0:1024].astype(np.float32)
        for k in range(4):
            arr = np.stack(
                [(xx * (k + 1) / 8) % 256, (yy / 4 + k * 40) % 256, ((xx + yy) / 8) % 256], -1
            )
            bases.append(Image.fromarray(arr.astype(np.uint8)))
    return [bases[i % len(bases)] for i in range(count)]


def build_session(root: Path, n_cutouts: int, per_cutout: int) -> Path:
    """A session folder under ``root`` with ``n_cutouts`` x ``per_cutout`` candidates."""
    import numpy as np
    from PIL import Image

    from fbupscale_gui.core.job import Candidate
    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
    from fbupscale_gui.storage.cutouts import make_source
    from fbupscale_gui.storage.session_catalogue import set_last_session
    from fbupscale_gui.storage.session_index import CandidateRow, CutoutRow, JobRow
    from fbupscale_gui.storage.session_store import SessionStore, create_session

    rng = np.random.default_rng(7)
    folder = create_session("bench", root)
    inputs = root / "inputs"
    inputs.mkdir()
    store = SessionStore(folder)
    bases = _photos(n_cutouts)
    yy, xx = np.mgrid[0:1024, 0:1024].astype(np.float32)
    try:
        for c in range(n_cutouts):
            base = np.asarray(bases[c], dtype=np.float32)
            cutout = bases[c].resize((48 + c, 64), Image.Resampling.LANCZOS)
            path = inputs / f"player_{c:02d}.png"
            cutout.save(path)
            source = make_source(path, cutout)
            row = CutoutRow(
                source.sha256, path.name, _source_json(source), f"cutouts/{source.sha256}.png"
            )
            store.put_cutout(row, cutout)
            request = ReconstructionRequest(engine="lanczos", source=source)
            job = store.put_job(JobRow(0, source.sha256, path.name, request.to_json(), "done", 1))
            first = 0
            for v in range(per_cutout):
                tilt = (xx * rng.uniform(-0.05, 0.05) + yy * rng.uniform(-0.05, 0.05))[..., None]
                noise = rng.normal(0, 6, base.shape)
                pixels = np.clip(base + tilt + noise, 0, 255).astype(np.uint8)
                key = CandidateKey(v, False, 2)
                cand = Candidate(key, 1000 + v, Image.fromarray(pixels), request, {"fast": 0.1})
                crow = CandidateRow(
                    0, job, source.sha256, 1, "", v, False, 2, 1000 + v, 30.0 + v,
                    request.to_json(),
                )  # fmt: skip
                cid = store.put_candidate(crow, cand, cutout)
                first = first or cid
            store.set_pick(source.sha256, first + per_cutout // 2)
    finally:
        store.close()
    set_last_session(folder)
    return folder


def _source_json(source: object) -> str:
    import json
    from dataclasses import asdict

    return json.dumps(asdict(source))  # type: ignore[call-overload]


def launch(code: str, env: dict[str, str], timeout: float = 120.0) -> dict[str, float]:
    env = dict(env, FBUPSCALE_BENCH_T0=repr(time.monotonic()))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    marks: dict[str, float] = {}
    for line in proc.stdout.splitlines():
        name, _sep, value = line.partition(" ")
        try:
            marks[name] = float(value)
        except ValueError:
            continue
    if proc.returncode != 0 or "first_paint" not in marks:
        print(f"  run failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cutouts", type=int, default=20)
    parser.add_argument("--per-cutout", type=int, default=10)
    parser.add_argument("--platform", default="offscreen")
    args = parser.parse_args()
    n = args.cutouts * args.per_cutout
    with tempfile.TemporaryDirectory(prefix="fbupscale-restore-") as tmp:
        root = Path(tmp)
        sessions = root / "sessions"
        sessions.mkdir()
        t = time.perf_counter()
        folder = build_session(sessions, args.cutouts, args.per_cutout)
        size = sum(p.stat().st_size for p in (folder / "candidates").glob("*.png"))
        print(
            f"session: {args.cutouts} cutouts x {args.per_cutout} = {n} candidates of 1024 px, "
            f"{size / 2**20:.0f} MiB of PNG (built in {time.perf_counter() - t:.1f} s)"
        )
        env = dict(os.environ)
        # as installed: compiled bytecode cached (in the temporary folder, not the checkout)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            PYTHONPYCACHEPREFIX=str(root / "pycache"),
            QT_QPA_PLATFORM=args.platform,
            FBUPSCALE_SESSIONS_DIR=str(sessions),
            FBUPSCALE_BENCH_N=str(n),
            FBUPSCALE_LOG="WARNING",
            XDG_CONFIG_HOME=str(root / "config"),
            FBUPSCALE_MODELS_DIR=str(root / "models"),
        )
        names = ("first_paint", "structure", "tiles", "all")
        runs: dict[str, list[float]] = {k: [] for k in names}
        bare: list[float] = []
        launch(APP, env)  # warm the file cache and the bytecode cache
        for i in range(args.repeats):
            b = launch(BARE, env).get("first_paint")
            if b is not None:
                bare.append(b)
            marks = launch(APP, env)
            for k in names:
                if k in marks:
                    runs[k].append(marks[k])
            shown = "  ".join(f"{k} {marks[k]:.3f}" for k in names if k in marks)
            print(f"  run {i + 1}: {shown}  (bare {b if b is not None else float('nan'):.3f})")

    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):6.3f} s" if xs else "   n/a  "

    print(f"\nmedians over {args.repeats} launches, seconds from spawn ({args.platform}):")
    print(f"  bare QMainWindow, first paint      {med(bare)}")
    print(f"  fbupscale-gui, first paint         {med(runs['first_paint'])}")
    print(f"  session structure painted          {med(runs['structure'])}   (target < 1 s)")
    print(f"  selected cutout's tiles shown      {med(runs['tiles'])}")
    print(f"  all {n} candidates restored       {med(runs['all'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
