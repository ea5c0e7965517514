"""Candidate files with their provenance embedded: the request, the cutout and an AI label.

Every image the application writes carries, in the file itself:

* ``fbupscale``: JSON with the full request, the candidate key, seed, runtime, timings and the
  app version, so ``fbupscale reproduce`` can render the same candidate again; a candidate made
  with the LoRA adds ``lora``: the layers left out and the effective scaling per layer;
* ``fbupscale-cutout``: the cutout as base64 PNG (cutouts are tiny), so reproduction works on
  another machine where the source file does not exist;
* a plain-language statement that the details are generated (``Description``), ``Software``;
* an XMP packet with the IPTC ``DigitalSourceType`` that labels AI-generated media
  (``trainedAlgorithmicMedia``; Lanczos results, which invent nothing, get
  ``algorithmicallyEnhanced``).

PNG keeps these in text chunks (``iTXt``/``tEXt``) and the XMP in the ``XML:com.adobe.xmp``
iTXt chunk. JPEG keeps the statement and the JSON (with the cutout inside it) in a COM comment
and the XMP in an APP1 segment. Files are written atomically: a temporary file in the same
folder, flushed and fsynced, then renamed over the target. Pillow only.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from xml.sax.saxutils import escape, quoteattr

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from fbupscale_gui.core.errors import InputImageError, RequestError
from fbupscale_gui.core.images import decode_cutout
from fbupscale_gui.core.jsonable import parse_json
from fbupscale_gui.core.number_check import NumberCheck
from fbupscale_gui.core.request import CandidateKey, ReconstructionRequest
from fbupscale_gui.core.runtime import ResolvedRuntime
from fbupscale_gui.storage.atomic import atomic_write

if TYPE_CHECKING:
    from fbupscale_gui.core.job import Candidate

__all__ = [
    "CUTOUT_KEY",
    "DIGITAL_SOURCE_ENHANCED",
    "DIGITAL_SOURCE_TRAINED",
    "JSON_KEY",
    "XMP_NS",
    "CandidateRecord",
    "describe",
    "read_metadata",
    "run_summary",
    "save_candidate",
    "xmp_packet",
]

JSON_KEY: Final = "fbupscale"
CUTOUT_KEY: Final = "fbupscale-cutout"
#: The JSON field that carries the cutout where a file has no separate chunk for it (JPEG).
_CUTOUT_FIELD: Final = "cutout_png"
DIGITAL_SOURCE_TRAINED: Final = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
)
DIGITAL_SOURCE_ENHANCED: Final = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicallyEnhanced"
)
#: Pillow refuses to read a PNG text chunk over 1 MB (``ImageFile.SAFEBLOCK``): stay below.
_MAX_EMBEDDED_CUTOUT: Final = 900_000
#: A JPEG COM segment holds at most 65533 bytes.
_MAX_JPEG_COMMENT: Final = 65533

Format = Literal["png", "jpeg"]
#: XMP namespace of the ``fbupscale:`` properties (LR-consistency, seed, badge, model hashes).
XMP_NS: Final = "https://fbupscale.invalid/ns/provenance/1.0/"


@dataclass(frozen=True)
class CandidateRecord:
    """What a candidate file says about itself (see :func:`read_metadata`)."""

    request: ReconstructionRequest
    key: CandidateKey
    seed: int
    runtime: str
    timings: Mapping[str, float] = field(default_factory=dict)
    #: The embedded cutout (RGB), or None when the file carries none.
    cutout: Image.Image | None = None
    app_version: str = ""
    #: What the export added (:func:`fbupscale_gui.storage.provenance.provenance`): model hashes,
    #: LR-consistency, badge; empty for files written without it.
    provenance: Mapping[str, Any] = field(default_factory=dict)
    #: The typed runtime it was rendered on (None: written before it was recorded).
    resolved: ResolvedRuntime | None = None
    #: The number check: shirt numbers read against the scene (None: not recorded).
    number_check: NumberCheck | None = None
    #: The LoRA as applied (``lora`` in the metadata; None: no LoRA, or not recorded).
    lora_report: Mapping[str, Any] | None = None


def _app_version() -> str:
    from fbupscale_gui import __version__

    return __version__


def describe(request: ReconstructionRequest, cutout_size: tuple[int, int] | None = None) -> str:
    """The one-line statement stored with every candidate."""
    if cutout_size is None and request.source is not None:
        cutout_size = (request.source.width, request.source.height)
    size = f"{cutout_size[0]}x{cutout_size[1]}" if cutout_size else "small"
    if request.engine == "lanczos":
        return (
            f"Upscaled by fbupscale with Lanczos resampling from a {size} broadcast cutout; "
            "no details were generated"
        )
    return (
        f"AI-reconstructed by fbupscale from a {size} broadcast cutout; "
        "details are generated, not camera pixels"
    )


def xmp_packet(
    description: str,
    *,
    engine: str,
    software: str,
    extra: Mapping[str, str] | None = None,
) -> str:
    """An XMP packet with the IPTC digital source type, a description and the creator tool.

    ``extra`` adds ``fbupscale:<name>`` properties (namespace :data:`XMP_NS`).
    """
    source_type = DIGITAL_SOURCE_ENHANCED if engine == "lanczos" else DIGITAL_SOURCE_TRAINED
    own = "".join(
        f"    fbupscale:{name}={quoteattr(str(value))}\n" for name, value in (extra or {}).items()
    )
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        '  <rdf:Description rdf:about=""\n'
        '    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"\n'
        '    xmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"\n'
        + (f"    xmlns:fbupscale={quoteattr(XMP_NS)}\n{own}" if own else "")
        + f"    Iptc4xmpExt:DigitalSourceType={quoteattr(source_type)}\n"
        f"    xmp:CreatorTool={quoteattr(software)}>\n"
        "   <dc:description>\n"
        "    <rdf:Alt>\n"
        f'     <rdf:li xml:lang="x-default">{escape(description)}</rdf:li>\n'
        "    </rdf:Alt>\n"
        "   </dc:description>\n"
        "  </rdf:Description>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    )


def _xmp_extra(provenance: Mapping[str, Any] | None) -> dict[str, str]:
    """The provenance figures worth an XMP property (readable by any XMP tool)."""
    if not provenance:
        return {}
    out: dict[str, str] = {}
    if provenance.get("seed") is not None:
        out["Seed"] = str(provenance["seed"])
    score = provenance.get("lr_consistency_db")
    if isinstance(score, int | float):
        out["LRConsistencyDB"] = f"{score:.3f}"
    badge = provenance.get("badge")
    if isinstance(badge, Mapping):
        out["VisibleBadge"] = "True" if badge.get("applied") else "False"
    models = provenance.get("models")
    if isinstance(models, Mapping):
        hashes = [
            f"{name}={ref.get('sha256') or 'unknown'}"
            for name, ref in models.items()
            if isinstance(ref, Mapping)
        ]
        if hashes:
            out["ModelHashes"] = "; ".join(hashes)
    return out


def run_summary(request: ReconstructionRequest) -> dict[str, Any]:
    """The stages and candidates as the engine ran them (the ``run`` block of the metadata).

    FLUX: stage 1 (img2img), stage 2 (ControlNet upscaler) when enabled, the variants and the
    candidates they made. Any other engine: one pass, one candidate, no seed or LoRA.
    """
    if request.engine != "flux":
        return {"engine": request.engine, "stages": ["single pass"], "candidates": 1}
    stages = ["stage1: FLUX.1-dev image-to-image"]
    if request.stage2.enabled:
        stages.append("stage2: FLUX ControlNet upscaler")
    all_keys = request.replace(only=None).candidate_keys()
    return {
        "engine": "flux",
        "stages": stages,
        "variants": request.variants,
        "lora_ab": request.lora.ab and request.lora.model is not None,
        "candidates": len(all_keys),
    }


def _payload(candidate: Candidate) -> dict[str, Any]:
    key = candidate.key
    # the stage and LoRA branch only mean something for FLUX; a one-pass engine's key is
    # its (only) variant, and reads back as the same key
    flux = candidate.request.engine == "flux"
    key_data: dict[str, Any] = (
        {"variant": key.variant, "lora": key.lora, "stage": key.stage}
        if flux
        else {"variant": key.variant, "lora": key.lora}
    )
    return {
        "request": candidate.request.to_dict(),
        "key": key_data,
        "run": run_summary(candidate.request),
        "seed": candidate.seed,
        "runtime": candidate.runtime,
        "timings": {str(k): float(v) for k, v in candidate.timings.items()},
        "app_version": _app_version(),
        **({"lora": dict(candidate.lora_report)} if candidate.lora_report else {}),
        **(
            {"resolved_runtime": candidate.resolved.to_dict()}
            if candidate.resolved is not None
            else {}
        ),
        **(
            {"number_check": candidate.number_check.to_dict()}
            if candidate.number_check is not None
            else {}
        ),
    }


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _encode_cutout(cutout: Image.Image | None) -> str | None:
    if cutout is None:
        return None
    encoded = base64.b64encode(_png_bytes(cutout.convert("RGB"))).decode("ascii")
    return encoded if len(encoded) <= _MAX_EMBEDDED_CUTOUT else None


def save_candidate(
    candidate: Candidate,
    path: str | Path,
    *,
    cutout: Image.Image | None = None,
    fmt: Format = "png",
    quality: int = 95,
    provenance: Mapping[str, Any] | None = None,
    exclusive: bool = False,
) -> Path:
    """Write ``candidate.image`` to ``path`` with its metadata, atomically; returns the path.

    ``cutout`` is embedded when given (and small enough to read back). An existing file at
    ``path`` is replaced; with ``exclusive`` it never is: the file takes the first free name
    (``stem-2.png``...), claimed atomically together with its complete content. Raises :class:`RequestError` for an
    unknown format or a quality outside 1..100, and OSError when the file cannot be written
    (nothing partial is left behind).
    """
    if fmt not in ("png", "jpeg"):
        raise RequestError(f"format: must be 'png' or 'jpeg', got {fmt!r}")
    if not 1 <= quality <= 100:
        raise RequestError(f"quality: must be 1..100, got {quality}")
    target = Path(path)
    request = candidate.request
    software = f"fbupscale {_app_version()}"
    description = describe(request, cutout.size if cutout is not None else None)
    xmp = xmp_packet(
        description, engine=request.engine, software=software, extra=_xmp_extra(provenance)
    )
    payload = _payload(candidate)
    if provenance:
        payload["provenance"] = dict(provenance)
    cutout_b64 = _encode_cutout(cutout)
    image = candidate.image.convert("RGB")

    save_args: dict[str, Any]
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(JSON_KEY, json.dumps(payload, sort_keys=True, ensure_ascii=False), zip=True)
        if cutout_b64 is not None:
            info.add_text(CUTOUT_KEY, cutout_b64)
        info.add_itxt("Description", description)
        info.add_text("Software", software)
        info.add_itxt("XML:com.adobe.xmp", xmp)
        save_args = {"format": "PNG", "pnginfo": info}
    else:
        text = f"{description}\n{json.dumps(payload, sort_keys=True, ensure_ascii=False)}"
        if cutout_b64 is not None:
            with_cutout = dict(payload, **{_CUTOUT_FIELD: cutout_b64})
            candidate_text = f"{description}\n{json.dumps(with_cutout, sort_keys=True)}"
            if len(candidate_text.encode("utf-8")) <= _MAX_JPEG_COMMENT:
                text = candidate_text
        save_args = {
            "format": "JPEG",
            "quality": quality,
            "comment": text.encode("utf-8"),
            "xmp": xmp.encode("utf-8"),
        }

    # atomic, with the umask's permissions; a full disk names the file and how much was written
    return atomic_write(target, lambda fh: image.save(fh, **save_args), exclusive=exclusive)


# -- reading --------------------------------------------------------------------------------


def _texts(path: Path) -> tuple[dict[str, str], str]:
    """The file's text chunks (PNG) or comment (JPEG), and its format."""
    if not path.exists():
        raise InputImageError(path, "no such file")
    if path.is_dir():
        raise InputImageError(path, "is a folder, not an image")
    try:
        with Image.open(path) as im:
            im.load()
            fmt = (im.format or "").upper()
            if fmt == "PNG":
                return {k: str(v) for k, v in getattr(im, "text", {}).items()}, fmt
            comment = im.info.get("comment", b"")
    except UnidentifiedImageError:
        raise InputImageError(path, "not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise InputImageError(path, f"refused as a possible decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputImageError(path, f"unreadable or truncated image ({exc})") from None
    if isinstance(comment, bytes):
        comment = comment.decode("utf-8", errors="replace")
    # JPEG: "<statement>\n<json>"
    _, _, body = str(comment).partition("\n")
    return ({JSON_KEY: body} if body.lstrip().startswith("{") else {}), fmt


def _decode_cutout(path: Path, encoded: str) -> Image.Image:
    """The embedded cutout, read like any cutout: its declared size is checked before a pixel
    is decoded, so a decompression bomb in the metadata never allocates."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InputImageError(path, "the embedded cutout is damaged (not base64)") from None
    try:
        with warnings.catch_warnings():  # the size check refuses what Pillow warns about
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return decode_cutout(data).image
    except InputImageError as exc:
        raise InputImageError(
            path, f"the embedded cutout is damaged or refused ({exc.reason})"
        ) from None


def read_metadata(path: str | Path) -> CandidateRecord:
    """Read back what :func:`save_candidate` embedded in ``path``.

    Raises :class:`InputImageError` naming the file if it is missing, not an image, or its
    embedded cutout is damaged, and :class:`RequestError` naming the file if it carries no
    fbupscale metadata or the metadata is broken or from a newer release.
    """
    p = Path(path)
    texts, _fmt = _texts(p)
    raw = texts.get(JSON_KEY)
    if raw is None:
        raise RequestError(
            f"{p}: no fbupscale metadata in this image (was it saved by fbupscale, "
            "or edited by another program?)"
        )
    data = parse_json(raw, f"{p}: fbupscale metadata")
    if not isinstance(data, dict):
        raise RequestError(f"{p}: fbupscale metadata is not a JSON object")
    try:
        request = ReconstructionRequest.from_dict(data.get("request", {}))
        key_data = data.get("key")
        if not isinstance(key_data, dict):
            raise RequestError("key: missing or not an object")
        key = CandidateKey(
            variant=_int(key_data.get("variant"), "key.variant"),
            lora=_bool(key_data.get("lora"), "key.lora"),
            stage=_int(key_data.get("stage", 2), "key.stage"),
        )
        seed = _int(data.get("seed"), "seed")
        runtime = data.get("runtime", "")
        if not isinstance(runtime, str):
            raise RequestError("runtime: expected text")
        timings_raw = data.get("timings", {})
        if not isinstance(timings_raw, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in timings_raw.values()
        ):
            raise RequestError("timings: expected an object of numbers")
        timings = {str(k): float(v) for k, v in timings_raw.items()}
        version = data.get("app_version", "")
        resolved_raw = data.get("resolved_runtime")
        resolved = None if resolved_raw is None else ResolvedRuntime.from_dict(resolved_raw)
        numbers_raw = data.get("number_check")
        number_check = None if numbers_raw is None else NumberCheck.from_dict(numbers_raw)
        lora_raw = data.get("lora")
        if lora_raw is not None and not isinstance(lora_raw, dict):
            raise RequestError("lora: expected an object")
    except RequestError as exc:
        raise RequestError(f"{p}: broken fbupscale metadata: {exc}") from None
    encoded = texts.get(CUTOUT_KEY) or data.get(_CUTOUT_FIELD)
    cutout = _decode_cutout(p, encoded) if isinstance(encoded, str) and encoded else None
    return CandidateRecord(
        request=request,
        key=key,
        seed=seed,
        runtime=runtime,
        timings=timings,
        cutout=cutout,
        app_version=version if isinstance(version, str) else "",
        provenance=data["provenance"] if isinstance(data.get("provenance"), dict) else {},
        resolved=resolved,
        number_check=number_check,
        lora_report=lora_raw,
    )


def _int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RequestError(f"{name}: expected an integer, got {value!r}")
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise RequestError(f"{name}: expected true/false, got {value!r}")
    return value
