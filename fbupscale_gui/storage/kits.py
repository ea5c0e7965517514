"""Team kit presets: named teams with their home, away and optional third kits.

Presets live in a JSON file so operators can edit them without touching code. The shipped file
(``resources/kits/kits.json``) holds well-known clubs' traditional home colours, which rarely
change, and generic presets ("Generic red", ...). Away and third kits change every season: the
shipped ones are placeholders in common colours, and operators are expected to edit them. A
user's own kits file extends the shipped one (:func:`merge_kits`): a user team with the same
name replaces the shipped one, new teams are added after it.

File format (``version`` 1)::

    {"format": "fbupscale-kits", "version": 1, "note": "...",
     "teams": [{"name": "A.C. Milan",
                "home": {"jersey": "red and black", "pattern": "striped", "shorts": "white"},
                "away": {"jersey": "white", "shorts": "white", "accents": "red and black"},
                "third": null}]}

``accents`` and ``pattern`` may be left out of a kit; ``away`` and ``third`` may be null or
left out. Anything else is refused with a :class:`RequestError` naming the file and the field.
"""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.jsonable import from_jsonable, to_jsonable
from fbupscale_gui.core.scene import KIT_TYPES, Kit, KitType, Team, _check_text, _prefixed
from fbupscale_gui.storage.atomic import atomic_write_bytes
from fbupscale_gui.storage.paths import NotRegularFileError, read_regular

__all__ = [
    "DEFAULT_NOTE",
    "KITS_FILE_FORMAT",
    "KITS_SCHEMA_VERSION",
    "RESOURCES_ENV",
    "KitPreset",
    "default_kits_path",
    "find_preset",
    "load_kits",
    "merge_kits",
    "resources_dir",
    "save_kits",
]

KITS_FILE_FORMAT: Final = "fbupscale-kits"
KITS_SCHEMA_VERSION: Final = 1
#: Where the resources folder is when the package does not sit in a source checkout.
RESOURCES_ENV: Final = "FBUPSCALE_RESOURCES"
DEFAULT_NOTE: Final = (
    "Home kits are the clubs' traditional colours. Away and third kits change every season: "
    "the ones here are placeholders in common colours, edit them (or add your own teams in a "
    "user kits file) so they show the kits worn in the match at hand."
)
_TOP_LEVEL: Final = ("format", "version", "note", "teams")


@dataclass(frozen=True)
class KitPreset:
    """A named team and its kits. ``away`` and ``third`` are None when not defined."""

    name: str
    home: Kit
    away: Kit | None = None
    third: Kit | None = None

    def __post_init__(self) -> None:
        _check_text(self.name, "name", required=True)
        if not isinstance(self.home, Kit):
            raise RequestError(f"home: expected a Kit, got {self.home!r}")
        for kit_type in ("away", "third"):
            kit = getattr(self, kit_type)
            if kit is not None and not isinstance(kit, Kit):
                raise RequestError(f"{kit_type}: expected a Kit or null, got {kit!r}")

    @property
    def kit_types(self) -> tuple[KitType, ...]:
        """The kits this preset defines, in :data:`KIT_TYPES` order."""
        return tuple(k for k in KIT_TYPES if self.kit(k) is not None)

    def kit(self, kit_type: KitType) -> Kit | None:
        if kit_type not in KIT_TYPES:
            raise RequestError(f"kit_type: must be one of {list(KIT_TYPES)}, got {kit_type!r}")
        return typing.cast(Kit | None, getattr(self, kit_type))

    def team(self, kit_type: KitType = "home") -> Team:
        """A scene :class:`Team` wearing this preset's ``kit_type`` kit."""
        kit = self.kit(kit_type)
        if kit is None:
            raise RequestError(f"{self.name}: has no {kit_type} kit")
        return Team(name=self.name, kit_type=kit_type, kit=kit)


# -- locations ------------------------------------------------------------------------------


def resources_dir() -> Path:
    """The resources folder: ``resources/`` at the repository root, else ``$FBUPSCALE_RESOURCES``."""
    repo = Path(__file__).resolve().parents[2] / "resources"
    if repo.is_dir():
        return repo
    env = os.environ.get(RESOURCES_ENV, "")
    if env:
        return Path(env)
    raise RequestError(
        f"resources: not found at {repo} and {RESOURCES_ENV} is not set; set {RESOURCES_ENV} "
        "to the folder holding kits/ and samples/"
    )


