"""The ``fbupscale`` command line: upscale cutouts, reproduce a candidate, check the setup.

``fbupscale upscale INPUT... -o OUTDIR`` reconstructs every cutout (files, or folders of
images) and writes one PNG per candidate, named
``{stem}_v{variant}_s{stage}_{lora|nolora}_seed{seed}.png`` (a stem too long for the folder's
name limit is shortened and ends in ``~`` and a hash), with the request, the cutout and the
AI-reconstructed statement embedded (:mod:`fbupscale_gui.storage.metadata`). Existing files are
never overwritten: a ``-2``, ``-3``... suffix is added, and names are claimed by exclusive
creation, so runs writing into one folder at the same time never overwrite each other. Each
written path is printed on stdout, one per line (control characters escaped); progress bars
go to stderr. A cutout that fails while rendering or saving is reported and the batch goes on
with the next one (exit status 1 at the end).

``fbupscale reproduce CANDIDATE.png -o OUT.png`` renders that one candidate again from its
embedded request (using the embedded cutout when the source file is gone or changed).

``fbupscale doctor`` prints what the application finds: Python packages, GPU, models.

Exit status: 0 done, 1 an error (one line, naming the file), 2 a usage error, 130 cancelled
with Ctrl-C (the first Ctrl-C stops after the current step, a second one at once).
Heavy packages (torch, diffusers, ncnn) are imported only by the commands that run models.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, NoReturn, get_args

from fbupscale_gui import __version__
from fbupscale_gui.core.errors import Cancelled, FbError, InputImageError, ModelNotFoundError
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

    from fbupscale_gui.core.job import Candidate, Progress

__all__ = ["IMAGE_SUFFIXES", "build_parser", "candidate_filename", "main"]

PROG: Final = "fbupscale"
#: Files picked up from an input folder.
IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_CANCELLED: Final = 130


class UsageError(Exception):
    """A command line that cannot work (exit status 2)."""


# -- the parser -----------------------------------------------------------------------------


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


def build_parser() -> argparse.ArgumentParser:
    """The ``fbupscale`` argument parser."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Reconstruct tiny football broadcast cutouts into clean 1024 px frames.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
    _add_model_args(up)
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
    _add_runtime_args(up)
    up.add_argument(
        "--server",
        metavar="URL",
        help="run on an 'fbupscale serve' server (token from FBUPSCALE_TOKEN); models are "
        "the server's, named",
    )
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    rep = sub.add_parser(
        "reproduce",
        help="render one candidate again from its embedded request",
        description="Render a candidate again from the request embedded in its file.",
    )
    rep.add_argument("candidate", metavar="CANDIDATE.png")
    rep.add_argument("-o", "--output", required=True, metavar="OUT.png")
    rep.add_argument("--device", choices=get_args(Device), help="override the recorded device")
    rep.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    doc = sub.add_parser("doctor", help="report packages, GPU and models found")
    _add_model_args(doc)
    _add_plugin_commands(sub)
    return parser


#: Subcommands that live in their own modules: (module, function adding the parser). Each
#: parser sets ``func(args, cancel) -> exit status``; the modules import only light packages.
_PLUGINS: Final = (
    ("fbupscale_gui.cli.models", "add_models_parser"),
    ("fbupscale_gui.cli.fidelity", "add_score_parser"),
    ("fbupscale_gui.cli.fidelity", "add_degrade_parser"),
    ("fbupscale_gui.cli.video", "add_video_parser"),
    ("fbupscale_gui.cli.serve", "add_serve_parser"),
    ("fbupscale_gui.cli.lora", "add_lora_parser"),
)


def _add_plugin_commands(sub: Any) -> None:
    import importlib

    for module_name, function in _PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an optional command whose module is not part of this install
            continue
        getattr(module, function)(sub)


def _add_model_args(p: argparse.ArgumentParser) -> None:
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


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
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


# -- shared helpers -------------------------------------------------------------------------


def _make_engine() -> Any:
    """The engine that runs requests (imported here: it pulls in torch lazily)."""
    from fbupscale_gui.engine import Engine

    return Engine()


