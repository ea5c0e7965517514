"""Qt state of the Train window: the frames being described, and the runs in other processes.

* :class:`LoraFramesModel`: a folder of high-resolution frames, each with its scene (saved
  next to it as ``NAME.scene.json`` on every edit, atomically), caption, rule issues, and the
  counts per action and team.
* :class:`CliRun`: one ``fbupscale`` subcommand in a child process (:class:`QProcess`). Its
  JSON-lines log is tailed on a timer, and each event is emitted as a plain dict. Training never
  runs in the window's process, so the window never imports torch.
* :class:`TrainingRun`: ``fbupscale lora train``, keeping the loss curve, progress, ETA,
  estimate and checkpoints; cancel sends SIGTERM, which stops after the current step.
* :class:`PreviewRun`: ``fbupscale upscale`` of one fixed cutout with a checkpoint, with and
  without the LoRA (the real two-stage pipeline).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from PySide6.QtCore import QObject, QProcess, QTimer, Signal

from fbupscale_gui.core.lora_dataset import (
    CaptionIssue,
    DatasetCounts,
    apply_shared,
    check_caption,
    count_scenes,
)
from fbupscale_gui.core.scene import Scene
from fbupscale_gui.storage.atomic import atomic_write_bytes
from fbupscale_gui.storage.lora_dataset_files import Frame, read_frames

__all__ = ["CliRun", "LoraFramesModel", "PreviewRun", "TrainingRun", "cli_command"]

_POLL_MS: Final = 300
_ERROR_TAIL: Final = 4000


def cli_command(args: Sequence[str]) -> tuple[str, list[str]]:
    """The program and arguments that run ``fbupscale ARGS``: this interpreter with ``-m``, or
    in the packaged app the ``fbupscale`` executable next to the window's."""
    if getattr(sys, "frozen", False):
        exe = Path(sys.executable)
        return str(exe.with_name("fbupscale" + exe.suffix)), list(args)
    return sys.executable, ["-m", "fbupscale_gui.cli", *args]


class LoraFramesModel(QObject):
    """The frames of a dataset folder with their scenes; edits are saved as they are made."""

    framesChanged = Signal()
    frameChanged = Signal(str)
    message = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.folder: Path | None = None
        self._frames: dict[str, Frame] = {}

    def open_folder(self, folder: str | Path) -> None:
        """Read every frame with its sidecars (raises RequestError for a non-folder)."""
        frames = read_frames(folder)
        self.folder = Path(folder)
        self._frames = {f.path.name: f for f in frames}
        self.framesChanged.emit()

    def names(self) -> list[str]:
        return list(self._frames)

    def frame(self, name: str) -> Frame:
        return self._frames[name]

    def scene(self, name: str) -> Scene | None:
        return self._frames[name].scene

    def issues(self, name: str) -> list[CaptionIssue]:
        return self._frames[name].issues

    def counts(self) -> DatasetCounts:
        return count_scenes(f.scene for f in self._frames.values())

    def set_scene(self, name: str, scene: Scene) -> None:
        """Keep ``scene`` for frame ``name`` and save it next to the frame."""
        frame = self._frames[name]
        if frame.scene == scene:
            return
        try:
            atomic_write_bytes(
                frame.path.with_name(frame.path.stem + ".scene.json"),
                scene.to_json(indent=2).encode(),
            )
        except OSError as exc:
            self.message.emit(f"{frame.path.name}: scene not saved ({exc.strerror or exc})")
            return
        frame.scene = scene
        if frame.caption_source != "txt":
            frame.caption, frame.caption_source = scene.to_prompt(), "scene"
        frame.issues = check_caption(frame.caption, scene)
        if frame.error.endswith(".txt)"):  # "no caption" until now
            frame.error = ""
        self.frameChanged.emit(name)

    def apply_to(self, names: Sequence[str], source: Scene) -> int:
        """Copy ``source``'s teams, kits, stadium and background to ``names``; returns count."""
        done = 0
        for name in names:
            before = self._frames[name].scene
            self.set_scene(name, apply_shared(before, source))
            done += int(self._frames[name].scene is not before)
        return done


