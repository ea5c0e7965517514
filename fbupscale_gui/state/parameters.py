"""The Advanced parameters: one model that holds them, decides their defaults, and is saved.

:class:`ParamValues` is every value the Advanced panel edits (variants and seed, both stages,
the LoRA, output size, memory mode, speed), as the operator entered it: a combination the
request refuses (a seed left empty, a stage-1 strength so low that no step would run) is held
as is and refused, with the request's own message, only when a request is built
(:meth:`ParamValues.apply_to`). :func:`default_values` is the one place their defaults are
decided: the paper's (the request's own defaults) with the LoRA file and memory mode of the
settings.

:class:`Parameters` is the Qt model the panel binds to both ways (as krita-ai-diffusion's
``Property`` and ``bind()``): ``valueChanged(name, value)`` per field that really changed, then
one ``changed()`` per edit; the session builds every request from it and saves it with the
session (:meth:`Parameters.to_json` / :func:`values_from_json`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import typing
from dataclasses import dataclass
from typing import Any, Final

from PySide6.QtCore import QObject, Signal

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.jsonable import check_version, from_jsonable, parse_json, to_jsonable
from fbupscale_gui.core.request import (
    LoraParams,
    MemoryMode,
    ModelRef,
    Preprocess,
    ReconstructionRequest,
    Speed,
    Stage1Params,
    Stage2Params,
    StageName,
)
from fbupscale_gui.core.settings import Settings

__all__ = [
    "FIELDS",
    "PAPER_INTERMEDIATE",
    "PARAMS_VERSION",
    "RANDOM_SEED_LIMIT",
    "ParamValues",
    "Parameters",
    "default_values",
    "summarize",
    "values_from_json",
]

log = logging.getLogger(__name__)

#: The paper's two-step standardisation goes through a 256 px square first.
PAPER_INTERMEDIATE: Final = 256
#: Random seeds are drawn below this, so they stay short enough to read out and type.
RANDOM_SEED_LIMIT: Final = 2**31
#: The schema of the saved parameters (see :meth:`Parameters.to_json`).
PARAMS_VERSION: Final = 1


@dataclass(frozen=True)
class ParamValues:
    """The Advanced parameters as entered (not validated: see :meth:`apply_to`)."""

    variants: int
    #: None: the seed field is empty.
    seed: int | None
    strength: float
    steps1: int
    guidance1: float
    stage2: bool
    conditioning: float
    steps2: int
    guidance2: float
    #: The LoRA file ("" for none).
    lora_path: str
    lora_scale: float
    lora_ab: bool
    lora_stage1: bool
    lora_stage2: bool
    size: int
    #: Resize through :data:`PAPER_INTERMEDIATE` px first.
    intermediate: bool
    memory_mode: MemoryMode
    speed: Speed

    @classmethod
    def from_request(cls, request: ReconstructionRequest) -> ParamValues:
        model = request.lora.model
        return cls(
            variants=request.variants,
            seed=request.seed,
            strength=request.stage1.strength,
            steps1=request.stage1.steps,
            guidance1=request.stage1.guidance,
            stage2=request.stage2.enabled,
            conditioning=request.stage2.conditioning_scale,
            steps2=request.stage2.steps,
            guidance2=request.stage2.guidance,
            lora_path=model.path if model is not None else "",
            lora_scale=request.lora.scale,
            lora_ab=request.lora.ab,
            lora_stage1="stage1" in request.lora.stages,
            lora_stage2="stage2" in request.lora.stages,
            size=request.preprocess.size,
            intermediate=request.preprocess.intermediate is not None,
            memory_mode=request.memory_mode,
            speed=request.speed,
        )

    def replace(self, **changes: Any) -> ParamValues:
        return dataclasses.replace(self, **changes)

    def apply_to(self, request: ReconstructionRequest) -> ReconstructionRequest:
        """A copy of ``request`` with these values.

        Fields the parameters do not hold (prompt, source, padding, models, ...) are kept, and
        so is the request's LoRA reference (with its hash) while it names the same file.
        Raises :class:`RequestError` when the values do not make a valid request.
        """
        if self.seed is None:
            raise RequestError("seed: enter a seed (a whole number)")
        stages: list[StageName] = []
        if self.lora_stage1:
            stages.append("stage1")
        if self.lora_stage2:
            stages.append("stage2")
        path = self.lora_path
        if not path and not stages:
            stages = list(LoraParams().stages)  # unused without a LoRA; keep it valid
        model: ModelRef | None = None
        if path:
            old = request.lora.model
            model = old if old is not None and old.path == path else ModelRef(path=path)
        return request.replace(
            variants=self.variants,
            seed=self.seed,
            stage1=Stage1Params(
                strength=round(self.strength, 4),
                steps=self.steps1,
                guidance=round(self.guidance1, 4),
            ),
            stage2=Stage2Params(
                enabled=self.stage2,
                conditioning_scale=round(self.conditioning, 4),
                steps=self.steps2,
                guidance=round(self.guidance2, 4),
            ),
            lora=LoraParams(
                model=model, scale=round(self.lora_scale, 4), stages=tuple(stages), ab=self.lora_ab
            ),
            preprocess=dataclasses.replace(
                request.preprocess,
                size=self.size,
                intermediate=PAPER_INTERMEDIATE if self.intermediate else None,
            ),
            memory_mode=self.memory_mode,
            speed=self.speed,
        )

    def error(self) -> str:
        """The request's message for these values, or "" when they are valid."""
        try:
            self.apply_to(ReconstructionRequest())
        except RequestError as exc:
            return str(exc)
        return ""


