"""The video window: open, scrub, cut (with fields) to the cutouts list, batch jobs, bad clips.

Clips are generated here with PyAV: 64x48 at 25 fps, each frame a flat colour that encodes its
index (red = 10 + 8 * index) with a white block moving across the lower half.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtTest import QTest

from fbupscale_gui.engine import facade
from fbupscale_gui.state.clip_model import ClipModel
from fbupscale_gui.state.job_queue import JobState
from fbupscale_gui.state.session import Session
from fbupscale_gui.state.settings_model import SettingsModel
from fbupscale_gui.storage.video import cut_region, open_clip, read_frame
from fbupscale_gui.ui.main_window import MainWindow
from fbupscale_gui.ui.video_window import VideoWindow
from fbupscale_gui.worker.testing import FakeRunner

W, H, N = 64, 48, 30


def red_of(index: int) -> int:
    return 10 + 8 * index


def index_of_red(value: float) -> int:
    return round((value - 10) / 8)


def draw(index: int) -> np.ndarray:
    img = np.empty((H, W, 3), np.uint8)
    img[...] = (red_of(index), 200 - 4 * index, 90)
    x = (2 * index) % (W - 8)
    img[H - 12 : H - 4, x : x + 8] = 255
    return img


def make_clip(
    path: Path,
    fmt: str = "mp4",
    vcodec: str = "libx264",
    *,
    audio: bool = False,
    interlaced: bool = False,
    n: int = N,
) -> Path:
    out = av.open(str(path), "w", format=fmt)
    vs = out.add_stream(vcodec, rate=25)
    vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
    vs.codec_context.gop_size = 6
    if vcodec == "libx264":
        vs.codec_context.options = {"crf": "8"}
    if interlaced:
        flags = av.codec.context.Flags
        vs.codec_context.flags |= flags.interlaced_dct | flags.interlaced_me
    ast = None
    if audio:
        ast = out.add_stream("aac", rate=48000)
        ast.layout = "stereo"
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(draw(i), format="rgb24")
        frame.pts = i
        for p in vs.encode(frame):
            out.mux(p)
    for p in vs.encode():
        out.mux(p)
    if ast is not None:
        total = 48000 * n // 25
        size = ast.codec_context.frame_size or 1024
        t = 0
        while t < total:
            k = min(size, total - t)
            wave = (np.sin(2 * np.pi * 440 * np.arange(t, t + k) / 48000) * 0.3).astype(np.float32)
            af = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
            af.sample_rate = 48000
            af.pts = t
            for p in ast.encode(af):
                out.mux(p)
            t += k
        for p in ast.encode():
            out.mux(p)
    out.close()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("gui_clips")
    good = make_clip(d / "match.mp4", audio=True)
    truncated = d / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[:400])
    empty = d / "empty.mp4"
    empty.write_bytes(b"")
    text = d / "notes.mkv"
    text.write_text("not a clip at all\n" * 20)
    return {
        "good": good,
        "interlaced": make_clip(d / "field.mkv", "matroska", interlaced=True, n=8),
        "mpeg4": make_clip(d / "camera.mp4", "mp4", "mpeg4", n=4),
        "truncated": truncated,
        "empty": empty,
        "text": text,
        "missing": d / "gone.mp4",
    }


@pytest.fixture
def window(window: MainWindow) -> Iterator[MainWindow]:
    """The shared window; at teardown its video clip's reader thread must have stopped."""
    yield window
    assert window._video is None or not window._video.clip._thread.isRunning()


def open_in(qtbot, main: MainWindow, path: Path) -> VideoWindow:  # type: ignore[no-untyped-def]
    video = main.video_window
    with qtbot.waitSignal(video.clip.opened, timeout=20_000):
        main.show_clip(str(path))
    return video


def shown_index(video: VideoWindow) -> int:
    return index_of_red(video.view.image().pixelColor(2, 2).red())


def wait_frame(qtbot, video: VideoWindow, index: int) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: video.clip.index == index, timeout=20_000)


# -- opening and scrubbing ---------------------------------------------------------------------


def test_open_shows_info_and_slider_range(qtbot, window, clips) -> None:  # type: ignore[no-untyped-def]
    video = open_in(qtbot, window, clips["good"])
    assert video.isVisible()
    info = open_clip(clips["good"])
    text = video.info_label.text()
    for part in ("H.264", f"{W}×{H}", "25 fps", "progressive", "audio: aac 48 kHz stereo"):
        assert part in text, (part, text)
    assert f"{info.frame_count} frames" in text
    assert (video.transport.slider.minimum(), video.transport.slider.maximum()) == (
        0,
        info.frame_count - 1,
    )
    assert video.transport.timecode.text() == "00:00:00:00"
    assert "match.mp4" in video.windowTitle()
    assert shown_index(video) == 0
    assert not video.cut_box.field_check.isChecked()  # progressive: the whole frame
    assert video.message_text() == ""
    assert video.batch_box.end_edit.text() == info.timecode(info.frame_count - 1)


