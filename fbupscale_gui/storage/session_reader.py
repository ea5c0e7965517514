"""Reading a session back: its whole index in one go (:func:`read_snapshot`), and a stored
candidate's pixels (:func:`read_candidate_image`). Any thread; each call opens its own
connection, read-only.

Every row is untrusted (a session can be copied between desks or edited by hand): a row
that does not read back is skipped with a line in :attr:`Snapshot.problems`. Pure Python
(sqlite3, Pillow).
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbupscale_gui.core.errors import error_line
from fbupscale_gui.storage.session_index import (
    CandidateRow,
    CutoutRow,
    JobRow,
    SessionError,
    SessionInfo,
    connect_index,
    index_info,
)

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Snapshot", "read_candidate_image", "read_snapshot"]


@dataclass
class Snapshot:
    """Everything a session holds, read back in one go (see :func:`read_snapshot`)."""

    info: SessionInfo
    cutouts: list[CutoutRow] = field(default_factory=list)
    jobs: list[JobRow] = field(default_factory=list)
    candidates: list[CandidateRow] = field(default_factory=list)
    picks: dict[str, int] = field(default_factory=dict)
    exported: set[int] = field(default_factory=set)
    #: One line per row that could not be read (the row is skipped or its field dropped).
    problems: list[str] = field(default_factory=list)


def read_snapshot(path: str | Path) -> Snapshot:
    """Read a whole session index (its own connection; any thread). Raises SessionError.

    A row that does not read back (a text where a number belongs) is skipped, and an
    unreadable informational field (timings, model hashes) dropped, each with a line in
    ``problems``: one bad row never hides the rest of the session."""
    folder = Path(path)
    try:
        conn = connect_index(folder, readonly=True)
    except sqlite3.Error as exc:
        raise SessionError(f"{folder}: cannot open the session index ({exc})") from None
    try:
        snap = Snapshot(index_info(conn, folder))
        for r in conn.execute("SELECT * FROM cutouts ORDER BY seq"):
            try:
                snap.cutouts.append(
                    CutoutRow(
                        _text(r["key"]),
                        _text(r["name"]),
                        _text(r["source"]),
                        _text(r["file"]),
                        _text(r["scene"]),
                        _text(r["prompt"]),
                        bool(_integer(r["prompt_manual"])),
                    )
                )
            except (TypeError, ValueError) as exc:
                snap.problems.append(f"cutout row {_shown(r['name'])}: skipped ({exc})")
        for r in conn.execute("SELECT * FROM jobs ORDER BY id"):
            try:
                snap.jobs.append(
                    JobRow(
                        _integer(r["id"]),
                        _text(r["cutout_key"]),
                        _text(r["cutout_name"]),
                        _text(r["request"]),
                        _text(r["state"]),
                        _integer(r["run"]),
                        _text(r["error"]),
                        _integer(r["replaced_by"]),
                    )
                )
            except (TypeError, ValueError) as exc:
                snap.problems.append(f"job row {_shown(r['id'])}: skipped ({exc})")
        details = _details(conn, snap.problems)
        for r in conn.execute("SELECT * FROM candidates ORDER BY id"):
            try:
                row = CandidateRow(
                    id=_integer(r["id"]),
                    job_id=_integer(r["job_id"]),
                    cutout_key=_text(r["cutout_key"]),
                    run=_integer(r["run"]),
                    file=_text(r["file"]),
                    variant=_integer(r["variant"]),
                    lora=bool(_integer(r["lora"])),
                    stage=_integer(r["stage"]),
                    seed=_integer(r["seed"]),
                    lr_consistency=_score(r["lr_consistency"]),
                    request_json=_text(r["request"]),
                    runtime=_text(r["runtime"]),
                )
            except (TypeError, ValueError) as exc:
                snap.problems.append(f"candidate row {_shown(r['id'])}: skipped ({exc})")
                continue
            timings = _json_obj(r["timings"])
            if not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in timings.values()
            ):
                snap.problems.append(f"candidate row {row.id}: unreadable timings dropped")
                timings = {}
            models = _json_obj(r["models"])
            if not all(
                isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
                for v in models.values()
            ):
                snap.problems.append(f"candidate row {row.id}: unreadable model hashes dropped")
                models = {}
            snap.candidates.append(
                replace(row, timings=timings, models=models, **details.get(row.id, {}))
            )
        for r in conn.execute("SELECT cutout_key, candidate_id FROM picks"):
            with contextlib.suppress(TypeError, ValueError):
                snap.picks[_text(r["cutout_key"])] = _integer(r["candidate_id"])
        for r in conn.execute("SELECT candidate_id FROM exports"):
            with contextlib.suppress(TypeError, ValueError):
                snap.exported.add(_integer(r[0]))
        return snap
    except sqlite3.Error as exc:
        raise SessionError(f"{folder}: unreadable session index ({exc})") from None
    finally:
        conn.close()


def _details(conn: sqlite3.Connection, problems: list[str]) -> dict[int, dict[str, Any]]:
    """Each candidate's recorded details, as :class:`CandidateRow` fields, by candidate id.

    A session written before they were recorded has none (and maybe no such table); a detail
    that does not read back is dropped with a line in ``problems``."""
    from fbupscale_gui.core.errors import FbError
    from fbupscale_gui.core.number_check import NumberCheck
    from fbupscale_gui.core.runtime import ResolvedRuntime

    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'candidate_details'"
    ).fetchone()
    if found is None:
        return {}
    readers: dict[str, Callable[[dict[str, Any]], object]] = {
        "lora_report": lambda data: data,
        "resolved": ResolvedRuntime.from_dict,
        "number_check": NumberCheck.from_dict,
    }
    out: dict[int, dict[str, Any]] = {}
    for r in conn.execute("SELECT * FROM candidate_details"):
        cid = r["candidate_id"]
        fields: dict[str, Any] = {}
        for name, column in (("lora_report", "lora"), ("resolved", "resolved"),
                             ("number_check", "number_check")):  # fmt: skip
            text = r[column]
            if not text:
                continue
            try:
                fields[name] = readers[name](_json_obj(text, strict=True))
            except (FbError, TypeError, ValueError, KeyError, RecursionError):
                problems.append(f"candidate row {_shown(cid)}: unreadable {column} details dropped")
        if isinstance(cid, int) and fields:
            out[cid] = fields
    return out


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, found {_shown(value)}")
    return value


def _integer(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"expected a whole number, found {_shown(value)}")
    return value


def _score(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a score in dB, found {_shown(value)}")
    return float(value)


def _shown(value: object) -> str:
    """A value from an untrusted row, short enough for a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_candidate_image(path: str | Path) -> Image.Image:
    """Decode a stored candidate PNG at full resolution, as RGB (any thread).

    The one place a session's candidate pixels are decoded. Raises SessionError naming the
    file when it is missing, truncated or not an image (Pillow's size limits stay on)."""
    from PIL import Image as PilImage

    target = Path(path)
    try:
        with PilImage.open(target) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, ValueError, PilImage.DecompressionBombError) as exc:
        raise SessionError(f"candidate {target.name}: {error_line(exc, where=False)}") from None


def _json_obj(text: object, *, strict: bool = False) -> dict[str, Any]:
    """The JSON object in ``text``; anything else reads as {} (``strict``: raises ValueError)."""
    try:
        value = json.loads(text or "{}") if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        return value
    if strict:
        raise ValueError("not a JSON object")
    return {}