def _candidates(
    engine: Any, request: ReconstructionRequest, on_progress: Any, cancel: Any
) -> Iterator[Candidate]:
    """``request``'s candidates through the engine's one entry point (``Engine.handle``, as
    the window's engine process runs it), in this process, or on a server when ``engine`` is
    a :class:`~fbupscale_gui.host.remote.ServerClient`. Raises what the job failed with
    (:class:`Cancelled` when cancelled)."""
    from fbupscale_gui.core.messages import Cancelled as CancelledMessage
    from fbupscale_gui.core.messages import (
        CandidateReady,
        Failed,
        JobProgress,
        ReconstructJob,
        Warning,
        rebuild_error,
    )
    from fbupscale_gui.host.remote import ServerClient, remote_handle

    if isinstance(engine, ServerClient):
        messages = remote_handle(engine, 0, ReconstructJob(request), cancel)
    else:
        from fbupscale_gui.engine.facade import handle

        messages = handle(engine, 0, ReconstructJob(request), cancel)
    for message in messages:
        if isinstance(message, JobProgress):
            on_progress(message.progress)
        elif isinstance(message, CandidateReady):
            yield message.candidate()
        elif isinstance(message, Warning):
            _note(f"warning: {message.text}")
        elif isinstance(message, Failed):
            raise rebuild_error(message)
        elif isinstance(message, CancelledMessage):
            raise Cancelled()


def _note(message: str) -> None:
    print(f"{PROG}: {shown(message)}", file=sys.stderr, flush=True)


