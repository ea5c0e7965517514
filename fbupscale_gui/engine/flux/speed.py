"""Speed modes of the FLUX engine: ``exact``, ``fast``, ``fast-mag`` and ``compiled`` (a
request field).

``fast`` puts diffusers' First Block Cache on the transformer for each stage-1 call only:

* Neither ``FluxImg2ImgPipeline`` nor ``FluxControlNetPipeline`` opens the transformer's cache
  context (only ``FluxPipeline`` does), so :func:`stage1_cache` opens it around the call and
  resets the cached residuals first: every run starts from a full first step, and a
  candidate renders the same alone (``reproduce``) as within its batch.
* Stage 2 stays uncached. FLUX adds the ControlNet residuals inside its block loop, and First
  Block Cache's skip path returns the skipped blocks' cached output without them: a skipped
  step would apply residuals of an older step (or none). Rather than prove that away, the
  cache hooks are removed before stage 2 runs (tests check that no stage-2 step is skipped).

``fast-mag`` does the same with diffusers' MagCache instead: it skips whole steps (from the
first block on) while the accumulated change predicted by FLUX.1-dev's published magnitude
ratios stays below its threshold, never in the first 20 % of a run. Those ratios were measured
over the whole text-to-image schedule, so for image-to-image they are stretched over all
``steps`` and the tail that really runs (``effective_steps``) is used: each step keeps its
own timestep's ratio.

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

__all__ = ["FBC_THRESHOLD", "MAG_THRESHOLD", "compile_blocks", "stage1_cache"]

#: First Block Cache threshold: the published "nearly lossless" setting for FLUX (1.5-2x).
FBC_THRESHOLD: Final = 0.08


#: MagCache threshold: diffusers' default for FLUX (accumulated error), at most 3 steps skipped
#: in a row.
MAG_THRESHOLD: Final = 0.06


def _cache_config(speed: str, steps: int, effective_steps: int) -> Any:
    if speed == "fast":
        from diffusers.hooks import FirstBlockCacheConfig

        return FirstBlockCacheConfig(threshold=FBC_THRESHOLD)
    from diffusers.hooks import MagCacheConfig
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS, nearest_interp

    ratios = nearest_interp(FLUX_MAG_RATIOS, steps)[steps - effective_steps :]
    return MagCacheConfig(
        threshold=MAG_THRESHOLD, num_inference_steps=effective_steps, mag_ratios=ratios
    )


@contextlib.contextmanager
def stage1_cache(
    transformer: Any, speed: str, steps: int = 0, effective_steps: int = 0
) -> Iterator[None]:
    """Around one stage-1 pipeline call: First Block Cache in ``fast``, MagCache in
    ``fast-mag`` (for img2img's ``effective_steps`` of ``steps``), nothing otherwise."""
    if speed not in ("fast", "fast-mag"):
        yield
        return
    transformer.enable_cache(_cache_config(speed, steps, effective_steps))
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
