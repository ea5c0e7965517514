"""``fbupscale upscale INPUT... -o OUTDIR``: reconstruct every cutout (files, or folders of
images) and write one PNG per candidate, named ``{stem}_v{variant}_s{stage}_{lora|nolora}
_seed{seed}.png`` for FLUX and ``{stem}_{engine}.png`` for a one-pass engine
(:func:`fbupscale_gui.cli.common.output_name`), with the request, the cutout and the
AI-reconstructed statement embedded (:mod:`fbupscale_gui.storage.metadata`). Existing files
are never overwritten: a ``-2``, ``-3``... suffix is added, and names are claimed by exclusive
creation, so runs writing into one folder at the same time never overwrite each other. Each
written path is printed on stdout, one per line (control characters escaped); progress bars go
to stderr. A cutout that fails while rendering or saving is reported and the batch goes on
with the next one (exit status 1 at the end).

Also the model and runtime options that ``doctor`` shares (:func:`add_model_args`,
:func:`flux_path`).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, get_args

from fbupscale_gui.cli import render
from fbupscale_gui.cli.common import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    PROG,
    CancelFlag,
    ProgressBar,
    UsageError,
    error,
    note,
    output_name,
    save_new,
    scene_prompt,
)
from fbupscale_gui.core.errors import Cancelled, InputImageError, ModelNotFoundError
from fbupscale_gui.core.request import (
    BUILTIN_ENGINES,
    CONTROLNET_REPO_ID,
    FAST_ENGINES,
    FLUX_REPO_ID,
    MODEL_ENGINE_PREFIX,
    Device,
    FluxParts,
    LoraParams,
    MemoryMode,
    ModelRef,
    Precision,
    Preprocess,
    ReconstructionRequest,
    Speed,
    Stage1Params,
    Stage2Params,
    StageName,
    Storage,
    VaeTiling,
    canonical_engine,
    is_fast_engine,
    is_model_engine,
)
from fbupscale_gui.storage.paths import shown

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["IMAGE_SUFFIXES", "add_model_args", "add_upscale_parser", "cmd_upscale", "flux_path"]

#: Files picked up from an input folder.
IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _stages(text: str) -> tuple[StageName, ...]:
    allowed = get_args(StageName)
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [n for n in names if n not in allowed]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(allowed)}, got {text!r}"
        )
    return names  # type: ignore[return-value]


def _engine(text: str) -> str:
    text = canonical_engine(text)
    if text in BUILTIN_ENGINES or is_model_engine(text) or is_fast_engine(text):
        return text
    raise argparse.ArgumentTypeError(
        f"expected {', '.join(BUILTIN_ENGINES)}, sharp, ncnn:NAME or "
        f"{MODEL_ENGINE_PREFIX}NAME_OR_PATH, got {text!r}"
    )


def _chain(text: str) -> str:
    text = canonical_engine(text)
    if is_fast_engine(text):
        return text
    raise argparse.ArgumentTypeError(
        f"expected {', '.join(FAST_ENGINES)}, sharp or ncnn:NAME, got {text!r}"
    )


def add_upscale_parser(sub: Any) -> None:
    """Add ``upscale INPUT... -o OUTDIR`` and its options to an argparse subparsers object."""

    up = sub.add_parser(
        "upscale",
        help="reconstruct cutouts into 1024 px candidates",
        description="Reconstruct cutouts; writes one PNG per candidate into OUTDIR.",
    )
    up.add_argument("inputs", nargs="+", metavar="INPUT", help="cutout files or folders of them")
    up.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    up.add_argument(
        "--engine",
        type=_engine,
        metavar="ENGINE",
        help=(
            "flux (default when its models are found), faithful (the fast preview closest to "
            "the cutout, the fallback), sharp (alias realesrgan: Real-ESRGAN x4plus), lanczos, "
            "ncnn:NAME for a wheel model (waifu2x-photo-n1, realcugan-se-conservative, "
            "srmd-n3, ...), or model:NAME_OR_PATH for a super-resolution model from "
            "'fbupscale models list' or a model file"
        ),
    )
    add_model_args(up)
    up.add_argument("--lora-scale", type=float, default=LoraParams.scale, metavar="X")
    up.add_argument(
        "--lora-stages",
        type=_stages,
        default=LoraParams.stages,
        metavar="STAGES",
        help="where the LoRA is active: stage1,stage2 (default: stage2)",
    )
    up.add_argument(
        "--no-ab", action="store_true", help="render only with the LoRA, not with and without"
    )
    up.add_argument("--variants", type=int, default=3, metavar="N", help="variants per cutout")
    up.add_argument("--seed", type=_positive_int, default=5, metavar="S", help="base seed")
    up.add_argument("--size", type=int, default=Preprocess.size, metavar="PX", help="long side")
    up.add_argument(
        "--intermediate", type=int, metavar="PX", help="two-step resize through this size"
    )
    up.add_argument(
        "--square", action="store_true", help="keep the padded square instead of the content box"
    )
    text = up.add_mutually_exclusive_group()
    text.add_argument("--prompt", default="", metavar="TEXT", help="the FLUX prompt")
    text.add_argument("--scene", metavar="FILE.json", help="a scene file to build the prompt")
    up.add_argument("--steps1", type=int, default=Stage1Params.steps, metavar="N")
    up.add_argument("--strength", type=float, default=Stage1Params.strength, metavar="X")
    up.add_argument(
        "--chain",
        type=_chain,
        default=Stage1Params.start,
        metavar="ENGINE",
        help="FLUX: the fast engine that enlarges the cutout into stage 1's start image: "
        "lanczos (the paper's, default), faithful, sharp or ncnn:NAME (recorded in the request)",
    )
    up.add_argument("--steps2", type=int, default=Stage2Params.steps, metavar="N")
    up.add_argument(
        "--cond-scale", type=float, default=Stage2Params.conditioning_scale, metavar="X"
    )
    up.add_argument("--no-stage2", action="store_true", help="stop after FLUX img2img")
    add_runtime_args(up)
    up.add_argument(
        "--server",
        metavar="URL",
        help="run on an 'fbupscale serve' server (token from FBUPSCALE_TOKEN); models are "
        "the server's, named",
    )
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    up.set_defaults(func=cmd_upscale)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--flux",
        metavar="PATH",
        help="FLUX.1-dev: a diffusers folder (default: HF cache), or a single-file transformer "
        "(.safetensors/.sft in BFL or ComfyUI layout, fp8, fp8_scaled, or a .gguf)",
    )
    p.add_argument(
        "--flux-base",
        metavar="DIR",
        help="diffusers FLUX folder supplying what a single-file --flux lacks "
        "(text encoders, tokenizers, VAE, scheduler)",
    )
    p.add_argument(
        "--models-root",
        metavar="DIR",
        help="a ComfyUI/Forge install or models tree (extra_model_paths.yaml honoured): the "
        "FLUX transformer, VAE, text encoder and tokenizer files are taken from it unless "
        "given on their own",
    )
    p.add_argument("--vae", metavar="FILE", help="FLUX VAE file (ae.safetensors)")
    p.add_argument("--clip-l", metavar="FILE", help="CLIP-L text encoder file (clip_l.safetensors)")
    p.add_argument(
        "--t5", metavar="FILE", help="T5-XXL text encoder file (t5xxl_fp16 or t5xxl_fp8_e4m3fn)"
    )
    p.add_argument(
        "--tokenizers",
        metavar="DIR",
        help="a folder holding the CLIP-L and T5 tokenizers: tokenizer/ and tokenizer_2/, or a "
        "ComfyUI or Forge install (their code ships them)",
    )
    p.add_argument("--controlnet", metavar="PATH", help="ControlNet upscaler folder")
    p.add_argument("--lora", metavar="PATH", help="football LoRA .safetensors")


def add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=get_args(Device), default="auto")
    p.add_argument("--precision", choices=get_args(Precision), default="auto")
    p.add_argument("--memory-mode", choices=get_args(MemoryMode), default="auto")
    p.add_argument(
        "--speed",
        choices=get_args(Speed),
        default="exact",
        help="exact: every step computed; fast: First Block Cache on stage 1; fast-mag: "
        "MagCache on stage 1; compiled: regional compile of the repeated blocks",
    )
    p.add_argument(
        "--storage",
        choices=get_args(Storage),
        default="auto",
        help="FLUX transformer weights: native (the file's), fp8 (layerwise casting), "
        "nf4 (bitsandbytes, CUDA only); auto follows the memory plan",
    )
    p.add_argument(
        "--vae-tiling",
        choices=get_args(VaeTiling),
        default="auto",
        help="decode in VAE tiles (less memory, slightly other pixels); auto follows the plan",
    )


def _collect_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files as given; folders expanded to their images (sorted, not recursive)."""
    files: list[Path] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise InputImageError(path, f"folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise InputImageError(path, "no such file or folder")
    return files


def _locate(path: str | None, repo_id: str, what: str) -> ModelRef:
    from fbupscale_gui.storage.weights import locate

    return locate(ModelRef(path=path or "", repo_id=repo_id), what).ref


def _template_request(args: argparse.Namespace) -> ReconstructionRequest:
    """The request every input shares (no source, models unresolved); raises UsageError."""
    from fbupscale_gui.core.errors import RequestError

    try:
        engine = args.engine or "flux"
        return ReconstructionRequest(
            # a user model is resolved later (_resolve_models), with its file and hash
            engine="lanczos" if is_model_engine(engine) else engine,
            prompt=args.prompt or "",
            preprocess=Preprocess(
                size=args.size, intermediate=args.intermediate, crop_to_content=not args.square
            ),
            stage1=Stage1Params(strength=args.strength, steps=args.steps1, start=args.chain),
            stage2=Stage2Params(
                enabled=not args.no_stage2, conditioning_scale=args.cond_scale, steps=args.steps2
            ),
            lora=LoraParams(scale=args.lora_scale, stages=args.lora_stages, ab=not args.no_ab),
            variants=args.variants,
            seed=args.seed,
            device=args.device,
            precision=args.precision,
            memory_mode=args.memory_mode,
            speed=args.speed,
            storage=args.storage,
            vae_tiling=args.vae_tiling,
        )
    except RequestError as exc:
        raise UsageError(str(exc)) from None


def _resolve_models(
    args: argparse.Namespace, template: ReconstructionRequest
) -> ReconstructionRequest:
    """Pick the engine and locate its models; raises ModelNotFoundError or UsageError."""
    engine = args.engine
    flux_only = [
        opt
        for opt, given in (
            ("--flux", args.flux),
            ("--flux-base", args.flux_base),
            ("--models-root", args.models_root),
            ("--vae", args.vae),
            ("--clip-l", args.clip_l),
            ("--t5", args.t5),
            ("--tokenizers", args.tokenizers),
            ("--controlnet", args.controlnet),
            ("--lora", args.lora),
        )
        if given
    ]
    if engine is None:
        if flux_only:
            engine = "flux"
        else:
            try:
                flux = _locate(None, FLUX_REPO_ID, "flux")
                controlnet = _locate(None, CONTROLNET_REPO_ID, "controlnet")
            except ModelNotFoundError as exc:
                note(
                    f"note: FLUX models not found ({exc.what}); using the faithful engine "
                    "(pass --engine flux to see where they were looked for)"
                )
                return template.replace(engine="faithful")
            return template.replace(engine="flux", flux=flux, controlnet=controlnet)
    if engine != "flux":
        if flux_only:
            raise UsageError(f"{', '.join(flux_only)} only apply to --engine flux")
        if is_model_engine(engine):
            return template.replace(engine=engine, sr_model=_sr_model_ref(engine))
        return template.replace(engine=engine)
    flux = _locate(flux_path(args), FLUX_REPO_ID, "flux")
    parts = _flux_parts(args, flux)
    flux_base = _locate(args.flux_base, "", "flux_base") if args.flux_base else None
    controlnet = _locate(args.controlnet, CONTROLNET_REPO_ID, "controlnet")
    lora = template.lora
    if args.lora:
        lora = dataclasses.replace(lora, model=_locate(args.lora, "", "lora"))
    return template.replace(
        engine="flux",
        flux=flux,
        flux_base=flux_base,
        parts=parts,
        controlnet=controlnet,
        lora=lora,
    )


def _flux_parts(args: argparse.Namespace, flux: ModelRef) -> FluxParts:
    """The VAE, text encoder and tokenizer files a single-file ``flux`` takes: each given
    on its own, else found under ``--models-root`` or ``--tokenizers``; the rest comes from
    ``--flux-base``, and the engine names whatever is still missing."""
    if not Path(flux.path).is_file():
        if any((args.vae, args.clip_l, args.t5, args.tokenizers)):
            raise UsageError(
                "--vae, --clip-l, --t5 and --tokenizers apply to a single-file --flux; "
                f"{flux.path} is a FLUX folder that brings its own"
            )
        return FluxParts()
    from fbupscale_gui.storage.weight_files import find_tokenizers, part_files_under

    chosen: dict[str, str] = {}
    if args.models_root:
        chosen.update({k: str(v) for k, v in part_files_under(args.models_root).items()})
    if args.tokenizers:
        tokenizers = find_tokenizers(args.tokenizers)
        if not tokenizers:
            raise UsageError(
                f"--tokenizers {args.tokenizers}: no tokenizer/ or tokenizer_2/ folder (nor "
                "ComfyUI's comfy/sd1_tokenizer, comfy/text_encoders/t5_tokenizer) in it"
            )
        chosen.update({k: str(v) for k, v in tokenizers.items()})
    for name, path in (
        ("vae", args.vae),
        ("text_encoder", args.clip_l),
        ("text_encoder_2", args.t5),
    ):
        if path:
            chosen[name] = path
    return FluxParts(**{name: _locate(path, "", name) for name, path in chosen.items()})


def flux_path(args: argparse.Namespace) -> str | None:
    """``--flux``, else the best FLUX transformer file under ``--models-root``."""
    if args.flux or not args.models_root:
        return str(args.flux) if args.flux else None
    from fbupscale_gui.storage.weight_files import discover_models_root

    found = discover_models_root(args.models_root)
    if not found.transformers:
        searched = ", ".join(str(p) for p in found.folders.get("diffusion_models", ())) or "none"
        raise UsageError(
            f"--models-root {args.models_root}: no FLUX transformer file (a name containing "
            f"'flux' in diffusion_models/ or unet/; searched: {searched})"
        )
    note(f"FLUX transformer from the models root: {found.transformers[0]}")
    return str(found.transformers[0])


def _sr_model_ref(engine: str) -> ModelRef:
    """The file and SHA-256 of ``model:NAME_OR_PATH``; raises UsageError for an unknown one."""
    from fbupscale_gui.storage.weights_library import ModelLibrary

    name = engine[len(MODEL_ENGINE_PREFIX) :]
    library = ModelLibrary()
    try:
        return library.ref(name)
    except ModelNotFoundError:
        known = ", ".join(e.name for e in library.entries()) or "none yet"
        raise UsageError(
            f"--engine {engine}: {name!r} is neither a library model ({known}) nor a model "
            f"file; see '{PROG} models list'"
        ) from None


def _server(url: str) -> Any:
    """A client for ``--server URL`` whose token the server accepted (nothing written yet)."""
    import os

    from fbupscale_gui.host.remote import ServerClient
    from fbupscale_gui.host.serve_config import TOKEN_ENV

    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise UsageError(f"--server needs the server's token in {TOKEN_ENV}")
    client = ServerClient(url, token)
    client.health()  # RemoteAuthError (a one-line FbError) for a wrong token
    return client


def _server_models(
    args: argparse.Namespace, template: ReconstructionRequest
) -> ReconstructionRequest:
    """The engine and models for a server: models are named (the server's files), never
    located here; FLUX is the default engine."""
    engine = args.engine or "flux"
    name = engine[len(MODEL_ENGINE_PREFIX) :] if is_model_engine(engine) else ""
    base = template.replace(engine=engine, sr_model=ModelRef(path=name) if name else None)
    if engine != "flux":
        return base
    named: dict[str, Any] = {
        "flux": ModelRef(path=args.flux) if args.flux else base.flux,
        "controlnet": ModelRef(path=args.controlnet) if args.controlnet else base.controlnet,
    }
    if args.lora:
        named["lora"] = dataclasses.replace(base.lora, model=ModelRef(path=args.lora))
    return base.replace(**named)


def cmd_upscale(args: argparse.Namespace, cancel: CancelFlag) -> int:
    from fbupscale_gui.storage.cutouts import load_cutout_with_notes, make_source

    template = _template_request(args)
    files = _collect_inputs(args.inputs)
    outdir = Path(args.output).expanduser()
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"-o {outdir}: exists and is not a folder")
    server = _server(args.server) if args.server else None
    base = _server_models(args, template) if server else _resolve_models(args, template)
    if args.scene:
        prompt, scene_json = scene_prompt(args.scene)
        base = base.replace(prompt=prompt, scene_json=scene_json)
    if base.engine == "flux" and not base.prompt.strip():
        note(
            "warning: the FLUX prompt is empty: describe the scene with --scene FILE.json "
            "(or --prompt TEXT; in the window, the Scene form). FLUX's results depend on it"
        )
    cutouts: list[tuple[Path, Image.Image, ReconstructionRequest]] = []
    for path in files:  # read everything first: a bad file fails before hours of work
        info = load_cutout_with_notes(path)
        for text in info.notes:
            note(f"note: {path}: {text}")
        image = info.image
        cutouts.append((path, image, base.replace(source=make_source(path, image))))
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputImageError(outdir, f"cannot create the output folder ({exc.strerror})") from None

    engine = server or render.make_engine()
    written = 0
    failed: list[str] = []
    for n, (path, image, request) in enumerate(cutouts, 1):
        label = f"[{n}/{len(cutouts)}] {shown(path.name)}"
        bars = ProgressBar(label, quiet=args.quiet)
        try:
            for candidate in render.candidates(engine, request, bars, cancel):
                # a name too long for the folder is shortened: it never fails after the render
                name = output_name(path.stem, candidate, outdir)
                target = save_new(candidate, outdir / name, image)
                written += 1
                bars.close()
                print(shown(target), flush=True)
        except Cancelled:
            bars.close()
            note(f"cancelled; {written} file(s) written to {outdir}")
            return EXIT_CANCELLED
        except (InputImageError, OSError) as exc:  # one bad cutout or file never stops the batch
            bars.close()
            failed.append(path.name)
            error(exc)
        finally:
            bars.close()
    if failed:
        note(
            f"{len(failed)} of {len(cutouts)} cutouts failed ({', '.join(failed)}); "
            f"{written} file(s) written to {outdir}"
        )
        return EXIT_ERROR
    return 0
