"""The one request object: everything that affects output pixels, and nothing else.

A :class:`ReconstructionRequest` goes into job history and into every exported image, so any
candidate can be re-rendered exactly (``fbupscale reproduce``). It is frozen, validated on
construction, and round-trips losslessly through JSON. ``version`` protects old files: a file
from a newer release is refused with a clear message, older versions are migrated.

Defaults are the paper's (section 3): Lanczos standardisation to 1024, FLUX.1-dev img2img at
strength 0.75 / 80 steps / guidance 3.5 / seed 5 / 3 variants, then the FLUX ControlNet upscaler
at conditioning scale 0.6 / 35 steps / guidance 3.5, and the football LoRA at 0.9 on stage 2.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.jsonable import (
    JsonDocument,
    check_literals,
    check_version,
    from_jsonable,
    parse_json,
)

__all__ = [
    "BUILTIN_ENGINES",
    "CONDITIONING_SCALE_RANGE",
    "CONTROLNET_REPO_ID",
    "ENGINE_ALIASES",
    "FAITHFUL_MODEL",
    "FAST_ENGINES",
    "FLUX_REPO_ID",
    "MODEL_ENGINE_PREFIX",
    "NCNN_ENGINE_PREFIX",
    "SCHEMA_VERSION",
    "CandidateKey",
    "Device",
    "EngineKind",
    "FluxParts",
    "LoraParams",
    "MemoryMode",
    "ModelRef",
    "PadMode",
    "Precision",
    "Preprocess",
    "ReconstructionRequest",
    "SourceRef",
    "Speed",
    "Stage1Params",
    "Stage2Params",
    "StageName",
    "Storage",
    "VaeTiling",
    "canonical_engine",
    "img2img_steps",
    "is_fast_engine",
    "is_model_engine",
    "ncnn_variant_name",
]

#: 2: ``engine`` may be "model:NAME" with the user model recorded in ``sr_model``.
#: 3: the "faithful" engine and "ncnn:NAME" wheel models; ``stage1.start`` (FLUX's start image).
#: 4: FLUX from single files (``flux_base``, ``ModelRef.format``/``quant``), ``speed`` and
#: ``storage``.
#: 5: the VAE, text encoders and tokenizers from single files or folders (``parts``),
#: ``vae_tiling``, "nf4" storage and the "fast-mag" speed.
SCHEMA_VERSION: Final = 5
FLUX_REPO_ID: Final = "black-forest-labs/FLUX.1-dev"
CONTROLNET_REPO_ID: Final = "jasperai/Flux.1-dev-Controlnet-Upscaler"
#: The paper tuned the ControlNet conditioning scale within this range (section 3.2).
CONDITIONING_SCALE_RANGE: Final = (0.5, 0.65)

#: The engines that ship with fbupscale. A request's ``engine`` is one of these, "ncnn:NAME"
#: for one of the models shipped in the ncnn wheels (``engine/fast/ncnn_sr.py``), or
#: ``"model:" + NAME`` for a user super-resolution model (see :func:`is_model_engine`).
#: "faithful" is the default preview, "realesrgan" (alias "sharp") the detail-inventing one.
EngineKind = Literal["flux", "faithful", "realesrgan", "lanczos"]
BUILTIN_ENGINES: Final[tuple[str, ...]] = typing.get_args(EngineKind)
#: Names a user may type for an engine, and the engine they mean.
ENGINE_ALIASES: Final[dict[str, str]] = {"sharp": "realesrgan"}
#: The fast engines (CPU, one candidate, no FLUX).
FAST_ENGINES: Final[tuple[str, ...]] = ("faithful", "realesrgan", "lanczos")
MODEL_ENGINE_PREFIX: Final = "model:"
NCNN_ENGINE_PREFIX: Final = "ncnn:"
#: The wheel model behind "faithful" in this schema version (chosen on ``bench/fidelity.py``,
#: see docs/fidelity.md). Changing it changes pixels: bump the schema and migrate old requests
#: to the explicit "ncnn:NAME" they rendered with.
FAITHFUL_MODEL: Final = "waifu2x-cunet-n2-2x-lanczos50"
Device = Literal["auto", "cuda", "mps", "cpu"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
#: none: everything on the GPU; model: diffusers model CPU offload; group: block-level group
#: offload; sequential: sequential CPU offload (slowest, least VRAM). auto picks by free VRAM.
MemoryMode = Literal["auto", "none", "model", "group", "sequential"]
PadMode = Literal["edge", "reflect", "black", "gray"]
#: exact: every step computed; fast: First Block Cache on stage 1 (stage 2 stays uncached,
#: see engine/flux/speed.py); fast-mag: MagCache on stage 1 instead; compiled: regional
#: compile of the repeated transformer blocks.
Speed = Literal["exact", "fast", "fast-mag", "compiled"]
#: How the FLUX transformer's weights are held: native (the file's own precision: bf16, fp8
#: upcast, GGUF kept quantised), fp8 (layerwise casting: fp8 storage, computed in the
#: precision, LoRAs loaded first), nf4 (bitsandbytes 4-bit, CUDA only). auto picks by free
#: VRAM; the engine records its choice.
Storage = Literal["auto", "native", "fp8", "nf4"]
StageName = Literal["stage1", "stage2"]
#: Decoding (and encoding) the latents in overlapping VAE tiles: less memory, slightly other
#: pixels. auto follows the memory plan; the engine records its choice ("off" or "on").
VaeTiling = Literal["auto", "off", "on"]


def _check(cond: bool, field_name: str, message: str) -> None:
    if not cond:
        raise RequestError(f"{field_name}: {message}")


def is_model_engine(engine: str) -> bool:
    """Whether ``engine`` names a user model ("model:NAME"), not a built-in engine."""
    return engine.startswith(MODEL_ENGINE_PREFIX) and len(engine) > len(MODEL_ENGINE_PREFIX)


def is_fast_engine(engine: str) -> bool:
    """Whether ``engine`` is a fast CPU engine: faithful, realesrgan, lanczos or ncnn:NAME."""
    return engine in FAST_ENGINES or (
        engine.startswith(NCNN_ENGINE_PREFIX) and len(engine) > len(NCNN_ENGINE_PREFIX)
    )


def ncnn_variant_name(engine: str) -> str:
    """The wheel model an ncnn engine runs: "faithful" -> its model, "ncnn:NAME" -> NAME.

    Raises RequestError for an engine that runs no wheel model.
    """
    if engine == "faithful":
        return FAITHFUL_MODEL
    if engine.startswith(NCNN_ENGINE_PREFIX) and len(engine) > len(NCNN_ENGINE_PREFIX):
        return engine[len(NCNN_ENGINE_PREFIX) :]
    raise RequestError(f"engine: {engine!r} runs no ncnn wheel model")


def canonical_engine(engine: str) -> str:
    """The engine an alias stands for ("sharp" -> "realesrgan"); other names unchanged."""
    return ENGINE_ALIASES.get(engine, engine)


@dataclass(frozen=True)
class ModelRef:
    """Identity of a model: where it was loaded from and a hash of its content.

    ``path`` is a local folder or file; empty means "look ``repo_id`` up in the Hugging Face
    cache". ``sha256`` is the file's SHA-256, or for a folder the digest of its files' hashes
    (see :mod:`fbupscale_gui.storage.weights`); empty when not yet computed. ``format`` and
    ``quant`` say what the file is ("diffusers" folder, "safetensors-bfl", "gguf-bfl"...;
    "bf16", "fp8_scaled", "Q8_0"...), filled in when the model is located.
    """

    path: str = ""
    repo_id: str = ""
    sha256: str = ""
    format: str = ""
    quant: str = ""

    def __post_init__(self) -> None:
        _check(bool(self.path or self.repo_id), "model", "needs a path or a repo id")

    @property
    def label(self) -> str:
        return self.path or self.repo_id


@dataclass(frozen=True)
class FluxParts:
    """The parts a single-file FLUX transformer lacks, each from its own file or folder.

    Named as diffusers names the pipeline's components: ``vae`` (``ae.safetensors``),
    ``text_encoder`` (CLIP-L, ``clip_l.safetensors``), ``text_encoder_2`` (T5-XXL,
    ``t5xxl_fp16``/``t5xxl_fp8_e4m3fn``), ``tokenizer`` and ``tokenizer_2`` (folders with the
    CLIP-L and T5 tokenizer files). A part left None comes from ``flux_base``.
    """

    vae: ModelRef | None = None
    text_encoder: ModelRef | None = None
    text_encoder_2: ModelRef | None = None
    tokenizer: ModelRef | None = None
    tokenizer_2: ModelRef | None = None

    def given(self) -> dict[str, ModelRef]:
        """The parts that are set, by component name."""
        return {
            f.name: ref
            for f in dataclasses.fields(self)
            if (ref := getattr(self, f.name)) is not None
        }


@dataclass(frozen=True)
class SourceRef:
    """The cutout a request is for: where to read it, and the hash of its decoded pixels.

    The engine reads ``path`` and refuses to run if the pixels no longer hash to ``sha256``
    (see :func:`fbupscale_gui.core.images.image_sha256`), so a request can never silently
    render a different cutout.
    """

    path: str
    sha256: str
    width: int
    height: int
    name: str = ""

    def __post_init__(self) -> None:
        _check(self.width > 0 and self.height > 0, "source", "width and height must be positive")


@dataclass(frozen=True)
class Preprocess:
    """Standardisation (paper 3.1): Lanczos to a square, aspect kept by padding, never stretched.

    ``intermediate`` reproduces the paper's two-step resize (e.g. 256, then ``size``).
    ``crop_to_content`` crops the square result back to the cutout's content box.
    """

    size: int = 1024
    intermediate: int | None = None
    pad: PadMode = "edge"
    crop_to_content: bool = True

    def __post_init__(self) -> None:
        _check(64 <= self.size <= 4096, "preprocess.size", f"must be 64..4096, got {self.size}")
        _check(self.size % 16 == 0, "preprocess.size", f"must be a multiple of 16, got {self.size}")
        if self.intermediate is not None:
            _check(
                16 <= self.intermediate < self.size,
                "preprocess.intermediate",
                f"must be 16..{self.size - 1} (below size), got {self.intermediate}",
            )


def img2img_steps(steps: int, strength: float) -> int:
    """Denoising steps diffusers' img2img really runs for ``steps`` at ``strength``.

    Its own rounding, not ``int(steps * strength)``: 100 x 0.29 runs 29, 1 x 0.5 runs 1.
    """
    skipped = int(max(steps - min(steps * strength, steps), 0))
    return steps - skipped


@dataclass(frozen=True)
class Stage1Params:
    """FLUX.1-dev image-to-image; diffusers runs about ``steps * strength`` steps (80 x 0.75 = 60)."""

    strength: float = 0.75
    steps: int = 80
    guidance: float = 3.5
    #: The fast engine that enlarges the cutout into the start image: "lanczos" (the paper's),
    #: "faithful", "realesrgan" or "ncnn:NAME".
    start: str = "lanczos"

    def __post_init__(self) -> None:
        if isinstance(self.start, str):
            object.__setattr__(self, "start", canonical_engine(self.start))
        _check(
            isinstance(self.start, str) and is_fast_engine(self.start),
            "stage1.start",
            f"must be one of {', '.join(FAST_ENGINES)} or ncnn:NAME, got {self.start!r}",
        )
        _check(
            0.0 < self.strength <= 1.0, "stage1.strength", f"must be in (0, 1], got {self.strength}"
        )
        _check(1 <= self.steps <= 500, "stage1.steps", f"must be 1..500, got {self.steps}")
        _check(
            self.effective_steps >= 1,
            "stage1",
            f"steps x strength must run at least 1 step, got {self.steps} x {self.strength}",
        )
        _check(
            0.0 <= self.guidance <= 30.0, "stage1.guidance", f"must be 0..30, got {self.guidance}"
        )

    @property
    def effective_steps(self) -> int:
        return img2img_steps(self.steps, self.strength)


@dataclass(frozen=True)
class Stage2Params:
    """FLUX ControlNet upscaler, with the stage-1 output as the control image."""

    enabled: bool = True
    conditioning_scale: float = 0.6
    steps: int = 35
    guidance: float = 3.5

    def __post_init__(self) -> None:
        lo, hi = CONDITIONING_SCALE_RANGE
        _check(
            lo <= self.conditioning_scale <= hi,
            "stage2.conditioning_scale",
            f"must be within {lo}..{hi} (the paper's range), got {self.conditioning_scale}",
        )
        _check(1 <= self.steps <= 500, "stage2.steps", f"must be 1..500, got {self.steps}")
        _check(
            0.0 <= self.guidance <= 30.0, "stage2.guidance", f"must be 0..30, got {self.guidance}"
        )


@dataclass(frozen=True)
class LoraParams:
    """The optional football LoRA. ``ab`` renders with and without it, side by side.

    ``stages`` says where the LoRA is active in the "with" branch. The paper found it helps
    stage 2 and can hurt stage 1, so the default is stage 2 only: stage 1 then runs once,
    without the LoRA, and both branches share its output.
    """

    model: ModelRef | None = None
    scale: float = 0.9
    stages: tuple[StageName, ...] = ("stage2",)
    ab: bool = True

    def __post_init__(self) -> None:
        _check(0.0 < self.scale <= 2.0, "lora.scale", f"must be in (0, 2], got {self.scale}")
        _check(len(self.stages) > 0, "lora.stages", "must name at least one stage")
        _check(len(set(self.stages)) == len(self.stages), "lora.stages", "has duplicates")

    @property
    def enabled(self) -> bool:
        return self.model is not None

    def branches(self) -> tuple[bool, ...]:
        """The LoRA states to render: (False, True) for A/B, (True,) or (False,) otherwise."""
        if not self.enabled:
            return (False,)
        return (False, True) if self.ab else (True,)


@dataclass(frozen=True, order=True)
class CandidateKey:
    """Which candidate of a request: variant index, LoRA branch and the stage it stops after."""

    variant: int
    lora: bool
    stage: int = 2

    def __post_init__(self) -> None:
        _check(self.variant >= 0, "candidate.variant", "must be >= 0")
        _check(self.stage in (1, 2), "candidate.stage", f"must be 1 or 2, got {self.stage}")

    @property
    def label(self) -> str:
        return f"v{self.variant} s{self.stage} {'lora' if self.lora else 'nolora'}"


@dataclass(frozen=True)
class ReconstructionRequest(JsonDocument):
    """Everything that affects output pixels. See the module docstring."""

    #: One of :data:`BUILTIN_ENGINES`, or "model:NAME" for a user SR model (then ``sr_model``).
    engine: str = "flux"
    prompt: str = ""
    #: The structured scene the prompt was generated from (JSON text, informational), or "".
    scene_json: str = ""
    source: SourceRef | None = None
    preprocess: Preprocess = field(default_factory=Preprocess)
    stage1: Stage1Params = field(default_factory=Stage1Params)
    stage2: Stage2Params = field(default_factory=Stage2Params)
    lora: LoraParams = field(default_factory=LoraParams)
    variants: int = 3
    seed: int = 5
    flux: ModelRef = field(default_factory=lambda: ModelRef(repo_id=FLUX_REPO_ID))
    controlnet: ModelRef = field(default_factory=lambda: ModelRef(repo_id=CONTROLNET_REPO_ID))
    #: The diffusers FLUX folder supplying what a single-file ``flux`` lacks (VAE, text
    #: encoders, tokenizers, scheduler); None when ``flux`` is a whole folder.
    flux_base: ModelRef | None = None
    #: Parts of a single-file ``flux`` given as files of their own (a ComfyUI tree's).
    parts: FluxParts = field(default_factory=FluxParts)
    speed: Speed = "exact"
    storage: Storage = "auto"
    vae_tiling: VaeTiling = "auto"
    device: Device = "auto"
    precision: Precision = "auto"
    memory_mode: MemoryMode = "auto"
    #: The user SR model's file and SHA-256; set exactly when ``engine`` is "model:NAME".
    sr_model: ModelRef | None = None
    #: Render only this candidate (used by reproduce). None renders all of them.
    only: CandidateKey | None = None
    version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        check_literals(self)
        if isinstance(self.engine, str):
            object.__setattr__(self, "engine", canonical_engine(self.engine))
        _check(
            isinstance(self.engine, str)
            and (
                self.engine in BUILTIN_ENGINES
                or is_model_engine(self.engine)
                or is_fast_engine(self.engine)
            ),
            "engine",
            f"must be one of {', '.join(BUILTIN_ENGINES)}, sharp, ncnn:NAME or model:NAME, "
            f"got {self.engine!r}",
        )
        if is_model_engine(self.engine):
            _check(
                self.sr_model is not None and bool(self.sr_model.path),
                "sr_model",
                f"engine {self.engine!r} needs the model's file (sr_model.path)",
            )
        else:
            _check(
                self.sr_model is None,
                "sr_model",
                f"only applies to a model:NAME engine, not {self.engine!r}",
            )
        _check(1 <= self.variants <= 16, "variants", f"must be 1..16, got {self.variants}")
        _check(0 <= self.seed < 2**63 - 16, "seed", f"must be 0..2^63-17, got {self.seed}")
        _check(self.version == SCHEMA_VERSION, "version", f"must be {SCHEMA_VERSION}")
        if self.only is not None:
            _check(
                self.only.variant < self.variants,
                "only.variant",
                f"must be below variants ({self.variants}), got {self.only.variant}",
            )
            _check(
                self.only in self.replace(only=None).candidate_keys()
                or (self.engine != "flux" and self.only.variant == 0),
                "only",
                f"{self.only.label} is not a candidate this request renders",
            )

    # -- candidates -----------------------------------------------------------------------

    def seed_for(self, variant: int) -> int:
        """Each candidate has its own generator, seeded ``seed + variant``."""
        return self.seed + variant

    def stage1_lora(self, branch: bool) -> bool:
        """Whether stage 1 runs with the LoRA in the given LoRA branch."""
        return branch and "stage1" in self.lora.stages

    def stage2_lora(self, branch: bool) -> bool:
        """Whether stage 2 runs with the LoRA in the given LoRA branch."""
        return branch and "stage2" in self.lora.stages

    def candidate_keys(self) -> list[CandidateKey]:
        """The candidates a run yields, in order.

        Per variant: the distinct stage-1 results first (one when the LoRA is off in stage 1,
        the default), then one stage-2 result per LoRA branch. Stage-1 results are real
        candidates too, so a user can pick one if stage 2 went too far. Fast engines yield one.
        """
        if self.only is not None:
            return [self.only]
        if self.engine != "flux":
            return [CandidateKey(variant=0, lora=False, stage=2)]
        branches = self.lora.branches()
        keys: list[CandidateKey] = []
        for v in range(self.variants):
            for s1 in sorted({self.stage1_lora(b) for b in branches}):
                keys.append(CandidateKey(variant=v, lora=s1, stage=1))
            if self.stage2.enabled:
                keys.extend(CandidateKey(variant=v, lora=b, stage=2) for b in branches)
        return keys

    def with_only(self, key: CandidateKey) -> ReconstructionRequest:
        return dataclasses.replace(self, only=key)

    # -- JSON -----------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReconstructionRequest:
        version = check_version(data, "request", SCHEMA_VERSION, what="an fbupscale request")
        migrated = _migrate(dict(data), version)
        return typing.cast(ReconstructionRequest, from_jsonable(cls, migrated, "request"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ReconstructionRequest:
        return cls.from_dict(parse_json(text, "request"))


# -- migration ----------------------------------------------------------------------------


def _migrate(data: dict[str, Any], version: int) -> dict[str, Any]:
    """Bring an old request dict up to SCHEMA_VERSION, one version at a time."""
    # Migrations run one version at a time: `if version == N: ...; version = N + 1`.
    if version == 1:
        # Schema 2 added user SR models ("model:NAME" engines and ``sr_model``); a schema-1
        # request names a built-in engine and has no sr_model, which defaults to None.
        version = 2
    if version == 2:
        # Schema 3 added the "faithful" and "ncnn:NAME" engines and stage1.start; a schema-2
        # request started stage 1 from the Lanczos enlargement, the default.
        stage1 = data.get("stage1")
        if isinstance(stage1, dict):
            stage1.setdefault("start", "lanczos")
        version = 3
    if version == 3:
        # Schema 4 added single-file FLUX (flux_base, ModelRef format/quant), the speed mode
        # and the weight storage; a schema-3 request ran a FLUX folder, every step exact, in
        # the folder's own precision.
        data.setdefault("storage", "native")
        version = 4
    if version == 4:
        # Schema 5 added the parts from single files (none: everything came from the FLUX
        # folder or flux_base) and VAE tiling, which no schema-4 request used.
        data.setdefault("vae_tiling", "off")
        version = 5
    data["version"] = version
    return data