class _CancelFlag:
    """First Ctrl-C asks the engine to stop after the current step; the second one quits."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self) -> bool:
        return self.event.is_set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.event.is_set():
                raise KeyboardInterrupt
            self.event.set()
            _note("cancelling after the current step (Ctrl-C again to quit now)")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class _Bars:
    """tqdm progress bars on stderr, one per run, driven by Progress events."""

    def __init__(self, label: str, *, quiet: bool) -> None:
        self.label = label
        self.quiet = quiet
        self._bar: Any = None

    def __call__(self, progress: Progress) -> None:
        from tqdm import tqdm

        if progress.note is not None:  # shown even with --quiet: it is not progress
            prefix = "warning: " if progress.note.level == "warning" else ""
            tqdm.write(f"{PROG}: {prefix}{progress.note.text}", file=sys.stderr)
        if self.quiet:
            return

        total = max(1, progress.job_total)
        if self._bar is None or self._bar.total != total:
            self.close()
            self._bar = tqdm(
                total=total,
                file=sys.stderr,
                unit="step",
                leave=False,
                dynamic_ncols=True,
                disable=None,  # no bar when stderr is not a terminal (logs stay readable)
            )
        self._bar.set_description_str(f"{self.label} {progress.stage}", refresh=False)
        self._bar.n = min(total, progress.job_step)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def candidate_filename(stem: str, candidate: Candidate) -> str:
    """``{stem}_v{variant}_s{stage}_{lora|nolora}_seed{seed}.png``."""
    key = candidate.key
    lora = "lora" if key.lora else "nolora"
    return f"{stem}_v{key.variant}_s{key.stage}_{lora}_seed{candidate.seed}.png"


def _save_new(candidate: Candidate, path: Path, cutout: Image.Image) -> Path:
    """Save to ``path`` or a ``-2``, ``-3``... variant claimed exclusively (never overwriting
    a file, not even one another run is writing right now); returns where it went."""
    from fbupscale_gui.storage.metadata import save_candidate

    return save_candidate(candidate, path, cutout=cutout, exclusive=True)


# -- upscale --------------------------------------------------------------------------------


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


def _scene_prompt(scene_file: str) -> tuple[str, str]:
    """(prompt, scene JSON) from a scene file; errors name the file.

    Only a regular file of bounded size is read (never a device, FIFO or huge file)."""
    from fbupscale_gui.core.errors import RequestError
    from fbupscale_gui.core.scene import Scene
    from fbupscale_gui.storage.paths import NotRegularFileError, read_regular

    path = Path(scene_file).expanduser()
    try:
        text = read_regular(path, "scene file").decode("utf-8")
    except NotRegularFileError as exc:
        raise RequestError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RequestError(f"{path}: cannot read the scene file ({reason})") from None
    try:
        scene = Scene.from_json(text)
        return scene.to_prompt(), scene.to_json()
    except RequestError as exc:
        raise RequestError(f"{path}: {exc}") from None


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
                _note(
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
    flux = _locate(_flux_path(args), FLUX_REPO_ID, "flux")
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


def _flux_path(args: argparse.Namespace) -> str | None:
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
    _note(f"FLUX transformer from the models root: {found.transformers[0]}")
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


def _cmd_upscale(args: argparse.Namespace, cancel: _CancelFlag) -> int:
    from fbupscale_gui.storage.cutouts import load_cutout_with_notes, make_source
    from fbupscale_gui.storage.paths import fit_name

    template = _template_request(args)
    files = _collect_inputs(args.inputs)
    outdir = Path(args.output).expanduser()
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"-o {outdir}: exists and is not a folder")
    server = _server(args.server) if args.server else None
    base = _server_models(args, template) if server else _resolve_models(args, template)
    if args.scene:
        prompt, scene_json = _scene_prompt(args.scene)
        base = base.replace(prompt=prompt, scene_json=scene_json)
    if base.engine == "flux" and not base.prompt.strip():
        _note(
            "warning: the FLUX prompt is empty: describe the scene with --scene FILE.json "
            "(or --prompt TEXT; in the window, the Scene form). FLUX's results depend on it"
        )
    cutouts: list[tuple[Path, Image.Image, ReconstructionRequest]] = []
    for path in files:  # read everything first: a bad file fails before hours of work
        info = load_cutout_with_notes(path)
        for note in info.notes:
            _note(f"note: {path}: {note}")
        image = info.image
        cutouts.append((path, image, base.replace(source=make_source(path, image))))
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputImageError(outdir, f"cannot create the output folder ({exc.strerror})") from None

    engine = server or _make_engine()
    written = 0
    failed: list[str] = []
    for n, (path, image, request) in enumerate(cutouts, 1):
        label = f"[{n}/{len(cutouts)}] {shown(path.name)}"
        bars = _Bars(label, quiet=args.quiet)
        try:
            for candidate in _candidates(engine, request, bars, cancel):
                # a name too long for the folder is shortened: it never fails after the render
                name = fit_name(path.stem, candidate_filename("", candidate), outdir)
                target = _save_new(candidate, outdir / name, image)
                written += 1
                bars.close()
                print(shown(target), flush=True)
        except Cancelled:
            bars.close()
            _note(f"cancelled; {written} file(s) written to {outdir}")
            return EXIT_CANCELLED
        except (InputImageError, OSError) as exc:  # one bad cutout or file never stops the batch
            bars.close()
            failed.append(path.name)
            print(f"{PROG}: error: {shown(_one_line(exc))}", file=sys.stderr, flush=True)
        finally:
            bars.close()
    if failed:
        _note(
            f"{len(failed)} of {len(cutouts)} cutouts failed ({', '.join(failed)}); "
            f"{written} file(s) written to {outdir}"
        )
        return EXIT_ERROR
    return 0


# -- reproduce ------------------------------------------------------------------------------


def _cmd_reproduce(args: argparse.Namespace, cancel: _CancelFlag) -> int:
    from fbupscale_gui.core.errors import RequestError
    from fbupscale_gui.core.images import image_sha256
    from fbupscale_gui.storage.cutouts import load_source
    from fbupscale_gui.storage.metadata import read_metadata
    from fbupscale_gui.storage.store import store_cutout

    src = Path(args.candidate).expanduser()
    record = read_metadata(src)
    request = record.request.replace(only=None)
    source = request.source
    if source is None:
        raise RequestError(f"{src}: the embedded request names no cutout")
    if args.device:
        request = request.replace(device=args.device)
    try:
        cutout = load_source(source)
    except InputImageError as exc:
        if record.cutout is None:
            raise InputImageError(
                src, f"{exc} and the candidate carries no embedded cutout"
            ) from None
        if image_sha256(record.cutout) != source.sha256:
            raise InputImageError(
                src, "the embedded cutout does not match the request's source hash"
            ) from None
        _note(f"note: {source.path} is missing or changed; using the embedded cutout")
        request = request.replace(source=store_cutout(record.cutout, source.name))
        cutout = record.cutout
    target = Path(args.output).expanduser()
    bars = _Bars(src.name, quiet=args.quiet)
    engine = _make_engine()
    result: Candidate | None = None
    try:
        for candidate in _candidates(engine, request.with_only(record.key), bars, cancel):
            if candidate.key == record.key or request.engine != "flux":
                result = candidate
    except Cancelled:
        _note("cancelled; nothing written")
        return EXIT_CANCELLED
    finally:
        bars.close()
    if result is None:
        raise RequestError(f"{src}: the engine did not render candidate {record.key.label}")
    _compare_runtime(src, record, result)
    result = dataclasses.replace(result, request=request)
    target = _save_new(result, target, cutout)
    print(shown(target), flush=True)
    _compare(src, record, result)
    return 0


def _compare_runtime(src: Path, record: Any, result: Candidate) -> None:
    """Say which field of the resolved runtime differs from the recorded one (a note on
    stderr): the same request is pixel-identical only on the same runtime."""
    if record.resolved is None or result.resolved is None:
        return
    changed = record.resolved.differences(result.resolved)
    if changed:
        _note(
            f"today's runtime differs from the one {src.name} was rendered on: "
            + "; ".join(changed)
            + " (pixels may differ)"
        )


def _compare(src: Path, record: Any, result: Candidate) -> None:
    """Say whether the new render has the candidate's pixels (a note on stderr)."""
    from PIL import Image as PILImage

    from fbupscale_gui.core.images import image_sha256

    provenance = record.provenance or {}
    expected: str | None = None
    if (provenance.get("badge") or {}).get("applied") and provenance.get("pixels_sha256"):
        expected = str(provenance["pixels_sha256"])  # the pixels before the visible badge
    else:
        with contextlib.suppress(OSError, ValueError), PILImage.open(src) as original:
            if original.format == "PNG":  # JPEG pixels are lossy: nothing to compare
                expected = image_sha256(original.convert("RGB"))
    if expected is None:
        return
    if image_sha256(result.image.convert("RGB")) == expected:
        _note(f"identical to {src.name} ({result.runtime})")
    else:
        _note(
            f"differs from {src.name}: recorded on '{record.runtime}', "
            f"rendered on '{result.runtime}'"
        )


