"""LoRA reading, width-agnostic conversion, matching counts, bit-exact on/off switching, the
strength each file asks for (pixel-identical to diffusers' own loader), load reports, and the
refusal of files that match nothing or hold NaN / Inf / huge values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from fbupscale_gui.core.errors import LoraError
from fbupscale_gui.core.request import (
    LoraParams,
    ModelRef,
    Preprocess,
    ReconstructionRequest,
    Stage1Params,
    Stage2Params,
)
from fbupscale_gui.engine import Engine
from fbupscale_gui.engine.lora.apply import adapter_name_for, ensure_lora_loaded, set_lora_state
from fbupscale_gui.engine.lora.convert import bfl_targets, convert_lora
from fbupscale_gui.engine.lora.files import ADAPTER_METADATA_KEY, read_lora, read_lora_file
from fbupscale_gui.engine.testing import (
    TinyFluxFiles,
    build_tiny_components,
    make_tiny_lora,
    tiny_cutout,
)
from fbupscale_gui.storage.cutouts import make_source

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def transformer() -> Any:
    return build_tiny_components(0)["transformer"]


@pytest.mark.slow  # diffusers' own conversion of a full-size key set
def test_kohya_and_diffusers_files_convert_to_the_same_weights(
    transformer: Any, tmp_path: Path
) -> None:
    kohya = make_tiny_lora(transformer, tmp_path / "k.safetensors", "kohya", seed=5)
    plain = make_tiny_lora(transformer, tmp_path / "d.safetensors", "diffusers", seed=5)
    ck = convert_lora(read_lora_file(kohya), transformer)
    cd = convert_lora(read_lora_file(plain), transformer)
    assert (ck.format, cd.format) == ("kohya", "diffusers")
    # 1 double block x 10 + 1 single block x 3 + img_in, txt_in, final_layer.linear
    assert (ck.matched, ck.unmatched) == (16, 0)
    assert (cd.matched, cd.unmatched) == (23, 0)  # the fused layers are separate modules here
    assert ck.state_dict.keys() == cd.state_dict.keys()
    for key in (k for k in cd.state_dict if k.endswith("lora_A.weight")):
        up = key.replace("lora_A", "lora_B")
        # alpha (rank / 2) is folded in; the fused qkv / linear1 are split by the model's widths
        delta_kohya = ck.state_dict[up] @ ck.state_dict[key]
        delta_plain = cd.state_dict[up] @ cd.state_dict[key]
        torch.testing.assert_close(delta_kohya, delta_plain, rtol=1e-5, atol=1e-6)


def test_single_block_linear1_is_split_by_the_models_own_widths(transformer: Any) -> None:
    block = transformer.single_transformer_blocks[0]
    widths = [
        block.attn.to_q.out_features,
        block.attn.to_k.out_features,
        block.attn.to_v.out_features,
        block.proj_mlp.out_features,
    ]
    up = torch.arange(sum(widths) * 2, dtype=torch.float32).reshape(sum(widths), 2)
    down = torch.ones(2, block.attn.to_q.in_features)
    sd = {
        "lora_unet_single_blocks_0_linear1.lora_down.weight": down,
        "lora_unet_single_blocks_0_linear1.lora_up.weight": up,
    }
    out = convert_lora(sd, transformer).state_dict
    parts = ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"]
    got = [out[f"transformer.single_transformer_blocks.0.{p}.lora_B.weight"] for p in parts]
    assert [g.shape[0] for g in got] == widths
    assert torch.equal(torch.cat(got), up)


def test_bfl_dotted_names_and_final_layer_swap(transformer: Any) -> None:
    dim = transformer.inner_dim
    up = torch.cat([torch.zeros(dim, 2), torch.ones(dim, 2)])  # BFL order: shift, scale
    sd = {
        "diffusion_model.final_layer.adaLN_modulation.1.lora_A.weight": torch.ones(2, dim),
        "diffusion_model.final_layer.adaLN_modulation.1.lora_B.weight": up,
    }
    conv = convert_lora(sd, transformer)
    assert (conv.format, conv.matched) == ("bfl", 1)
    b = conv.state_dict["transformer.norm_out.linear.lora_B.weight"]
    assert torch.equal(b[:dim], torch.ones(dim, 2))  # diffusers order: scale, shift


def test_unknown_keys_are_counted_not_dropped(transformer: Any) -> None:
    r, dim = 2, transformer.inner_dim
    sd = {
        "lora_unet_double_blocks_0_img_attn_proj.lora_down.weight": torch.ones(r, dim),
        "lora_unet_double_blocks_0_img_attn_proj.lora_up.weight": torch.ones(dim, r),
        # block 7 does not exist in this model; te2 is the T5 encoder; qkv has a wrong width
        "lora_unet_double_blocks_7_img_attn_proj.lora_down.weight": torch.ones(r, dim),
        "lora_unet_double_blocks_7_img_attn_proj.lora_up.weight": torch.ones(dim, r),
        "lora_te2_encoder_block_0_layer_0_SelfAttention_q.lora_down.weight": torch.ones(r, 8),
        "lora_te2_encoder_block_0_layer_0_SelfAttention_q.lora_up.weight": torch.ones(8, r),
        "lora_unet_double_blocks_0_txt_attn_qkv.lora_down.weight": torch.ones(r, dim),
        "lora_unet_double_blocks_0_txt_attn_qkv.lora_up.weight": torch.ones(3072 * 3, r),
    }
    conv = convert_lora(sd, transformer)
    assert (conv.matched, conv.unmatched) == (1, 3)
    reasons = " ".join(conv.unmatched_names)
    assert (
        "not in this model" in reasons and "text encoder" in reasons and "does not fit" in reasons
    )


def test_bfl_target_table() -> None:
    assert bfl_targets("double_blocks_3_txt_attn_qkv") == (
        "transformer_blocks.3.attn.add_q_proj",
        "transformer_blocks.3.attn.add_k_proj",
        "transformer_blocks.3.attn.add_v_proj",
    )
    assert bfl_targets("single_blocks_37_linear2") == ("single_transformer_blocks.37.proj_out",)
    assert bfl_targets("guidance_in_in_layer") == ("time_text_embed.guidance_embedder.linear_1",)
    assert bfl_targets("double_blocks_0_nonsense") is None


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(LoraError, match=r"broken\.safetensors"):
        read_lora_file(bad)
    with pytest.raises(LoraError, match=r"\.safetensors"):
        read_lora_file(tmp_path / "weights.ckpt")
    with pytest.raises(LoraError, match="no such"):
        read_lora_file(tmp_path / "missing.safetensors")


def _forward(transformer: Any) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    tokens, dim_in = 16, transformer.config.in_channels
    with torch.no_grad():
        return transformer(
            hidden_states=torch.randn(1, tokens, dim_in, generator=g),
            encoder_hidden_states=torch.randn(
                1, 8, transformer.config.joint_attention_dim, generator=g
            ),
            pooled_projections=torch.randn(
                1, transformer.config.pooled_projection_dim, generator=g
            ),
            timestep=torch.tensor([0.5]),
            img_ids=torch.zeros(tokens, 3),
            txt_ids=torch.zeros(8, 3),
            guidance=torch.tensor([3.5]),
            return_dict=False,
        )[0]


@pytest.mark.slow
def test_off_is_bit_identical_and_loading_happens_once(tiny_flux: TinyFluxFiles) -> None:
    from diffusers import FluxImg2ImgPipeline

    pipe = FluxImg2ImgPipeline.from_pretrained(tiny_flux.flux_dir, local_files_only=True)
    baseline = _forward(pipe.transformer)
    sha = "ab" * 32
    stats = ensure_lora_loaded(pipe, tiny_flux.lora_kohya, sha)
    assert stats is not None and stats.matched == 16
    assert ensure_lora_loaded(pipe, tiny_flux.lora_kohya, sha) is None  # already loaded
    name = adapter_name_for(sha)
    set_lora_state(pipe.transformer, name, 1.0)
    on = _forward(pipe.transformer)
    set_lora_state(pipe.transformer, name, 0.5)
    half = _forward(pipe.transformer)
    set_lora_state(pipe.transformer, None)
    off = _forward(pipe.transformer)
    assert torch.equal(off, baseline)
    assert not torch.allclose(on, baseline, atol=1e-3)
    assert not torch.allclose(half, on, atol=1e-3)


@pytest.mark.slow
def test_a_lora_matching_nothing_is_refused_with_counts(
    tiny_flux: TinyFluxFiles, tmp_path: Path
) -> None:
    junk = tmp_path / "sdxl_lora.safetensors"
    save_file(
        {
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.ones(4, 320),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.ones(320, 4),
            "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.ones(4, 768),
            "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.ones(3072, 4),
        },
        str(junk),
    )
    cutout = tmp_path / "c.png"
    tiny_cutout(32, 32).save(cutout)
    req = ReconstructionRequest(
        source=make_source(cutout),
        preprocess=Preprocess(size=64),
        stage1=Stage1Params(steps=4),
        stage2=Stage2Params(steps=2),
        variants=1,
        flux=ModelRef(path=str(tiny_flux.flux_dir)),
        controlnet=ModelRef(path=str(tiny_flux.controlnet_dir)),
        lora=LoraParams(model=ModelRef(path=str(junk))),
    )
    with pytest.raises(LoraError, match=r"matches nothing .*0 of 2 layers") as err:
        list(Engine().run(req))
    message = str(err.value)
    assert "sdxl_lora.safetensors" in message and "SDXL" in message
    assert "1 layer FLUX does not have: down_blocks_0_attentions_0_proj_in" in message
    assert "1 text-encoder layer: not loaded" in message


# -- the file's own strength, against diffusers' own loader ---------------------------------


def save_peft_lora(transformer: Any, folder: Path, seed: int = 7) -> Path:
    """A PEFT LoRA with alpha 8 != rank 4 and a per-module alpha, written by diffusers'
    ``save_lora_weights`` with its adapter metadata, as diffusers' trainers write them."""
    import copy

    from diffusers import FluxImg2ImgPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    model = copy.deepcopy(transformer)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        alpha_pattern={"proj_out": 2},  # top-level and single-block proj_out: alpha 2
        target_modules=["to_q", "to_k", "to_v", "to_out.0", "proj_out", "ff.net.2", "proj_mlp"],
        init_lora_weights=False,
    )
    model.add_adapter(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.25)
    FluxImg2ImgPipeline.save_lora_weights(
        folder,
        transformer_lora_layers=get_peft_model_state_dict(model),
        transformer_lora_adapter_metadata=model.peft_config["default"].to_dict(),
        weight_name="peft_alpha8_r4.safetensors",
    )
    return folder / "peft_alpha8_r4.safetensors"


