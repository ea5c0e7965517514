"""Every export says what it is: the IPTC/XMP DigitalSourceType, the AI statement, the request,
model hashes, seed and LR-consistency survive a write/read round-trip in PNG and JPEG; the
visible badge is drawn only when enabled, and recorded either way."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fbupscale_gui.core.export import ExportItem
from fbupscale_gui.core.images import image_sha256
from fbupscale_gui.core.job import Candidate
from fbupscale_gui.core.request import (
    CandidateKey,
    LoraParams,
    ModelRef,
    ReconstructionRequest,
)
from fbupscale_gui.storage.cutouts import make_source
from fbupscale_gui.storage.export import export_candidates
from fbupscale_gui.storage.metadata import (
    DIGITAL_SOURCE_ENHANCED,
    DIGITAL_SOURCE_TRAINED,
    XMP_NS,
    read_metadata,
)
from fbupscale_gui.storage.provenance import BADGE_AI, draw_badge

IPTC = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
FLUX_SHA = "f1" * 32
CN_SHA = "c2" * 32
LORA_SHA = "1a" * 32


def make_item(tmp_path: Path, engine: str = "flux", score: float | None = 28.25) -> ExportItem:
    src = tmp_path / "cutout.png"
    cutout = Image.new("RGB", (48, 64), (10, 90, 30))
    cutout.save(src)
    request = ReconstructionRequest(
        engine=engine,  # type: ignore[arg-type]
        source=make_source(src),
        prompt="a keeper in green",
        seed=5,
        flux=ModelRef(path="/models/FLUX.1-dev", sha256=FLUX_SHA),
        controlnet=ModelRef(path="/models/cn", sha256=CN_SHA),
        lora=LoraParams(model=ModelRef(path="/models/football.safetensors", sha256=LORA_SHA)),
    )
    grad = np.linspace(0, 255, 768 * 1024 * 3).reshape(1024, 768, 3).astype(np.uint8)
    candidate = Candidate(
        key=CandidateKey(1, True, 2),
        seed=6,
        image=Image.fromarray(grad, "RGB"),
        request=request,
        runtime="cpu fp32",
    )
    return ExportItem(candidate, "keeper.png", cutout, score)


def xmp_of(path: Path) -> ET.Element:
    with Image.open(path) as im:
        raw = im.info.get("xmp") if im.format == "JPEG" else im.text["XML:com.adobe.xmp"]  # type: ignore[attr-defined]
    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    body = text[text.index("<x:xmpmeta") : text.index("</x:xmpmeta>") + len("</x:xmpmeta>")]
    root = ET.fromstring(body)
    (desc,) = [e for e in root.iter() if e.get(f"{{{IPTC}}}DigitalSourceType")]
    return desc


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_provenance_round_trips(tmp_path: Path, fmt: str) -> None:
    item = make_item(tmp_path)
    (path,) = export_candidates([item], tmp_path / "out", "{cutout}.png", match="m", fmt=fmt)  # type: ignore[arg-type]
    assert path.suffix == (".png" if fmt == "png" else ".jpg")

    desc = xmp_of(path)  # IPTC DigitalSourceType in XMP, readable by any XMP tool
    assert desc.get(f"{{{IPTC}}}DigitalSourceType") == DIGITAL_SOURCE_TRAINED
    assert desc.get(f"{{{XMP_NS}}}LRConsistencyDB") == "28.250"
    assert desc.get(f"{{{XMP_NS}}}Seed") == "6"
    assert desc.get(f"{{{XMP_NS}}}VisibleBadge") == "False"
    hashes = desc.get(f"{{{XMP_NS}}}ModelHashes") or ""
    assert f"flux={FLUX_SHA}" in hashes and f"lora={LORA_SHA}" in hashes
    statement = "".join(desc.itertext())
    assert "AI-reconstructed" in statement and "not camera pixels" in statement

    record = read_metadata(path)  # the request and the export's provenance
    assert record.request.prompt == "a keeper in green" and record.seed == 6
    assert record.key == CandidateKey(1, True, 2)
    prov = record.provenance
    assert prov["ai_reconstructed"] is True
    assert prov["digital_source_type"] == DIGITAL_SOURCE_TRAINED
    assert prov["seed"] == 6 and prov["lr_consistency_db"] == 28.25
    assert prov["models"] == {
        "flux": {"ref": "/models/FLUX.1-dev", "sha256": FLUX_SHA},
        "controlnet": {"ref": "/models/cn", "sha256": CN_SHA},
        "lora": {"ref": "/models/football.safetensors", "sha256": LORA_SHA},
    }
    assert prov["badge"] == {"applied": False, "text": ""}
    if fmt == "png":  # lossless: the recorded hash is the file's pixels
        with Image.open(path) as im:
            assert image_sha256(im.convert("RGB")) == prov["pixels_sha256"]


def test_fast_engine_records_its_weights_and_lanczos_is_not_called_ai(tmp_path: Path) -> None:
    esr = make_item(tmp_path, engine="realesrgan")
    esr = ExportItem(
        esr.candidate, "keeper.png", esr.cutout, 27.0, {"realesrgan": {"ref": "x4", "sha256": "ee"}}
    )
    lanczos = make_item(tmp_path, engine="lanczos", score=None)
    paths = export_candidates([esr, lanczos], tmp_path / "o", "{engine}.png", match="m")
    assert read_metadata(paths[0]).provenance["models"] == {
        "realesrgan": {"ref": "x4", "sha256": "ee"}
    }
    prov = read_metadata(paths[1]).provenance
    assert prov["ai_reconstructed"] is False and prov["lr_consistency_db"] is None
    assert xmp_of(paths[1]).get(f"{{{IPTC}}}DigitalSourceType") == DIGITAL_SOURCE_ENHANCED


def test_badge_only_when_enabled(tmp_path: Path) -> None:
    item = make_item(tmp_path)
    (plain,) = export_candidates([item], tmp_path / "a", "{cutout}.png", match="m")
    (badged,) = export_candidates([item], tmp_path / "b", "{cutout}.png", match="m", badge=True)
    with Image.open(plain) as p, Image.open(badged) as b:
        a_px = np.asarray(p.convert("RGB"), dtype=np.int16)
        b_px = np.asarray(b.convert("RGB"), dtype=np.int16)
    diff = np.abs(a_px - b_px).sum(axis=2) > 0
    assert np.array_equal(a_px, np.asarray(item.candidate.image, dtype=np.int16))  # untouched
    ys, xs = np.nonzero(diff)
    h, w = diff.shape
    assert ys.size > 0 and ys.min() > h * 0.85 and xs.min() > w * 0.5  # bottom-right corner only
    prov_plain = read_metadata(plain).provenance
    prov_badged = read_metadata(badged).provenance
    assert prov_plain["badge"]["applied"] is False
    assert prov_badged["badge"] == {"applied": True, "text": BADGE_AI}
    # the record keeps the un-badged pixels' hash: reproduce compares against those
    assert prov_badged["pixels_sha256"] == prov_plain["pixels_sha256"]
    assert prov_badged["pixels_sha256"] == image_sha256(item.candidate.image)
    assert xmp_of(badged).get(f"{{{XMP_NS}}}VisibleBadge") == "True"


def test_badge_is_legible_on_any_content() -> None:
    for colour in ((0, 0, 0), (255, 255, 255), (40, 120, 50)):
        img = draw_badge(Image.new("RGB", (1024, 768), colour))
        corner = np.asarray(img.crop((700, 700, 1024, 768)).convert("L"), dtype=np.int16)
        assert corner.max() - corner.min() > 120  # white text on a dark box
