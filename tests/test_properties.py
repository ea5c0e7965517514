"""Property-based tests (hypothesis): hostile bytes and JSON only ever raise the app's own errors.

* :func:`load_cutout` on random bytes and on random mutations of valid PNG, JPEG, GIF and WebP
  files either returns an 8-bit RGB cutout within the documented size limits or raises
  :class:`InputImageError` naming ``<memory>``.
* :meth:`ReconstructionRequest.from_json` and :meth:`Scene.from_json` on random JSON, on random
  structural edits of valid documents and on random byte edits of their text either return a
  value or raise :class:`RequestError`.

Example counts are moderate (about 200 per property) so the module runs in seconds; no example
database is written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fbupscale_gui.core.errors import InputImageError, RequestError
from fbupscale_gui.core.images import MAX_CUTOUT_SIDE, MIN_CUTOUT_SIDE
from fbupscale_gui.core.request import (
    LoraParams,
    Preprocess,
    ReconstructionRequest,
    SourceRef,
    Stage1Params,
)
from fbupscale_gui.core.scene import Scene
from fbupscale_gui.storage.cutouts import load_cutout

SAMPLES = Path(__file__).resolve().parents[1] / "resources" / "samples"

# Pillow warns (and recovers) on damaged TIFF tags; the property is about what is raised.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- images ----------------------------------------------------------------------------------


def _valid_files() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 16, 3), dtype=np.uint8))
    rgba = rgb.convert("RGBA")
    out: dict[str, bytes] = {}
    for name, image, fmt, params in (
        ("png", rgb, "PNG", {}),
        ("png-rgba", rgba, "PNG", {}),
        ("png-palette", rgb.convert("P"), "PNG", {"transparency": 3}),
        ("jpeg", rgb, "JPEG", {"quality": 80}),
        ("jpeg-progressive", rgb, "JPEG", {"progressive": True}),
        ("gif", rgb.convert("P"), "GIF", {"save_all": True, "append_images": [rgb.convert("P")]}),
        ("webp", rgb, "WEBP", {}),
        ("tiff", rgb, "TIFF", {}),
        ("bmp", rgb, "BMP", {}),
    ):
        buf = io.BytesIO()
        image.save(buf, format=fmt, **params)
        out[name] = buf.getvalue()
    return out


VALID_FILES = _valid_files()


def _check_load(data: bytes) -> None:
    try:
        image = load_cutout(data)
    except InputImageError as exc:
        assert str(exc).startswith("<memory>: ")
        assert "\n" not in str(exc)
        return
    assert image.mode == "RGB"
    assert min(image.size) >= MIN_CUTOUT_SIDE and max(image.size) <= MAX_CUTOUT_SIDE


@st.composite
def mutated_file(draw: st.DrawFn) -> bytes:
    """A valid file with a few random byte edits: overwrite, insert, delete, truncate."""
    data = bytearray(VALID_FILES[draw(st.sampled_from(sorted(VALID_FILES)))])
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        op = draw(st.sampled_from(["set", "set", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, len(data) - 1))
        if op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return bytes(data)


@st.composite
def header_mutated_file(draw: st.DrawFn) -> bytes:
    """Edits concentrated in the first 64 bytes, where the size, depth and mode are declared."""
    data = bytearray(VALID_FILES[draw(st.sampled_from(sorted(VALID_FILES)))])
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, min(63, len(data) - 1)))
        data[pos] = draw(st.integers(0, 255))
    return bytes(data)


@PROPERTY
@given(st.binary(max_size=4096))
def test_random_bytes_only_raise_input_image_error(data: bytes) -> None:
    _check_load(data)


@PROPERTY
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF", b"II*\x00"]))
def test_magic_numbers_then_garbage(magic: bytes) -> None:
    _check_load(magic)
    _check_load(magic + bytes(64))


@PROPERTY
@given(mutated_file())
def test_mutated_valid_files_only_raise_input_image_error(data: bytes) -> None:
    _check_load(data)


@PROPERTY
@given(header_mutated_file())
def test_header_mutations_only_raise_input_image_error(data: bytes) -> None:
    _check_load(data)


def test_the_unmutated_seed_files_load() -> None:
    for name, data in VALID_FILES.items():
        assert load_cutout(data).size == (16, 24), name


# -- request and scene JSON ------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def _valid_request() -> dict[str, Any]:
    return ReconstructionRequest(
        prompt="a goalkeeper diving",
        source=SourceRef(path="/tmp/gk.png", sha256="0" * 64, width=60, height=90, name="gk"),
        preprocess=Preprocess(size=1024, intermediate=256),
        stage1=Stage1Params(strength=0.5, steps=20),
        lora=LoraParams(scale=0.8),
        variants=3,
        seed=5,
    ).to_dict()


VALID_REQUEST = _valid_request()
VALID_SCENES = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(SAMPLES.glob("*.json"))]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``doc`` (dict keys and list indices)."""
    found = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += _paths(v, (*prefix, i))
    return found


