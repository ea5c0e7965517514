"""Build a football LoRA dataset folder from high-resolution frames (paper 3.3.1, Codes 4-6).

Input: a folder of frames, each optionally with sidecars next to it:

* ``NAME.scene.json``: the app's scene (:class:`~.scene.Scene`); the caption is its prompt;
* ``NAME.txt``: a hand-written caption (wins over the scene's prompt; still checked against it);
* ``NAME.boxes.json``: the people's boxes ``[[x, y, w, h], ...]``, which enable crops.

Output folder ``OUT``::

    imgs/NAME.ext, imgs/NAME.txt           frames (bytes copied) with sidecar captions
    imgs/NAME_crop1.png, NAME_jitter1.png  augmentations, each with its caption
    holdout/NAME.ext (+ .txt, .scene.json) frames kept out of training for the A/B report
    captions_kohya.json                    Code 4
    dataset.toml                           Code 5
    train_command.sh                       Code 6, filled with the user's model files
    dataset_report.json                    counts, rule issues, augmentations, held-out frames

Frames whose caption breaks a rule with severity "error" are left out (and listed) unless
``keep_flagged``. Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from PIL import Image, ImageEnhance, ImageOps, UnidentifiedImageError

from fbupscale_gui.core.errors import FbError, InputImageError, RequestError
from fbupscale_gui.core.lora_dataset import (
    IMAGE_SUFFIXES,
    AugmentOptions,
    Box,
    CaptionIssue,
    ModelFiles,
    TrainSettings,
    check_caption,
    count_scenes,
    dataset_toml,
    kohya_metadata_json,
    parse_boxes,
    plan_augmentations,
    sd_scripts_command,
)
from fbupscale_gui.core.scene import Scene
from fbupscale_gui.storage.atomic import atomic_write, atomic_write_bytes

__all__ = [
    "METADATA_NAME",
    "REPORT_NAME",
    "TOML_NAME",
    "DatasetReport",
    "Frame",
    "build_dataset",
    "find_model_files",
    "frame_size",
    "read_frames",
    "read_metadata",
]

METADATA_NAME: Final = "captions_kohya.json"
TOML_NAME: Final = "dataset.toml"
COMMAND_NAME: Final = "train_command.sh"
REPORT_NAME: Final = "dataset_report.json"
_MAX_FRAME_BYTES: Final = 256 * 1024 * 1024
_FORMATS: Final = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")


@dataclass
class Frame:
    """One input frame with what its sidecars say."""

    path: Path
    size: tuple[int, int]
    scene: Scene | None = None
    caption: str = ""
    caption_source: str = ""  # "scene", "txt" or ""
    boxes: tuple[Box, ...] = ()
    issues: list[CaptionIssue] = field(default_factory=list)
    error: str = ""

    @property
    def flagged(self) -> bool:
        return bool(self.error) or any(i.severity == "error" for i in self.issues)


def _open_frame(path: Path) -> Image.Image:
    try:
        if path.stat().st_size > _MAX_FRAME_BYTES:
            raise InputImageError(str(path), "larger than 256 MiB")
        with Image.open(path, formats=_FORMATS) as img:
            img.load()
            return ImageOps.exif_transpose(img).convert("RGB")
    except InputImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(str(path), f"unreadable image ({exc})") from None


def frame_size(path: Path) -> tuple[int, int]:
    """An image's (width, height) as shown, EXIF rotation included, without decoding it."""
    try:
        with Image.open(path, formats=_FORMATS) as img:
            size = img.size
            orientation = img.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(str(path), f"unreadable image ({exc})") from None
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.stem + suffix)


def read_frames(folder: str | Path) -> list[Frame]:
    """Every frame in ``folder`` (not recursive, sorted by name) with its sidecars and rule
    issues. A frame that cannot be read, or whose sidecar is broken, carries ``error``."""
    root = Path(folder)
    if not root.is_dir():
        raise RequestError(f"{root}: not a folder of frames")
    paths = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    stems = Counter(p.stem for p in paths)
    frames: list[Frame] = []
    for path in paths:
        frame = Frame(path=path, size=(0, 0))
        frames.append(frame)
        if stems[path.stem] > 1:
            frame.error = f"{path.name}: another frame has the same name {path.stem!r}"
            continue
        try:
            frame.size = frame_size(path)
            scene_file = _sidecar(path, ".scene.json")
            if scene_file.is_file():
                frame.scene = Scene.from_json(scene_file.read_bytes())
            boxes_file = _sidecar(path, ".boxes.json")
            if boxes_file.is_file():
                frame.boxes = parse_boxes(
                    json.loads(boxes_file.read_bytes()), frame.size, boxes_file.name
                )
            txt = _sidecar(path, ".txt")
            if txt.is_file():
                frame.caption = " ".join(txt.read_text(encoding="utf-8").split())
                frame.caption_source = "txt"
            elif frame.scene is not None:
                frame.caption = frame.scene.to_prompt()
                frame.caption_source = "scene"
        except (FbError, ValueError, OSError) as exc:
            frame.error = f"{path.name}: {' '.join(str(exc).split())}"
            continue
        if not frame.caption:
            frame.error = f"{path.name}: no caption (add {path.stem}.scene.json or {path.stem}.txt)"
            continue
        frame.issues = check_caption(frame.caption, frame.scene)
    return frames


