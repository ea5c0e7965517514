"""Shared test setup: offscreen Qt, strictly offline Hugging Face, isolated caches."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# Isolated caches: an empty Hugging Face home (so tests never see real models) and a private
# fbupscale cache (model fingerprints) and models folder. Set before anything imports huggingface_hub.
_CACHE_ROOT = Path(tempfile.mkdtemp(prefix="fbupscale-tests-"))
atexit.register(shutil.rmtree, _CACHE_ROOT, True)
os.environ["HF_HOME"] = str(_CACHE_ROOT / "hf")
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HUGGINGFACE_HUB_CACHE", None)
os.environ["FBUPSCALE_CACHE_DIR"] = str(_CACHE_ROOT / "fbupscale")
os.environ.pop("FBUPSCALE_MODEL_DIRS", None)
os.environ["FBUPSCALE_MODELS_DIR"] = str(_CACHE_ROOT / "models")
# Sessions (the window's crash-safe record) go to a private folder too, never the user's.
os.environ["FBUPSCALE_SESSIONS_DIR"] = str(_CACHE_ROOT / "sessions")

if TYPE_CHECKING:
    from fbupscale_gui.engine.testing import TinyFluxFiles


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module's tiny-model tests on one torch thread, restoring the count afterwards.

    Tiny models gain nothing from threads, and on a shared 2-core machine a second thread
    mostly waits for the scheduler."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> TinyFluxFiles:
    """A tiny random FLUX saved like the real one: ``flux_dir``, ``controlnet_dir``,
    ``lora_diffusers`` and ``lora_kohya`` (built once per session, about a second)."""
    from fbupscale_gui.engine.testing import make_tiny_flux_files

    return make_tiny_flux_files(tmp_path_factory.mktemp("tiny_flux"))
