"""Export names and guards: pure rules, no file writes (those are in
:mod:`fbupscale_gui.storage.export`).

File names come from a template such as ``{match}_{cutout}_{engine}_{seed}_{lora}.png`` (the
default names the engine). Fields that do not apply to an engine (the seed, stage and LoRA of
a one-pass fast engine) are empty, and the separators around them are dropped, so a Real-ESRGAN
export is ``match_box_realesrgan.png`` and never claims a seed or "nolora". Unknown fields are
refused with a message listing the known ones; field values are sanitised so a cutout
called ``Home v Away/01`` cannot write outside the export folder; the file format decides the
extension. An existing file is never overwritten: the name gets ``-2``, ``-3``... instead.

Every file is written by :func:`fbupscale_gui.storage.metadata.save_candidate`, which embeds the
request JSON (``fbupscale reproduce`` reads it back) and the AI-reconstructed statement, with
the export's provenance (:func:`fbupscale_gui.storage.provenance.provenance`): model hashes, seed,
LR-consistency and whether the visible corner badge was burnt in.

Fidelity guard: with ``min_lr_db`` set, :func:`fbupscale_gui.storage.export.export_candidates` refuses a batch that holds a
candidate scoring below it (or with no score), naming each one; :func:`low_fidelity` lists them
so a window can ask first instead.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from fbupscale_gui.core.errors import FbError

if TYPE_CHECKING:
    from PIL import Image

    from fbupscale_gui.core.job import Candidate

__all__ = [
    "EXPORT_SIZE",
    "TEMPLATE_FIELDS",
    "ExportError",
    "ExportFormat",
    "ExportItem",
    "candidate_fields",
    "candidate_tag",
    "engine_name",
    "low_fidelity",
    "low_fidelity_text",
    "plan_names",
    "render_name",
    "sanitise",
    "validate_template",
]

ExportFormat = Literal["png", "jpeg"]
EXPORT_SIZE: Final = 1024

#: The fields a template may use, with what each expands to.
TEMPLATE_FIELDS: Final[dict[str, str]] = {
    "match": "the match name from the settings",
    "cutout": "the cutout's file name without extension",
    "seed": "the candidate's seed (FLUX; empty for one-pass engines)",
    "lora": "'lora' or 'nolora' (FLUX; empty for other engines)",
    "stage": "'s1' or 's2' (FLUX; empty for one-pass engines)",
    "variant": "the variant index (0, 1, ...)",
    "engine": "flux, realesrgan, lanczos or the user model's name",
    "date": "export date, YYYYMMDD",
    "time": "export time, HHMMSS",
    "n": "1-based position in the batch",
}

_EXTENSIONS: Final = {"png": ".png", "jpeg": ".jpg"}
_IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg")
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._+-]+")
_RESERVED: Final = (
    {"con", "prn", "aux", "nul"}
    | {f"com{i}" for i in range(1, 10)}
    | {f"lpt{i}" for i in range(1, 10)}
)
_MAX_STEM: Final = 150
#: Separators left next to each other by an empty field collapse to the first one.
_EMPTY_GAP: Final = re.compile(r"([_+-])\1+")


class ExportError(FbError, ValueError):
    """An export cannot be done as asked: bad template, unwritable folder, nothing picked."""


def validate_template(template: str) -> None:
    """Raise :class:`ExportError` if ``template`` uses unknown fields or bad syntax."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ExportError(
            f"file-name template {template!r}: {exc} (write literal braces as {{{{ and }}}})"
        ) from None
    for _literal, name, _spec, _conv in parsed:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ExportError(
                f"file-name template {template!r}: empty field {{}}; "
                f"use a named field: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            )
        if name not in TEMPLATE_FIELDS:
            raise ExportError(
                f"file-name template {template!r}: unknown field {{{name}}}; "
                f"known fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
            )
    try:
        render_name(template, _sample_fields(), "png")
    except (ValueError, KeyError, IndexError) as exc:
        raise ExportError(f"file-name template {template!r}: {exc}") from None


def sanitise(text: str) -> str:
    """A file-name-safe version of ``text``: ASCII letters, digits and ``._+-`` only."""
    clean = _UNSAFE.sub("_", text).strip("._ ")
    return clean or "_"


def _sample_fields() -> dict[str, object]:
    return {
        "match": "match",
        "cutout": "cutout",
        "seed": 5,
        "lora": "lora",
        "stage": "s2",
        "variant": 0,
        "engine": "flux",
        "date": "20260101",
        "time": "120000",
        "n": 1,
    }


def render_name(template: str, fields: dict[str, object], fmt: ExportFormat) -> str:
    """The sanitised file name for ``fields``; the extension always matches ``fmt``.

    An empty field leaves no doubled separator behind (``a__b`` becomes ``a_b``)."""
    safe = {k: (sanitise(v) if v else "") if isinstance(v, str) else v for k, v in fields.items()}
    name = template.format_map(safe)
    stem = name
    for suffix in _IMAGE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = _EMPTY_GAP.sub(r"\1", stem.replace("/", "_").replace("\\", "_"))
    stem = sanitise(stem)[:_MAX_STEM]
    if stem.lower() in _RESERVED:
        stem = f"{stem}_"
    return stem + _EXTENSIONS[fmt]


@dataclass(frozen=True, eq=False)
class ExportItem:
    """One picked candidate to export, with the cutout it was made from."""

    candidate: Candidate
    cutout_name: str
    cutout: Image.Image | None = None
    #: LR-consistency in dB against the cutout (None: not scored).
    lr_consistency: float | None = None
    #: Models the request does not name, as ``{name: {"ref": ..., "sha256": ...}}``.
    models: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)

    @property
    def title(self) -> str:
        """``keeper.png (seed 6, LoRA, stage 2)`` (FLUX) or ``keeper.png (realesrgan)``."""
        cand = self.candidate
        if cand.request.engine != "flux":
            return f"{self.cutout_name} ({engine_name(cand.request.engine)})"
        lora = "LoRA" if cand.key.lora else "no LoRA"
        return f"{self.cutout_name} (seed {cand.seed}, {lora}, stage {cand.key.stage})"