def save_kohya_lora(transformer: Any, path: Path) -> Path:
    """A Kohya LoRA with .alpha tensors (alpha / rank 0.25, 0.5, 0.75 by layer), limited to
    the layers diffusers' own Kohya converter places on a tiny model (it hard-codes FLUX's
    widths for linear1 and leaves img_in / txt_in / final_layer unprefixed)."""
    full = read_lora_file(make_tiny_lora(transformer, path, "kohya", seed=9))
    layers = sorted({k.split(".")[0] for k in full})
    kept = [
        layer
        for layer in layers
        if not any(s in layer for s in ("linear1", "img_in", "txt_in", "final_layer"))
    ]
    tensors: dict[str, torch.Tensor] = {}
    for i, layer in enumerate(kept):
        tensors[f"{layer}.lora_down.weight"] = full[f"{layer}.lora_down.weight"]
        tensors[f"{layer}.lora_up.weight"] = full[f"{layer}.lora_up.weight"]
        tensors[f"{layer}.alpha"] = torch.tensor(float(1 + i % 3))  # rank 4
    save_file(tensors, str(path))
    return path


@pytest.fixture(scope="module")
def diffusers_readable(
    tiny_flux: TinyFluxFiles, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("diffusers_readable")
    transformer = build_tiny_components(0)["transformer"]
    return {
        "peft": save_peft_lora(transformer, folder),
        "kohya": save_kohya_lora(transformer, folder / "kohya_alphas.safetensors"),
    }


@pytest.fixture(scope="module")
def strength_engine() -> Any:
    eng = Engine()
    yield eng
    eng.release()


def _stage1_request(tiny_flux: TinyFluxFiles, cutout: Path, lora: Path, scale: float) -> Any:
    return ReconstructionRequest(
        source=make_source(cutout),
        prompt="a goalkeeper in a green shirt",
        preprocess=Preprocess(size=64, crop_to_content=False),
        stage1=Stage1Params(steps=4, strength=0.75),
        stage2=Stage2Params(enabled=False),
        variants=1,
        seed=3,
        flux=ModelRef(path=str(tiny_flux.flux_dir)),
        controlnet=ModelRef(path=str(tiny_flux.controlnet_dir)),
        lora=LoraParams(model=ModelRef(path=str(lora)), scale=scale, stages=("stage1",), ab=False),
        device="cpu",
        precision="fp32",
    )


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["peft", "kohya"])
def test_lora_strength_is_pixel_identical_to_diffusers_own_loader(
    tiny_flux: TinyFluxFiles,
    diffusers_readable: dict[str, Path],
    strength_engine: Any,
    tmp_path: Path,
    fmt: str,
) -> None:
    from diffusers import FluxImg2ImgPipeline

    from fbupscale_gui.core.images import standardise

    lora = diffusers_readable[fmt]
    cutout = tmp_path / "player.png"
    tiny_cutout(40, 64, seed=3).save(cutout)
    ref: Any = FluxImg2ImgPipeline.from_pretrained(tiny_flux.flux_dir, local_files_only=True)
    ref.set_progress_bar_config(disable=True)
    ref.load_lora_weights(str(lora), adapter_name="ref")  # diffusers reads the file itself
    for scale in (0.5, 0.9, 1.0):
        req = _stage1_request(tiny_flux, cutout, lora, scale)
        (candidate,) = list(strength_engine.run(req))
        assert candidate.key.lora and candidate.key.stage == 1
        square, _ = standardise(tiny_cutout(40, 64, seed=3), req.preprocess)
        call = {
            "prompt": req.prompt,
            "image": square,
            "strength": 0.75,
            "num_inference_steps": 4,
            "guidance_scale": req.stage1.guidance,
            "height": 64,
            "width": 64,
        }
        ref.set_adapters(["ref"], [scale])
        by_weights = ref(**call, generator=torch.Generator("cpu").manual_seed(candidate.seed))
        ref.set_adapters(["ref"], [1.0])
        by_kwargs = ref(
            **call,
            generator=torch.Generator("cpu").manual_seed(candidate.seed),
            joint_attention_kwargs={"scale": scale},
        )
        ours = np.asarray(candidate.image)
        assert np.array_equal(ours, np.asarray(by_weights.images[0])), (fmt, scale)
        assert np.array_equal(ours, np.asarray(by_kwargs.images[0])), (fmt, scale)
    # the scaling the file asks for is what the candidate records
    record = candidate.lora_report
    assert record is not None and record["strength"] == 1.0
    if fmt == "peft":
        assert "lora_alpha 8, r 4" in record["alpha_source"]
        assert record["scaling"]["default"] == 2.0  # alpha 8 / rank 4
        assert record["scaling"]["other"] == {
            "proj_out": 0.5,
            "single_transformer_blocks.0.proj_out": 0.5,
        }
    else:
        assert record["alpha_source"] == "its .alpha tensors"
        assert sorted(
            set(record["scaling"]["other"].values()) | {record["scaling"]["default"]}
        ) == [
            0.25,
            0.5,
            0.75,
        ]


