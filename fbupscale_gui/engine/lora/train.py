"""Train a football LoRA for the FLUX transformer (paper 3.3.2), with diffusers and PEFT.

The method is sd-scripts' ``flux_train_network.py`` as the paper ran it (Code 6):

* a LoRA on every linear layer of the double and single blocks (``network_train_unet_only``),
  rank and alpha 8 / 8, AdamW at lr 1e-4 (8-bit AdamW where bitsandbytes and CUDA exist);
* bf16 autocast where the device supports it, gradient checkpointing;
* latents (VAE mean) and text-encoder outputs computed once and cached on disk
  (:mod:`fbupscale_gui.engine.lora.train_data`);
* the rectified-flow loss: ``x_t = (1 - t) x_0 + t noise``, target ``noise - x_0``, raw model
  prediction, MSE; ``t = shift(sigmoid(n))`` with ``n ~ N(0, 1)`` and the paper's
  ``discrete_flow_shift`` 3.1582 (``t' = s t / (1 + (s - 1) t)``); guidance 1.0;
* images resized and centre-cropped to aspect buckets, batches drawn within a bucket.

Checkpoints are written every N epochs in the Kohya/BFL layout the LoRA loader reads, with a
resume state beside the output (:mod:`fbupscale_gui.engine.lora.train_checkpoints`), so a killed run resumes where
its last checkpoint was. :func:`train_lora` checks ``is_cancelled`` after every step (and every
cached item) and then saves a resume state. Every file is written atomically.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, cast

from fbupscale_gui.core.errors import Cancelled, RequestError
from fbupscale_gui.engine.lora.train_checkpoints import (
    ADAPTER_NAME,
    Checkpoints,
    bfl_lora_layers,
)
from fbupscale_gui.engine.lora.train_config import TrainConfig, TrainResult, estimate
from fbupscale_gui.engine.lora.train_data import (
    Event,
    TrainData,
    load_tensors,
    model_fingerprint,
    sha256_hex,
)
from fbupscale_gui.storage.lora_dataset_files import METADATA_NAME

if TYPE_CHECKING:
    import torch

__all__ = ["flow_timesteps", "train_lora"]


def flow_timesteps(noise: torch.Tensor, shift: float) -> torch.Tensor:
    """sd-scripts' ``shift`` sampling: ``sigmoid(n)`` mapped by ``s t / (1 + (s - 1) t)``."""
    t = noise.sigmoid()
    return (t * shift) / (1 + (shift - 1) * t)


def _resolve(config: TrainConfig) -> tuple[str, str, Any]:
    import torch

    from fbupscale_gui.engine.devices import _cuda_available

    if config.device == "cuda" and not _cuda_available():
        raise RequestError("device: CUDA was requested but no CUDA GPU is available")
    device = "cuda:0" if config.device != "cpu" and _cuda_available() else "cpu"
    cuda = device.startswith("cuda")
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    if config.precision == "bf16" and not bf16_ok:
        raise RequestError("precision: bf16 training needs a CUDA GPU that supports bf16")
    precision = (
        "bf16"
        if (config.precision == "bf16" or (config.precision == "auto" and bf16_ok))
        else "fp32"
    )
    if config.qlora and not (cuda and _bnb_available()):
        raise RequestError(
            "qlora: the NF4 base needs a CUDA GPU and the bitsandbytes package; "
            "train without --qlora here"
        )
    return device, precision, torch.bfloat16 if precision == "bf16" else torch.float32


def _bnb_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


