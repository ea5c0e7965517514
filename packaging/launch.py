"""Entry point of the PyInstaller bundle: one script, two executables.

``fbupscale-gui`` (``fbupscale-gui.exe``) opens the window (:func:`fbupscale_gui.app.main`);
``fbupscale`` (``fbupscale.exe``) is the command line (:func:`fbupscale_gui.cli.main`). Which one
runs is decided by the executable's name, so both share one analysed set of modules.

``fbupscale-gui --smoke-test [OUTDIR]`` (hidden; used by ``packaging/smoke.sh``) checks a built
bundle: the window is shown and built, then faithful and Real-ESRGAN run on a shipped sample;
each result is written with its metadata and read back. Exit status 0 when everything worked.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path


class _Tee(io.TextIOBase):
    """Writes to the real stdout and keeps a copy (to see the app's "shown"/"ready" lines)."""

    def __init__(self, real: io.TextIOBase | None) -> None:
        self.real = real
        self.copy = io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        if self.real is not None:
            self.real.write(text)
        return len(text)

    def flush(self) -> None:
        if self.real is not None:
            self.real.flush()


def smoke_test(outdir: Path) -> int:
    """Window shown and built, faithful and Real-ESRGAN on a sample, saved and read back."""
    started = time.perf_counter()
    # 1. The window: app.main shows it, builds the panes, then quits (its own start-up probe).
    os.environ["FBUPSCALE_QUIT_WHEN_SHOWN"] = "1"
    from fbupscale_gui.app import main as gui_main

    tee = _Tee(sys.stdout)  # type: ignore[arg-type]
    with contextlib.redirect_stdout(tee):
        status = gui_main([])
    lines = [line.split()[0] for line in tee.copy.getvalue().splitlines() if line.strip()]
    if status != 0 or "shown" not in lines or "ready" not in lines:
        print(f"smoke: FAIL window (status {status}, saw {lines})", flush=True)
        return 1
    print(f"smoke: window shown and built ({time.perf_counter() - started:.1f} s)", flush=True)

    # 2. Resources and weights are found inside the bundle.
    from fbupscale_gui.engine.fast.engines import realesrgan_model_files
    from fbupscale_gui.storage.kits import default_kits_path, load_kits, resources_dir

    samples = sorted((resources_dir() / "samples").glob("*.png"))
    kits = load_kits(default_kits_path())
    _param, weights = realesrgan_model_files()
    print(f"smoke: {len(samples)} samples, {len(kits)} kit presets, weights {weights}", flush=True)
    if not samples:
        print("smoke: FAIL no samples in the bundle", flush=True)
        return 1

    # 3. Real-ESRGAN on a sample through the engine the app uses, saved with metadata.
    from fbupscale_gui.storage.cutouts import make_source
    from fbupscale_gui.core.request import ReconstructionRequest
    from fbupscale_gui.engine import Engine
    from fbupscale_gui.storage.metadata import read_metadata, save_candidate

    for engine in ("faithful", "realesrgan"):
        t0 = time.perf_counter()
        request = ReconstructionRequest(engine=engine, source=make_source(samples[0]))
        candidates = list(Engine().run(request))
        if len(candidates) != 1 or max(candidates[0].image.size) != request.preprocess.size:
            print(f"smoke: FAIL {engine} gave {[c.image.size for c in candidates]}", flush=True)
            return 1
        outdir.mkdir(parents=True, exist_ok=True)
        target = save_candidate(candidates[0], outdir / f"{samples[0].stem}_{engine}.png")
        record = read_metadata(target)
        if record.request.engine != engine:
            print(f"smoke: FAIL {engine} metadata not read back", flush=True)
            return 1
        print(
            f"smoke: {engine} {samples[0].name} -> {target} {candidates[0].image.size} "
            f"({time.perf_counter() - t0:.1f} s, {candidates[0].runtime})",
            flush=True,
        )
    print(f"smoke: OK ({time.perf_counter() - started:.1f} s)", flush=True)
    return 0


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["--engine-child"]:  # the engine process (fbupscale_gui.host.client)
        from fbupscale_gui.host.child import run_from_argv

        return run_from_argv(argv[1:])
    if Path(sys.executable if getattr(sys, "frozen", False) else sys.argv[0]).stem == "fbupscale":
        from fbupscale_gui.cli import main as cli_main

        return cli_main(argv)
    if argv[:1] == ["--smoke-test"]:
        outdir = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="fbsmoke-"))
        return smoke_test(outdir)
    from fbupscale_gui.app import main as gui_main

    return gui_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
