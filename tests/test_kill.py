"""Kill test: SIGKILL a CLI batch mid-run; nothing finished is lost, nothing partial is visible.

``python -m fbupscale_gui upscale`` writes each candidate with
:func:`fbupscale_gui.storage.metadata.save_candidate` (a hidden temporary file in the same folder,
fsynced, then ``os.replace``). The batch is killed as soon as its first candidate exists (so the
kill always lands mid-run, whatever the machine's speed), then:

* every file under a final name decodes completely and carries its ``fbupscale`` metadata, with
  an embedded cutout matching the request's source hash;
* every path the CLI printed before dying is one of them (printed means finished);
* anything else left in the folder is a hidden ``.<name>.*.tmp`` file, never a final name;
* a second run into the same folder ("restart") works and does not reuse taken names.

The Lanczos batch is killed while its next candidate's temporary file exists (between
``mkstemp`` and ``os.replace``), so the kill lands inside a write; the Real-ESRGAN batch is
killed during a network run. Leftover ``.tmp`` files are allowed (hidden, never a final name).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fbupscale_gui.core.images import image_sha256
from fbupscale_gui.storage.metadata import read_metadata

pytestmark = pytest.mark.slow  # see the slow marker in pyproject.toml

ROOT = Path(__file__).resolve().parents[1]
FINAL = re.compile(r"^(?P<stem>cut\d+)_(lanczos|realesrgan)(-\d+)?\.png$")
TEMP = re.compile(r"^\.cut\d+_.*\.png\..*\.tmp$")
#: A safety net for a hung child, not a timing assertion.
STARTUP_LIMIT_S = 180


def make_inputs(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(11)
    paths = []
    for i in range(count):
        arr = rng.integers(0, 256, (48, 32, 3), dtype=np.uint8)
        path = folder / f"cut{i:03d}.png"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def start_batch(inputs: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, FBUPSCALE_CPU_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fbupscale_gui",
            "upscale",
            str(inputs),
            "-o",
            str(out),
            "-q",
            *list(extra),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finals(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if FINAL.match(p.name)) if out.is_dir() else []


def temps(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if TEMP.match(p.name)] if out.is_dir() else []


def kill_mid_run(proc: subprocess.Popen[str], out: Path, *, mid_write: bool) -> tuple[str, str]:
    """SIGKILL once a first candidate exists; with ``mid_write``, also wait (briefly) until the
    next one is being written, so the kill lands between its temporary file and the rename."""
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while not finals(out):
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"the batch ended (status {proc.returncode}) before any output: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no candidate appeared; the batch seems hung")
        time.sleep(0.002)
    if mid_write:
        first = len(finals(out))
        # at most a few more candidates: the batch holds far more than it can finish meanwhile
        while not temps(out) and len(finals(out)) < first + 3 and proc.poll() is None:
            time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return stdout, stderr


def check_intact(path: Path, inputs: dict[str, Path]) -> None:
    with Image.open(path) as im:
        im.load()  # a truncated file fails here
        assert im.format == "PNG" and im.mode == "RGB"
    record = read_metadata(path)
    match = FINAL.match(path.name)
    assert match
    source = inputs[match["stem"]]
    assert record.request.source is not None
    assert Path(record.request.source.path).name == source.name
    assert record.cutout is not None
    assert image_sha256(record.cutout) == record.request.source.sha256


@pytest.mark.parametrize(
    ("engine", "count", "size"),
    [("lanczos", 60, "512"), ("realesrgan", 8, "256")],
)
def test_sigkill_mid_batch_loses_nothing_finished(
    tmp_path: Path, engine: str, count: int, size: str
) -> None:
    inputs = {p.stem: p for p in make_inputs(tmp_path / "in", count)}
    out = tmp_path / "out"
    proc = start_batch(tmp_path / "in", out, "--engine", engine, "--size", size)
    stdout, _ = kill_mid_run(proc, out, mid_write=engine == "lanczos")

    written = finals(out)
    assert 1 <= len(written) < count  # killed mid-run
    for path in written:
        check_intact(path, inputs)
    printed = [Path(line) for line in stdout.splitlines() if line.strip()]
    assert set(printed) <= set(written)  # printed means finished and intact
    leftovers = [p.name for p in out.iterdir() if p not in written]
    assert all(TEMP.match(name) for name in leftovers), leftovers

    # restart: a second run into the same folder finishes and never reuses a taken name
    again = subprocess.run(
        [
            sys.executable,
            "-m",
            "fbupscale_gui",
            "upscale",
            str(inputs["cut000"]),
            "-o",
            str(out),
            "-q",
            "--engine",
            "lanczos",
            "--size",
            "128",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=STARTUP_LIMIT_S,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    new = Path(again.stdout.strip())
    assert new.exists() and new not in written
    check_intact(new, inputs)
    for path in written:  # the earlier files are untouched
        check_intact(path, inputs)
