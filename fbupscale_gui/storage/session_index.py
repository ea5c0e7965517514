"""A session's on-disk layout: its folder, its SQLite index's schema, its rows and errors.

A session is a folder (see :mod:`fbupscale_gui.storage.session_catalogue`)::

    <session>/session.sqlite        the index (WAL mode, schema version in ``meta``)
    <session>/cutouts/<sha256>.png  each cutout's pixels (content-addressed)
    <session>/candidates/<n>.png    each candidate, with its metadata (storage.metadata)

This module holds what the catalogue, the writer (:mod:`~fbupscale_gui.storage.session_store`)
and the reader (:mod:`~fbupscale_gui.storage.session_reader`) share: the schema, the row
types, the errors and the connection. Pure Python (sqlite3).
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fbupscale_gui.core.errors import FbError
from fbupscale_gui.core.number_check import NumberCheck
from fbupscale_gui.core.runtime import ResolvedRuntime

__all__ = [
    "INDEX_NAME",
    "JOB_STATES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "TABLES",
    "CandidateRow",
    "CutoutRow",
    "JobRow",
    "SessionDamagedError",
    "SessionError",
    "SessionInfo",
    "connect_index",
    "index_info",
]

INDEX_NAME: Final = "session.sqlite"
SCHEMA_VERSION: Final = 1
#: Job states; ``interrupted``: queued or running when the process died.
JOB_STATES: Final = ("queued", "running", "done", "failed", "cancelled", "interrupted")

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cutouts (
    key TEXT PRIMARY KEY, seq INTEGER NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL,
    file TEXT NOT NULL, scene TEXT NOT NULL DEFAULT '', prompt TEXT NOT NULL DEFAULT '',
    prompt_manual INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY, cutout_key TEXT NOT NULL, cutout_name TEXT NOT NULL,
    request TEXT NOT NULL, state TEXT NOT NULL, run INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '', updated REAL NOT NULL,
    replaced_by INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS job_events (
    job_id INTEGER NOT NULL, state TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, cutout_key TEXT NOT NULL,
    run INTEGER NOT NULL, file TEXT NOT NULL, variant INTEGER NOT NULL, lora INTEGER NOT NULL,
    stage INTEGER NOT NULL, seed INTEGER NOT NULL, lr_consistency REAL,
    request TEXT NOT NULL, runtime TEXT NOT NULL DEFAULT '', timings TEXT NOT NULL DEFAULT '{}',
    models TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS candidate_details (
    candidate_id INTEGER PRIMARY KEY, lora TEXT NOT NULL DEFAULT '',
    resolved TEXT NOT NULL DEFAULT '', number_check TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS picks (cutout_key TEXT PRIMARY KEY, candidate_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS exports (
    id INTEGER PRIMARY KEY, candidate_id INTEGER NOT NULL, path TEXT NOT NULL, at REAL NOT NULL);
"""


class SessionError(FbError):
    """A session folder that cannot be opened, created or changed (names the folder)."""


class SessionDamagedError(SessionError):
    """A session whose index cannot be used as it is (see :func:`session_damage`).

    Nothing is written to it; :func:`rebuild_index` recovers it from its candidate files."""

    def __init__(self, folder: Path, reason: str) -> None:
        super().__init__(f"the session {folder.name} is damaged: {reason}")
        self.folder = folder
        self.reason = reason


# -- rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CutoutRow:
    key: str  # the cutout's pixel hash (unique in a session)
    name: str
    source_json: str
    file: str  # relative to the session folder
    scene_json: str = ""
    prompt: str = ""
    prompt_manual: bool = False


@dataclass(frozen=True)
class JobRow:
    id: int
    cutout_key: str
    cutout_name: str
    request_json: str
    state: str
    run: int = 0
    error: str = ""
    #: An interrupted job re-run as job ``replaced_by`` no longer shows as interrupted.
    replaced_by: int = 0


@dataclass(frozen=True)
class CandidateRow:
    id: int
    job_id: int
    cutout_key: str
    run: int
    file: str  # relative to the session folder
    variant: int
    lora: bool
    stage: int
    seed: int
    lr_consistency: float | None
    request_json: str
    runtime: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)
    models: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: The candidate's details (see :class:`~fbupscale_gui.core.job.Candidate`); None where
    #: the candidate had none or the session was written before they were recorded.
    lora_report: Mapping[str, Any] | None = None
    resolved: ResolvedRuntime | None = None
    number_check: NumberCheck | None = None


@dataclass(frozen=True)
class SessionInfo:
    path: Path
    name: str
    created: float
    archived: bool
    cutouts: int = 0
    candidates: int = 0
    #: Why the session cannot be opened as it is ("" when it can); see :func:`session_damage`.
    damaged: str = ""


def connect_index(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the index; ``readonly`` also reads a session in a folder that cannot
    be written (SQLite's WAL mode needs a writable folder, so it is then read as immutable:
    no writer can be at work there)."""
    index = path / INDEX_NAME
    if not readonly:
        conn = sqlite3.connect(index, timeout=10)
    else:
        conn = sqlite3.connect(f"{index.as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            conn.close()
            if os.access(path, os.W_OK):
                raise
            uri = f"{index.as_uri()}?mode=ro&immutable=1"
            conn = sqlite3.connect(uri, uri=True, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


#: The tables every session index has (a missing one marks the index damaged).
#: ``candidate_details`` (a candidate's LoRA report, typed runtime and number check, as JSON)
#: came later within schema 1: it is optional, made when an older session is next opened for
#: writing, and an older release ignores it.
TABLES: Final = ("meta", "cutouts", "jobs", "job_events", "candidates", "picks", "exports")


def index_info(conn: sqlite3.Connection, folder: Path) -> SessionInfo:
    """A session's name, creation time, archived flag and counts, read from its index."""
    meta = {str(r["key"]): str(r["value"]) for r in conn.execute("SELECT key, value FROM meta")}
    n_cut = conn.execute("SELECT COUNT(*) FROM cutouts").fetchone()[0]
    n_cand = conn.execute("SELECT COUNT(*) FROM candidates").fetchone()[0]
    try:
        created = float(meta.get("created", "0") or 0)
    except ValueError:
        created = 0.0
    return SessionInfo(
        path=folder,
        name=meta.get("name", folder.name),
        created=created if math.isfinite(created) else 0.0,
        archived=meta.get("archived", "0") == "1",
        cutouts=int(n_cut),
        candidates=int(n_cand),
    )