def test_slider_shows_the_right_frame(qtbot, window, clips) -> None:  # type: ignore[no-untyped-def]
    video = open_in(qtbot, window, clips["good"])
    video.seek(17)
    wait_frame(qtbot, video, 17)
    assert shown_index(video) == 17
    assert video.transport.timecode.text() == "00:00:00:17"
    assert video.transport.frame_label.text() == f"frame 17 / {N - 1}"
    # a fast drag: every position is asked for, only the latest has to be shown
    for i in range(N - 1, -1, -3):
        video.transport.slider.setValue(i)
    wait_frame(qtbot, video, video.transport.slider.value())
    assert shown_index(video) == video.transport.slider.value() == 2
    assert video.clip.is_current()


def test_keys_step_frames_and_seconds(qtbot, window, clips) -> None:  # type: ignore[no-untyped-def]
    video = open_in(qtbot, window, clips["good"])
    video.activateWindow()
    video.view.setFocus()
    QTest.keyClick(video.view, Qt.Key.Key_Right)
    wait_frame(qtbot, video, 1)
    QTest.keyClick(video.view, Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier)
    wait_frame(qtbot, video, 26)
    assert shown_index(video) == 26
    QTest.keyClick(video.view, Qt.Key.Key_Left)
    wait_frame(qtbot, video, 25)
    QTest.keyClick(video.view, Qt.Key.Key_End)
    wait_frame(qtbot, video, N - 1)
    QTest.keyClick(video.view, Qt.Key.Key_Left, Qt.KeyboardModifier.ShiftModifier)
    wait_frame(qtbot, video, N - 1 - 25)
    video.transport.timecode.setText("00:00:01:02")
    QTest.keyClick(video.transport.timecode, Qt.Key.Key_Return)
    wait_frame(qtbot, video, 27)
    video.transport.timecode.setText("5f")
    QTest.keyClick(video.transport.timecode, Qt.Key.Key_Return)
    wait_frame(qtbot, video, 5)


def test_requests_are_coalesced(qtbot, clips) -> None:  # type: ignore[no-untyped-def]
    """A burst of requests while the decoder is busy decodes the last one, not every one."""
    model = ClipModel()
    try:
        with qtbot.waitSignal(model.opened, timeout=20_000):
            model.open(clips["good"])
        shown: list[int] = []
        model.frameChanged.connect(shown.append)
        for i in range(1, N):
            model.request_frame(i)
        qtbot.waitUntil(lambda: model.index == N - 1, timeout=20_000)
        assert shown[-1] == N - 1
        assert len(shown) < N - 1  # not every position was decoded and shown
        assert shown == sorted(shown)
        # back to the frame on show while another is on its way: it stays (is shown again)
        model.request_frame(3)
        model.request_frame(N - 1)
        qtbot.waitUntil(lambda: model.index == N - 1 and not model._latest.busy(), timeout=20_000)
        assert model.is_current()
    finally:
        assert model.shutdown()


def test_quick_successive_opens_end_on_the_last_good_clip(qtbot, clips) -> None:  # type: ignore[no-untyped-def]
    model = ClipModel()
    try:
        opened: list[str] = []
        failed: list[str] = []
        model.opened.connect(lambda info: opened.append(Path(info.path).name))
        model.openFailed.connect(failed.append)
        model.open(clips["good"])
        model.open(clips["interlaced"])
        model.open(clips["empty"])
        qtbot.waitUntil(lambda: not model.is_opening(), timeout=20_000)
        assert opened == ["match.mp4", "field.mkv"] and len(failed) == 1
        assert model.info is not None and model.info.path.endswith("field.mkv")
        model.request_frame(5)
        qtbot.waitUntil(lambda: model.index == 5, timeout=20_000)
        assert index_of_red(model.qimage.pixelColor(2, 2).red()) == 5
    finally:
        assert model.shutdown()


# -- cutting -----------------------------------------------------------------------------------