@dataclass
class DatasetReport:
    """What :func:`build_dataset` wrote."""

    out: Path
    frames: int = 0
    training_frames: int = 0
    held_out: list[str] = field(default_factory=list)
    excluded: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    augmentations: dict[str, int] = field(default_factory=dict)
    images: int = 0
    counts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["out"] = str(self.out)
        return data


def _holdout_names(frames: list[Frame], n: int, seed: int) -> set[str]:
    if n <= 0:
        return set()
    ranked = sorted(
        frames, key=lambda f: hashlib.sha256(f"{seed}:{f.path.name}".encode()).hexdigest()
    )
    return {f.path.name for f in ranked[:n]}


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _augment(img: Image.Image, aug: Any) -> Image.Image:
    if aug.kind == "crop":
        return img.crop(aug.crop)
    out = ImageEnhance.Brightness(img).enhance(aug.brightness)
    out = ImageEnhance.Contrast(out).enhance(aug.contrast)
    return ImageEnhance.Color(out).enhance(aug.saturation)


def build_dataset(
    folder: str | Path,
    out: str | Path,
    *,
    augment: AugmentOptions | None = None,
    settings: TrainSettings | None = None,
    models: ModelFiles | None = None,
    holdout: int = 0,
    keep_flagged: bool = False,
    remote_root: str = "",
    on_frame: Callable[[int, int, str], None] | None = None,
) -> DatasetReport:
    """Turn ``folder`` into a Kohya dataset in ``out`` (see the module docstring).

    ``remote_root`` writes paths as they will be on the training machine (``/workspace``);
    by default they are this machine's absolute paths. Raises :class:`RequestError` when no
    frame is usable, or when ``out`` is the input folder.
    """
    augment = augment or AugmentOptions()
    settings = settings or TrainSettings()
    models = models or ModelFiles()
    src, dst = Path(folder).resolve(), Path(out).resolve()
    if src == dst:
        raise RequestError(f"{dst}: the output folder must not be the folder of frames")
    frames = read_frames(src)
    report = DatasetReport(out=dst, frames=len(frames))
    for f in frames:
        if f.flagged and not keep_flagged:
            report.excluded[f.path.name] = [f.error] if f.error else [i.message for i in f.issues]
        elif f.issues:
            report.warnings[f.path.name] = [i.message for i in f.issues]
    usable = [f for f in frames if not f.error and (keep_flagged or not f.flagged)]
    held = _holdout_names(usable, holdout, settings.seed)
    train = [f for f in usable if f.path.name not in held]
    if not train:
        raise RequestError(
            f"{src}: no usable frame for training ({len(frames)} found, "
            f"{len(report.excluded)} left out, {len(held)} held out)"
        )
    imgs, hold_dir = dst / "imgs", dst / "holdout"
    base = remote_root.rstrip("/") if remote_root else str(dst)
    captions: dict[str, str] = {}
    written: set[str] = set()
    aug_counts: Counter[str] = Counter()
    for index, frame in enumerate(usable):
        if on_frame is not None:
            on_frame(index, len(usable), frame.path.name)
        data = frame.path.read_bytes()
        if frame.path.name in held:
            atomic_write_bytes(hold_dir / frame.path.name, data)
            atomic_write_bytes(hold_dir / f"{frame.path.stem}.txt", frame.caption.encode())
            if frame.scene is not None:
                atomic_write_bytes(
                    hold_dir / f"{frame.path.stem}.scene.json", frame.scene.to_json().encode()
                )
            report.held_out.append(frame.path.name)
            continue
        outputs: list[tuple[str, bytes]] = [(frame.path.name, data)]
        plan = plan_augmentations(frame.path.stem, frame.size, frame.boxes, augment)
        if plan:
            img = _open_frame(frame.path)
            for aug in plan:
                outputs.append(
                    (f"{frame.path.stem}_{aug.suffix}.png", _png_bytes(_augment(img, aug)))
                )
                aug_counts[aug.kind] += 1
        for name, payload in outputs:
            atomic_write_bytes(imgs / name, payload)
            atomic_write_bytes(imgs / f"{Path(name).stem}.txt", frame.caption.encode())
            captions[f"{base}/imgs/{name}"] = frame.caption
            written.update({name, f"{Path(name).stem}.txt"})
    if (dst / REPORT_NAME).is_file() and imgs.is_dir():  # a rebuild: drop our stale files
        for stale in imgs.iterdir():
            if stale.is_file() and stale.name not in written:
                stale.unlink()
    metadata = f"{base}/{METADATA_NAME}"
    atomic_write_bytes(dst / METADATA_NAME, kohya_metadata_json(captions).encode())
    atomic_write_bytes(
        dst / TOML_NAME,
        dataset_toml(f"{base}/imgs", metadata, settings, flip_aug=augment.flip).encode(),
    )
    command = sd_scripts_command(
        models, f"{base}/{TOML_NAME}", f"{base}/output", "football_lora", settings
    )
    atomic_write_bytes(dst / COMMAND_NAME, ("#!/bin/sh\n" + command).encode())
    report.training_frames = len(train)
    report.images = len(captions)
    report.augmentations = {
        "crop": aug_counts["crop"],
        "jitter": aug_counts["jitter"],
        "flip": int(augment.flip) * len(captions),
        "repeats": settings.num_repeats,
        "images_per_epoch": len(captions) * settings.num_repeats * (2 if augment.flip else 1),
    }
    report.counts = asdict(count_scenes(f.scene for f in train))
    atomic_write(
        dst / REPORT_NAME,
        lambda fh: fh.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False).encode()),
    )
    return report


