"""spandrel without torchvision: import spandrel behind a narrowly scoped import hook.

spandrel 0.4.2 imports torchvision at module level in two architectures that are not upscalers
(LaMa inpainting, RestoreFormer face restoration), and importing ``spandrel`` imports every
architecture. torchvision has no CPU build for our torch and is not a dependency, so
:func:`import_spandrel` imports spandrel behind a narrowly scoped import hook: while (and only
while) spandrel is being imported, ``torchvision`` and its submodules resolve to inert
placeholder modules whose every attribute is a :class:`_Unavailable` object that raises
:class:`ModelFileError` if it is ever called. Those placeholders are removed from
``sys.modules`` afterwards, so other code importing torchvision still gets the real package or
a normal ImportError; the real torchvision is never imported by us (a CUDA build next to a CPU
torch fails or half-registers operators at import). If torchvision was already imported by
the process, spandrel simply uses it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fbupscale_gui.core.errors import ModelFileError

__all__ = ["import_spandrel"]


class _Unavailable:
    """Stands in for a torchvision name spandrel imports at module level; fails when used."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Unavailable:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Unavailable(f"{self._name}.{attr}")

    def __call__(self, *args: object, **kwargs: object) -> Any:
        raise ModelFileError(
            f"{self._name} needs torchvision, which fbupscale does not install; this "
            "architecture is not a super-resolution model fbupscale runs"
        )

    def __repr__(self) -> str:
        return f"<unavailable {self._name}>"


class _TorchvisionPlaceholder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves placeholder ``torchvision[.*]`` modules while it sits on ``sys.meta_path``."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__fbupscale_placeholder__ = True  # type: ignore[attr-defined]

        def __getattr__(attr: str) -> _Unavailable:
            if attr.startswith("__"):
                raise AttributeError(attr)
            return _Unavailable(f"{spec.name}.{attr}")

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


_spandrel_lock = threading.Lock()
_spandrel: types.ModuleType | None = None


def _is_placeholder(module: object) -> bool:
    return bool(getattr(module, "__fbupscale_placeholder__", False))


@contextmanager
def _torchvision_placeholders() -> Iterator[None]:
    if "torchvision" in sys.modules and not _is_placeholder(sys.modules["torchvision"]):
        yield  # a real torchvision is already loaded: let spandrel use it
        return
    finder = _TorchvisionPlaceholder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            if _is_placeholder(sys.modules[name]):
                del sys.modules[name]


def import_spandrel() -> types.ModuleType:
    """Import spandrel without torchvision (see the module docstring) and return it.

    Raises ModelFileError when spandrel (or einops, which it needs) is not installed.
    """
    global _spandrel
    with _spandrel_lock:
        if _spandrel is not None:
            return _spandrel
        already = sys.modules.get("spandrel")
        if already is not None:
            _spandrel = already
            return already
        try:
            with _torchvision_placeholders():
                import spandrel
        except ImportError as exc:
            raise ModelFileError(
                f"user models need the spandrel package ({exc}); install it without its "
                "dependencies so torch stays as it is: pip install --no-deps spandrel==0.4.2 einops"
            ) from None
        except Exception as exc:  # e.g. a newer spandrel using torchvision in a class statement
            raise ModelFileError(
                f"spandrel could not be imported without torchvision ({type(exc).__name__}: "
                f"{exc}); use spandrel 0.4.2: pip install --no-deps spandrel==0.4.2"
            ) from None
        _spandrel = spandrel
        return spandrel
