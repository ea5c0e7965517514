"""The cutouts list: loading files, folders and pasted images; per-cutout scene and prompt.

Decoding happens in :func:`decode_paths` (pure, thread-safe), so the window can run it off the
GUI thread (``asyncio.to_thread`` on the qasync loop, see :meth:`CutoutsModel.load_paths`) and
then add the results on the GUI thread with :meth:`CutoutsModel.add_decoded`. A file that is not
a usable image becomes one line naming the file, never an exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QImage, QPixmap

from fbupscale_gui.core.errors import FbError, InputImageError
from fbupscale_gui.core.request import SourceRef
from fbupscale_gui.state.cutout_status import MARKERS
from fbupscale_gui.storage.cutouts import load_cutout, make_source
from fbupscale_gui.storage.paths import read_regular
from fbupscale_gui.worker.qimage import pil_to_qimage

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.scene import Scene

__all__ = [
    "IMAGE_SUFFIXES",
    "Cutout",
    "CutoutRole",
    "CutoutsModel",
    "Decoded",
    "LoadReport",
    "decode_paths",
    "expand_paths",
    "scene_sidecar",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
#: A cutout's scene can be saved next to it as ``<name>.scene.json`` (core.scene JSON).
SCENE_SUFFIX: Final = ".scene.json"
#: Side of the list thumbnails; cutouts are tiny, so they are scaled up with nearest neighbour.
THUMB_SIDE: Final = 64

_Index = QModelIndex | QPersistentModelIndex


class CutoutRole:
    CUTOUT = int(Qt.ItemDataRole.UserRole) + 1


@dataclass(eq=False)
class Cutout:
    """One cutout and what the operator said about it.

    ``scene``/``prompt``/``prompt_manual`` are per cutout: each cutout is a different player
    and moment. ``scene`` is None until the cutout is first shown; it then starts from the
    scene last edited (:attr:`CutoutsModel.last_scene`), so teams and stadium carry over.
    """

    id: int
    name: str
    source: SourceRef
    image: Image.Image
    qimage: QImage
    scene: Scene | None = None
    prompt: str = ""
    prompt_manual: bool = False
    _thumb: QPixmap | None = field(default=None, repr=False)

    @property
    def size_text(self) -> str:
        return f"{self.image.width}×{self.image.height} px"

    def thumbnail(self) -> QPixmap:
        if self._thumb is None:  # QPixmap: GUI thread only, made on first paint
            scaled = self.qimage.scaled(
                THUMB_SIDE,
                THUMB_SIDE,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.FastTransformation,  # nearest: show the raw pixels
            )
            self._thumb = QPixmap.fromImage(scaled)
        return self._thumb


@dataclass(frozen=True, eq=False)
class Decoded:
    """A successfully decoded file (made off the GUI thread), with its sidecar scene if any."""

    path: Path
    source: SourceRef
    image: Image.Image
    qimage: QImage
    scene: Scene | None = None
    scene_error: str = ""


def scene_sidecar(path: Path) -> Path:
    """``grab.png`` -> ``grab.scene.json``: a scene description saved next to a cutout."""
    return path.with_name(path.stem + SCENE_SUFFIX)


def _read_scene(path: Path) -> tuple[Scene | None, str]:
    sidecar = scene_sidecar(path)
    if not sidecar.is_file():
        return None, ""
    from fbupscale_gui.core.scene import Scene

    try:
        return Scene.from_json(read_regular(sidecar, "scene")), ""
    except (FbError, ValueError) as exc:
        return None, f"{sidecar.name}: scene ignored ({exc})"
    except OSError as exc:
        return None, f"{sidecar.name}: scene ignored ({exc.strerror or exc})"


@dataclass
class LoadReport:
    """What a load did: cutouts added, duplicates skipped, one error line per bad file."""

    added: list[Cutout] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Loaded, but something next to it was not usable (a broken ``.scene.json``).
    warnings: list[str] = field(default_factory=list)

    def message(self) -> str:
        """A one-paragraph summary for the window, empty when there is nothing to say."""
        parts: list[str] = []
        if self.errors:
            n = len(self.errors)
            head = "Could not load 1 file" if n == 1 else f"Could not load {n} files"
            shown = self.errors[:5]
            more = f" (and {n - 5} more)" if n > 5 else ""
            parts.append(f"{head}: " + "; ".join(shown) + more + ".")
        if self.warnings:
            parts.append("; ".join(self.warnings[:5]) + ".")
        if self.duplicates:
            parts.append(f"Already loaded, skipped: {', '.join(self.duplicates[:5])}.")
        return " ".join(parts)


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders become their image files (sorted, not recursive)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            out.extend(
                sorted(
                    (c for c in p.iterdir() if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES),
                    key=lambda c: c.name.lower(),
                )
            )
        else:
            out.append(p)
    return out


def decode_paths(paths: Iterable[str | Path]) -> list[Decoded | InputImageError]:
    """Decode each file (thread-safe, no GUI objects). Bad files become their error."""
    results: list[Decoded | InputImageError] = []
    for path in expand_paths(paths):
        try:
            image = load_cutout(path)
            source = make_source(path, image)
            scene, scene_error = _read_scene(path)
            results.append(Decoded(path, source, image, pil_to_qimage(image), scene, scene_error))
        except InputImageError as exc:
            results.append(exc)
        except OSError as exc:  # e.g. permission denied while resolving the path
            results.append(InputImageError(path, exc.strerror or str(exc)))
    return results


class CutoutsModel(QAbstractListModel):
    """The list of cutouts (rows), with thumbnails and pixel sizes."""

    loaded = Signal(object)  # LoadReport

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[Cutout] = []
        self._next_id = 1
        self.last_scene: Scene | None = None
        #: Where a cutout stands ("queued", "running", ... see models.cutout_status).
        self.status_of: Callable[[int], str] | None = None

    # -- Qt model -------------------------------------------------------------------------

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: _Index, role: int = int(Qt.ItemDataRole.DisplayRole)) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        cutout = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            marker = MARKERS.get(self.status_of(cutout.id), "") if self.status_of else ""
            return f"{cutout.name}\n{cutout.size_text}" + (f" · {marker}" if marker else "")
        if role == Qt.ItemDataRole.DecorationRole:
            return cutout.thumbnail()
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{cutout.source.path}\n{cutout.size_text}"
        if role == CutoutRole.CUTOUT:
            return cutout
        return None

    # -- access ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._rows)

    def cutouts(self) -> list[Cutout]:
        return list(self._rows)

    def at(self, row: int) -> Cutout:
        return self._rows[row]

    def row_of(self, cutout_id: int) -> int:
        for i, c in enumerate(self._rows):
            if c.id == cutout_id:
                return i
        raise KeyError(cutout_id)

    def by_id(self, cutout_id: int) -> Cutout:
        return self._rows[self.row_of(cutout_id)]

    def starting_scene(self) -> Scene | None:
        """The scene a new cutout starts from: the last edited scene's teams and stadium."""
        return self.last_scene.carried_over() if self.last_scene is not None else None

    def refresh_row(self, cutout_id: int) -> None:
        """Redraw the row of ``cutout_id`` (its status changed)."""
        try:
            index = self.index(self.row_of(cutout_id), 0)
        except KeyError:
            return
        self.dataChanged.emit(index, index, [Qt.ItemDataRole.DisplayRole])

    def ensure_scene(self, cutout: Cutout) -> None:
        """Give a never-shown cutout what carries over from the last edited scene (teams
        and stadium) and its generated prompt."""
        start = self.starting_scene()
        if cutout.scene is None and start is not None:
            cutout.scene = start
            cutout.prompt = start.to_prompt()
            cutout.prompt_manual = False

    # -- loading --------------------------------------------------------------------------

    def _append(
        self,
        name: str,
        source: SourceRef,
        image: Image.Image,
        qimage: QImage,
        scene: Scene | None = None,
    ) -> Cutout:
        cutout = Cutout(
            id=self._next_id,
            name=name,
            source=source,
            image=image,
            qimage=qimage,
            scene=scene,
            prompt=scene.to_prompt() if scene is not None else "",
        )
        self._next_id += 1
        row = len(self._rows)
        self.beginInsertRows(QModelIndex(), row, row)
        self._rows.append(cutout)
        self.endInsertRows()
        return cutout

    def add_restored(
        self,
        name: str,
        source: SourceRef,
        image: Image.Image,
        qimage: QImage,
        scene: Scene | None,
        prompt: str,
        prompt_manual: bool,
    ) -> Cutout:
        """Add a cutout read back from the session, with its scene and prompt as saved.

        A cutout with the same pixels already in the list (a file loaded while the session
        was being read) is not added again: it takes the session's name, scene and prompt,
        which are the operator's (a sidecar scene never overrides them), and is returned."""
        cutout = next((c for c in self._rows if c.source.sha256 == source.sha256), None)
        if cutout is None:
            cutout = self._append(name, source, image, qimage, scene)
        else:
            cutout.name = name
            cutout.scene = scene
            index = self.index(self._rows.index(cutout))
            self.dataChanged.emit(index, index)
        cutout.prompt = prompt
        cutout.prompt_manual = prompt_manual
        if scene is not None:
            self.last_scene = scene
        return cutout

    def clear(self) -> None:
        """Remove every cutout (another session is opened)."""
        self.beginResetModel()
        self._rows.clear()
        self.last_scene = None
        self.endResetModel()

    def add_decoded(self, results: Sequence[Decoded | InputImageError]) -> LoadReport:
        """Add decoded files (GUI thread), skipping pixel-identical duplicates."""
        report = LoadReport()
        known = {c.source.sha256 for c in self._rows}
        for item in results:
            if isinstance(item, InputImageError):
                report.errors.append(str(item))
                continue
            if item.source.sha256 in known:
                report.duplicates.append(item.path.name)
                continue
            known.add(item.source.sha256)
            if item.scene_error:
                report.warnings.append(item.scene_error)
            report.added.append(
                self._append(item.path.name, item.source, item.image, item.qimage, item.scene)
            )
        if report.errors:
            log.warning("load: %s", "; ".join(report.errors))
        self.loaded.emit(report)
        return report

    def add_paths(self, paths: Iterable[str | Path]) -> LoadReport:
        """Decode and add on the calling thread (tests, tiny loads)."""
        return self.add_decoded(decode_paths(paths))

    async def load_paths(self, paths: Iterable[str | Path]) -> LoadReport:
        """Decode off the GUI thread on the running (qasync) loop, then add."""
        results = await asyncio.to_thread(decode_paths, list(paths))
        return self.add_decoded(results)

    def add_image(self, image: Image.Image, name: str = "pasted") -> LoadReport:
        """Add an in-memory image (clipboard paste), stored content-addressed on disk first."""
        from fbupscale_gui.storage.store import store_cutout

        report = LoadReport()
        try:
            source = store_cutout(image, name)
            decoded = load_cutout(source.path)
        except FbError as exc:
            report.errors.append(f"{name}: {exc}")
            self.loaded.emit(report)
            return report
        except OSError as exc:
            report.errors.append(
                f"{name}: could not store the pasted image ({exc.strerror or exc})"
            )
            self.loaded.emit(report)
            return report
        if any(c.source.sha256 == source.sha256 for c in self._rows):
            report.duplicates.append(source.name or name)
        else:
            report.added.append(
                self._append(source.name or name, source, decoded, pil_to_qimage(decoded))
            )
        self.loaded.emit(report)
        return report
