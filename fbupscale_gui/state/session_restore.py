"""Reading a session back: its snapshot decoded off the GUI thread, its candidates' images
decoded in their own thread.

:func:`load_restored` reads what a :class:`~fbupscale_gui.storage.session_reader.Snapshot`
names (cutouts decoded, candidates only checked) into a :class:`Restored`, skipping what cannot
be read with a line in ``problems``. :class:`ImageLoader` then decodes the candidates' PNGs in
its own thread (a 1024 px PNG takes tens of ms: 200 of them would hold the window for seconds),
and a candidate asked for before that is decoded on first use.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from fbupscale_gui.core.errors import FbError
from fbupscale_gui.storage.session_index import CandidateRow, CutoutRow
from fbupscale_gui.storage.session_reader import Snapshot

if TYPE_CHECKING:
    from PIL import Image
    from PySide6.QtGui import QImage

    from fbupscale_gui.core.request import SourceRef
    from fbupscale_gui.state.candidates import CandidateEntry, StoredCandidate

__all__ = ["ImageLoader", "Restored", "RestoredCandidate", "load_restored", "tile_thumbnail"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class RestoredCandidate:
    """A candidate's index row and what its entry needs, its pixels not decoded yet."""

    row: CandidateRow
    stored: StoredCandidate


@dataclass(frozen=True, eq=False)
class RestoredCutout:
    row: CutoutRow
    source: SourceRef
    image: Image.Image
    qimage: QImage


@dataclass
class Restored:
    """A snapshot with its cutouts decoded and its candidates checked (not decoded); what could
    not be read is in ``problems``."""

    snapshot: Snapshot
    cutouts: list[RestoredCutout]
    candidates: list[RestoredCandidate]
    problems: list[str]
    #: The Advanced parameters saved with the session (None: none saved, an older session).
    params: str | None = None


def load_restored(snapshot: Snapshot) -> Restored:
    """Decode the cutouts of ``snapshot`` (small) and check its candidates (thread-safe).

    A candidate's file is only opened to check that it is a readable image (its header, well
    under a millisecond); its full-resolution pixels are decoded later by an
    :class:`ImageLoader`, or on first use. A missing or damaged file, a row whose file lies
    outside the session folder, or a row that does not parse skips that item with a line in
    ``problems``.
    """
    from PIL import Image as PilImage

    from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest, SourceRef
    from fbupscale_gui.state.candidates import StoredCandidate
    from fbupscale_gui.storage.cutouts import load_cutout
    from fbupscale_gui.storage.paths import PathEscapeError, contained
    from fbupscale_gui.worker.qimage import pil_to_qimage

    folder = snapshot.info.path
    out = Restored(snapshot, [], [], list(snapshot.problems))
    for row in snapshot.cutouts:
        # the session's own copy of the pixels, named by their hash, stands in for a bad row
        own = f"cutouts/{row.key}.png" if re.fullmatch(r"[0-9a-f]{64}", row.key) else None
        try:
            try:
                path = contained(folder, row.file, f"cutout {row.name}")
            except PathEscapeError as exc:
                if own is None or not (folder / own).is_file():
                    raise
                out.problems.append(f"{exc}; its copy in the session is shown")
                path = folder / own
            image = load_cutout(path)
        except Exception as exc:  # untrusted rows and files: skip this one, say why
            out.problems.append(_problem(f"cutout {row.name}", exc))
            continue
        try:
            source = _source_from_json(row.source_json, row.key, path)
        except Exception as exc:
            out.problems.append(_problem(f"cutout {row.name}: source", exc))
            source = SourceRef(str(path), row.key, image.width, image.height, row.name)
        out.cutouts.append(RestoredCutout(row, source, image, pil_to_qimage(image)))
    known = {c.row.key for c in out.cutouts}
    requests: dict[str, ReconstructionRequest] = {}  # a job's candidates share its request
    for cand in snapshot.candidates:
        if cand.cutout_key not in known:
            continue
        try:
            path = contained(folder, cand.file, f"candidate row {cand.id}")
            with PilImage.open(path) as im:  # the header only
                if im.width <= 0 or im.height <= 0:
                    raise ValueError("empty image")
            request = requests.get(cand.request_json) or ReconstructionRequest.from_json(
                cand.request_json
            )
            requests[cand.request_json] = request
            key = CandidateKey(cand.variant, cand.lora, cand.stage)
        except Exception as exc:
            out.problems.append(_problem(f"candidate {Path(cand.file).name}", exc))
            continue
        stored = StoredCandidate(
            key, cand.seed, request, path, dict(cand.timings), cand.runtime,
            cand.lora_report, cand.resolved, cand.number_check,
        )  # fmt: skip
        out.candidates.append(RestoredCandidate(cand, stored))
    return out


