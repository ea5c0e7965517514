"""Cutouts and clips into the main window: files, folders, drops, the clipboard, and the
video window that a clip opens in.

:class:`InputsWindow` is the main window's base class: the window
(:class:`~fbupscale_gui.ui.main_window.MainWindow`) assembles the panes, this part takes in
what the operator opens, drops or pastes and hands it to the session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QMainWindow

if TYPE_CHECKING:
    from PySide6.QtGui import QDragEnterEvent, QDropEvent

    from fbupscale_gui.state.session import Message, Session
    from fbupscale_gui.ui.cutout_panel import CutoutPanel
    from fbupscale_gui.ui.video_window import VideoWindow

__all__ = ["InputsWindow"]


class InputsWindow(QMainWindow):
    """Opening, dropping and pasting cutouts; clips go to the video window."""

    # set by the main window when it is built
    session: Session
    cutouts: CutoutPanel
    _built: bool = False
    _video: VideoWindow | None = None

    if TYPE_CHECKING:

        def show_message(self, message: Message) -> None: ...

    @Slot(list)
    def load_paths(self, paths: list[str]) -> None:
        """Load cutouts; a clip among them opens in the video window instead."""
        from fbupscale_gui.state.video import is_clip_path

        clips = [p for p in paths if is_clip_path(p)]
        images = [p for p in paths if not is_clip_path(p)]
        if images:
            self.session.load(images)
        if clips:
            self.show_clip(clips[0])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._built and event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if self._built and paths:
            event.acceptProposedAction()
            self.load_paths(paths)

    @property
    def video_window(self) -> VideoWindow:
        """The video window (made on first use; closing it only hides it)."""
        if self._video is None:
            from fbupscale_gui.ui.video_window import VideoWindow

            self._video = VideoWindow(self.session, self)
            self._video.cutoutSent.connect(self._on_cutout_sent)
        return self._video

    def show_clip(self, path: str) -> None:
        """Open ``path`` in the video window and bring the window up."""
        video = self.video_window
        video.show()
        video.raise_()
        video.activateWindow()
        video.open_clip(path)

    def open_clip(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        from fbupscale_gui.state.video import VIDEO_SUFFIXES

        pattern = " ".join(f"*{s}" for s in VIDEO_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a clip", "", f"Clips ({pattern});;All files (*)"
        )
        if path:
            self.show_clip(path)

    @Slot(int)
    def _on_cutout_sent(self, cutout_id: int) -> None:
        self._select_cutout(cutout_id)

    def open_files(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        from fbupscale_gui.state.cutouts import IMAGE_SUFFIXES

        image_filter = "Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)"
        paths, _ = QFileDialog.getOpenFileNames(self, "Open cutouts", "", image_filter)
        if paths:
            self.load_paths(paths)

    def open_folder(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        folder = QFileDialog.getExistingDirectory(self, "Open a folder of cutouts")
        if folder:
            self.load_paths([folder])

    def paste(self) -> None:
        from PySide6.QtWidgets import QApplication

        from fbupscale_gui.state.session import Message
        from fbupscale_gui.worker.qimage import qimage_to_pil

        clipboard = QApplication.clipboard()
        mime = clipboard.mimeData()
        if mime is not None and mime.hasUrls():
            paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
            if paths:
                self.load_paths(paths)
                return
        image = clipboard.image()
        if image.isNull():
            self.show_message(Message("warning", "The clipboard holds no image to paste."))
            return
        pasted = qimage_to_pil(image)
        report = self.session.cutouts.add_image(pasted, "pasted")
        if report.added:
            cutout = report.added[0]
            self._select_cutout(cutout.id)
            text = f"Pasted {cutout.name} ({pasted.width}×{pasted.height} px): it is selected."
            self.show_message(Message("info", text))
        elif report.duplicates:
            self.show_message(Message("info", "That image is already in the cutouts list."))

    def _select_cutout(self, cutout_id: int) -> None:
        """Select and show the cutout with ``cutout_id`` in the list."""
        try:
            row = self.session.cutouts.row_of(cutout_id)
        except KeyError:
            return
        self.cutouts.select_row(row)