def low_fidelity(items: Iterable[ExportItem], min_lr_db: float | None) -> list[ExportItem]:
    """The items scoring below ``min_lr_db`` or not scored at all; none when it is None/0."""
    if not min_lr_db:
        return []
    return [i for i in items if i.lr_consistency is None or i.lr_consistency < min_lr_db]


def low_fidelity_text(items: Iterable[ExportItem]) -> str:
    """One line per item: ``keeper.png (seed 6, LoRA, stage 2): 21.4 dB``."""
    return "\n".join(
        f"{i.title}: " + ("no score" if i.lr_consistency is None else f"{i.lr_consistency:.1f} dB")
        for i in items
    )


def contradicting(items: Iterable[ExportItem]) -> list[ExportItem]:
    """The items whose shirt numbers contradict their scene (the number check)."""
    return [
        i
        for i in items
        if i.candidate.number_check is not None
        and i.candidate.number_check.verdict == "contradicts"
    ]


def contradiction_text(items: Iterable[ExportItem]) -> str:
    """One line per item: ``keeper.png (seed 6, LoRA, stage 2): 8 read where the scene says 9``."""
    return "\n".join(
        f"{i.title}: {i.candidate.number_check.detail if i.candidate.number_check else ''}"
        for i in items
    )


def engine_name(engine: str) -> str:
    """The engine as a file name says it: ``flux``, ``realesrgan``, a user model's name."""
    return engine.split(":", 1)[1] if engine.startswith("model:") else engine


def candidate_fields(candidate: Candidate) -> dict[str, object]:
    """The name fields a candidate itself decides: ``seed``, ``lora`` and ``stage`` (empty for
    a one-pass engine, which has none of them), ``variant`` and ``engine``."""
    key = candidate.key
    flux = candidate.request.engine == "flux"
    return {
        "seed": candidate.seed if flux else "",
        "lora": ("lora" if key.lora else "nolora") if flux else "",
        "stage": f"s{key.stage}" if flux else "",
        "variant": key.variant,
        "engine": engine_name(candidate.request.engine),
    }


def candidate_tag(candidate: Candidate) -> str:
    """What ``fbupscale upscale`` puts after a cutout's name, from :func:`candidate_fields`:
    ``_v1_s2_lora_seed6`` for a FLUX candidate; the engine, as an export names it, for a
    one-pass engine (``_realesrgan``), which has no seed, stage or LoRA to claim."""
    fields = candidate_fields(candidate)
    if fields["seed"] == "":
        return f"_{sanitise(str(fields['engine']))}"
    return f"_v{fields['variant']}_{fields['stage']}_{fields['lora']}_seed{fields['seed']}"


def _fields(item: ExportItem, match: str, n: int, now: datetime) -> dict[str, object]:
    return {
        "match": match or "match",
        "cutout": Path(item.cutout_name).stem or "cutout",
        **candidate_fields(item.candidate),
        "date": now.strftime("%Y%m%d"),
        "time": now.strftime("%H%M%S"),
        "n": n,
    }


def _unique(folder: Path, name: str, taken: set[str]) -> Path:
    path = folder / name
    stem, suffix = path.stem, path.suffix
    i = 2
    while path.name.lower() in taken or path.exists():
        path = folder / f"{stem}-{i}{suffix}"
        i += 1
    taken.add(path.name.lower())
    return path


def plan_names(
    items: Sequence[ExportItem],
    folder: str | Path,
    template: str,
    *,
    match: str,
    fmt: ExportFormat = "png",
    now: datetime | None = None,
) -> list[Path]:
    """The paths :func:`fbupscale_gui.storage.export.export_candidates` would write, numbered so none is overwritten."""
    validate_template(template)
    if fmt not in _EXTENSIONS:
        raise ExportError(f"export format must be one of {list(_EXTENSIONS)}, got {fmt!r}")
    when = now or datetime.now()
    out = Path(folder)
    taken: set[str] = set()
    return [
        _unique(out, render_name(template, _fields(item, match, i, when), fmt), taken)
        for i, item in enumerate(items, start=1)
    ]
