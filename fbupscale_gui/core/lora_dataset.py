"""A football LoRA dataset (paper 3.3): caption rules, augmentation plan and Kohya export text.

Pure Python, no I/O (the files are read and written by :mod:`.lora_dataset_build`).

* :func:`check_caption` checks a caption against the paper's rules (3.3.1): it starts with the
  people and their roles; a shirt number appears only when the scene marks it visible; hair
  and skin are described in neutral words; a team is named only when it wears its home kit.
* :func:`plan_augmentations` says which extra training images a frame gets: crops around the
  people (only when their boxes are known, so a crop never cuts a captioned person out) and
  colour jitter (brightness, contrast and saturation only: hue would contradict the kit
  colours in the caption). Horizontal flips are off by default because they mirror numbers
  and sponsor logos; when switched on they are left to the trainer (Kohya's ``flip_aug``).
* :func:`kohya_metadata_json` (Code 4), :func:`dataset_toml` (Code 5) and
  :func:`sd_scripts_command` (Code 6) write the files sd-scripts' ``flux_train_network.py``
  reads, with the paper's settings as defaults.
"""

from __future__ import annotations

import json
import random
import re
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.scene import HAIR_STYLES, ROLES, SKIN_TONES, Scene

__all__ = [
    "DISCRETE_FLOW_SHIFT",
    "IMAGE_SUFFIXES",
    "NEUTRAL_SKIN_WORDS",
    "AugmentOptions",
    "Augmentation",
    "Box",
    "CaptionIssue",
    "DatasetCounts",
    "ModelFiles",
    "TrainSettings",
    "apply_shared",
    "check_caption",
    "count_scenes",
    "dataset_toml",
    "kohya_metadata_json",
    "parse_boxes",
    "plan_augmentations",
    "sd_scripts_command",
]

