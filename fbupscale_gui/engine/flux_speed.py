"""Speed modes of the FLUX engine: ``exact``, ``fast`` and ``compiled`` (a request field).

``fast`` puts diffusers' First Block Cache on the transformer for each stage-1 call only:

* Neither ``FluxImg2ImgPipeline`` nor ``FluxControlNetPipeline`` opens the transformer's cache
  context (only ``FluxPipeline`` does), so :func:`stage1_cache` opens it around the call and
  resets the cached residuals first: every run starts from a full first step, and a
  candidate renders the same alone (``reproduce``) as within its batch.
* Stage 2 stays uncached. FLUX adds the ControlNet residuals inside its block loop, and First
  Block Cache's skip path returns the skipped blocks' cached output without them: a skipped
  step would apply residuals of an older step (or none). Rather than prove that away, the
  cache hooks are removed before stage 2 runs (tests check that no stage-2 step is skipped).

``compiled`` compiles the repeated transformer blocks (``compile_repeated_blocks``: one block
compiled and reused, far shorter compile times than a whole-model compile), with inductor's
caches under fbupscale's cache folder so a second launch reuses the artefacts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Final

from fbupscale_gui.storage.weights import user_cache_dir

__all__ = ["FBC_THRESHOLD", "compile_blocks", "stage1_cache"]

#: First Block Cache threshold: the published "nearly lossless" setting for FLUX (1.5-2x).
FBC_THRESHOLD: Final = 0.08


@contextlib.contextmanager
def stage1_cache(transformer: Any, speed: str) -> Iterator[None]:
    """Around one stage-1 pipeline call: First Block Cache in ``fast``, nothing otherwise."""
    if speed != "fast":
        yield
        return
    from diffusers.hooks import FirstBlockCacheConfig

    transformer.enable_cache(FirstBlockCacheConfig(threshold=FBC_THRESHOLD))
    try:
        transformer._reset_stateful_cache()
        with transformer.cache_context("cond"):
            yield
    finally:
        transformer.disable_cache()  # stage 2 (ControlNet residuals) must run uncached


def compile_blocks(transformer: Any, *, fullgraph: bool = True) -> None:
    """Regional compile of the repeated blocks, once per loaded transformer.

    ``fullgraph=False`` where hooks rebuild parameters on the fly (fp8 layerwise casting,
    GGUF dequantisation): dynamo then breaks the graph around them instead of failing."""
    if getattr(transformer, "_fbupscale_compiled", False):
        return
    cache = user_cache_dir() / "torch-compile"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "inductor"))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    transformer.compile_repeated_blocks(fullgraph=fullgraph)
    transformer._fbupscale_compiled = True
