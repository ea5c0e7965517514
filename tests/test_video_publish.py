"""A video cut or batch killed mid-write leaves nothing under its name; its temporary goes later.

``fbupscale video cut`` and ``video upscale`` write under a hidden temporary name in the output
folder and publish the complete file under a free name in one step (a hard link), so a SIGKILL
while the PNG or the clip is being written leaves no empty or partial file under the name the
user asked for. The hidden temporary left behind is removed by the next write into that folder
once it is stale.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_video import make_clip

from fbupscale_gui.cli.video import main
from fbupscale_gui.storage.atomic import STALE_TEMP_S, is_temp_name
from fbupscale_gui.storage.video import open_clip

REPO = Path(__file__).resolve().parents[1]

#: Runs ``fbupscale video ...`` in a child that SIGKILLs itself part-way through writing.
_KILLED_CUT = """
import os, signal, sys
from PIL import Image

def save(self, fp, *args, **kwargs):
    fp.write(b"\\x89PNG\\r\\n\\x1a\\n partial")  # some bytes reach the file, then the kill
    fp.flush()
    os.kill(os.getpid(), signal.SIGKILL)

Image.Image.save = save
from fbupscale_gui.cli.video import main
sys.exit(main(sys.argv[1:]))
"""

_KILLED_UPSCALE = """
import os, signal, sys
import fbupscale_gui.storage.video as video

def killing_upscaler(scale=4):
    real = video.encode.lanczos_upscaler(scale)
    seen = []

    def upscale(image):
        seen.append(1)
        if len(seen) == 4:  # frames 1-3 are encoded (and partly written) by now
            os.kill(os.getpid(), signal.SIGKILL)
        return real(image)

    return upscale

video.lanczos_upscaler = killing_upscaler
from fbupscale_gui.cli.video import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", "mp4", "libx264")


def _killed(code: str, argv: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=REPO, env=env, capture_output=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode(errors="replace")


def _make_stale(folder: Path) -> Path:
    """The one hidden temporary a killed run left in ``folder``, aged past the stale limit."""
    temps = [p for p in folder.iterdir() if is_temp_name(p.name)]
    assert len(temps) == 1, sorted(p.name for p in folder.iterdir())
    old = time.time() - STALE_TEMP_S - 60
    os.utime(temps[0], (old, old))
    return temps[0]


@pytest.mark.slow  # child processes
def test_killed_cut_leaves_no_file_under_its_name(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "cut.png"
    argv = ["video", "cut", str(clip), "--time", "2f", "--rect", "0,0,16,16", "-o", str(out)]
    _killed(_KILLED_CUT, argv)
    visible = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert visible == []  # no empty placeholder, no partial PNG under cut.png
    temp = _make_stale(tmp_path)

    assert main(argv) == 0  # the next cut takes the name the killed one never got
    assert out.is_file() and out.stat().st_size > 0
    assert not temp.exists()  # the stale temporary is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.png"]


@pytest.mark.slow  # child processes
def test_killed_upscale_leaves_no_file_under_its_name(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "up.mp4"
    argv = ["video", "upscale", str(clip), "--end", "8f", "--engine", "lanczos", "-q"]
    argv += ["-o", str(out)]
    _killed(_KILLED_UPSCALE, argv)
    visible = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert visible == []
    temp = _make_stale(tmp_path)

    assert main(argv) == 0
    assert open_clip(out).frame_count == 8
    assert not temp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["up.mp4"]


@pytest.mark.slow  # a video encode
def test_upscale_never_replaces_an_existing_clip(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "up.mp4"
    out.write_bytes(b"the operator's file")
    argv = ["video", "upscale", str(clip), "--end", "3f", "--engine", "lanczos", "-q"]
    assert main([*argv, "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "up-2.mp4")
    assert out.read_bytes() == b"the operator's file"
    assert open_clip(tmp_path / "up-2.mp4").frame_count == 3


_SIZE_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
from fbupscale_gui.cli.video import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow  # child processes
def test_a_full_disk_mid_clip_is_an_error_and_publishes_nothing(clip: Path, tmp_path: Path) -> None:
    # A write error inside FFmpeg's own file output was lost: the truncated clip was published
    # under its name and the command said it had written it.
    limit = 3000
    out = tmp_path / "up.mp4"
    argv = ["video", "upscale", str(clip), "--engine", "lanczos", "-q", "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", _SIZE_LIMITED, str(limit), *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert str(out) in line and "bytes" in line and "nothing was saved" in line
    assert list(tmp_path.iterdir()) == []

    assert main(argv) == 0  # without the limit the clip is larger than the limit
    assert out.stat().st_size > limit


def test_save_cut_takes_a_free_name_and_refuses_a_missing_folder(
    clip: Path, tmp_path: Path
) -> None:
    from fbupscale_gui.core.errors import RequestError
    from fbupscale_gui.storage.video import ClipReader, cut_at, save_cut

    with ClipReader(clip) as reader:
        cut = cut_at(reader, "3f", (0, 0, 16, 8))
    assert (cut.index, cut.image.size, cut.name) == (3, (16, 8), "clip_00:00:00:03.png")
    first = save_cut(cut, tmp_path / "c.png")
    second = save_cut(cut, tmp_path / "c.png")
    assert (first.name, second.name) == ("c.png", "c-2.png")
    assert first.read_bytes() == second.read_bytes()
    with pytest.raises(RequestError, match="does not exist"):
        save_cut(cut, tmp_path / "missing" / "c.png")
    assert not (tmp_path / "missing").exists()
