"""Tiled inference: tile layout, feathered blending, exactness against an untiled run,
per-tile cancellation and progress, and fitting the tile size to free memory."""

from __future__ import annotations

import itertools

import pytest
import torch

from fbupscale_gui.core.errors import Cancelled
from fbupscale_gui.engine.fast.tiling import (
    MIN_TILE,
    NO_TILING,
    axis_starts,
    axis_tiles,
    fit_tile_size,
    plan_tiles,
    tiled_apply,
)


def nearest2x(t: torch.Tensor) -> torch.Tensor:
    return t.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(10, 64, 8), (64, 64, 8), (65, 64, 8), (200, 64, 16), (1000, 256, 24), (257, 256, 0)],
)
def test_axis_starts_cover_with_overlap(length: int, tile: int, overlap: int) -> None:
    starts, size = axis_tiles(length, tile, overlap)
    assert starts == axis_starts(length, tile, overlap)
    assert size <= tile and starts[0] == 0 and starts[-1] + size == length
    for a, b in itertools.pairwise(starts):
        assert a + size - b >= overlap  # neighbours share at least the overlap
        assert b > a


@pytest.mark.parametrize(("tile", "overlap"), [(MIN_TILE - 1, 0), (64, 33), (64, -1)])
def test_axis_starts_rejects_bad_settings(tile: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        axis_starts(100, tile, overlap)


def test_just_oversize_images_get_balanced_tiles() -> None:
    # 272 px (256 + reflect padding) in 256 px tiles: two tiles of 148, not two of 256
    starts, size = axis_tiles(272, 256, 24)
    assert (starts, size) == ([0, 124], 148)
    work = sum(t.width * t.height for t in plan_tiles(272, 272, 256, 24))
    assert work < 1.25 * 272 * 272


def test_no_tiling_is_one_tile() -> None:
    assert len(plan_tiles(5000, 3000, NO_TILING, 0)) == 1


@pytest.mark.parametrize(("w", "h", "tile", "overlap"), [(150, 97, 48, 16), (300, 40, 64, 8)])
def test_blend_weights_sum_to_one(w: int, h: int, tile: int, overlap: int) -> None:
    x = torch.rand(1, 3, h, w)
    out = tiled_apply(nearest2x, x, 2, tile=tile, overlap=overlap)
    assert len(plan_tiles(w, h, tile, overlap)) > 1
    assert torch.allclose(out, nearest2x(x), atol=1e-6, rtol=0)


def _small_sr_model() -> torch.nn.Module:
    """A Compact SR network with random weights (receptive field 4 px)."""
    from fbupscale_gui.engine.sr.spandrel_import import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(3)
    return Compact(num_feat=16, num_conv=2, upscale=2).eval()


@pytest.mark.slow  # a real network, tiled and whole
def test_tiled_equals_untiled_within_one_level() -> None:
    net = _small_sr_model()
    x = torch.rand(1, 3, 70, 100)

    def fn(t: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return net(t).clamp(0, 1)

    whole = tiled_apply(fn, x, 2, tile=NO_TILING)
    tiled = tiled_apply(fn, x, 2, tile=40, overlap=14, margin=6)
    assert len(plan_tiles(100, 70, 40, 14)) >= 6
    to8 = lambda t: (t * 255).round().to(torch.int16)  # noqa: E731
    diff = (to8(tiled) - to8(whole)).abs().max().item()
    print(f"tiled vs untiled: max {diff} level(s), float max {(tiled - whole).abs().max():.2e}")
    assert diff <= 1


def test_cancel_is_checked_before_every_tile_and_progress_after() -> None:
    calls = 0
    progress: list[tuple[int, int]] = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return nearest2x(t)

    x = torch.rand(1, 3, 100, 100)
    total = len(plan_tiles(100, 100, 40, 8))
    out = tiled_apply(fn, x, 2, tile=40, overlap=8, on_tile=lambda d, n: progress.append((d, n)))
    assert out.shape == (1, 3, 200, 200)
    assert progress == [(i, total) for i in range(1, total + 1)]

    calls = 0
    with pytest.raises(Cancelled):
        tiled_apply(fn, x, 2, tile=40, overlap=8, is_cancelled=lambda: calls >= 2)
    assert calls == 2


def test_wrong_output_shape_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="expected 2x"):
        tiled_apply(lambda t: t, torch.rand(1, 3, 20, 20), 2)


def test_fit_tile_size() -> None:
    gib = 1024**3
    # 8 GiB free, 16 KB per pixel, half of it: sqrt(4 GiB / 16 KiB) = 512
    assert fit_tile_size(8 * gib, 16 * 1024) == 512
    assert fit_tile_size(100, 16 * 1024) == 64  # never below the floor
    assert fit_tile_size(1000 * gib, 1.0) == 2048  # never above the ceiling
    assert fit_tile_size(8 * gib, 20_000) % 32 == 0
    with pytest.raises(ValueError):
        fit_tile_size(gib, 0)