FIELDS: Final = tuple(f.name for f in dataclasses.fields(ParamValues))


def default_values(settings: Settings | None = None) -> ParamValues:
    """The defaults, decided here only: the paper's (the request's own defaults) with the
    settings' LoRA file and memory mode."""
    values = ParamValues.from_request(ReconstructionRequest())
    if settings is None:
        return values
    return values.replace(
        lora_path=settings.lora_path.strip(),
        memory_mode=typing.cast(MemoryMode, settings.memory_mode),
    )


def values_from_json(
    text: str, defaults: ParamValues, problems: list[str] | None = None
) -> ParamValues:
    """Saved parameters (see :meth:`Parameters.to_json`), each field checked on its own.

    A field that is missing keeps its default; one of the wrong type or unknown to this
    release too, with a line in ``problems``. A combination the request refuses is kept as
    entered (the panel says why, as while editing). A document that is not saved parameters,
    or one from a newer release, raises :class:`RequestError`.
    """
    said = problems if problems is not None else []
    data = parse_json(text, "parameters")
    check_version(data, "parameters", PARAMS_VERSION, what="saved parameters")
    saved = data.get("values")
    if not isinstance(saved, dict):
        raise RequestError("parameters.values: expected an object")
    hints = typing.get_type_hints(ParamValues)
    changes: dict[str, Any] = {}
    for name, value in saved.items():
        if name not in hints:
            said.append(f"parameters: unknown field {name!r} ignored")
            continue
        try:
            changes[name] = from_jsonable(hints[name], value, f"parameters.{name}")
        except RequestError as exc:
            said.append(f"{exc}; its default is used")
    return defaults.replace(**changes)


def summarize(request: ReconstructionRequest, defaults: ReconstructionRequest) -> str:
    """One line saying what will run, e.g. "3 variants from seed 5 · stage 1: 60 steps · ...",
    and whether it differs from ``defaults`` (the LoRA file aside)."""
    parts = [
        f"{request.variants} variant{'s' if request.variants != 1 else ''} "
        f"from seed {request.seed}",
        f"stage 1: {request.stage1.effective_steps} steps at strength {request.stage1.strength:g}",
    ]
    if request.stage2.enabled:
        parts.append(
            f"stage 2: {request.stage2.steps} steps, conditioning {request.stage2.conditioning_scale:g}"
        )
    else:
        parts.append("no stage 2")
    if request.lora.enabled:
        parts.append(
            f"LoRA {request.lora.scale:g}" + (" with and without" if request.lora.ab else "")
        )
    else:
        parts.append("no LoRA")
    parts.append(f"{request.preprocess.size} px")
    if request.speed != "exact":
        parts.append(request.speed)
    changed = _param_fields(request) != _param_fields(defaults)
    return " · ".join(parts) + (
        " (changed from the paper's defaults)" if changed else " (paper's defaults)"
    )