#: The paper's ``--discrete_flow_shift`` (Code 6): the shift of the timestep distribution.
DISCRETE_FLOW_SHIFT: Final = 3.1582
#: Frame files the dataset builder reads (lower-case suffixes).
IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Skin-tone words a caption may use ("light skin tone" ...; the paper's own "white skin tone").
NEUTRAL_SKIN_WORDS: Final = frozenset(
    {*(s.split()[0] for s in SKIN_TONES if s), "white", "fair", "olive", "tan", "brown", "deep"}
)
#: Words that describe people by origin or judge their looks: never in a caption (3.3.1).
_LOADED_WORDS: Final = (
    "african",
    "asian",
    "caucasian",
    "hispanic",
    "latino",
    "latina",
    "ethnic",
    "exotic",
    "swarthy",
    "negro",
    "oriental",
    "mulatto",
    "coloured",
    "colored",
    "handsome",
    "beautiful",
    "ugly",
    "pretty",
    "nappy",
    "kinky",
    "messy hair",
    "bad hair",
)
_ROLE_WORDS: Final = tuple(
    sorted({w for r in ROLES for w in (r, r + "s", r.replace("coach", "coaches"))}, key=len)
)[::-1]
_NUMBER_RE: Final = re.compile(r"\b(?:number|no\.|nr\.?)\s*#?\s*(\d{1,2})\b|#(\d{1,2})\b", re.I)
_SKIN_RE: Final = re.compile(r"\b([a-z-]+)[ -]skinned\b|\b([a-z-]+) skin(?: tone)?\b", re.I)
_HAIR_RE: Final = re.compile(r"\b([a-z-]+) hair\b", re.I)
#: Hair words a caption may use: the scene's categories plus plain colours and lengths.
_HAIR_WORDS: Final = frozenset(
    {
        *(h.split()[0] for h in HAIR_STYLES if h),
        "no",
        "dark",
        "light",
        "blond",
        "blonde",
        "brown",
        "black",
        "red",
        "grey",
        "gray",
        "white",
        "medium",
        "medium-length",
        "shaved",
        "tied",
        "straight",
        "wavy",
        "and",
        "with",
    }
)

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class CaptionIssue:
    """One rule a caption breaks: which rule, how bad, and a one-line message."""

    rule: Literal["people-first", "number-visible", "neutral-words", "home-kit-name", "empty"]
    severity: Severity
    message: str


def _first_sentence(caption: str) -> str:
    parts = re.split(r"(?<=[.!?])\s+", caption.strip(), maxsplit=1)
    return parts[0] if parts else ""


def check_caption(caption: str, scene: Scene | None = None) -> list[CaptionIssue]:
    """The paper's caption rules (3.3.1) that ``caption`` breaks, given the frame's ``scene``.

    Without a scene only the text rules apply, and every shirt number is flagged (nothing
    marks it visible). Returns an empty list for a caption that follows the rules.
    """
    issues: list[CaptionIssue] = []
    text = " ".join(caption.split())
    if not text:
        return [CaptionIssue("empty", "error", "the caption is empty")]
    first = _first_sentence(text).lower()
    if scene is not None and not scene.people:
        issues.append(
            CaptionIssue(
                "people-first",
                "error",
                "the scene lists nobody: add the visible people and their roles",
            )
        )
    elif not any(re.search(rf"\b{re.escape(w)}\b", first) for w in _ROLE_WORDS):
        issues.append(
            CaptionIssue(
                "people-first",
                "error",
                "the caption must start with the visible people and their roles "
                f"(first sentence: {_first_sentence(text)[:60]!r})",
            )
        )
    visible = (
        {p.number for p in scene.people if p.number_visible and p.number is not None}
        if scene is not None
        else set()
    )
    for m in _NUMBER_RE.finditer(text):
        number = int(m.group(1) or m.group(2))
        if number not in visible:
            where = "no person in the scene has it marked visible" if scene else "no scene"
            issues.append(
                CaptionIssue(
                    "number-visible",
                    "error",
                    f"the number {number} is written but {where}: numbers appear only when "
                    "fully visible",
                )
            )
    lower = text.lower()
    for word in _LOADED_WORDS:
        if re.search(rf"\b{re.escape(word)}\b", lower):
            issues.append(
                CaptionIssue(
                    "neutral-words",
                    "error",
                    f"{word!r} is not a neutral, observable description (use hair categories "
                    "and 'light/medium/dark skin tone')",
                )
            )
    for m in _SKIN_RE.finditer(lower):
        word = m.group(1) or m.group(2)
        if word not in NEUTRAL_SKIN_WORDS:
            issues.append(
                CaptionIssue(
                    "neutral-words",
                    "warning",
                    f"skin described as {m.group(0)!r}: use 'light', 'medium' or 'dark skin tone'",
                )
            )
    for m in _HAIR_RE.finditer(lower):
        if m.group(1) not in _HAIR_WORDS:
            issues.append(
                CaptionIssue(
                    "neutral-words",
                    "warning",
                    f"hair described as {m.group(0)!r}: use bald, short, long, curly hair, "
                    "braids or a ponytail",
                )
            )
    if scene is not None:
        for team in scene.teams:
            name = " ".join(team.name.split())
            if name and team.kit_type != "home" and name.lower() in lower:
                issues.append(
                    CaptionIssue(
                        "home-kit-name",
                        "error",
                        f"{name!r} wears its {team.kit_type} kit: a team is named only in its "
                        "home kit",
                    )
                )
    return issues


# -- person boxes and augmentations ---------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """A person's box in frame pixels."""

    x: int
    y: int
    w: int
    h: int


def parse_boxes(data: object, size: tuple[int, int], where: str) -> tuple[Box, ...]:
    """Person boxes from a ``NAME.boxes.json`` value: a list of ``[x, y, w, h]`` in pixels.

    Raises :class:`RequestError` naming ``where`` for anything else or a box off the frame.
    """
    if not isinstance(data, list):
        raise RequestError(f"{where}: expected a list of [x, y, w, h] boxes")
    boxes = []
    for i, item in enumerate(data):
        ok = (
            isinstance(item, list)
            and len(item) == 4
            and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
        )
        if not ok:
            raise RequestError(f"{where}[{i}]: expected [x, y, w, h] in whole pixels")
        x, y, w, h = item
        if w < 1 or h < 1 or x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
            raise RequestError(f"{where}[{i}]: box {item} is not inside the {size} frame")
        boxes.append(Box(x, y, w, h))
    return tuple(boxes)


@dataclass(frozen=True)
class AugmentOptions:
    """How many extra images each frame gets. Flips stay off unless asked for."""

    crops: int = 2
    jitters: int = 1
    flip: bool = False
    #: A crop keeps at least this much of the frame's side (and always every person).
    min_crop_fraction: float = 0.55
    #: Largest relative change of brightness, contrast and saturation.
    jitter_strength: float = 0.12
    seed: int = 42

    def __post_init__(self) -> None:
        if not (0 <= self.crops <= 16 and 0 <= self.jitters <= 16):
            raise RequestError("augmentations: crops and jitters must be 0..16 per frame")
        if not 0.2 <= self.min_crop_fraction <= 1.0:
            raise RequestError("augmentations: min_crop_fraction must be 0.2..1.0")
        if not 0.0 <= self.jitter_strength <= 0.5:
            raise RequestError("augmentations: jitter_strength must be 0..0.5")


@dataclass(frozen=True)
class Augmentation:
    """One extra image made from a frame: a crop box or a colour jitter (factors around 1)."""

    kind: Literal["crop", "jitter"]
    suffix: str
    crop: tuple[int, int, int, int] | None = None  # left, top, right, bottom
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0


def _crop_around(
    rng: random.Random, size: tuple[int, int], union: Box, fraction: float
) -> tuple[int, int, int, int] | None:
    """A crop of the frame's aspect holding ``union``, at least ``fraction`` of each side."""
    fw, fh = size
    lo = max(fraction, union.w / fw, union.h / fh)
    if lo >= 0.98:
        return None
    scale = rng.uniform(lo, min(1.0, lo + 0.3))
    cw, ch = max(1, round(fw * scale)), max(1, round(fh * scale))
    x_min, x_max = max(0, union.x + union.w - cw), min(union.x, fw - cw)
    y_min, y_max = max(0, union.y + union.h - ch), min(union.y, fh - ch)
    if x_min > x_max or y_min > y_max:
        return None
    x, y = rng.randint(x_min, x_max), rng.randint(y_min, y_max)
    return (x, y, x + cw, y + ch)


def plan_augmentations(
    name: str, size: tuple[int, int], boxes: Sequence[Box], options: AugmentOptions
) -> list[Augmentation]:
    """The extra images of frame ``name`` (deterministic from ``options.seed`` and ``name``).

    Crops need the people's boxes: a frame without boxes gets no crops, so no caption ever
    describes someone cropped away.
    """
    rng = random.Random(f"{options.seed}:{name}")
    out: list[Augmentation] = []
    if boxes:
        x0 = min(b.x for b in boxes)
        y0 = min(b.y for b in boxes)
        x1 = max(b.x + b.w for b in boxes)
        y1 = max(b.y + b.h for b in boxes)
        union = Box(x0, y0, x1 - x0, y1 - y0)
        for i in range(options.crops):
            crop = _crop_around(rng, size, union, options.min_crop_fraction)
            if crop is not None:
                out.append(Augmentation("crop", f"crop{i + 1}", crop=crop))
    s = options.jitter_strength
    for i in range(options.jitters):
        out.append(
            Augmentation(
                "jitter",
                f"jitter{i + 1}",
                brightness=round(rng.uniform(1 - s, 1 + s), 4),
                contrast=round(rng.uniform(1 - s, 1 + s), 4),
                saturation=round(rng.uniform(1 - s, 1 + s), 4),
            )
        )
    return out


# -- counts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetCounts:
    """How many frames show each action and each team (with its kit), for balance."""

    actions: dict[str, int] = field(default_factory=dict)
    teams: dict[str, int] = field(default_factory=dict)
    roles: dict[str, int] = field(default_factory=dict)
    without_scene: int = 0


def _action_key(text: str) -> str:
    text = " ".join(text.lower().split()).rstrip(".")
    return re.sub(r"^(is|are)\s+", "", text)


def count_scenes(scenes: Iterable[Scene | None]) -> DatasetCounts:
    """Frames per person action and per team (``"Name (home)"``, ``"blue/white (away)"``)."""
    actions: Counter[str] = Counter()
    teams: Counter[str] = Counter()
    roles: Counter[str] = Counter()
    missing = 0
    for scene in scenes:
        if scene is None:
            missing += 1
            continue
        acts = {_action_key(p.action) for p in scene.people if p.action.strip()}
        if scene.action.strip():
            acts.add(_action_key(scene.action))
        actions.update(acts)
        names = set()
        for t in scene.teams:
            label = " ".join(t.name.split()) or f"{t.kit.jersey}/{t.kit.shorts or '-'}"
            names.add(f"{label} ({t.kit_type})")
        teams.update(names)
        roles.update({p.role for p in scene.people})
    return DatasetCounts(
        actions=dict(actions.most_common()),
        teams=dict(teams.most_common()),
        roles=dict(roles.most_common()),
        without_scene=missing,
    )


def apply_shared(
    target: Scene | None,
    source: Scene,
    *,
    teams: bool = True,
    stadium: bool = True,
    background: bool = True,
) -> Scene:
    """``target`` with ``source``'s teams (names, kit types, kits), stadium and background:
    what frames of one match share. People keep their team index when it still exists."""
    import dataclasses

    scene = target if target is not None else Scene()
    changes: dict[str, object] = {}
    if teams:
        people = tuple(
            p if p.team is None or p.team < len(source.teams) else dataclasses.replace(p, team=None)
            for p in scene.people
        )
        changes.update(teams=source.teams, people=people)
    if stadium:
        changes["stadium"] = source.stadium
    if background:
        changes.update(background=source.background, blurred_background=source.blurred_background)
    return scene.replace(**changes)


# -- Kohya / sd-scripts export --------------------------------------------------------------


def kohya_metadata_json(captions: Mapping[str, str]) -> str:
    """Code 4: ``{"<image path>": {"caption": "..."}, ...}`` (keys in the given order)."""
    return json.dumps(
        {path: {"caption": caption} for path, caption in captions.items()},
        indent=2,
        ensure_ascii=False,
    )


@dataclass(frozen=True)
class TrainSettings:
    """The paper's training settings (Codes 5 and 6); every default is the paper's value."""

    resolution: int = 1024
    batch_size: int = 4
    enable_bucket: bool = True
    min_bucket_reso: int = 256
    max_bucket_reso: int = 1024
    num_repeats: int = 5
    epochs: int = 10
    rank: int = 8
    alpha: float = 8.0
    learning_rate: float = 1e-4
    save_every_n_epochs: int = 2
    discrete_flow_shift: float = DISCRETE_FLOW_SHIFT
    guidance_scale: float = 1.0
    seed: int = 42

    def __post_init__(self) -> None:
        if not 64 <= self.resolution <= 4096 or self.resolution % 64:
            raise RequestError("resolution: must be a multiple of 64 between 64 and 4096")
        if not 64 <= self.min_bucket_reso <= self.max_bucket_reso:
            raise RequestError("min_bucket_reso: must be 64..max_bucket_reso")
        for name in ("batch_size", "num_repeats", "epochs", "rank", "save_every_n_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise RequestError(f"{name}: must be a whole number of at least 1")
        if not 0 < self.alpha <= self.rank:
            raise RequestError(
                f"alpha: must be above 0 and at most the rank ({self.rank}); a larger alpha "
                "makes training unstable (paper 3.3.2)"
            )
        if not 0 < self.learning_rate < 1:
            raise RequestError("learning_rate: must be between 0 and 1")


def _toml_str(text: str) -> str:
    return json.dumps(text)  # a TOML basic string is a JSON string for these paths


def dataset_toml(
    image_dir: str, metadata_file: str, settings: TrainSettings, *, flip_aug: bool = False
) -> str:
    """Code 5's dataset TOML (with the batch size and minimum bucket added)."""
    r = settings.resolution
    lines = [
        "[[datasets]]",
        f"resolution = [{r}, {r}]",
        f"batch_size = {settings.batch_size}",
        f"enable_bucket = {str(settings.enable_bucket).lower()}",
        f"min_bucket_reso = {settings.min_bucket_reso}",
        f"max_bucket_reso = {settings.max_bucket_reso}",
        "",
        "[[datasets.subsets]]",
        f"image_dir = {_toml_str(image_dir)}",
        f"metadata_file = {_toml_str(metadata_file)}",
        f"flip_aug = {str(flip_aug).lower()}",
        f"num_repeats = {settings.num_repeats}",
        "shuffle_caption = false",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class ModelFiles:
    """The user's model files for sd-scripts (BFL single files, as ComfyUI keeps them)."""

    flux: str = "/path/to/flux1-dev.safetensors"
    clip_l: str = "/path/to/clip_l.safetensors"
    t5xxl: str = "/path/to/t5xxl_fp16.safetensors"
    ae: str = "/path/to/ae.safetensors"


def sd_scripts_command(
    models: ModelFiles,
    dataset_config: str,
    output_dir: str,
    output_name: str,
    settings: TrainSettings,
    *,
    logging_dir: str = "logs",
) -> str:
    """Code 6: ``accelerate launch flux_train_network.py`` with the paper's arguments."""
    args: list[tuple[str, str | None]] = [
        ("--pretrained_model_name_or_path", models.flux),
        ("--clip_l", models.clip_l),
        ("--t5xxl", models.t5xxl),
        ("--ae", models.ae),
        ("--dataset_config", dataset_config),
        ("--output_dir", output_dir),
        ("--output_name", output_name),
        ("--save_model_as", "safetensors"),
        ("--sdpa", None),
        ("--highvram", None),
        ("--gradient_checkpointing", None),
        ("--persistent_data_loader_workers", None),
        ("--max_data_loader_n_workers", "2"),
        ("--mixed_precision", "bf16"),
        ("--save_precision", "bf16"),
        ("--learning_rate", f"{settings.learning_rate:g}"),
        ("--max_train_epochs", str(settings.epochs)),
        ("--train_batch_size", str(settings.batch_size)),
        ("--gradient_accumulation_steps", "1"),
        ("--network_train_unet_only", None),
        ("--network_dim", str(settings.rank)),
        ("--network_alpha", f"{settings.alpha:g}"),
        ("--network_module", "networks.lora_flux"),
        ("--cache_latents_to_disk", None),
        ("--cache_text_encoder_outputs_to_disk", None),
        ("--optimizer_type", "adamw8bit"),
        ("--timestep_sampling", "shift"),
        ("--discrete_flow_shift", f"{settings.discrete_flow_shift:g}"),
        ("--save_every_n_epochs", str(settings.save_every_n_epochs)),
        ("--model_prediction_type", "raw"),
        ("--seed", str(settings.seed)),
        ("--guidance_scale", f"{settings.guidance_scale:.1f}"),
        ("--log_with", "tensorboard"),
        ("--logging_dir", logging_dir),
    ]
    lines = ["accelerate launch flux_train_network.py"]
    for flag, value in args:
        lines.append(f"  {flag}" if value is None else f"  {flag} {shlex.quote(value)}")
    return " \\\n".join(lines) + "\n"