#: ComfyUI's model folders (``folder_paths.py``) and the file-name patterns sd-scripts needs.
_MODEL_FOLDERS: Final = {
    "flux": (
        ("diffusion_models", "unet", "checkpoints"),
        ("flux1-dev*", "flux1_dev*", "flux*dev*"),
    ),
    "clip_l": (("text_encoders", "clip"), ("clip_l*",)),
    "t5xxl": (("text_encoders", "clip"), ("t5xxl_fp16*", "t5xxl*", "t5*xxl*")),
    "ae": (("vae",), ("ae.*", "flux*vae*", "ae*")),
}


def find_model_files(models_dir: str | Path) -> tuple[ModelFiles, list[str]]:
    """The BFL single files sd-scripts wants, found in a ComfyUI-style models folder.

    Looks in ``diffusion_models``/``unet``/``checkpoints``, ``text_encoders``/``clip`` and
    ``vae`` (``.safetensors``/``.sft`` only, first match by name). Returns the files (the
    placeholder for what is missing) and one line per missing file.
    """
    root = Path(models_dir)
    found: dict[str, str] = {}
    missing: list[str] = []
    for key, (folders, patterns) in _MODEL_FOLDERS.items():
        hit = None
        for pattern in patterns:
            for folder in folders:
                for suffix in (".safetensors", ".sft"):
                    matches = sorted((root / folder).glob(pattern.rstrip("*.") + "*" + suffix))
                    if matches:
                        hit = matches[0]
                        break
                if hit:
                    break
            if hit:
                break
        if hit is None:
            missing.append(f"{key}: no {patterns[0]}.safetensors in {root}/{{{','.join(folders)}}}")
        else:
            found[key] = str(hit.resolve())
    return ModelFiles(**found), missing


def read_metadata(out: str | Path) -> list[tuple[Path, str]]:
    """The (image file, caption) pairs of a built dataset, read from its Kohya JSON.

    Keys may be another machine's paths (``remote_root``): each is looked up by file name in
    ``out/imgs``. Raises :class:`RequestError` for a missing or malformed file.
    """
    from fbupscale_gui.storage.paths import contained

    root = Path(out)
    meta = root / METADATA_NAME
    try:
        data = json.loads(meta.read_bytes())
    except FileNotFoundError:
        raise RequestError(
            f"{meta}: no Kohya metadata here; build the dataset first "
            "(fbupscale lora dataset FOLDER -o OUT)"
        ) from None
    except (OSError, ValueError) as exc:
        raise RequestError(f"{meta}: unreadable Kohya metadata ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise RequestError(f"{meta}: expected a non-empty object of image path -> caption")
    pairs = []
    for key, value in data.items():
        if not isinstance(value, dict) or not isinstance(value.get("caption"), str):
            raise RequestError(f"{meta}: entry {key!r} has no caption")
        name = key.replace("\\", "/").rsplit("/", 1)[-1]
        path = contained(root / "imgs", name, f"{meta.name} entry {key!r}")
        if not path.is_file():
            raise RequestError(f"{meta}: image {name} is missing from {root / 'imgs'}")
        pairs.append((path, value["caption"]))
    return pairs