def _problem(what: str, exc: BaseException) -> str:
    from fbupscale_gui.storage.paths import PathEscapeError

    if isinstance(exc, PathEscapeError):
        return str(exc)  # names the row already
    if isinstance(exc, RecursionError):
        return f"{what}: nested too deeply to read"
    if isinstance(exc, FbError | OSError | ValueError):
        return f"{what}: {exc}"
    return f"{what}: {type(exc).__name__}: {exc}"


def tile_thumbnail(image: Image.Image) -> QImage:
    """A candidate's tile image (fits THUMB_SIDE), made from its full-resolution pixels."""
    from fbupscale_gui.worker.engine_thread import THUMB_SIDE
    from fbupscale_gui.worker.qimage import pil_to_qimage

    small = image.copy()
    small.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return pil_to_qimage(small)


class ImageLoader(QObject):
    """Decodes restored candidates in one plain thread, the wanted cutout's first.

    Each decoded candidate comes back with its tile thumbnail by ``decoded`` (queued to the
    GUI thread, which only hands them to the entry): the GUI thread never decodes a PNG.
    An entry already decoded on demand (an export) only gets its thumbnail made.
    """

    decoded = Signal(int, object, object, object)  # generation, entry, PIL image | None, QImage
    failed = Signal(int, object, str)  # generation, entry, message
    finished = Signal(int)  # generation

    def __init__(
        self, generation: int, entries: list[CandidateEntry], parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.generation = generation
        self._pending = list(entries)
        self._lock = threading.Lock()
        self._wanted: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="fbupscale-session-images", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def want(self, cutout_id: int | None) -> None:
        """Decode ``cutout_id``'s candidates next."""
        with self._lock:
            self._wanted = cutout_id

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the image being decoded (its result is not delivered); joined."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _next(self) -> CandidateEntry | None:
        with self._lock:
            if not self._pending:
                return None
            wanted = self._wanted
            index = next((i for i, e in enumerate(self._pending) if e.cutout_id == wanted), 0)
            return self._pending.pop(index)

    def _loop(self) -> None:
        while not self._stop.is_set():
            entry = self._next()
            if entry is None:
                break
            try:
                if entry.is_loaded:
                    image = None
                    thumb = tile_thumbnail(entry.candidate.image)
                else:
                    assert entry.stored is not None
                    image = entry.stored.load()
                    thumb = tile_thumbnail(image)
            except FbError as exc:
                self.failed.emit(self.generation, entry, str(exc))
                continue
            except Exception as exc:  # a bug with one file must not stop the others
                log.exception("restoring a candidate image failed")
                self.failed.emit(self.generation, entry, str(exc))
                continue
            if self._stop.is_set():
                break
            self.decoded.emit(self.generation, entry, image, thumb)
        self.finished.emit(self.generation)


def _source_from_json(text: str, key: str, copy: Path) -> SourceRef:
    """The cutout's source; the session's copy of the pixels when the original file is gone.

    Raises ValueError for a row that does not describe this cutout."""
    from fbupscale_gui.core.request import SourceRef

    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("its source is not a JSON object")
    try:
        source = SourceRef(**{k: data[k] for k in ("path", "sha256", "width", "height", "name")})
    except (KeyError, TypeError) as exc:
        raise ValueError(f"its source is incomplete ({exc})") from None
    if not isinstance(source.path, str) or source.sha256 != key:
        raise ValueError("its source does not match the cutout")
    if not Path(source.path).is_file():
        source = SourceRef(str(copy), source.sha256, source.width, source.height, source.name)
    return source