class CliRun(QObject):
    """One ``fbupscale`` subcommand in a child process; its JSON-lines ``log`` tailed."""

    logEvent = Signal(object)  # dict
    runningChanged = Signal(bool)
    finished = Signal(int, str)  # exit code, last stderr lines

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._proc: QProcess | None = None
        self._log: Path | None = None
        self._offset = 0
        self._partial = b""
        self._stderr = b""
        self._timer = QTimer(self)
        self._timer.setInterval(_POLL_MS)
        self._timer.timeout.connect(self._poll)

    @property
    def running(self) -> bool:
        return self._proc is not None

    def start(self, args: Sequence[str], log: Path | None = None) -> None:
        if self._proc is not None:
            raise RuntimeError("already running")
        self._log, self._partial, self._stderr = log, b"", b""
        self._offset = log.stat().st_size if log is not None and log.is_file() else 0
        proc = QProcess(self)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._on_finished)
        proc.errorOccurred.connect(self._on_error)
        program, arguments = cli_command(args)
        self._proc = proc
        proc.start(program, arguments)
        self._timer.start()
        self.runningChanged.emit(True)

    def cancel(self) -> None:
        """Ask the child to stop after its current step (SIGTERM; it saves a resume state)."""
        if self._proc is not None:
            self._proc.terminate()

    def wait(self, ms: int) -> bool:
        return self._proc is None or self._proc.waitForFinished(ms)

    def _read_stderr(self) -> None:
        if self._proc is not None:
            self._stderr = (self._stderr + bytes(self._proc.readAllStandardError().data()))[
                -_ERROR_TAIL:
            ]

    def _poll(self) -> None:
        if self._log is None or not self._log.is_file():
            return
        try:
            with open(self._log, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.logEvent.emit(event)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._stderr += f"could not start {sys.executable} ({error.name})".encode()
            self._on_finished(-1, QProcess.ExitStatus.CrashExit)

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        if self._proc is None:
            return
        self._read_stderr()
        self._poll()
        self._timer.stop()
        proc, self._proc = self._proc, None
        proc.deleteLater()
        lines = self._stderr.decode("utf-8", "replace").strip().splitlines()
        self.runningChanged.emit(False)
        self.finished.emit(int(code), "\n".join(lines[-3:]))


class TrainingRun(CliRun):
    """``fbupscale lora train`` with its loss curve, progress, ETA and checkpoints."""

    lossesChanged = Signal()
    progressChanged = Signal(int, int, float)  # step, total, eta seconds
    estimateReady = Signal(str)
    checkpointSaved = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.losses: list[float] = []
        self.checkpoints: list[str] = []
        self.logEvent.connect(self._on_event)

    def train(self, flux: str, dataset: Path, output: Path, options: Sequence[str] = ()) -> Path:
        """Start training; returns the log file (``OUTPUT.log.jsonl``)."""
        log = output.with_name(output.stem + ".log.jsonl")
        self.losses, self.checkpoints = [], []
        args = ["lora", "train", "--dataset", str(dataset), "-o", str(output), "--log", str(log)]
        if flux:
            args += ["--flux", flux]
        self.start([*args, *options], log)
        self.lossesChanged.emit()
        return log

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "step":
            self.losses.append(float(event["loss"]))
            self.lossesChanged.emit()
            self.progressChanged.emit(
                int(event["step"]), int(event["total"]), float(event.get("eta_s", 0.0))
            )
        elif kind == "resumed":  # the curve so far, kept in the resume state
            self.losses = [float(x) for x in event.get("losses", [])]
            self.lossesChanged.emit()
            self.progressChanged.emit(int(event["step"]), 0, 0.0)
        elif kind == "estimate":
            gib = event["peak_memory_bytes"] / 2**30
            self.estimateReady.emit(
                f"Estimate: {event['steps']} steps, about {_duration(event['total_seconds'])}, "
                f"peak memory about {gib:.1f} GiB ({event['device']}, {event['precision']}, "
                f"{event['optimizer']})"
            )
        elif kind == "checkpoint":
            self.checkpoints.append(str(event["path"]))
            self.checkpointSaved.emit(str(event["path"]))
        elif kind == "done":
            self.checkpoints.append(str(event["output"]))
            self.checkpointSaved.emit(str(event["output"]))


class PreviewRun(CliRun):
    """A fixed cutout through the real pipeline with a checkpoint, with and without it."""

    ready = Signal(str, str)  # without-LoRA image, with-LoRA image

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._out: Path | None = None
        self.finished.connect(self._on_done)

    def preview(
        self, cutout: Path, lora: Path, out: Path, flux: str = "", controlnet: str = ""
    ) -> None:
        self._out = out
        args = ["upscale", str(cutout), "-o", str(out), "--engine", "flux", "--lora", str(lora)]
        args += ["--variants", "1", "-q"]
        for flag, value in (("--flux", flux), ("--controlnet", controlnet)):
            if value:
                args += [flag, value]
        scene = cutout.with_name(cutout.stem + ".scene.json")
        if scene.is_file():
            args += ["--scene", str(scene)]
        self.start(args)

    def _on_done(self, code: int, error: str) -> None:
        if code != 0 or self._out is None:
            return
        pngs = sorted(self._out.glob("*.png"), key=lambda p: p.stat().st_mtime)
        pngs = [p for p in pngs if "_s2_" in p.name] or pngs  # the final stage when it ran
        with_lora = [p for p in pngs if "_lora_" in p.name]
        without = [p for p in pngs if "_nolora_" in p.name]
        if with_lora and without:
            self.ready.emit(str(without[-1]), str(with_lora[-1]))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