@pytest.mark.slow
def test_header_config_is_read_and_a_wrong_strength_would_show(
    tiny_flux: TinyFluxFiles, diffusers_readable: dict[str, Path]
) -> None:
    """Ignoring the header (the old behaviour: scale 1.0) changes the output."""
    from diffusers import FluxImg2ImgPipeline

    lora = read_lora(diffusers_readable["peft"])
    assert lora.adapter_metadata is not None
    assert (lora.adapter_metadata["lora_alpha"], lora.adapter_metadata["r"]) == (8, 4)
    assert (
        ADAPTER_METADATA_KEY
        == __import__("diffusers.loaders.lora_base", fromlist=["x"]).LORA_ADAPTER_METADATA_KEY
    )
    pipe: Any = FluxImg2ImgPipeline.from_pretrained(tiny_flux.flux_dir, local_files_only=True)
    report = ensure_lora_loaded(pipe, diffusers_readable["peft"], "cd" * 32)
    assert report is not None and not report.partial
    assert report.scaling["transformer_blocks.0.attn.to_q"] == 2.0
    assert "alpha/rank 0.5–2 by layer" in report.summary()
    conv = convert_lora(lora.tensors, pipe.transformer)  # no header: diffusers' convention
    assert conv.alpha_source.startswith("none in the file")