class _Trainer:
    def __init__(
        self,
        config: TrainConfig,
        on_event: Callable[[Event], None],
        is_cancelled: Callable[[], bool],
    ) -> None:
        self.config = config
        self.emit = on_event
        self.is_cancelled = is_cancelled
        self.data = TrainData(config, on_event, self.check)
        self.checkpoints = Checkpoints(config)

    def check(self) -> None:
        if self.is_cancelled():
            raise Cancelled("training cancelled")

    # model ------------------------------------------------------------------------------

    def load_transformer(self, dtype: Any, device: str) -> Any:
        from diffusers import FluxTransformer2DModel

        kwargs: dict[str, Any] = {"local_files_only": True, "torch_dtype": dtype}
        if self.config.qlora:
            from diffusers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype
            )
        transformer: Any = FluxTransformer2DModel.from_pretrained(
            str(self.config.flux), subfolder="transformer", **kwargs
        )
        if not self.config.qlora:
            transformer.to(device)
        transformer.requires_grad_(False)
        if self.config.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        return transformer

    def add_lora(self, transformer: Any) -> list[tuple[str, tuple[str, ...]]]:
        from peft import LoraConfig

        layers = bfl_lora_layers(transformer)
        targets = [t for _, ts in layers for t in ts]
        transformer.add_adapter(
            LoraConfig(
                r=self.config.rank,
                lora_alpha=cast(Any, self.config.alpha),  # PEFT takes any number
                init_lora_weights=True,
                target_modules=targets,
            ),
            adapter_name=ADAPTER_NAME,
        )
        for p in transformer.parameters():
            if p.requires_grad:
                p.data = p.data.float()
        return layers

    # loop -------------------------------------------------------------------------------

    def run(self, *, estimate_only: bool = False) -> TrainResult:
        import torch
        from diffusers import FluxPipeline

        config = self.config
        if not (config.dataset / METADATA_NAME).is_file():
            raise RequestError(
                f"{config.dataset}: not a built dataset (no {METADATA_NAME}); run "
                "fbupscale lora dataset FOLDER -o OUT first"
            )
        device, precision, dtype = _resolve(config)
        torch.manual_seed(config.seed)
        vae_cfg = json.loads((config.flux / "vae" / "config.json").read_text())
        vsf = 2 ** (len(vae_cfg.get("block_out_channels", [0, 0, 0, 0])) - 1)
        items = self.data.items(vsf * 8)
        dataset_sha = sha256_hex(
            json.dumps([(i.image_sha, i.caption_sha, i.flip) for i in items]).encode()
        )
        fingerprint = config.fingerprint(dataset_sha)
        vae_fp = model_fingerprint(config.flux, ["vae"])
        te_fp = model_fingerprint(
            config.flux, ["text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"]
        )
        self.data.cache_latents(items, vae_fp, device, dtype)
        self.data.cache_text(items, te_fp, device, dtype)

        transformer = self.load_transformer(dtype, device)
        layers = self.add_lora(transformer)
        params = [p for p in transformer.parameters() if p.requires_grad]
        optimizer: Any
        if device.startswith("cuda") and _bnb_available():
            import bitsandbytes as bnb

            optimizer = bnb.optim.AdamW8bit(params, lr=config.learning_rate, weight_decay=0.01)
            opt_name = "adamw8bit"
        else:
            optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
            opt_name = "adamw"
        steps_per_epoch = len(self.data.batches(items, 0))
        total = config.steps or steps_per_epoch * config.epochs
        latents: dict[str, torch.Tensor] = {}
        texts: dict[str, dict[str, torch.Tensor]] = {}
        for it in items:
            lk, tk = self.data.latent_key(it, vae_fp), self.data.text_key(it, te_fp)
            lat = load_tensors(self.data.cache / "latents" / f"{lk}.safetensors")
            txt = load_tensors(self.data.cache / "text" / f"{tk}.safetensors")
            if lat is None or txt is None:
                raise RequestError(
                    f"{self.data.cache}: a cached latent or caption is unreadable; delete the cache folder"
                )
            latents[lk], texts[tk] = lat["latents"], txt
        transformer.train()
        guidance_on = bool(transformer.config.guidance_embeds)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if precision == "bf16"
            else torch.autocast("cpu", enabled=False)
        )
        epoch_batches: dict[int, list[list[int]]] = {}

        def loss_for(step: int) -> tuple[torch.Tensor, torch.Tensor, int]:
            """The flow-matching loss of training step ``step`` (deterministic), its t, epoch."""
            nonlocal epoch_batches
            epoch, index = divmod(step, steps_per_epoch)
            if epoch not in epoch_batches:
                epoch_batches = {epoch: self.data.batches(items, epoch)}
            batch = [items[i] for i in epoch_batches[epoch][index]]
            x0 = torch.stack([latents[self.data.latent_key(it, vae_fp)] for it in batch]).to(device)
            emb = torch.stack([texts[self.data.text_key(it, te_fp)]["embeds"] for it in batch]).to(
                device, dtype
            )
            pooled = torch.stack(
                [texts[self.data.text_key(it, te_fp)]["pooled"] for it in batch]
            ).to(device, dtype)
            gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
            noise = torch.randn(x0.shape, generator=gen).to(device)
            t = flow_timesteps(torch.randn(len(batch), generator=gen), config.shift).to(device)
            tt = t.view(-1, 1, 1, 1)
            noisy = (1 - tt) * x0 + tt * noise
            b, c, h, w = noisy.shape
            packed = FluxPipeline._pack_latents(noisy, b, c, h, w).to(dtype)
            img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, device, dtype)
            txt_ids = torch.zeros(emb.shape[1], 3, device=device, dtype=dtype)
            guidance = torch.full((b,), config.guidance, device=device) if guidance_on else None
            with autocast:
                pred = transformer(
                    hidden_states=packed,
                    timestep=t.to(dtype),
                    guidance=guidance,
                    pooled_projections=pooled,
                    encoder_hidden_states=emb,
                    txt_ids=txt_ids,
                    img_ids=img_ids,
                    return_dict=False,
                )[0]
            pred = FluxPipeline._unpack_latents(pred, h * vsf, w * vsf, vsf)
            return torch.nn.functional.mse_loss(pred.float(), (noise - x0).float()), t, epoch

        # Estimate first: one timed forward and backward pass (no update), scaled to the run.
        timer = time.perf_counter()
        loss_for(0)[0].backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        measured = time.perf_counter() - timer
        optimizer.zero_grad(set_to_none=True)
        est = estimate(
            transformer, config, len(items), total, steps_per_epoch, device, precision, opt_name,
            measured_step_s=measured,
        )  # fmt: skip
        self.emit({"event": "estimate", **asdict(est)})
        if estimate_only:
            return TrainResult(output=config.output, steps_done=0, resumed_from=0)

        start, losses = 0, []
        state = self.checkpoints.load_state(fingerprint)
        if state is not None:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(transformer, state["lora"], adapter_name=ADAPTER_NAME)
            optimizer.load_state_dict(state["optimizer"])
            start, losses = int(state["step"]), [float(x) for x in state.get("losses", [])]
            self.emit({"event": "resumed", "step": start, "losses": list(losses)})
        result = TrainResult(
            output=config.output, steps_done=start, resumed_from=start, losses=losses
        )
        if start >= total:
            self.checkpoints.save_lora(
                config.output, transformer, layers, start, start // steps_per_epoch
            )
            self.emit({"event": "done", "step": start, "output": str(config.output)})
            return result

        began = time.perf_counter()
        step = start
        try:
            for step in range(start, total):
                loss, t, epoch = loss_for(step)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                value = float(loss.detach().item())
                losses.append(value)
                done = step + 1
                result.steps_done = done
                elapsed = time.perf_counter() - began
                rate = elapsed / (done - start)
                self.emit(
                    {
                        "event": "step",
                        "step": done,
                        "total": total,
                        "epoch": epoch + 1,
                        "loss": value,
                        "t": float(t.mean().item()),
                        "lr": config.learning_rate,
                        "elapsed_s": round(elapsed, 3),
                        "eta_s": round(rate * (total - done), 1),
                    }
                )
                epoch_end = done % steps_per_epoch == 0
                by_epoch = epoch_end and (done // steps_per_epoch) % config.save_every_n_epochs == 0
                by_step = config.save_every_n_steps and done % config.save_every_n_steps == 0
                if (by_epoch or by_step) and done < total:
                    ep = math.ceil(done / steps_per_epoch)
                    ckpt = config.output.with_name(f"{config.output.stem}-{done:06d}.safetensors")
                    self.checkpoints.save_lora(ckpt, transformer, layers, done, ep)
                    self.checkpoints.save_state(transformer, optimizer, done, fingerprint, losses)
                    result.checkpoints.append(ckpt)
                    self.emit({"event": "checkpoint", "step": done, "epoch": ep, "path": str(ckpt)})
                self.check()
        except Cancelled:
            self.checkpoints.save_state(
                transformer, optimizer, result.steps_done, fingerprint, losses
            )
            self.emit(
                {
                    "event": "cancelled",
                    "step": result.steps_done,
                    "state": str(self.checkpoints.state_path),
                }
            )
            raise
        self.checkpoints.save_lora(
            config.output, transformer, layers, total, math.ceil(total / steps_per_epoch)
        )
        self.checkpoints.save_state(transformer, optimizer, total, fingerprint, losses)
        self.emit({"event": "done", "step": total, "output": str(config.output)})
        result.checkpoints.append(config.output)
        return result


def train_lora(
    config: TrainConfig,
    on_event: Callable[[Event], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    *,
    estimate_only: bool = False,
) -> TrainResult:
    """Train (or resume) a LoRA as ``config`` says; see the module docstring.

    ``on_event`` receives plain dicts (``event`` = ``estimate``, ``cache``, ``resumed``,
    ``step`` with ``step``/``loss``/``eta_s``, ``checkpoint``, ``cancelled``, ``done``).
    ``estimate_only`` stops after the estimate (the caches are filled, nothing is trained).
    Raises :class:`Cancelled` after saving a resume state when ``is_cancelled`` turns true,
    :class:`RequestError` for unusable settings, datasets or states.
    """
    trainer = _Trainer(config, on_event or (lambda e: None), is_cancelled or (lambda: False))
    return trainer.run(estimate_only=estimate_only)