def default_kits_path() -> Path:
    """The shipped kits file."""
    return resources_dir() / "kits" / "kits.json"


# -- load / save ----------------------------------------------------------------------------


def load_kits(
    path: str | Path | None = None, *, extend: str | Path | None = None
) -> tuple[KitPreset, ...]:
    """Read a kits file (default: the shipped one), then merge the ``extend`` file over it.

    A missing ``extend`` file is not an error (the user has not made one yet); a missing
    ``path`` is.
    """
    presets = _read(Path(path) if path is not None else default_kits_path())
    if extend is not None and Path(extend).exists():
        presets = merge_kits(presets, _read(Path(extend)))
    return presets


def save_kits(presets: Iterable[KitPreset], path: str | Path, *, note: str = DEFAULT_NOTE) -> None:
    """Write ``presets`` to ``path`` atomically (``storage.atomic``); raises RequestError."""
    path = Path(path)
    items = tuple(presets)
    _check_unique(items, str(path))
    data: dict[str, Any] = {
        "format": KITS_FILE_FORMAT,
        "version": KITS_SCHEMA_VERSION,
        "note": note,
        "teams": [to_jsonable(p) for p in items],
    }
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as exc:
        raise RequestError(f"{path}: cannot write the kits file ({exc.strerror or exc})") from None


def merge_kits(base: Sequence[KitPreset], extra: Sequence[KitPreset]) -> tuple[KitPreset, ...]:
    """``base`` with ``extra`` over it: same name (any case) replaces in place, new ones append."""
    merged = list(base)
    index = {p.name.casefold(): i for i, p in enumerate(merged)}
    for preset in extra:
        key = preset.name.casefold()
        if key in index:
            merged[index[key]] = preset
        else:
            index[key] = len(merged)
            merged.append(preset)
    return tuple(merged)


def find_preset(presets: Iterable[KitPreset], name: str) -> KitPreset | None:
    """The preset called ``name`` (any case), or None."""
    key = name.strip().casefold()
    return next((p for p in presets if p.name.casefold() == key), None)


def _read(path: Path) -> tuple[KitPreset, ...]:
    try:
        text = read_regular(path, "kits file").decode("utf-8")
    except FileNotFoundError:
        raise RequestError(f"{path}: kits file not found") from None
    except NotRegularFileError as exc:
        raise RequestError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RequestError(f"{path}: cannot read the kits file ({exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RequestError(f"{path}: not valid JSON ({exc})") from None
    return _parse(data, str(path))


def _parse(data: Any, where: str) -> tuple[KitPreset, ...]:
    if not isinstance(data, Mapping):
        raise RequestError(f"{where}: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_TOP_LEVEL))
    if unknown:
        raise RequestError(f"{where}: unknown field(s) {unknown}")
    if data.get("format") != KITS_FILE_FORMAT:
        raise RequestError(
            f"{where}: format: must be {KITS_FILE_FORMAT!r}, got {data.get('format')!r}"
        )
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RequestError(f"{where}: version: missing or not a positive integer")
    if version > KITS_SCHEMA_VERSION:
        raise RequestError(
            f"{where}: version: written by a newer fbupscale (kits schema {version}); this "
            f"release reads schema {KITS_SCHEMA_VERSION}. Update fbupscale."
        )
    if not isinstance(data.get("note", ""), str):
        raise RequestError(f"{where}: note: expected a string")
    teams = data.get("teams")
    if not isinstance(teams, list):
        raise RequestError(f"{where}: teams: expected a list, got {type(teams).__name__}")
    try:
        presets = tuple(
            typing.cast(KitPreset, from_jsonable(KitPreset, t, f"teams[{i}]", rewrap=_prefixed))
            for i, t in enumerate(teams)
        )
    except RequestError as exc:
        raise RequestError(f"{where}: {exc}") from None
    _check_unique(presets, where)
    return presets


def _check_unique(presets: Sequence[KitPreset], where: str) -> None:
    seen: set[str] = set()
    for i, p in enumerate(presets):
        key = p.name.casefold()
        if key in seen:
            raise RequestError(f"{where}: teams[{i}].name: duplicate team {p.name!r}")
        seen.add(key)