# -- reports of what was loaded and what was left out ----------------------------------------


def _partial_kohya(transformer: Any, path: Path) -> Path:
    """A Kohya file with 14 layers: 12 that fit, a text-encoder layer and a missing block."""
    full = read_lora_file(make_tiny_lora(transformer, path, "kohya", seed=4))
    layers = sorted({k.split(".")[0] for k in full})[:12]
    tensors = {k: v for k, v in full.items() if k.split(".")[0] in layers}
    dim = transformer.inner_dim
    tensors["lora_unet_double_blocks_7_img_attn_proj.lora_down.weight"] = torch.ones(4, dim)
    tensors["lora_unet_double_blocks_7_img_attn_proj.lora_up.weight"] = torch.ones(dim, 4)
    tensors["lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = torch.ones(4, 8)
    tensors["lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"] = torch.ones(8, 4)
    save_file(tensors, str(path))
    return path


@pytest.mark.slow
def test_a_partly_matching_lora_is_reported_by_name(
    tiny_flux: TinyFluxFiles, tmp_path: Path
) -> None:
    from fbupscale_gui.core.job import Progress
    from fbupscale_gui.storage.metadata import read_metadata, save_candidate

    transformer = build_tiny_components(0)["transformer"]
    lora = _partial_kohya(transformer, tmp_path / "partial.safetensors")
    cutout = tmp_path / "player.png"
    tiny_cutout(40, 64).save(cutout)
    req = _stage1_request(tiny_flux, cutout, lora, 0.9)
    events: list[Progress] = []
    engine = Engine()
    candidates = list(engine.run(req, events.append))
    notes = [e.note for e in events if e.note is not None]
    assert len(notes) == 1 and notes[0].level == "warning" and notes[0].topic == "lora"
    text = notes[0].text
    assert "12 of 14 layers applied" in text
    assert "1 layer for a block the model does not have: double_blocks_7_img_attn_proj" in text
    assert "1 text-encoder layer: not loaded" in text
    # a second run loads nothing, so reports nothing, but still records the load
    events.clear()
    again = list(engine.run(req, events.append))
    assert not [e for e in events if e.note is not None]
    engine.release()
    record = again[0].lora_report
    assert record is not None and record == candidates[0].lora_report
    assert (record["matched"], record["unmatched"], record["stages"]) == (12, 2, ["stage1"])
    te = record["left_out"][1]
    assert (te["reason"], te["count"]) == ("text-encoder layers", 1)
    assert record["left_out"][0]["names"] == ["double_blocks_7_img_attn_proj"]
    assert record["scaling"]["default"] == pytest.approx(0.9 * 0.5)  # alpha = rank / 2
    saved = save_candidate(candidates[0], tmp_path / "out.png")
    with Image.open(saved) as im:
        payload = json.loads(im.text["fbupscale"])
    assert payload["lora"]["left_out"][0]["names"] == ["double_blocks_7_img_attn_proj"]
    assert read_metadata(saved).key == candidates[0].key


@pytest.mark.slow
def test_the_cli_reports_the_load_and_an_empty_prompt_once(
    tiny_flux: TinyFluxFiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fbupscale_gui.cli import entry as cli

    transformer = build_tiny_components(0)["transformer"]
    lora = _partial_kohya(transformer, tmp_path / "partial.safetensors")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "b.png"):
        tiny_cutout(40, 64).save(inputs / name)
    code = cli.main(
        [
            "upscale", str(inputs), "-o", str(tmp_path / "out"), "--engine", "flux",
            "--flux", str(tiny_flux.flux_dir), "--controlnet", str(tiny_flux.controlnet_dir),
            "--lora", str(lora), "--size", "64", "--steps1", "4", "--no-stage2",
            "--lora-stages", "stage1", "--no-ab", "--variants", "1", "--device", "cpu", "-q",
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0 and len(out.splitlines()) == 2
    assert err.count("the FLUX prompt is empty") == 1 and "--scene" in err
    assert err.count("LoRA partial.safetensors: 12 of 14 layers applied") == 1  # loaded once
    assert "double_blocks_7_img_attn_proj" in err and "1 text-encoder layer" in err


# -- refused files ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("value", "match"),
    [
        (float("nan"), "NaN or infinite"),
        (float("inf"), "NaN or infinite"),
        (1e6, "values up to 1e"),
    ],
)
def test_nan_inf_and_huge_weights_are_refused(
    tiny_flux: TinyFluxFiles, tmp_path: Path, value: float, match: str
) -> None:
    transformer = build_tiny_components(0)["transformer"]
    path = make_tiny_lora(transformer, tmp_path / "bad.safetensors", "kohya", seed=1)
    tensors = read_lora_file(path)
    key = next(k for k in tensors if k.endswith("lora_up.weight"))
    tensors[key][0, 0] = value
    save_file(tensors, str(path))
    with pytest.raises(LoraError, match=match) as err:
        read_lora(path)
    assert "bad.safetensors" in str(err.value)
    from diffusers import FluxImg2ImgPipeline

    pipe: Any = FluxImg2ImgPipeline.from_pretrained(tiny_flux.flux_dir, local_files_only=True)
    with pytest.raises(LoraError, match=match):
        ensure_lora_loaded(pipe, path, "ef" * 32)
    assert not getattr(pipe.transformer, "peft_config", None)  # nothing stays loaded


def test_a_nan_alpha_or_header_is_refused(tmp_path: Path) -> None:
    transformer = build_tiny_components(0)["transformer"]
    path = make_tiny_lora(transformer, tmp_path / "alpha.safetensors", "kohya", seed=1)
    tensors = read_lora_file(path)
    tensors[next(k for k in tensors if k.endswith(".alpha"))] = torch.tensor(float("nan"))
    save_file(tensors, str(path))
    with pytest.raises(LoraError, match="NaN or infinite"):
        read_lora(path)
    header = tmp_path / "header.safetensors"
    save_file(
        {"transformer.proj_out.lora_A.weight": torch.ones(4, 8)},
        str(header),
        metadata={ADAPTER_METADATA_KEY: '{"transformer.lora_alpha": NaN, "transformer.r": 4}'},
    )
    with pytest.raises(LoraError, match="lora_alpha=nan"):
        convert_lora(read_lora(header).tensors, transformer, read_lora(header).adapter_metadata)
    header.write_bytes(b"")  # and a header that is not JSON at all
    save_file(
        {"transformer.proj_out.lora_A.weight": torch.ones(4, 8)},
        str(header),
        metadata={ADAPTER_METADATA_KEY: "[" * 100_000},
    )
    with pytest.raises(LoraError, match="not valid JSON"):
        read_lora(header)


@pytest.mark.slow
def test_a_candidate_with_nan_pixels_is_refused(tiny_flux: TinyFluxFiles, tmp_path: Path) -> None:
    """A model that overflows into NaN gives an error for the job, not a black candidate."""
    from fbupscale_gui.core.errors import RenderError

    cutout = tmp_path / "player.png"
    tiny_cutout(40, 64).save(cutout)
    req = _stage1_request(tiny_flux, cutout, tiny_flux.lora_kohya, 0.9).replace(
        lora=LoraParams(model=None)
    )
    engine = Engine()
    assert len(list(engine.run(req))) == 1
    pair = engine.flux.pipelines
    assert pair is not None
    with torch.no_grad():
        pair.transformer.proj_out.weight[0, 0] = float("nan")
    with pytest.raises(RenderError, match=r"FLUX stage 1 produced .* NaN"):
        list(engine.run(req))
    engine.release()


def test_require_finite_on_arrays_and_tensors() -> None:
    from fbupscale_gui.core.errors import RenderError
    from fbupscale_gui.engine.finite import require_finite

    require_finite(np.zeros((2, 2)), "x")
    require_finite(torch.zeros(2), "x")
    with pytest.raises(RenderError, match="Real-ESRGAN produced 1 NaN"):
        require_finite(np.array([0.0, np.nan]), "Real-ESRGAN")
    with pytest.raises(RenderError, match="produced 2 NaN or infinite"):
        require_finite(torch.tensor([np.inf, -np.inf, 1.0]), "model")


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ({"r": 10**8, "lora_alpha": 4}, "rank 100000000 but its layers have rank 4"),
        ({"r": 8, "lora_alpha": 8}, "rank 8 for .*whose weights have rank 4"),
        ({"r": 4, "lora_alpha": 4, "alpha_pattern": {"(a+)+$": 2}}, "map of module names"),
        ({"r": 4, "lora_alpha": 4, "use_dora": True}, "DoRA"),
        ({"r": 4, "lora_alpha": "x"}, "finite alpha"),
    ],
)
def test_a_header_that_does_not_fit_its_weights_is_refused(
    transformer: Any, tmp_path: Path, metadata: dict[str, Any], match: str
) -> None:
    """Checked before PEFT allocates anything: a hostile r of 10^8 would exhaust the memory."""
    plain = read_lora_file(make_tiny_lora(transformer, tmp_path / "d.safetensors", rank=4))
    with pytest.raises(LoraError, match=match):
        convert_lora(plain, transformer, metadata)


