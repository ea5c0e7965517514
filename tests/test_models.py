"""Offline model look-up (explicit path, Hugging Face cache, search dirs) and fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from fbupscale_gui.core.errors import ModelNotFoundError
from fbupscale_gui.core.request import CONTROLNET_REPO_ID, FLUX_REPO_ID, ModelRef
from fbupscale_gui.engine.testing import TinyFluxFiles
from fbupscale_gui.storage import weights as models
from fbupscale_gui.storage.weights import fingerprint, locate

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_flux(folder: Path) -> Path:
    """A folder shaped like a FLUX pipeline (contents are irrelevant to the look-up)."""
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "FluxPipeline",
                "vae": ["diffusers", "AutoencoderKL"],
                "image_encoder": [None, None],
            }
        )
    )
    (folder / "vae").mkdir()
    (folder / "vae" / "config.json").write_text("{}")
    return folder


def fake_hf_cache(hub: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """The Hugging Face cache layout: blobs named by SHA-256, snapshot files linking to them."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir()
    for rel, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        target = snapshot / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(os.path.relpath(blob, target.parent))
    return snapshot


@pytest.mark.slow
def test_explicit_paths_are_used_and_fingerprinted(tiny_flux: TinyFluxFiles) -> None:
    flux = locate(ModelRef(path=str(tiny_flux.flux_dir), repo_id=FLUX_REPO_ID), "flux")
    assert flux.path == tiny_flux.flux_dir and flux.source == "path"
    assert flux.ref.repo_id == FLUX_REPO_ID and len(flux.ref.sha256) == 64
    cn = locate(ModelRef(path=str(tiny_flux.controlnet_dir)), "controlnet")
    assert cn.path == tiny_flux.controlnet_dir
    lora = locate(ModelRef(path=str(tiny_flux.lora_kohya)), "lora")
    assert lora.ref.sha256 == hashlib.sha256(tiny_flux.lora_kohya.read_bytes()).hexdigest()


@pytest.mark.slow
def test_explicit_path_must_exist_and_look_right(tiny_flux: TinyFluxFiles, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist") as err:
        locate(ModelRef(path=str(tmp_path / "nope"), repo_id=FLUX_REPO_ID), "flux")
    assert FLUX_REPO_ID in str(err.value) and str(tmp_path / "nope") in str(err.value)
    # a ControlNet folder is not a FLUX folder
    with pytest.raises(ModelNotFoundError, match=r"model_index\.json"):
        locate(ModelRef(path=str(tiny_flux.controlnet_dir)), "flux")
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        locate(ModelRef(path=str(tiny_flux.flux_dir / "model_index.json")), "lora")


def test_found_in_the_hugging_face_cache_from_hf_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = {"config.json": b"{}", "diffusion_pytorch_model.safetensors": b"weights" * 100}
    snapshot = fake_hf_cache(tmp_path / "home" / "hub", CONTROLNET_REPO_ID, files)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    found = locate(ModelRef(repo_id=CONTROLNET_REPO_ID), "controlnet")
    assert found.source == "hf-cache" and found.path == snapshot
    assert found.ref.path == str(snapshot)
    # the same folder given as hf_cache, either as the hub folder or as HF_HOME
    monkeypatch.delenv("HF_HOME")
    for cache in (tmp_path / "home" / "hub", tmp_path / "home"):
        assert (
            locate(ModelRef(repo_id=CONTROLNET_REPO_ID), "controlnet", hf_cache=cache).path
            == snapshot
        )


def test_cache_blobs_are_not_rehashed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = b"x" * 1000
    snapshot = fake_hf_cache(tmp_path / "hub", "me/lora", {"lora.safetensors": data})
    monkeypatch.setattr(models, "file_sha256", lambda p: pytest.fail(f"hashed {p}"))
    assert fingerprint(snapshot / "lora.safetensors") == hashlib.sha256(data).hexdigest()


def test_search_dirs_and_env_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    flux = fake_flux(tmp_path / "models" / "FLUX.1-dev")
    found = locate(ModelRef(repo_id=FLUX_REPO_ID), "flux", search_dirs=[tmp_path / "models"])
    assert (found.path, found.source) == (flux, "search-dir")
    monkeypatch.setenv("FBUPSCALE_MODEL_DIRS", str(tmp_path / "models"))
    assert locate(ModelRef(repo_id=FLUX_REPO_ID), "flux").path == flux


def test_incomplete_download_is_not_accepted(tmp_path: Path) -> None:
    flux = fake_flux(tmp_path / "FLUX.1-dev")
    (flux / "vae" / "config.json").unlink()
    (flux / "vae").rmdir()
    with pytest.raises(ModelNotFoundError):
        locate(ModelRef(repo_id=FLUX_REPO_ID), "flux", search_dirs=[tmp_path])


def test_not_found_message_names_repo_every_folder_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        locate(
            ModelRef(repo_id=FLUX_REPO_ID),
            "flux",
            search_dirs=[tmp_path / "a"],
            hf_cache=tmp_path / "hub",
        )
    e = err.value
    assert e.repo_id == FLUX_REPO_ID
    assert e.searched == [
        str(tmp_path / "hub" / "models--black-forest-labs--FLUX.1-dev"),
        str(tmp_path / "a" / "FLUX.1-dev"),
        str(tmp_path / "a" / FLUX_REPO_ID),
    ]
    message = str(e)
    assert "\n" not in message
    assert f"hf download {FLUX_REPO_ID} --local-dir" in message and "--flux PATH" in message


def test_folder_fingerprint_tracks_content(tmp_path: Path) -> None:
    folder = fake_flux(tmp_path / "m")
    first = fingerprint(folder)
    assert fingerprint(folder) == first
    (folder / ".cache").mkdir()
    (folder / ".cache" / "junk").write_text("tool state")
    assert fingerprint(folder) == first  # tool folders do not count
    (folder / "vae" / "config.json").write_text('{"changed": true}')
    assert fingerprint(folder) != first


def test_large_files_are_hashed_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    big = tmp_path / "big.safetensors"
    big.write_bytes(b"\1" * models.FINGERPRINT_CACHE_MIN_BYTES)
    digest = fingerprint(big)
    assert digest == hashlib.sha256(big.read_bytes()).hexdigest()
    monkeypatch.setattr(models, "file_sha256", lambda p: pytest.fail("hashed again"))
    assert fingerprint(big) == digest  # from fingerprints.json
    monkeypatch.undo()
    with big.open("r+b") as f:
        f.write(b"\2")
    os.utime(big, ns=(big.stat().st_atime_ns, big.stat().st_mtime_ns + 10**9))
    assert fingerprint(big) != digest


def test_local_dir_download_metadata_gives_the_hash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "FLUX.1-dev"
    (folder / "transformer").mkdir(parents=True)
    weights = folder / "transformer" / "model.safetensors"
    weights.write_bytes(b"\3" * models.FINGERPRINT_CACHE_MIN_BYTES)
    meta = (
        folder
        / ".cache"
        / "huggingface"
        / "download"
        / "transformer"
        / "model.safetensors.metadata"
    )
    meta.parent.mkdir(parents=True)
    etag = hashlib.sha256(weights.read_bytes()).hexdigest()
    meta.write_text(f"{COMMIT}\n{etag}\n{weights.stat().st_mtime + 5}\n")
    monkeypatch.setattr(models, "file_sha256", lambda p: pytest.fail("hashed"))
    expected = hashlib.sha256(f"transformer/model.safetensors\0{etag}\n".encode()).hexdigest()
    assert fingerprint(folder) == expected
