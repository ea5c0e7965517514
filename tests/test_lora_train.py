"""The in-app LoRA trainer on the tiny FLUX (CPU): it learns, its LoRA loads, it resumes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from fbupscale_gui.core.errors import Cancelled, RequestError
from fbupscale_gui.core.lora_dataset import AugmentOptions
from fbupscale_gui.storage.lora_dataset_files import build_dataset

if TYPE_CHECKING:
    from fbupscale_gui.engine.testing import TinyFluxFiles

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"
ROOT = Path(__file__).resolve().parents[1]
#: Low resolution and short T5 sequences keep a step well under a second on the tiny model.
FAST: dict[str, Any] = {"resolution": 32, "max_sequence_length": 64}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fbupscale_gui.engine.testing import tiny_cutout

    root = tmp_path_factory.mktemp("lora_ds")
    frames = root / "frames"
    frames.mkdir()
    for i, name in enumerate(("duel", "striker", "box")):
        tiny_cutout(96, 64, seed=i).save(frames / f"{name}.png")
        shutil.copy(SAMPLES / f"{name}.scene.json", frames / f"{name}.scene.json")
    build_dataset(frames, root / "ds", augment=AugmentOptions(crops=0, jitters=0))
    return root / "ds"


def _config(tiny_flux: TinyFluxFiles, dataset: Path, output: Path, **kw: Any) -> Any:
    from fbupscale_gui.engine.lora.train_config import TrainConfig

    return TrainConfig(flux=tiny_flux.flux_dir, dataset=dataset, output=output, **{**FAST, **kw})


def test_training_lowers_the_loss_and_the_lora_loads_and_changes_the_image(
    tiny_flux: TinyFluxFiles, dataset: Path, tmp_path: Path
) -> None:
    import numpy as np
    import torch
    from diffusers import FluxImg2ImgPipeline

    from fbupscale_gui.engine.lora.apply import ensure_lora_loaded, set_lora_state
    from fbupscale_gui.engine.lora.train import train_lora
    from fbupscale_gui.engine.testing import tiny_cutout

    events: list[dict[str, Any]] = []
    out = tmp_path / "football.safetensors"
    # lr 1e-2 instead of the paper's 1e-4: 36 steps must show learning on a random tiny model
    result = train_lora(
        _config(tiny_flux, dataset, out, steps=36, learning_rate=1e-2), events.append
    )
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert [e["step"] for e in events if e["event"] == "step"] == list(range(1, 37))
    assert len(losses) == 36 and result.losses == losses
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8
    estimate = next(e for e in events if e["event"] == "estimate")
    assert estimate["trainable_params"] > 0 and estimate["peak_memory_bytes"] > 0
    assert estimate["total_seconds"] > 0 and estimate["optimizer"] == "adamw"
    assert {"event": "cache", "kind": "latents", "new": 3, "cached": 0} in events

    pipe: Any = FluxImg2ImgPipeline.from_pretrained(str(tiny_flux.flux_dir))
    conversion = ensure_lora_loaded(pipe, out, "f" * 64)
    assert conversion is not None and conversion.format == "kohya"
    assert conversion.unmatched == 0 and conversion.matched == 13  # 10 double + 3 single

    def render(on: bool) -> Any:
        set_lora_state(pipe.transformer, "fb_ffffffffffffffff" if on else None)
        return pipe(
            prompt="a player in a red jersey",
            image=tiny_cutout(32, 32),
            height=32,
            width=32,
            strength=0.9,
            num_inference_steps=4,
            guidance_scale=3.5,
            generator=torch.Generator().manual_seed(1),
            output_type="np",
        ).images[0]

    with_lora, without = render(True), render(False)
    assert np.abs(with_lora - without).max() > 1e-3


def test_checkpoint_layout_is_exact_for_fused_layers(
    tiny_flux: TinyFluxFiles, tmp_path: Path
) -> None:
    """PEFT's q/k/v adapters joined into Kohya's fused qkv give the same model output."""
    import torch
    from diffusers import FluxImg2ImgPipeline
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    from fbupscale_gui.engine.lora.apply import ensure_lora_loaded
    from fbupscale_gui.engine.lora.train_checkpoints import bfl_lora_layers, peft_to_kohya

    trained: Any = FluxImg2ImgPipeline.from_pretrained(str(tiny_flux.flux_dir)).transformer
    layers = bfl_lora_layers(trained)
    trained.add_adapter(
        LoraConfig(r=4, lora_alpha=2, target_modules=[t for _, ts in layers for t in ts]),
        adapter_name="x",
    )
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    path = tmp_path / "k.safetensors"
    save_file(
        peft_to_kohya(get_peft_model_state_dict(trained, adapter_name="x"), layers, 2.0), path
    )
    pipe: Any = FluxImg2ImgPipeline.from_pretrained(str(tiny_flux.flux_dir))
    ensure_lora_loaded(pipe, path, "a" * 64)

    g = torch.Generator().manual_seed(3)
    inputs = {
        "hidden_states": torch.randn(1, 16, 64, generator=g),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=g),
        "pooled_projections": torch.randn(1, 32, generator=g),
        "timestep": torch.tensor([0.5]),
        "guidance": torch.tensor([1.0]),
        "img_ids": torch.zeros(16, 3),
        "txt_ids": torch.zeros(8, 3),
        "return_dict": False,
    }
    with torch.no_grad():
        expected = trained(**inputs)[0]
        got = pipe.transformer(**inputs)[0]
        pipe.transformer.disable_lora()
        base = pipe.transformer(**inputs)[0]
    assert (expected - base).abs().max() > 1e-2  # the adapter matters...
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)  # ...and survives exactly


def test_cancel_takes_effect_within_one_step_and_resumes(
    tiny_flux: TinyFluxFiles, dataset: Path, tmp_path: Path
) -> None:
    from fbupscale_gui.engine.lora.train import train_lora
    from fbupscale_gui.engine.lora.train_checkpoints import state_path_for

    out = tmp_path / "c.safetensors"
    events: list[dict[str, Any]] = []

    def cancelled() -> bool:
        return sum(e["event"] == "step" for e in events) >= 3

    with pytest.raises(Cancelled):
        train_lora(_config(tiny_flux, dataset, out, steps=20), events.append, cancelled)
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3]
    assert events[-1] == {"event": "cancelled", "step": 3, "state": str(state_path_for(out))}
    assert not out.exists()

    more: list[dict[str, Any]] = []
    result = train_lora(_config(tiny_flux, dataset, out, steps=5), more.append)
    resumed = next(e for e in more if e["event"] == "resumed")
    assert resumed["step"] == 3 and resumed["losses"] == result.losses[:3]
    assert [e["step"] for e in more if e["event"] == "step"] == [4, 5]
    assert result.resumed_from == 3 and len(result.losses) == 5 and out.is_file()
    # the cache was reused: neither the VAE nor the text encoders ran again
    assert {"event": "cache", "kind": "latents", "new": 0, "cached": 3} in more
    assert {"event": "cache", "kind": "text", "new": 0} in more
    # a state for other settings is refused with a clear message, never half-used
    with pytest.raises(RequestError, match="other settings"):
        train_lora(_config(tiny_flux, dataset, out, steps=8, rank=4, alpha=4.0))


def _log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line cut by the kill
            out.append(json.loads(line))
    return out


def test_kill_9_mid_training_resumes_from_the_last_checkpoint(
    tiny_flux: TinyFluxFiles, dataset: Path, tmp_path: Path
) -> None:
    from fbupscale_gui.engine.lora.convert import convert_lora
    from fbupscale_gui.engine.lora.files import read_lora_file
    from fbupscale_gui.engine.testing import build_tiny_components

    out, log = tmp_path / "k.safetensors", tmp_path / "train.jsonl"
    base = [sys.executable, "-m", "fbupscale_gui.cli", "lora", "train",
            "--flux", str(tiny_flux.flux_dir), "--dataset", str(dataset), "-o", str(out),
            "--resolution", "32", "--max-sequence-length", "64", "--device", "cpu",
            "--save-every-n-steps", "3", "--log", str(log)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*base, "--steps", "500"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if any(e["event"] == "checkpoint" and e["step"] >= 3 for e in _log(log)):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the training process ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    before = _log(log)
    last = max(e["step"] for e in before if e["event"] == "checkpoint")
    assert not any(e["event"] == "done" for e in before)

    done = subprocess.run(
        [*base, "--steps", str(last + 2)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    after = _log(log)[len(before) :]
    assert after[0]["event"] == "cache"
    assert next(e for e in after if e["event"] == "resumed")["step"] == last
    assert [e["step"] for e in after if e["event"] == "step"] == [last + 1, last + 2]
    assert after[-1]["event"] == "done" and Path(done.stdout.strip()) == out
    checkpoint = out.with_name(f"k-{last:06d}.safetensors")
    conversion = convert_lora(read_lora_file(checkpoint), build_tiny_components()["transformer"])
    assert conversion.matched == 13 and conversion.unmatched == 0


def test_ab_report_on_held_out_frames(
    tiny_flux: TinyFluxFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from fbupscale_gui.cli import main
    from fbupscale_gui.engine.testing import tiny_cutout

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, name in enumerate(("duel", "striker", "box", "corner")):
        tiny_cutout(144, 96, seed=i).save(frames / f"{name}.png")
        shutil.copy(SAMPLES / f"{name}.scene.json", frames / f"{name}.scene.json")
    report = build_dataset(frames, tmp_path / "ds", holdout=2, augment=AugmentOptions(0, 0))
    assert len(report.held_out) == 2
    out = tmp_path / "report"
    code = main(["lora", "report", "--dataset", str(tmp_path / "ds"),
                 "--lora", str(tiny_flux.lora_kohya), "--flux", str(tiny_flux.flux_dir),
                 "--controlnet", str(tiny_flux.controlnet_dir), "-o", str(out),
                 "--severity", "heavy", "--size", "96", "--steps1", "4", "--steps2", "2",
                 "--device", "cpu"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert sorted((r["frame"], r["lora"]) for r in rows) == sorted(
        (f, on) for f in report.held_out for on in (False, True)
    )
    for frame in report.held_out:
        on = next(r for r in rows if r["frame"] == frame and r["lora"])
        off = next(r for r in rows if r["frame"] == frame and not r["lora"])
        assert on["psnr_y"] != off["psnr_y"] and 0 < on["ssim_y"] <= 1
        assert on["lr_consistency"] > 0
    table = (out / "report.md").read_text()
    assert "| **mean** |" in table and "PSNR-Y dB without" in table
    with Image.open(out / "report.png") as plot:
        assert plot.size == (900, 320)
    assert (out / "images" / f"{Path(report.held_out[0]).stem}_cutout.png").is_file()


def test_cli_estimate_only_trains_nothing(
    tiny_flux: TinyFluxFiles, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fbupscale_gui.cli import main
    from fbupscale_gui.engine.lora.train_checkpoints import state_path_for

    out, log = tmp_path / "e.safetensors", tmp_path / "e.jsonl"
    code = main(["lora", "train", "--flux", str(tiny_flux.flux_dir), "--dataset", str(dataset),
                 "-o", str(out), "--resolution", "32", "--max-sequence-length", "64",
                 "--steps", "100", "--estimate-only", "--log", str(log)])  # fmt: skip
    assert code == 0
    events = _log(log)
    estimate = next(e for e in events if e["event"] == "estimate")
    assert estimate["steps"] == 100 and estimate["total_seconds"] > 0
    assert not any(e["event"] == "step" for e in events)
    assert not out.exists() and not state_path_for(out).exists()
    assert "estimate: 100 steps" in capsys.readouterr().err
    # a bad setting is one clear line, nothing written
    assert main(["lora", "train", "--flux", str(tiny_flux.flux_dir), "--dataset", str(dataset),
                 "-o", str(tmp_path / "x.safetensors"), "--rank", "4", "--alpha", "8"]) == 1  # fmt: skip
    assert "alpha" in capsys.readouterr().err
