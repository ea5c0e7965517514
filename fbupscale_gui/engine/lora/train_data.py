"""The training data of a LoRA run: aspect buckets, batches, and the latent and caption caches.

Images are resized and centre-cropped to aspect buckets of about ``resolution²`` pixels, and
batches are drawn within a bucket. Latents (VAE mean) and text-encoder outputs are computed once
and cached on disk, each file named by the SHA-256 of what it depends on (image bytes or
caption, bucket, model files), so a second run or a resumed one never loads the VAE or the text
encoders again. Every cache file is written atomically.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbupscale_gui.engine.lora.train_config import TrainConfig
from fbupscale_gui.storage.atomic import atomic_write_bytes
from fbupscale_gui.storage.lora_dataset_files import frame_size, read_metadata

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = ["Event", "TrainData", "TrainItem", "load_tensors", "model_fingerprint", "sha256_hex"]

Event = dict[str, Any]


def _bucket(size: tuple[int, int], resolution: int, step: int) -> tuple[int, int]:
    """(w, h), multiples of ``step``, about ``resolution²`` pixels, the image's aspect."""
    w, h = size
    aspect = w / h
    area = resolution * resolution
    bw = max(step, int(math.sqrt(area * aspect)) // step * step)
    bh = max(step, int(bw / aspect) // step * step)
    while bw * bh > area and bw > step:
        bw -= step
        bh = max(step, int(bw / aspect) // step * step)
    return bw, bh


def _fit(img: Image.Image, bucket: tuple[int, int]) -> Image.Image:
    from PIL import ImageOps

    return ImageOps.fit(img, bucket, method=3, centering=(0.5, 0.5))  # 3: BICUBIC


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data``, as hex (cache keys, dataset identity)."""
    return hashlib.sha256(data).hexdigest()


def model_fingerprint(folder: Path, sub: Sequence[str]) -> str:
    """Identity of a diffusers folder's parts: config text plus weight names, sizes, mtimes."""
    h = hashlib.sha256()
    for name in sub:
        part = folder / name
        if not part.exists():
            continue
        for f in sorted(part.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}".encode())
                if f.suffix == ".json" and st.st_size < 1_000_000:
                    h.update(f.read_bytes())
    return h.hexdigest()


@dataclass
class TrainItem:
    """One training image (mirrored when ``flip``), its caption, their hashes and its bucket."""

    path: Path
    caption: str
    image_sha: str
    caption_sha: str
    bucket: tuple[int, int]
    flip: bool = False


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    atomic_write_bytes(path, save({k: v.contiguous().cpu() for k, v in tensors.items()}))


def load_tensors(path: Path) -> dict[str, torch.Tensor] | None:
    """A cache file's tensors, or None when it is missing or unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (FileNotFoundError, SafetensorError, OSError):
        return None


@dataclass
class TrainData:
    """The items, batches and caches of one run; ``check`` raises Cancelled, ``emit`` reports."""

    config: TrainConfig
    emit: Callable[[Event], None]
    check: Callable[[], None]

    @property
    def cache(self) -> Path:
        """The folder of the latent and caption caches."""
        return self.config.cache_dir or (self.config.dataset / ".cache")

    def items(self, vae_step: int) -> list[TrainItem]:
        pairs = read_metadata(self.config.dataset)
        items = []
        for path, caption in pairs:
            data = path.read_bytes()
            size = frame_size(path)
            bucket = _bucket(size, self.config.resolution, vae_step)
            base = TrainItem(path, caption, sha256_hex(data), sha256_hex(caption.encode()), bucket)
            items.append(base)
            if self.config.flip:
                items.append(
                    TrainItem(path, caption, base.image_sha, base.caption_sha, bucket, True)
                )
        return items

    def batches(self, items: list[TrainItem], epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.config.seed}:{epoch}")
        order = [i for i in range(len(items)) for _ in range(self.config.num_repeats)]
        rng.shuffle(order)
        by_bucket: dict[tuple[int, int], list[int]] = {}
        for i in order:
            by_bucket.setdefault(items[i].bucket, []).append(i)
        batches = []
        for idx in by_bucket.values():
            for k in range(0, len(idx), self.config.batch_size):
                batches.append(idx[k : k + self.config.batch_size])
        rng.shuffle(batches)
        return batches

    def latent_key(self, item: TrainItem, vae_fp: str) -> str:
        return sha256_hex(f"{item.image_sha}:{item.bucket}:{item.flip}:{vae_fp}".encode())

    def text_key(self, item: TrainItem, te_fp: str) -> str:
        return sha256_hex(f"{item.caption_sha}:{self.config.max_sequence_length}:{te_fp}".encode())

    def cache_latents(self, items: list[TrainItem], vae_fp: str, device: str, dtype: Any) -> None:
        import torch
        from diffusers import AutoencoderKL
        from PIL import Image, ImageOps

        todo = [
            it
            for it in items
            if not (self.cache / "latents" / f"{self.latent_key(it, vae_fp)}.safetensors").is_file()
        ]
        self.emit(
            {
                "event": "cache",
                "kind": "latents",
                "new": len(todo),
                "cached": len(items) - len(todo),
            }
        )
        if not todo:
            return
        vae: Any = AutoencoderKL.from_pretrained(
            str(self.config.flux), subfolder="vae", local_files_only=True, torch_dtype=dtype
        ).to(device)
        vae.requires_grad_(False)
        shift = float(getattr(vae.config, "shift_factor", 0.0) or 0.0)
        scale = float(vae.config.scaling_factor)
        with torch.no_grad():
            for n, it in enumerate(todo):
                self.check()
                with Image.open(it.path) as opened:
                    img = ImageOps.exif_transpose(opened).convert("RGB")
                img = _fit(img, it.bucket)
                if it.flip:
                    img = ImageOps.mirror(img)
                import numpy as np

                arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)
                x = arr.permute(2, 0, 1).unsqueeze(0).to(device, dtype)
                lat = vae.encode(x).latent_dist.mode()
                lat = (lat - shift) * scale
                _save_tensors(
                    self.cache / "latents" / f"{self.latent_key(it, vae_fp)}.safetensors",
                    {"latents": lat[0].float()},
                )
                self.emit({"event": "cache", "kind": "latents", "done": n + 1, "of": len(todo)})
        del vae

    def cache_text(self, items: list[TrainItem], te_fp: str, device: str, dtype: Any) -> None:
        import torch
        from diffusers import FluxPipeline

        unique: dict[str, TrainItem] = {}
        for it in items:
            key = self.text_key(it, te_fp)
            if not (self.cache / "text" / f"{key}.safetensors").is_file():
                unique.setdefault(key, it)
        self.emit({"event": "cache", "kind": "text", "new": len(unique)})
        if not unique:
            return
        pipe: Any = FluxPipeline.from_pretrained(
            str(self.config.flux),
            transformer=None,
            vae=None,
            local_files_only=True,
            torch_dtype=dtype,
        )
        pipe.text_encoder.to(device)
        pipe.text_encoder_2.to(device)
        with torch.no_grad():
            for n, (key, it) in enumerate(unique.items()):
                self.check()
                embeds, pooled, _ids = pipe.encode_prompt(
                    prompt=it.caption,
                    prompt_2=it.caption,
                    device=torch.device(device),
                    max_sequence_length=self.config.max_sequence_length,
                )
                _save_tensors(
                    self.cache / "text" / f"{key}.safetensors",
                    {"embeds": embeds[0].float(), "pooled": pooled[0].float()},
                )
                self.emit({"event": "cache", "kind": "text", "done": n + 1, "of": len(unique)})
        del pipe