# -- doctor ---------------------------------------------------------------------------------


def _cmd_doctor(args: argparse.Namespace, cancel: _CancelFlag) -> int:
    from fbupscale_gui.engine.doctor import report

    lora = ModelRef(path=args.lora) if args.lora else None
    try:
        flux_path = _flux_path(args)
    except UsageError:  # the report says what the models root lacks
        flux_path = None
    print(
        report(
            flux=ModelRef(path=flux_path or "", repo_id=FLUX_REPO_ID),
            flux_base=ModelRef(path=args.flux_base) if args.flux_base else None,
            controlnet=ModelRef(path=args.controlnet or "", repo_id=CONTROLNET_REPO_ID),
            lora=lora,
            models_root=args.models_root,
        )
    )
    return 0


_COMMANDS: Final[dict[str, Callable[[argparse.Namespace, _CancelFlag], int]]] = {
    "upscale": _cmd_upscale,
    "reproduce": _cmd_reproduce,
    "doctor": _cmd_doctor,
}


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, FbError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    cancel = _CancelFlag()
    try:
        with cancel.installed():
            command = _COMMANDS.get(args.command) or args.func
            return int(command(args, cancel))
    except UsageError as exc:
        _usage_error(args, str(exc))
    except KeyboardInterrupt:
        _note("interrupted")
        return EXIT_CANCELLED
    except Cancelled:
        _note("cancelled")
        return EXIT_CANCELLED
    except (FbError, OSError) as exc:
        print(f"{PROG}: error: {shown(_one_line(exc))}", file=sys.stderr, flush=True)
        return EXIT_ERROR


def _usage_error(args: argparse.Namespace, message: str) -> NoReturn:
    print(f"{PROG} {args.command}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USAGE)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
