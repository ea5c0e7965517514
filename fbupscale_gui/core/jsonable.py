"""Strict, lossless conversion between frozen dataclasses and parsed JSON.

Shared by every versioned document the app writes (requests, scenes, degradation parameters).
Errors are :class:`RequestError` naming the field path ("request.stage1.strength: ...").
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Self, Union, get_args, get_origin

from fbupscale_gui.core.errors import RequestError

__all__ = [
    "check_literals",
    "check_version",
    "from_jsonable",
    "parse_json",
    "to_jsonable",
]


_HINTS: dict[type, dict[str, Any]] = {}


class JsonDocument:
    """What every versioned document (a frozen dataclass: the request, the scene, the
    degradation parameters) offers: ``replace``, ``to_dict`` and canonical ``to_json``."""

    __slots__ = ()

    def replace(self, **changes: Any) -> Self:
        return typing.cast(Self, dataclasses.replace(typing.cast(Any, self), **changes))

    def to_dict(self) -> dict[str, Any]:
        return typing.cast(dict[str, Any], to_jsonable(self))

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True, ensure_ascii=False)


def _type_hints(tp: type) -> dict[str, Any]:
    """A dataclass's resolved field types, worked out once per class (a session restore
    parses hundreds of requests). Read-only."""
    hints = _HINTS.get(tp)
    if hints is None:
        hints = _HINTS[tp] = typing.get_type_hints(tp)
    return hints


def parse_json(text: str | bytes, where: str) -> Any:
    """``json.loads`` whose every failure is a :class:`RequestError` starting with ``where``.

    Besides syntax errors this covers bytes in no UTF encoding, integers over Python's digit
    limit and nesting deep enough to exhaust the recursion limit (``[[[[...`` from a hostile
    file raises RecursionError in ``json.loads``).
    """
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise RequestError(f"{where}: not valid JSON (nested too deeply)") from None


def check_version(
    data: Any, where: str, current: int, *, what: str, default: int | None = None
) -> int:
    """The schema version of a parsed document, refusing non-objects and newer schemas.

    ``default`` is taken when the document has no version (hand-written files); without it a
    missing version is refused as "not <what>".
    """
    if not isinstance(data, Mapping):
        raise RequestError(f"{where}: expected a JSON object, got {type(data).__name__}")
    version = data.get("version", default)
    if not isinstance(version, int) or isinstance(version, bool):
        raise RequestError(f"{where}.version: missing or not an integer; this is not {what}")
    if version > current:
        raise RequestError(
            f"{where}.version: written by a newer fbupscale (schema {version}); this release "
            f"reads schema {current} and older. Update fbupscale."
        )
    if version < 1:
        raise RequestError(f"{where}.version: unknown schema {version}")
    return version


def check_literals(obj: Any) -> None:
    """Raise RequestError if a Literal-typed field of dataclass ``obj`` holds another value."""
    hints = _type_hints(type(obj))
    for f in dataclasses.fields(obj):
        hint = hints[f.name]
        if get_origin(hint) is Literal:
            allowed = get_args(hint)
            value = getattr(obj, f.name)
            if value not in allowed:
                raise RequestError(f"{f.name}: must be one of {list(allowed)}, got {value!r}")


def to_jsonable(value: Any) -> Any:
    """Dataclasses to dicts and tuples to lists, recursively; everything else as is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    return value


def from_jsonable(
    tp: Any,
    value: Any,
    where: str,
    *,
    rewrap: Callable[[str, str], str] | None = None,
) -> Any:
    """Build ``tp`` from parsed JSON, strictly: unknown or missing fields and wrong types raise.

    ``rewrap(where, message)`` may rephrase errors raised by a dataclass constructor so they
    carry the JSON path; by default they pass through unchanged.
    """
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise RequestError(f"{where}: must not be null")
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) != 1:  # pragma: no cover - no such fields today
            raise RequestError(f"{where}: ambiguous type")
        return from_jsonable(non_none[0], value, where, rewrap=rewrap)
    if origin is Literal:
        allowed = get_args(tp)
        if isinstance(value, bool) or value not in allowed:
            raise RequestError(f"{where}: must be one of {list(allowed)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise RequestError(f"{where}: expected a list, got {type(value).__name__}")
        (item_tp, _ellipsis) = get_args(tp)
        return tuple(
            from_jsonable(item_tp, v, f"{where}[{i}]", rewrap=rewrap) for i, v in enumerate(value)
        )
    if dataclasses.is_dataclass(tp):
        return _dataclass_from(tp, value, where, rewrap)
    if tp is bool:
        if not isinstance(value, bool):
            raise RequestError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise RequestError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise RequestError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:  # an integer literal with hundreds of digits
            raise RequestError(f"{where}: number out of range") from None
    if tp is str:
        if not isinstance(value, str):
            raise RequestError(f"{where}: expected a string, got {value!r}")
        try:  # JSON "\ud800" decodes to a lone surrogate, which no file can store as UTF-8
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(f"{where}: invalid unicode (a lone surrogate escape)") from None
        return value
    raise RequestError(f"{where}: unsupported type {tp!r}")  # pragma: no cover


def _dataclass_from(
    tp: Any, value: Any, where: str, rewrap: Callable[[str, str], str] | None
) -> Any:
    if not isinstance(value, Mapping):
        raise RequestError(f"{where}: expected an object, got {type(value).__name__}")
    hints = _type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise RequestError(f"{where}: unknown field(s) {unknown}")
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in value
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise RequestError(f"{where}: missing field(s) {missing}")
    kwargs = {
        k: from_jsonable(hints[k], v, f"{where}.{k}", rewrap=rewrap) for k, v in value.items()
    }
    try:
        return typing.cast(Any, tp)(**kwargs)
    except RequestError as exc:
        if rewrap is None:
            raise
        raise RequestError(rewrap(where, str(exc))) from None
    except TypeError as exc:
        raise RequestError(f"{where}: {exc}") from None