def test_rank_zero_and_non_scalar_alphas_are_left_out_not_a_crash(transformer: Any) -> None:
    dim = transformer.inner_dim
    sd = {
        "lora_unet_double_blocks_0_img_attn_proj.lora_down.weight": torch.ones(0, dim),
        "lora_unet_double_blocks_0_img_attn_proj.lora_up.weight": torch.ones(dim, 0),
        "lora_unet_double_blocks_0_txt_attn_proj.lora_down.weight": torch.ones(2, dim),
        "lora_unet_double_blocks_0_txt_attn_proj.lora_up.weight": torch.ones(dim, 2),
        "lora_unet_double_blocks_0_txt_attn_proj.alpha": torch.ones(3),
    }
    conv = convert_lora(sd, transformer)
    assert (conv.matched, conv.unmatched) == (0, 2)
    assert [why for why, _ in conv.groups] == ["shape"]


@pytest.mark.slow
def test_peft_save_pretrained_pair_reads_adapter_config_json(
    tiny_flux: TinyFluxFiles,
    diffusers_readable: dict[str, Path],
    strength_engine: Any,
    tmp_path: Path,
) -> None:
    """PEFT's own layout: ``base_model.model.`` keys, the config in adapter_config.json."""
    from safetensors import safe_open

    header_file = diffusers_readable["peft"]
    with safe_open(str(header_file), "pt") as f:
        config = json.loads(f.metadata()[ADAPTER_METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    folder = tmp_path / "peft_adapter"
    folder.mkdir()
    save_file(
        {"base_model.model." + k.removeprefix("transformer."): v for k, v in tensors.items()},
        str(folder / "adapter_model.safetensors"),
    )
    (folder / "adapter_config.json").write_text(
        json.dumps({k.removeprefix("transformer."): v for k, v in config.items()})
    )
    cutout = tmp_path / "player.png"
    tiny_cutout(40, 64, seed=3).save(cutout)
    runs = []
    for lora in (header_file, folder / "adapter_model.safetensors"):
        (candidate,) = strength_engine.run(_stage1_request(tiny_flux, cutout, lora, 0.9))
        runs.append(candidate)
    assert np.array_equal(np.asarray(runs[0].image), np.asarray(runs[1].image))
    record = runs[1].lora_report
    assert record is not None and "adapter_config.json (lora_alpha 8, r 4" in record["alpha_source"]
    # a config beside any other file name is not taken for it
    other = folder / "other.safetensors"
    (folder / "adapter_model.safetensors").rename(other)
    assert read_lora(other).adapter_metadata is None


@pytest.mark.parametrize("damage", ["folder", "binary", "huge"])
def test_an_unreadable_adapter_config_beside_a_peft_file_is_refused(
    damage: str, tmp_path: Path
) -> None:
    """The config sets the strength: one that is there but unreadable is an error, never
    silently replaced by alpha = rank."""
    weights = tmp_path / "adapter_model.safetensors"
    save_file({"transformer.x_embedder.lora_A.weight": torch.zeros(2, 4)}, str(weights))
    config = tmp_path / "adapter_config.json"
    if damage == "folder":
        config.mkdir()
    elif damage == "binary":
        config.write_bytes(b'{"r": 4, "lora_alpha": \xff}')
    else:
        config.write_text(" " * (2 << 20) + "{}")
    with pytest.raises(LoraError, match="config"):
        read_lora(weights)
    config.rename(tmp_path / "elsewhere")  # no config at all: diffusers' convention, no error
    assert read_lora(weights).adapter_metadata is None
