"""Read shirt numbers in an image: PP-OCRv4 detection + recognition on the CPU.

The ONNX models ship inside the ``rapidocr-onnxruntime`` wheel (Apache-2.0) and run with
``onnxruntime``; nothing is downloaded. The wheel is installed without its declared
``opencv-python`` (a second Qt beside PySide6); ``opencv-python-headless`` serves instead.
Engine only: the window's process never imports onnxruntime.

:func:`check_numbers` is the number check of one candidate (see
:mod:`fbupscale_gui.core.number_check` for the verdicts).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Final

from fbupscale_gui.core.errors import FbError
from fbupscale_gui.core.number_check import NumberCheck, NumberReading, digit_strings, judge

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["OCR_LICENCE", "NumberCheckUnavailable", "check_numbers", "read_numbers"]

OCR_LICENCE: Final = "PP-OCRv4 (PaddleOCR) via rapidocr-onnxruntime, Apache-2.0"

#: Detection works on the image scaled so its longer side is this many pixels: a shirt number
#: in a 1024 px candidate is 100+ px tall, so 640 keeps it legible at a third of the cost of
#: the wheel's default (shorter side 736, i.e. 1024 px squares at 736²).
_DET_SIDE: Final = 640


class NumberCheckUnavailable(FbError):
    """The OCR models or onnxruntime are not installed."""


_lock = threading.Lock()
_reader: Any = None


def _ocr() -> Any:
    """The OCR engine, loaded once per process (about a second) on as many threads as cores."""
    global _reader
    with _lock:
        if _reader is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:
                raise NumberCheckUnavailable(
                    f"the number check needs rapidocr-onnxruntime and onnxruntime ({exc}); "
                    "run `make setup` to install them"
                ) from None
            threads = max(1, min(4, os.cpu_count() or 1))
            _reader = RapidOCR(
                det_limit_side_len=_DET_SIDE,
                det_limit_type="max",
                intra_op_num_threads=threads,
                inter_op_num_threads=1,
            )
        return _reader


def read_numbers(image: Image.Image) -> tuple[NumberReading, ...]:
    """Every 1-2 digit string legible in ``image``, with confidences and boxes in its pixels."""
    import numpy as np

    rgb = np.ascontiguousarray(image.convert("RGB"))
    # RapidOCR follows OpenCV's BGR order.
    result, _elapsed = _ocr()(rgb[:, :, ::-1].copy())
    return digit_strings(result or ())


def check_numbers(image: Image.Image, expected: tuple[int, ...]) -> NumberCheck:
    """The number check of one image against the numbers its scene marks visible.

    With nothing expected the OCR does not run (nothing to check: ``unchecked``).
    """
    if not expected:
        return judge(expected, ())
    return judge(expected, read_numbers(image))