@st.composite
def mutated_doc(draw: st.DrawFn, base: Any) -> Any:
    """``base`` with a few random structural edits: replace, delete, add a key, wrap."""
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "wrap"]))
        if not path:
            if op in ("replace", "wrap"):
                doc = draw(json_values) if op == "replace" else [doc]
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        leaf = path[-1]
        if op == "replace":
            parent[leaf] = draw(json_values)
        elif op == "delete":
            del parent[leaf]
        elif op == "wrap":
            parent[leaf] = draw(st.sampled_from([[parent[leaf]], {"x": parent[leaf]}]))
        elif isinstance(parent[leaf], dict):
            parent[leaf][draw(st.text(max_size=8))] = draw(json_values)
    return doc


@st.composite
def mutated_text(draw: st.DrawFn, base: Any) -> bytes:
    """The JSON text of ``base`` with random byte edits."""
    data = bytearray(json.dumps(base).encode())
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        if draw(st.booleans()):
            data[pos] = draw(st.integers(0, 255))
        else:
            data[pos:pos] = draw(st.sampled_from([b"-", b"1e999", b'"\\ud800"', b"[", b"}", b"0"]))
    return bytes(data)


def _only_request_errors(parse: Any, text: str | bytes) -> None:
    try:
        parse(text)
    except RequestError as exc:
        assert str(exc)


@PROPERTY
@given(json_values)
def test_random_json_request(value: Any) -> None:
    _only_request_errors(ReconstructionRequest.from_json, json.dumps(value))


@PROPERTY
@given(json_values)
def test_random_json_scene(value: Any) -> None:
    _only_request_errors(Scene.from_json, json.dumps(value))


@PROPERTY
@given(mutated_doc(VALID_REQUEST))
def test_mutated_request_documents(doc: Any) -> None:
    _only_request_errors(ReconstructionRequest.from_json, json.dumps(doc))


@PROPERTY
@given(st.data())
def test_mutated_scene_documents(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(VALID_SCENES))
    doc = data.draw(mutated_doc(base))
    _only_request_errors(Scene.from_json, json.dumps(doc))


@PROPERTY
@given(mutated_text(VALID_REQUEST))
def test_mutated_request_text(text: bytes) -> None:
    _only_request_errors(ReconstructionRequest.from_json, text)


@PROPERTY
@given(st.data())
def test_mutated_scene_text(data: st.DataObject) -> None:
    text = data.draw(mutated_text(data.draw(st.sampled_from(VALID_SCENES))))
    _only_request_errors(Scene.from_json, text)


def test_the_unmutated_documents_parse() -> None:
    assert ReconstructionRequest.from_json(json.dumps(VALID_REQUEST)).to_dict() == VALID_REQUEST
    assert VALID_SCENES
    for scene in VALID_SCENES:
        assert Scene.from_json(json.dumps(scene)).to_dict() == scene


# -- examples the properties found (kept as plain regression tests) --------------------------

BIG = "1" + "0" * 400


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        # a float field given an integer too large for a float: was OverflowError
        (ReconstructionRequest.from_json, f'{{"version": 1, "stage1": {{"strength": {BIG}}}}}'),
        (ReconstructionRequest.from_json, f'{{"version": 1, "lora": {{"scale": {BIG}}}}}'),
        # a lone surrogate escape: was accepted, then UnicodeEncodeError when a file was saved
        (ReconstructionRequest.from_json, '{"version": 1, "prompt": "\\ud800"}'),
    ],
)
def test_found_examples_are_request_errors(parse: Any, text: str) -> None:
    with pytest.raises(RequestError):
        parse(text)


@pytest.mark.parametrize("parse", [ReconstructionRequest.from_json, Scene.from_json])
def test_deeply_nested_json_is_a_request_error(parse: Any) -> None:
    with pytest.raises(RequestError):
        parse("[" * 100_000)
