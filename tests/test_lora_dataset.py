"""The football LoRA dataset builder: caption rules, augmentations, Kohya export (paper 3.3)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import tomllib
from PIL import Image

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.lora_dataset import (
    AugmentOptions,
    Box,
    ModelFiles,
    TrainSettings,
    check_caption,
    dataset_toml,
    plan_augmentations,
    sd_scripts_command,
)
from fbupscale_gui.core.scene import Kit, Person, Scene, Team
from fbupscale_gui.storage.lora_dataset_files import build_dataset, read_frames, read_metadata

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"

#: Code 5 of the paper, verbatim.
CODE5 = """
[[datasets]]
resolution = [1024, 1024]
enable_bucket = true
max_bucket_reso = 1024

[[datasets.subsets]]
image_dir = '/workspace/imgs'
metadata_file = '/workspace/captions_kohya.json'
flip_aug = true
num_repeats = 1
shuffle_caption = false
"""

#: Code 6's arguments (flags), in order.
CODE6_FLAGS = [
    "--pretrained_model_name_or_path",
    "--clip_l",
    "--t5xxl",
    "--ae",
    "--dataset_config",
    "--output_dir",
    "--output_name",
    "--save_model_as",
    "--sdpa",
    "--highvram",
    "--gradient_checkpointing",
    "--persistent_data_loader_workers",
    "--max_data_loader_n_workers",
    "--mixed_precision",
    "--save_precision",
    "--learning_rate",
    "--max_train_epochs",
    "--train_batch_size",
    "--gradient_accumulation_steps",
    "--network_train_unet_only",
    "--network_dim",
    "--network_alpha",
    "--network_module",
    "--cache_latents_to_disk",
    "--cache_text_encoder_outputs_to_disk",
    "--optimizer_type",
    "--timestep_sampling",
    "--discrete_flow_shift",
    "--save_every_n_epochs",
    "--model_prediction_type",
    "--seed",
    "--guidance_scale",
    "--log_with",
    "--logging_dir",
]

RED = Kit(jersey="red and black", pattern="striped", shorts="white")
BLUE = Kit(jersey="black and blue", pattern="striped", shorts="black")


def _scene(number_visible: bool = True, away_name: str = "") -> Scene:
    return Scene(
        people=(
            Person(
                role="player", team=0, number=11, number_visible=number_visible, action="shooting"
            ),
            Person(role="goalkeeper", team=1, hair="short hair", skin="light skin tone"),
        ),
        teams=(
            Team(name="A.C. Milan", kit_type="home", kit=RED),
            Team(name=away_name, kit_type="away", kit=BLUE),
        ),
        action="A player is attempting to score",
        stadium="half full",
    )


# -- rules ----------------------------------------------------------------------------------


def test_rules_flag_a_number_not_marked_visible() -> None:
    scene = _scene(number_visible=False)
    assert "11" not in scene.to_prompt()
    caption = (
        "A player from A.C. Milan, in a red and black striped jersey with white shorts, "
        "marked with the number 11, is attempting to score."
    )
    issues = check_caption(caption, scene)
    assert [i.rule for i in issues] == ["number-visible"]
    assert "11" in issues[0].message and issues[0].severity == "error"
    # the same caption is fine once the scene marks the number visible
    assert check_caption(caption, _scene(number_visible=True)) == []
    # without a scene nothing marks a number visible
    assert [i.rule for i in check_caption(caption)] == ["number-visible"]


def test_the_scene_prompt_writer_follows_the_rules() -> None:
    for path in sorted(SAMPLES.glob("*.scene.json")):
        scene = Scene.from_json(path.read_bytes())
        assert check_caption(scene.to_prompt(), scene) == [], path.name
    assert check_caption(_scene().to_prompt(), _scene()) == []


def test_rules_people_first_neutral_words_and_home_kit_names() -> None:
    issues = check_caption("The stadium is full. A player is running.")
    assert [i.rule for i in issues] == ["people-first"]
    loaded = check_caption("A Caucasian player with messy hair is running.")
    assert {i.rule for i in loaded} == {"neutral-words"}
    assert any("caucasian" in i.message for i in loaded)
    skin = check_caption("A player with pale skin is running.")
    assert [(i.rule, i.severity) for i in skin] == [("neutral-words", "warning")]
    assert check_caption("A player with dark skin tone and curly hair is running.") == []
    scene = _scene(away_name="Inter Milan")
    named = check_caption("Two players are visible. A goalkeeper from Inter Milan dives.", scene)
    assert [i.rule for i in named] == ["home-kit-name"]
    assert check_caption("", scene)[0].rule == "empty"
    nobody = Scene(stadium="full", background=("spectators out of focus",))
    assert [i.rule for i in check_caption(nobody.to_prompt(), nobody)] == ["people-first"]


# -- augmentations --------------------------------------------------------------------------


def test_crops_keep_every_person_and_need_boxes() -> None:
    size = (1920, 1080)
    boxes = [Box(800, 300, 120, 400), Box(1100, 350, 100, 380)]
    plan = plan_augmentations("f", size, boxes, AugmentOptions(crops=6, jitters=2))
    crops = [a for a in plan if a.kind == "crop"]
    assert len(crops) == 6 and len([a for a in plan if a.kind == "jitter"]) == 2
    for a in crops:
        assert a.crop is not None
        left, top, right, bottom = a.crop
        assert left >= 0 and top >= 0 and right <= 1920 and bottom <= 1080
        assert left <= 800 and top <= 300 and right >= 1200 and bottom >= 730
        assert (right - left) / (bottom - top) == pytest.approx(1920 / 1080, rel=0.01)
    assert [a.kind for a in plan_augmentations("f", size, [], AugmentOptions())] == ["jitter"]
    # deterministic per frame name, different between frames
    assert plan == plan_augmentations("f", size, boxes, AugmentOptions(crops=6, jitters=2))
    assert plan != plan_augmentations("g", size, boxes, AugmentOptions(crops=6, jitters=2))
    assert AugmentOptions().flip is False
    with pytest.raises(RequestError):
        AugmentOptions(crops=-1)


# -- export ---------------------------------------------------------------------------------


def _frames(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("duel", "striker", "gk_save", "box")):
        Image.new("RGB", (320, 180), (30 + 40 * i, 120, 60)).save(folder / f"{name}.png")
        shutil.copy(SAMPLES / f"{name}.scene.json", folder / f"{name}.scene.json")
    (folder / "duel.boxes.json").write_text("[[100, 40, 40, 100], [170, 50, 40, 100]]")
    # a hand-written caption that writes a number nobody marked visible: left out
    Image.new("RGB", (320, 180), (200, 200, 200)).save(folder / "bad.jpg")
    (folder / "bad.txt").write_text("A player with the number 7 is running.")
    # a frame with nothing to caption it
    Image.new("RGB", (320, 180)).save(folder / "bare.png")
    return folder


def test_build_writes_code4_json_code5_toml_code6_command_and_txt(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "frames")
    out = tmp_path / "out"
    models = ModelFiles(flux="/m/flux1-dev.safetensors", clip_l="/m/clip_l.safetensors")
    report = build_dataset(frames, out, models=models, holdout=1)

    assert set(report.excluded) == {"bad.jpg", "bare.png"}
    assert "number 7" in report.excluded["bad.jpg"][0]
    assert len(report.held_out) == 1 and report.training_frames == 3
    # Code 4: one object, image path -> {"caption": ...}, nothing else
    text = (out / "captions_kohya.json").read_text()
    data = json.loads(text)
    assert text.startswith('{\n  "')
    assert len(data) == report.images == 3 + 2 + 3  # frames, duel's 2 crops, 3 jitters
    for key, value in data.items():
        assert Path(key).is_absolute() and Path(key).parent == out / "imgs"
        assert list(value) == ["caption"] and value["caption"]
        assert Path(key).is_file()
        assert (out / "imgs" / f"{Path(key).stem}.txt").read_text() == value["caption"]
    assert report.augmentations["crop"] == 2 and report.augmentations["jitter"] == 3
    assert report.augmentations["flip"] == 0
    assert not (out / "imgs" / report.held_out[0]).exists()
    assert (out / "holdout" / report.held_out[0]).is_file()

    # Code 5: the same tables and keys, with the same value types
    ours, paper = tomllib.loads((out / "dataset.toml").read_text()), tomllib.loads(CODE5)
    for table in ("datasets",):
        assert len(ours[table]) == 1
        for key, value in paper[table][0].items():
            if key == "subsets":
                continue
            assert type(ours[table][0][key]) is type(value), key
        sub_ours, sub_paper = ours[table][0]["subsets"][0], paper[table][0]["subsets"][0]
        assert set(sub_paper) <= set(sub_ours)
        for key, value in sub_paper.items():
            assert type(sub_ours[key]) is type(value), key
    d = ours["datasets"][0]
    assert d["resolution"] == [1024, 1024] and d["batch_size"] == 4
    assert d["min_bucket_reso"] == 256 and d["max_bucket_reso"] == 1024
    assert d["subsets"][0]["image_dir"] == str(out / "imgs")
    assert d["subsets"][0]["metadata_file"] == str(out / "captions_kohya.json")
    assert d["subsets"][0]["num_repeats"] == 5 and d["subsets"][0]["flip_aug"] is False

    # Code 6: every argument, in order, with the user's model files
    command = (out / "train_command.sh").read_text()
    assert "accelerate launch flux_train_network.py" in command
    flags = re.findall(r"(--[a-z_0-9]+)", command)
    assert flags == CODE6_FLAGS
    assert "--pretrained_model_name_or_path /m/flux1-dev.safetensors" in command
    assert "--clip_l /m/clip_l.safetensors" in command
    assert f"--dataset_config {out / 'dataset.toml'}" in command
    for expected in (
        "--network_dim 8",
        "--network_alpha 8",
        "--learning_rate 0.0001",
        "--optimizer_type adamw8bit",
        "--discrete_flow_shift 3.1582",
        "--timestep_sampling shift",
        "--guidance_scale 1.0",
    ):
        assert expected in command

    # the report counts actions and teams; the trainer reads the pairs back
    saved = json.loads((out / "dataset_report.json").read_text())
    assert saved["counts"]["teams"] and saved["counts"]["actions"]
    pairs = read_metadata(out)
    assert len(pairs) == report.images and all(p.is_file() for p, _ in pairs)


def test_rebuild_and_remote_root(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "frames")
    out = tmp_path / "out"
    build_dataset(frames, out, augment=AugmentOptions(crops=0, jitters=2))
    assert (out / "imgs" / "duel_jitter2.png").is_file()
    report = build_dataset(
        frames, out, augment=AugmentOptions(crops=0, jitters=0), remote_root="/workspace"
    )
    assert not (out / "imgs" / "duel_jitter2.png").exists()  # stale augmentations removed
    assert sorted(p.name for p in (out / "imgs").glob("*.png")) == [
        "box.png",
        "duel.png",
        "gk_save.png",
        "striker.png",
    ]
    keys = list(json.loads((out / "captions_kohya.json").read_text()))
    assert all(k.startswith("/workspace/imgs/") for k in keys)
    assert 'image_dir = "/workspace/imgs"' in (out / "dataset.toml").read_text()
    # the trainer still finds the images here, by name
    assert len(read_metadata(out)) == report.images == 4
    with pytest.raises(RequestError, match="must not be the folder"):
        build_dataset(frames, frames)


def test_broken_sidecars_are_reported_not_fatal(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "a.png")
    (folder / "a.scene.json").write_text("{not json")
    Image.new("RGB", (64, 48)).save(folder / "b.png")
    shutil.copy(SAMPLES / "duel.scene.json", folder / "b.scene.json")
    (folder / "b.boxes.json").write_text("[[0, 0, 500, 10]]")
    (folder / "c.png").write_bytes(b"not a png")
    frames = {f.path.name: f for f in read_frames(folder)}
    assert "a.scene.json" not in frames
    assert frames["a.png"].error and frames["b.png"].error and frames["c.png"].error
    assert "inside" in frames["b.png"].error
    with pytest.raises(RequestError, match="no usable frame"):
        build_dataset(folder, tmp_path / "out")


def test_cli_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fbupscale_gui.cli import main

    frames = _frames(tmp_path / "frames")
    code = main(
        [
            "lora",
            "dataset",
            str(frames),
            "-o",
            str(tmp_path / "out"),
            "--crops",
            "0",
            "--ae",
            "/m/ae.safetensors",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "left out bad.jpg" in captured.err and "number 7" in captured.err
    assert "4 training frames" in captured.out and "flips off" in captured.out
    assert "--ae /m/ae.safetensors" in (tmp_path / "out" / "train_command.sh").read_text()
    assert main(["lora", "dataset", str(tmp_path / "nope"), "-o", str(tmp_path / "o2")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_settings_refuse_alpha_above_rank() -> None:
    with pytest.raises(RequestError, match="alpha"):
        TrainSettings(rank=8, alpha=16)
    toml = dataset_toml("/x/imgs", "/x/c.json", TrainSettings(), flip_aug=True)
    assert tomllib.loads(toml)["datasets"][0]["subsets"][0]["flip_aug"] is True
    cmd = sd_scripts_command(
        ModelFiles(), "/x/d.toml", "/x/o", "n", TrainSettings(rank=16, alpha=8)
    )
    assert "--network_dim 16" in cmd and "--network_alpha 8" in cmd


def test_apply_shared_copies_teams_kits_and_stadium() -> None:
    from fbupscale_gui.core.lora_dataset import apply_shared

    source = _scene(away_name="Inter Milan")
    lone = Scene(people=(Person(role="player", team=None), Person(role="referee")))
    three = Scene(
        people=(Person(role="player", team=2),),
        teams=(*source.teams, Team(name="X", kit_type="third", kit=RED)),
    )
    for target in (None, lone, three):
        out = apply_shared(target, source)
        assert out.teams == source.teams and out.stadium == "half full"
        assert all(p.team is None or p.team < 2 for p in out.people)
    assert apply_shared(three, source).people[0].team is None
    assert apply_shared(lone, source, stadium=False).stadium == ""


def test_command_model_files_found_in_a_comfyui_models_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fbupscale_gui.cli import main
    from fbupscale_gui.storage.lora_dataset_files import find_model_files

    models = tmp_path / "models"
    for rel in (
        "diffusion_models/flux1-dev-fp8.safetensors",
        "text_encoders/clip_l.safetensors",
        "text_encoders/t5xxl_fp8_e4m3fn.safetensors",
        "text_encoders/t5xxl_fp16.safetensors",
    ):
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        (models / rel).write_bytes(b"x")
    found, missing = find_model_files(models)
    assert found.flux.endswith("diffusion_models/flux1-dev-fp8.safetensors")
    assert found.t5xxl.endswith("t5xxl_fp16.safetensors")  # fp16 preferred, as in the paper
    assert found.ae == "/path/to/ae.safetensors" and len(missing) == 1 and "ae" in missing[0]

    frames = _frames(tmp_path / "frames")
    out = tmp_path / "out"
    args = ["lora", "dataset", str(frames), "-o", str(out), "--models-dir", str(models)]
    assert main([*args, "--ae", "/mine/ae.safetensors"]) == 0
    command = (out / "train_command.sh").read_text()
    assert f"--clip_l {models / 'text_encoders' / 'clip_l.safetensors'}" in command
    assert "--ae /mine/ae.safetensors" in command  # an explicit file wins
    assert "note: ae:" in capsys.readouterr().err
