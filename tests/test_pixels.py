"""The engines' shared pixel conversions and cancel check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from fbupscale_gui.core.errors import Cancelled, RenderError
from fbupscale_gui.core.job import raise_if_cancelled
from fbupscale_gui.engine.pixels import to_rgb8, unit_floats


def test_round_trip_is_exact_for_every_level() -> None:
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image = Image.fromarray(np.stack([levels, levels[::-1], levels.T], axis=-1), "RGB")
    floats = unit_floats(image)
    assert floats.dtype == np.float32 and floats.shape == (16, 16, 3)
    assert floats.min() >= 0.0 and floats.max() <= 1.0
    assert np.array_equal(to_rgb8(floats, "x"), np.asarray(image))


def test_to_rgb8_clips_and_rounds_ties_to_even() -> None:
    values = np.array([-0.5, 1.5, 0.5 / 255, 1.5 / 255, 2.4 / 255], dtype=np.float32)
    assert to_rgb8(values, "x").tolist() == [0, 255, 0, 2, 2]
    assert to_rgb8(torch.tensor(values), "x").tolist() == [0, 255, 0, 2, 2]


def test_to_rgb8_refuses_nan_naming_the_model() -> None:
    with pytest.raises(RenderError, match="SPAN"):
        to_rgb8(np.array([0.5, np.nan], dtype=np.float32), "SPAN")


def test_raise_if_cancelled() -> None:
    raise_if_cancelled(None)
    raise_if_cancelled(lambda: False)
    with pytest.raises(Cancelled):
        raise_if_cancelled(lambda: True)