def _param_fields(request: ReconstructionRequest) -> dict[str, object]:
    """The request fields the parameters set, the LoRA file aside."""
    return {
        "variants": request.variants,
        "seed": request.seed,
        "stage1": request.stage1,
        "stage2": request.stage2,
        "lora": dataclasses.replace(request.lora, model=None),
        "preprocess": Preprocess(
            size=request.preprocess.size, intermediate=request.preprocess.intermediate
        ),
        "memory_mode": request.memory_mode,
        "speed": request.speed,
    }


class Parameters(QObject):
    """The Advanced parameters of the session, bound to the panel and saved with the session.

    ``valueChanged(name, value)`` is emitted for each field whose value really changed, then
    ``changed()`` once; setting a field to the value it holds emits nothing (so a widget bound
    both ways never loops).
    """

    valueChanged = Signal(str, object)
    changed = Signal()

    def __init__(self, settings: Settings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._settings = settings
        self._values = default_values(settings)

    @property
    def values(self) -> ParamValues:
        return self._values

    def get(self, name: str) -> object:
        return getattr(self._values, name)

    def set(self, name: str, value: object) -> None:
        """Set one field (from a bound widget)."""
        self.set_values(self._values.replace(**{name: value}))

    def set_values(self, values: ParamValues) -> None:
        """Take ``values``: each field that changed is announced, then ``changed()`` once."""
        old, self._values = self._values, values
        names = [n for n in FIELDS if getattr(old, n) != getattr(values, n)]
        for name in names:
            self.valueChanged.emit(name, getattr(values, name))
        if names:
            self.changed.emit()

    # -- requests -------------------------------------------------------------------------

    def apply_to(self, request: ReconstructionRequest) -> ReconstructionRequest:
        """``request`` with these parameters (see :meth:`ParamValues.apply_to`)."""
        return self._values.apply_to(request)

    def set_from(self, request: ReconstructionRequest) -> None:
        """Take ``request``'s values."""
        self.set_values(ParamValues.from_request(request))

    def error(self) -> str:
        return self._values.error()

    def summary(self) -> str:
        """One line saying what will run, or that the values are not valid yet."""
        base = ReconstructionRequest()
        try:
            request = self.apply_to(base)
        except RequestError:
            return "Settings are not valid yet: see below."
        return summarize(request, self.defaults().apply_to(base))

    # -- defaults -------------------------------------------------------------------------

    def defaults(self) -> ParamValues:
        return default_values(self._settings)

    def reset_to_defaults(self) -> None:
        """The defaults. The chosen LoRA file stays: it says where the LoRA is."""
        self.set_values(self.defaults().replace(lora_path=self._values.lora_path))

    def randomize_seed(self) -> None:
        self.set("seed", secrets.randbelow(RANDOM_SEED_LIMIT))

    def apply_settings(self, settings: Settings) -> None:
        """New settings: a changed LoRA file or memory mode there becomes the value here too
        (they are the defaults; the rest of the values stay as they are)."""
        old, self._settings = self._settings, settings
        changes: dict[str, Any] = {}
        if old is None or settings.memory_mode != old.memory_mode:
            changes["memory_mode"] = typing.cast(MemoryMode, settings.memory_mode)
        path = settings.lora_path.strip()
        if path and (old is None or path != old.lora_path.strip()):
            changes["lora_path"] = path
        if changes:
            self.set_values(self._values.replace(**changes))

    # -- saved with the session -----------------------------------------------------------

    def to_json(self) -> str:
        """The values as saved with the session (read back by :func:`values_from_json`)."""
        document = {"version": PARAMS_VERSION, "values": to_jsonable(self._values)}
        return json.dumps(document, sort_keys=True)

    def restore(self, text: str | None) -> list[str]:
        """Take saved values (see :meth:`to_json`); None or unreadable: the defaults. Returns
        what could not be read, one line each (logged too)."""
        defaults = self.defaults()
        values = defaults
        problems: list[str] = []
        if text is not None:
            try:
                values = values_from_json(text, defaults, problems)
            except RequestError as exc:
                problems.append(f"{exc}; the defaults are used")
        for line in problems:
            log.warning("saved %s", line)
        self.set_values(values)
        return problems
