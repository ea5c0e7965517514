"""The engine's messages as JSON, for the served engine's HTTP protocol. Pure, no I/O.

The same dataclasses as over the engine process's pipe (:mod:`.messages`), written as JSON
objects with a ``"type"`` (the class name) and their fields; candidate pixels travel as
base64 of the raw RGB bytes, so a served candidate is byte-for-byte the local one. Reading
is strict (unknown types and fields, wrong types raise :class:`~.errors.RequestError`):
nothing from the network is unpickled.

Also here: the rule that a served request names its models and never paths them
(:func:`model_name`), shared by the client (which sends names) and the server (which refuses
anything else).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any, Final

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.job import Progress
from fbupscale_gui.core.jsonable import from_jsonable, to_jsonable
from fbupscale_gui.core.messages import (
    Cancelled,
    CandidateReady,
    Done,
    Failed,
    JobProgress,
    Message,
    Pixels,
    Queued,
    Started,
    Warning,
)
from fbupscale_gui.core.number_check import NumberCheck
from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
from fbupscale_gui.core.runtime import ResolvedRuntime

__all__ = ["message_from_json", "message_to_json", "model_name"]

_TYPES: Final = {
    cls.__name__: cls
    for cls in (Queued, Started, JobProgress, CandidateReady, Warning, Failed, Cancelled, Done)
}
#: A model name on a server: a file or folder name in one of its models folders.
_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+ -]{0,199}$")


def model_name(text: str, what: str) -> str:
    """``text`` if it is a plain model name ("4x-span.safetensors", "flux1-dev"); raises
    :class:`RequestError` for anything path-shaped (a separator, ``..``, a drive, ``~``)."""
    if not isinstance(text, str) or not _NAME.match(text) or ".." in text:
        raise RequestError(
            f"{what}: {text!r} is not a model name; a server's models are named (a file or "
            "folder name in its models folders), never given as a path"
        )
    return text


def message_to_json(message: Message) -> dict[str, Any]:
    """``message`` as a JSON object (``Done.result`` must be None or plain JSON)."""
    data: dict[str, Any] = {"type": type(message).__name__}
    data.update(to_jsonable(message))
    if isinstance(message, CandidateReady):
        data["pixels"]["data"] = base64.b64encode(message.pixels.data).decode("ascii")
        data["timings"] = dict(message.timings)
        data["weights"] = {k: dict(v) for k, v in message.weights.items()}
        if message.lora_report is not None:
            data["lora_report"] = to_jsonable(dict(message.lora_report))
    elif isinstance(message, Failed):
        data["attrs"] = to_jsonable(dict(message.attrs))
    return data


def _get(data: Mapping[str, Any], name: str, tp: Any, where: str) -> Any:
    if name not in data:
        raise RequestError(f"{where}: missing field {name!r}")
    return from_jsonable(tp, data[name], f"{where}.{name}")


def _str_map(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise RequestError(f"{where}: expected an object")
    return dict(value)


def message_from_json(data: Any) -> Message:
    """The message a :func:`message_to_json` object describes; raises RequestError."""
    if not isinstance(data, Mapping) or data.get("type") not in _TYPES:
        kind = data.get("type") if isinstance(data, Mapping) else type(data).__name__
        raise RequestError(f"message: unknown message type {kind!r}")
    kind = data["type"]
    where = f"message {kind}"
    job_id = _get(data, "job_id", int, where)
    if kind == "CandidateReady":
        pixels = _str_map(data.get("pixels"), f"{where}.pixels")
        try:
            raw = base64.b64decode(pixels.get("data", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise RequestError(f"{where}.pixels.data: not base64") from None
        width = _get(pixels, "width", int, f"{where}.pixels")
        height = _get(pixels, "height", int, f"{where}.pixels")
        if width <= 0 or height <= 0 or len(raw) != width * height * 3:
            raise RequestError(f"{where}.pixels: {len(raw)} bytes do not make {width}x{height}")
        timings = _str_map(data.get("timings", {}), f"{where}.timings")
        weights = _str_map(data.get("weights", {}), f"{where}.weights")
        score = data.get("lr_consistency")
        report = data.get("lora_report")
        check = data.get("number_check")
        return CandidateReady(
            job_id=job_id,
            key=_get(data, "key", CandidateKey, where),
            seed=_get(data, "seed", int, where),
            request=ReconstructionRequest.from_dict(_str_map(data.get("request"), where)),
            pixels=Pixels(width, height, raw),
            runtime=ResolvedRuntime.from_dict(_str_map(data.get("runtime"), where)),
            runtime_label=_get(data, "runtime_label", str, where),
            timings={k: from_jsonable(float, v, f"{where}.timings") for k, v in timings.items()},
            lr_consistency=None if score is None else from_jsonable(float, score, where),
            weights={k: _str_map(v, f"{where}.weights") for k, v in weights.items()},
            lora_report=None if report is None else _str_map(report, f"{where}.lora_report"),
            number_check=None if check is None else NumberCheck.from_dict(check),
        )
    if kind == "JobProgress":
        return JobProgress(job_id, _get(data, "progress", Progress, where))
    if kind == "Started":
        return Started(job_id, _get(data, "kind", str, where))
    if kind == "Warning":
        return Warning(job_id, _get(data, "text", str, where))
    if kind == "Cancelled":
        return Cancelled(job_id, _get(data, "note", str, where))
    if kind == "Failed":
        return Failed(
            job_id,
            _get(data, "reason", str, where),
            _get(data, "detail", str, where),
            _get(data, "error_type", str, where),
            _str_map(data.get("attrs", {}), f"{where}.attrs"),
            expected=_get(data, "expected", bool, where),
            crashed=_get(data, "crashed", bool, where),
        )
    if kind == "Done":
        return Done(job_id, data.get("result"))
    return Queued(job_id)
