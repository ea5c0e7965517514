"""LoRA reading, width-agnostic conversion, matching counts, and bit-exact on/off switching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from fbupscale_gui.core.errors import LoraError
from fbupscale_gui.core.images import make_source
from fbupscale_gui.core.request import (
    LoraParams,
    ModelRef,
    Preprocess,
    ReconstructionRequest,
    Stage1Params,
    Stage2Params,
)
from fbupscale_gui.engine import Engine
from fbupscale_gui.engine.lora import (
    adapter_name_for,
    bfl_targets,
    convert_lora,
    ensure_lora_loaded,
    read_lora_file,
    set_lora_state,
)
from fbupscale_gui.engine.testing import (
    TinyFluxFiles,
    build_tiny_components,
    make_tiny_lora,
    tiny_cutout,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def transformer() -> Any:
    return build_tiny_components(0)["transformer"]


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
    with pytest.raises(LoraError, match=r"0 matched, 2 unmatched") as err:
        list(Engine().run(req))
    assert "sdxl_lora.safetensors" in str(err.value)