def drag(video: VideoWindow, a: tuple[int, int], b: tuple[int, int]) -> None:
    """Drag on the frame from source pixel ``a`` to source pixel ``b`` (both included)."""

    def at(p: tuple[int, int]) -> QPoint:
        return video.view.to_widget(p[0] + 0.5, p[1] + 0.5).toPoint()

    QTest.mousePress(video.view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(a))
    QTest.mouseMove(video.view, at(((a[0] + b[0]) // 2, (a[1] + b[1]) // 2)))
    QTest.mouseRelease(video.view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, at(b))


def test_draw_and_send_adds_a_selected_cutout(qtbot, window, clips) -> None:  # type: ignore[no-untyped-def]
    video = open_in(qtbot, window, clips["good"])
    video.seek(12)
    wait_frame(qtbot, video, 12)
    drag(video, (10, 8), (29, 21))
    assert video.view.rect_px() == (10, 8, 20, 14)
    assert "20×14 px" in video.cut_box.rect_label.text()
    assert video.cut_box.send_button.isEnabled()

    cutout = video.send()
    assert cutout is not None
    assert len(window.session.cutouts) == 1
    assert cutout.name == "match_00:00:00:12.png"
    assert cutout.image.size == (20, 14)
    expected = read_frame(clips["good"], 12).crop((10, 8, 30, 22))
    assert np.array_equal(np.asarray(cutout.image), np.asarray(expected))
    assert window.cutouts.current() is cutout
    assert "match_00:00:00:12.png" in video.message_text()

    # another moment is another cutout, and becomes the selected one
    video.seek(20)
    wait_frame(qtbot, video, 20)
    second = video.send()
    assert second is not None and second is not cutout
    assert second.name == "match_00:00:00:20.png"
    assert window.cutouts.current() is second
    # the same pixels again: nothing added, the existing cutout is selected
    assert video.send() is second
    assert len(window.session.cutouts) == 2


def test_single_field_cut(qtbot, window, clips) -> None:  # type: ignore[no-untyped-def]
    video = open_in(qtbot, window, clips["interlaced"])
    info = video.info
    assert info is not None and info.interlaced
    assert "interlaced" in video.info_label.text()
    # defaults to the clip's first field
    assert video.cut_box.field_check.isChecked()
    assert video.field() == info.first_field
    video.seek(3)
    wait_frame(qtbot, video, 3)
    video.view.set_rect((5, 24, 24, 17))
    frame = read_frame(clips["interlaced"], 3)
    for field in ("top", "bottom"):
        video.set_field(field)  # type: ignore[arg-type]
        assert f"{field} field" in video.cut_box.rect_label.text()
        cutout = video.send()
        assert cutout is not None
        assert cutout.image.size == (24, 17)  # the aspect the operator drew
        expected = cut_region(frame, (5, 24, 24, 17), field)  # type: ignore[arg-type]
        assert np.array_equal(np.asarray(cutout.image), np.asarray(expected))
    video.set_field(None)
    whole = video.send()
    assert whole is not None
    assert np.array_equal(np.asarray(whole.image), np.asarray(frame.crop((5, 24, 29, 41))))
    assert len(window.session.cutouts) == 3


# -- batch -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_batch_lanczos_writes_a_clip_with_fps_and_audio(qtbot, window, clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    video = open_in(qtbot, window, clips["good"])
    video.view.set_rect((8, 8, 16, 12))
    assert video.batch_box.region_check.isChecked()
    video.seek(4)
    wait_frame(qtbot, video, 4)
    video.set_start_here()
    video.seek(13)
    video.set_end_here()
    assert video.batch_box.range_label.text().startswith("10 frame(s)")
    assert "16×12 → 64×48" in video.batch_box.range_label.text()
    video.set_engine("lanczos")
    video.set_temporal("median")
    out = tmp_path / "out" / "range.mp4"
    out.parent.mkdir()
    video.batch_box.output_edit.setText(str(out))
    progress: list[float] = []
    window.session.jobs.progressed.connect(
        lambda job, info: progress.append(info.progress.fraction)
    )
    before = len(window.session.cutouts)

    job = video.start_batch()
    assert job is not None
    assert not video.batch_box.run_button.isEnabled() and video.batch_box.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: job.state is JobState.DONE, timeout=60_000)

    assert out.is_file()
    result = open_clip(out)
    assert result.frame_rate == Fraction(25)
    assert (result.width, result.height) == (64, 48)
    assert result.frame_count == 10
    assert [a.codec for a in result.audio] == ["aac"]
    assert progress and progress[-1] == 1.0
    assert video.batch_box.progress.value() == 1000
    assert str(out) in video.batch_box.batch_label.text()
    assert "audio: aac (copied)" in video.batch_box.batch_label.text()
    assert video.batch_box.run_button.isEnabled() and not video.batch_box.cancel_button.isEnabled()
    assert len(window.session.cutouts) == before  # a batch adds no cutouts, no candidates
    assert [p.name for p in out.parent.iterdir()] == ["range.mp4"]
    # the whole frame when the region is off
    video.batch_box.region_check.setChecked(False)
    assert "64×48 → 256×192" in video.batch_box.range_label.text()


@pytest.mark.slow
def test_batch_runs_in_the_engine_thread_and_cancel_leaves_no_file(
    qtbot, window, clips, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    started = threading.Event()
    proceed = threading.Event()
    threads: list[int] = []
    real = facade.make_upscaler

    def slow_upscaler(engine, is_cancelled=None):  # type: ignore[no-untyped-def]
        inner = real(engine, is_cancelled)

        def upscale(image: Image.Image) -> Image.Image:
            threads.append(threading.get_ident())
            started.set()
            proceed.wait(20)
            return inner(image)

        return upscale

    monkeypatch.setattr(facade, "make_upscaler", slow_upscaler)
    video = open_in(qtbot, window, clips["good"])
    video.set_range(0, N - 1)
    out = tmp_path / "cancelled.mp4"
    video.batch_box.output_edit.setText(str(out))
    job = video.start_batch()
    assert job is not None
    try:
        assert started.wait(20)
        video.cancel_batch()
    finally:
        proceed.set()
    qtbot.waitUntil(lambda: job.state is JobState.CANCELLED, timeout=20_000)
    assert threads and threading.get_ident() not in threads
    assert not out.exists()
    assert list(tmp_path.glob("*.mp4")) == []
    assert list(tmp_path.glob(".cancelled*")) == []  # no partial file either
    assert "Cancelled" in video.batch_box.batch_label.text()
    assert video.batch_box.progress.value() == 0
    assert video.batch_box.run_button.isEnabled()


@pytest.mark.slow
def test_cancel_a_queued_batch_leaves_the_running_job(qtbot, tmp_path, clips, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(tmp_path / "cache"))
    gate = threading.Event()
    runner = FakeRunner(gate=gate)
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    session = Session(SettingsModel(store), runner_factory=lambda: runner)
    main = MainWindow(session)
    main.confirm_on_close = False
    try:
        session.cutouts.add_image(Image.new("RGB", (20, 30), (10, 90, 30)), "player.png")
        session.engine.set_engine("lanczos")
        (first,) = main.run_selected()
        video = open_in(qtbot, main, clips["good"])
        video.batch_box.output_edit.setText(str(tmp_path / "queued.mp4"))
        job = video.start_batch()
        assert job is not None and job.state is JobState.QUEUED
        assert video.batch_box.eta_label.text() == "queued"
        video.cancel_batch()
        assert job.state is JobState.CANCELLED
        assert first.state is JobState.RUNNING
        gate.set()
        qtbot.waitUntil(lambda: first.state is JobState.DONE, timeout=20_000)
        assert not (tmp_path / "queued.mp4").exists()
        assert video.batch_box.run_button.isEnabled()
    finally:
        gate.set()
        main.close()
        gc.collect()


def test_batch_refuses_bad_settings_without_queueing(qtbot, window, clips, tmp_path) -> None:  # type: ignore[no-untyped-def]
    video = open_in(qtbot, window, clips["good"])
    video.batch_box.output_edit.setText(str(tmp_path / "out.avi"))
    assert video.start_batch() is None
    assert ".mp4" in video.message_text()
    video.batch_box.output_edit.setText(str(tmp_path / "nowhere" / "out.mp4"))
    assert video.start_batch() is None
    assert "does not exist" in video.message_text()
    existing = tmp_path / "taken.mp4"
    existing.write_bytes(b"an earlier result")
    video.batch_box.output_edit.setText(str(existing))
    assert video.start_batch() is None
    assert "already exists" in video.message_text()
    assert existing.read_bytes() == b"an earlier result"
    video.batch_box.output_edit.setText(str(tmp_path / "out.mp4"))
    video.batch_box.start_edit.setText("00:00:01:00")
    video.batch_box.end_edit.setText("00:00:00:10")
    assert video.start_batch() is None
    assert "comes before" in video.message_text()
    assert not window.session.jobs.is_busy()


# -- bad clips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["truncated", "empty", "text", "missing", "mpeg4"])
def test_bad_clip_one_message_no_state_change(qtbot, window, clips, bad) -> None:  # type: ignore[no-untyped-def]
    video = open_in(qtbot, window, clips["good"])
    video.seek(6)
    wait_frame(qtbot, video, 6)
    video.view.set_rect((4, 4, 10, 10))
    info, label, title = video.info, video.info_label.text(), video.windowTitle()
    image = video.view.image()
    cutouts = len(window.session.cutouts)

    with qtbot.waitSignal(video.clip.openFailed, timeout=20_000):
        window.load_paths([str(clips[bad])])
    text = video.message_text()
    assert clips[bad].name in text
    assert text.count("\n") == 0 and "Traceback" not in text
    if bad == "mpeg4":
        assert "not supported" in text
    assert video.info is info
    assert video.info_label.text() == label and video.windowTitle() == title
    assert video.view.image() == image and video.clip.index == 6
    assert (
        video.transport.slider.value() == 6
        and video.transport.slider.maximum() == info.frame_count - 1
    )
    assert video.view.rect_px() == (4, 4, 10, 10)
    assert len(window.session.cutouts) == cutouts
    assert window.messages.texts() == []  # the one message is in the video window
    # the clip that was open still works
    video.seek(7)
    wait_frame(qtbot, video, 7)
    assert shown_index(video) == 7


def test_bad_clip_first(qtbot, window, clips) -> None:  # type: ignore[no-untyped-def]
    video = window.video_window
    with qtbot.waitSignal(video.clip.openFailed, timeout=20_000):
        window.show_clip(str(clips["empty"]))
    assert "empty.mp4" in video.message_text() and "0 bytes" in video.message_text()
    assert video.info is None and video.view.image().isNull()
    assert not video.cut_box.send_button.isEnabled() and not video.transport.slider.isEnabled()


# -- main window -------------------------------------------------------------------------------


def test_open_clip_action_and_drop(qtbot, window, clips, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    action = window.open_clip_action
    assert action.shortcut().toString() == "Ctrl+Shift+O"
    assert window.open_folder_action.shortcut().toString() != "Ctrl+Shift+O"
    file_menu = window.menuBar().actions()[0].menu()
    assert action in file_menu.actions()

    from PySide6.QtWidgets import QFileDialog

    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(clips["good"]), ""))
    )
    video = window.video_window
    with qtbot.waitSignal(video.clip.opened, timeout=20_000):
        action.trigger()
    assert video.isVisible() and video.info is not None

    # a clip dropped on the cutouts pane opens in the video window, images load as cutouts
    image = clips["good"].parent / "still.png"
    Image.new("RGB", (12, 20), (1, 2, 3)).save(image)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(clips["interlaced"])), QUrl.fromLocalFile(str(image))])
    event = QDropEvent(
        QPointF(5, 5),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    with qtbot.waitSignal(video.clip.opened, timeout=20_000):
        window.cutouts.dropEvent(event)
    assert video.info is not None and video.info.path.endswith("field.mkv")
    qtbot.waitUntil(lambda: len(window.session.cutouts) == 1, timeout=10_000)
    assert window.session.cutouts.at(0).name == "still.png"


@pytest.mark.slow
def test_batch_realesrgan_runs_in_the_engine_thread(
    qtbot, window, clips, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Real-ESRGAN is built and run by the job in the engine thread (two frames, 8x8 region)."""
    from fbupscale_gui.engine.fast.engines import realesrgan_model_files

    realesrgan_model_files()  # installed by the setup: a broken install fails here
    monkeypatch.setenv("FBUPSCALE_CPU_THREADS", "1")
    threads: list[int] = []
    real = facade.make_upscaler

    def recording(engine, is_cancelled=None):  # type: ignore[no-untyped-def]
        threads.append(threading.get_ident())
        return real(engine, is_cancelled)

    monkeypatch.setattr(facade, "make_upscaler", recording)
    video = open_in(qtbot, window, clips["good"])
    video.view.set_rect((20, 30, 8, 8))
    video.set_range(3, 4)
    video.set_engine("realesrgan")
    out = tmp_path / "esrgan.mkv"
    video.batch_box.output_edit.setText(str(out))
    job = video.start_batch()
    assert job is not None and job.request.engine == "realesrgan"
    qtbot.waitUntil(
        lambda: job.state is not JobState.RUNNING and job.state is not JobState.QUEUED,
        timeout=120_000,
    )
    assert job.state is JobState.DONE, job.error
    assert threads and threading.get_ident() not in threads
    assert job.result.frames == 2  # (Matroska states no frame count; its estimate may differ)
    info = open_clip(out)
    assert (info.width, info.height) == (32, 32)
    assert str(out) in video.batch_box.batch_label.text()
