"""Candidate files carry their request, cutout and AI label; the cutout store."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from fbupscale_gui.core.errors import InputImageError, RequestError
from fbupscale_gui.core.images import image_sha256
from fbupscale_gui.core.job import Candidate
from fbupscale_gui.core.request import (
    CandidateKey,
    LoraParams,
    ModelRef,
    Preprocess,
    ReconstructionRequest,
)
from fbupscale_gui.storage import atomic, metadata
from fbupscale_gui.storage.cutouts import load_source, make_source
from fbupscale_gui.storage.metadata import (
    DIGITAL_SOURCE_ENHANCED,
    DIGITAL_SOURCE_TRAINED,
    XMP_NS,
    read_metadata,
    save_candidate,
)
from fbupscale_gui.storage.store import cache_dir, cutout_dir, store_cutout

IPTC = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"


def gradient(width: int, height: int) -> Image.Image:
    img = Image.new("RGB", (width, height))
    img.putdata(
        [((x * 7) % 256, (y * 5) % 256, (x * y) % 256) for y in range(height) for x in range(width)]
    )
    return img


@pytest.fixture
def cutout(tmp_path: Path) -> tuple[Path, Image.Image]:
    path = tmp_path / "cut.png"
    image = gradient(36, 60)
    image.save(path)
    return path, image


def make_candidate(
    source_path: Path, image: Image.Image, *, engine: str = "flux", prompt: str = "two players"
) -> Candidate:
    request = ReconstructionRequest(
        engine=engine,  # type: ignore[arg-type]
        prompt=prompt,
        source=make_source(source_path, image),
        preprocess=Preprocess(size=256),
        lora=LoraParams(model=ModelRef(path="/models/football.safetensors", sha256="ab" * 32)),
        variants=2,
        seed=42,
    )
    return Candidate(
        key=CandidateKey(variant=1, lora=True, stage=2),
        seed=43,
        image=gradient(154, 256),
        request=request,
        timings={"stage1": 1.5, "stage2": 2.25},
        runtime="cuda:0 bf16 model-offload",
    )


def xmp_source_type(xmp: str | bytes) -> str:
    text = xmp.decode("utf-8") if isinstance(xmp, bytes) else xmp
    body = text[text.index("<x:xmpmeta") : text.index("</x:xmpmeta>") + len("</x:xmpmeta>")]
    root = ET.fromstring(body)
    for element in root.iter():
        value = element.get(f"{{{IPTC}}}DigitalSourceType")
        if value:
            return value
    raise AssertionError("no DigitalSourceType in the XMP packet")


# -- PNG ------------------------------------------------------------------------------------


def test_png_round_trip(tmp_path: Path, cutout: tuple[Path, Image.Image]) -> None:
    src, image = cutout
    cand = make_candidate(src, image, prompt="Zwei Spieler – «Ball» ⚽")
    out = save_candidate(cand, tmp_path / "out" / "c.png", cutout=image)
    assert out == tmp_path / "out" / "c.png"
    record = read_metadata(out)
    assert record.request == cand.request
    assert record.key == cand.key
    assert record.seed == 43
    assert record.runtime == cand.runtime
    assert dict(record.timings) == {"stage1": 1.5, "stage2": 2.25}
    assert record.cutout is not None and image_sha256(record.cutout) == image_sha256(image)
    assert record.app_version
    with Image.open(out) as saved:
        assert saved.size == (154, 256)
        assert image_sha256(saved.convert("RGB")) == image_sha256(cand.image)


def test_png_chunks_say_what_the_image_is(tmp_path: Path, cutout: tuple[Path, Image.Image]) -> None:
    src, image = cutout
    out = save_candidate(make_candidate(src, image), tmp_path / "c.png", cutout=image)
    with Image.open(out) as saved:
        text = dict(saved.text)  # type: ignore[attr-defined]
    payload = json.loads(text["fbupscale"])
    assert set(payload) == {"request", "key", "seed", "runtime", "timings", "app_version", "run"}
    assert payload["key"] == {"variant": 1, "lora": True, "stage": 2}
    assert payload["seed"] == 43
    assert payload["request"]["lora"]["model"]["path"] == "/models/football.safetensors"
    assert text["Description"] == (
        "AI-reconstructed by fbupscale from a 36x60 broadcast cutout; "
        "details are generated, not camera pixels"
    )
    assert text["Software"].startswith("fbupscale ")
    assert xmp_source_type(text["XML:com.adobe.xmp"]) == DIGITAL_SOURCE_TRAINED
    assert "AI-reconstructed" in text["XML:com.adobe.xmp"]
    assert "fbupscale-cutout" in text


def test_lanczos_is_not_labelled_ai(tmp_path: Path, cutout: tuple[Path, Image.Image]) -> None:
    src, image = cutout
    out = save_candidate(make_candidate(src, image, engine="lanczos"), tmp_path / "c.png")
    with Image.open(out) as saved:
        text = dict(saved.text)  # type: ignore[attr-defined]
    assert "AI-reconstructed" not in text["Description"]
    assert xmp_source_type(text["XML:com.adobe.xmp"]) == DIGITAL_SOURCE_ENHANCED
    assert "fbupscale-cutout" not in text
    assert read_metadata(out).cutout is None


def test_provenance_round_trip_and_xmp_figures(
    tmp_path: Path, cutout: tuple[Path, Image.Image]
) -> None:
    prov = {
        "seed": 43,
        "lr_consistency_db": 31.25,
        "badge": {"applied": True, "text": "AI-reconstructed"},
        "models": {"flux": {"ref": "/m/flux", "sha256": "cd" * 32}},
        "pixels_sha256": "ef" * 32,
    }
    out = save_candidate(make_candidate(*cutout), tmp_path / "c.png", provenance=prov)
    assert dict(read_metadata(out).provenance) == prov
    with Image.open(out) as saved:
        xmp = dict(saved.text)["XML:com.adobe.xmp"]  # type: ignore[attr-defined]
    root = ET.fromstring(xmp[xmp.index("<x:xmpmeta") : xmp.index("</x:xmpmeta>") + 12])
    desc = next(e for e in root.iter() if e.get(f"{{{IPTC}}}DigitalSourceType"))
    own = {k.split("}")[1]: v for k, v in desc.attrib.items() if k.startswith(f"{{{XMP_NS}}}")}
    assert own["Seed"] == "43" and own["LRConsistencyDB"] == "31.250"
    assert own["VisibleBadge"] == "True" and "cd" * 32 in own["ModelHashes"]
    assert (
        read_metadata(save_candidate(make_candidate(*cutout), tmp_path / "p.png")).provenance == {}
    )


# -- JPEG -----------------------------------------------------------------------------------


def test_jpeg_round_trip(tmp_path: Path, cutout: tuple[Path, Image.Image]) -> None:
    src, image = cutout
    cand = make_candidate(src, image)
    out = save_candidate(cand, tmp_path / "c.jpg", cutout=image, fmt="jpeg", quality=90)
    with Image.open(out) as saved:
        assert saved.format == "JPEG"
        comment = saved.info["comment"].decode("utf-8")
        xmp = saved.info["xmp"]
    assert comment.startswith("AI-reconstructed by fbupscale from a 36x60 broadcast cutout")
    assert xmp_source_type(xmp) == DIGITAL_SOURCE_TRAINED
    record = read_metadata(out)
    assert record.request == cand.request and record.key == cand.key and record.seed == 43
    assert record.cutout is not None and image_sha256(record.cutout) == image_sha256(image)


def test_bad_format_and_quality_are_refused(
    tmp_path: Path, cutout: tuple[Path, Image.Image]
) -> None:
    cand = make_candidate(*cutout)
    with pytest.raises(RequestError, match="format"):
        save_candidate(cand, tmp_path / "c.webp", fmt="webp")  # type: ignore[arg-type]
    with pytest.raises(RequestError, match="quality"):
        save_candidate(cand, tmp_path / "c.jpg", fmt="jpeg", quality=0)


# -- atomic writes --------------------------------------------------------------------------


def test_failed_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, cutout: tuple[Path, Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "c.png"
    target.write_bytes(b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space") as info:
        save_candidate(make_candidate(*cutout), target)
    # the message names the file and how much of it had been written
    assert info.value.filename == str(target)
    assert re.search(r"after \d+ bytes had been written", str(info.value.strerror))
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "cut.png"]


def test_replacing_leaves_no_temp_files(tmp_path: Path, cutout: tuple[Path, Image.Image]) -> None:
    cand = make_candidate(*cutout)
    save_candidate(cand, tmp_path / "c.png")
    save_candidate(cand, tmp_path / "c.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "cut.png"]


# -- broken and foreign files ---------------------------------------------------------------


def test_plain_png_has_no_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    gradient(8, 8).save(path)
    with pytest.raises(RequestError, match=r"plain\.png: no fbupscale metadata"):
        read_metadata(path)


def _png_with(path: Path, **chunks: str) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key.replace("_", "-"), value)
    gradient(8, 8).save(path, pnginfo=info)
    return path


def test_broken_json_names_the_file(tmp_path: Path) -> None:
    path = _png_with(tmp_path / "broken.png", fbupscale="{not json")
    with pytest.raises(RequestError, match=r"broken\.png: .*not valid JSON"):
        read_metadata(path)


def test_broken_request_names_the_file_and_field(
    tmp_path: Path, cutout: tuple[Path, Image.Image]
) -> None:
    payload = metadata._payload(make_candidate(*cutout))
    payload["request"]["variants"] = 99
    path = _png_with(tmp_path / "bad.png", fbupscale=json.dumps(payload))
    with pytest.raises(RequestError, match=r"bad\.png: broken fbupscale metadata: variants"):
        read_metadata(path)


def test_newer_schema_is_refused(tmp_path: Path, cutout: tuple[Path, Image.Image]) -> None:
    payload = metadata._payload(make_candidate(*cutout))
    payload["request"]["version"] = 99
    path = _png_with(tmp_path / "new.png", fbupscale=json.dumps(payload))
    with pytest.raises(RequestError, match="newer fbupscale"):
        read_metadata(path)


def test_damaged_embedded_cutout(tmp_path: Path, cutout: tuple[Path, Image.Image]) -> None:
    payload = metadata._payload(make_candidate(*cutout))
    path = _png_with(tmp_path / "d.png", fbupscale=json.dumps(payload), fbupscale_cutout="AAAA")
    with pytest.raises(InputImageError, match=r"d\.png: the embedded cutout is damaged"):
        read_metadata(path)


def test_missing_and_non_image_files(tmp_path: Path) -> None:
    with pytest.raises(InputImageError, match=r"nope\.png: no such file"):
        read_metadata(tmp_path / "nope.png")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(InputImageError, match=r"notes\.png: not an image"):
        read_metadata(text)


# -- the cutout store -----------------------------------------------------------------------


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert cutout_dir() == tmp_path / "c" / "cutouts"
    monkeypatch.delenv("FBUPSCALE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name == "posix" and not str(cache_dir()).startswith(str(Path.home() / "Library")):
        assert cache_dir() == tmp_path / "xdg" / "fbupscale"


def test_store_cutout_is_content_addressed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(tmp_path / "cache"))
    image = gradient(20, 30)
    ref = store_cutout(image, "pasted.png")
    assert Path(ref.path) == tmp_path / "cache" / "cutouts" / f"{image_sha256(image)}.png"
    assert (ref.sha256, ref.width, ref.height, ref.name) == (
        image_sha256(image),
        20,
        30,
        "pasted.png",
    )
    assert image_sha256(load_source(ref)) == ref.sha256  # usable as a request source
    again = store_cutout(image.convert("RGBA").convert("RGB"), "other.png")
    assert again.path == ref.path and again.name == "other.png"
    assert [p.name for p in (tmp_path / "cache" / "cutouts").iterdir()] == [Path(ref.path).name]


def test_store_rewrites_a_damaged_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(tmp_path))
    image = gradient(10, 10)
    ref = store_cutout(image)
    Path(ref.path).write_bytes(b"garbage")
    ref2 = store_cutout(image)
    assert image_sha256(load_source(ref2)) == ref.sha256


def test_store_failure_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FBUPSCALE_CACHE_DIR", str(blocker))
    with pytest.raises(InputImageError, match="cannot store the cutout"):
        store_cutout(gradient(4, 4))
