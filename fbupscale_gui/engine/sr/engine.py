"""The user-model engine: runs "model:NAME_OR_PATH" requests, keeping the last models loaded.

Models are looked up in the user's weights library by name (or read from a path), loaded with
:func:`.sr_network.load_model`, checked against the request's recorded sha256, and run with
FastEngine's geometry (upscale, then Lanczos to the requested size).

Importing this module is cheap: torch and spandrel load on first use.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fbupscale_gui.core.errors import ModelFileError, RequestError
from fbupscale_gui.engine.sr.network import SrModel, load_model
from fbupscale_gui.storage.weights_library import ModelLibrary, file_sha256

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.job import Candidate, IsCancelled, OnProgress
    from fbupscale_gui.core.request import ReconstructionRequest

__all__ = ["ENGINE_PREFIX", "SrModelEngine", "model_spec"]

ENGINE_PREFIX: Final = "model:"


def model_spec(request: ReconstructionRequest) -> tuple[str, str]:
    """The (name or path, expected sha256) a request's user model is given by.

    Reads ``request.sr_model`` (a ModelRef, when the request carries one) or the name after
    ``model:`` in ``request.engine``. Raises RequestError when the request names no user model.
    """
    ref = getattr(request, "sr_model", None)
    if ref is not None:
        return str(ref.path or ref.repo_id), str(ref.sha256 or "")
    engine = str(request.engine)
    if engine.startswith(ENGINE_PREFIX) and len(engine) > len(ENGINE_PREFIX):
        return engine[len(ENGINE_PREFIX) :], ""
    raise RequestError(f"engine: expected 'model:NAME_OR_PATH' for a user model, got {engine!r}")


@dataclass(frozen=True)
class _Key:
    path: str
    mtime_ns: int
    device: str
    precision: str


class SrModelEngine:
    """Runs user SR models ("model:NAME_OR_PATH"); keeps the last models loaded.

    Not thread-safe beyond a lock that serialises calls: one per worker, like the Engine.
    ``library`` is where names are looked up (default: the user's models folder).
    """

    def __init__(self, *, library: ModelLibrary | None = None, keep: int = 2) -> None:
        self.library = library if library is not None else ModelLibrary()
        self.keep = max(1, keep)
        self._models: dict[_Key, SrModel] = {}
        self._lock = threading.RLock()

    def model(
        self, name_or_path: str | Path, *, device: str = "cpu", precision: str = "auto"
    ) -> SrModel:
        """A loaded model, by library name or file path (cached). Raises ModelNotFoundError,
        ModelFileError, RequestError."""
        if isinstance(name_or_path, Path):
            path, entry = name_or_path, None
        else:
            path, entry = self.library.resolve(name_or_path)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError as exc:
            raise ModelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        key = _Key(str(path.resolve()), mtime, device, precision)
        with self._lock:
            cached = self._models.pop(key, None)
            if cached is None:
                # a file outside the library is hashed once per load, so a request's
                # recorded hash is checked for it too
                digest = entry.sha256 if entry is not None else file_sha256(path)
                cached = load_model(path, device=device, precision=precision, sha256=digest)
            self._models[key] = cached  # most recently used last
            while len(self._models) > self.keep:
                self._models.pop(next(iter(self._models)))
            return cached

    def release(self) -> None:
        """Drop every loaded model."""
        with self._lock:
            self._models.clear()

    def upscale(
        self,
        image: Image.Image,
        model: SrModel,
        on_progress: OnProgress | None = None,
        is_cancelled: IsCancelled | None = None,
    ) -> Image.Image:
        """``image`` upscaled by ``model.scale`` (tiled; progress per tile, stage "fast").

        For chaining (e.g. SPAN 2x, then FLUX). Raises Cancelled between tiles.
        """
        from fbupscale_gui.core.job import Progress

        def on_tile(done: int, total: int) -> None:
            if on_progress is not None:
                on_progress(
                    Progress.single(
                        "fast", done, total, f"{model.info.arch} {model.scale}x tile {done}/{total}"
                    )
                )

        with self._lock:
            return model.upscale(image, on_tile=on_tile, is_cancelled=is_cancelled)

    def run(
        self,
        request: ReconstructionRequest,
        cutout: Image.Image,
        on_progress: OnProgress | None = None,
        is_cancelled: IsCancelled | None = None,
        *,
        model: SrModel | None = None,
    ) -> Candidate:
        """Render the one candidate of a user-model request, with FastEngine's geometry.

        The cutout is upscaled by the model, then Lanczos-resized so the content's long side
        is ``request.preprocess.size`` (padded square when ``crop_to_content`` is off).
        ``model`` overrides the request's model (tests, chaining). Raises RequestError,
        ModelNotFoundError, ModelFileError, and Cancelled (before work and between tiles).
        """
        import dataclasses

        from fbupscale_gui.core.images import crop_to_content, standardise
        from fbupscale_gui.core.job import Candidate, Progress, raise_if_cancelled
        from fbupscale_gui.core.request import CandidateKey
        from fbupscale_gui.engine.devices import resolve_runtime

        raise_if_cancelled(is_cancelled)
        start = time.perf_counter()
        if model is None:
            name, expected = model_spec(request)
            device = resolve_runtime(request.device, "fp32", "none").device
            if on_progress is not None:
                on_progress(Progress.single("load", 0, 1, f"loading {name}"))
            model = self.model(name, device=device, precision=request.precision)
            if expected and model.sha256 and expected != model.sha256:
                raise ModelFileError(
                    f"{name}: the model file changed since the request was made "
                    f"(sha256 {model.sha256[:12]} != {expected[:12]})"
                )
        upscaled = self.upscale(cutout, model, on_progress, is_cancelled)
        pre = request.preprocess
        square, placement = standardise(upscaled, dataclasses.replace(pre, intermediate=None))
        image = crop_to_content(square, placement) if pre.crop_to_content else square
        return Candidate(
            key=CandidateKey(variant=0, lora=False, stage=2),
            seed=request.seed,
            image=image,
            request=request,
            timings={"fast": time.perf_counter() - start},
            runtime=model.runtime,
        )
