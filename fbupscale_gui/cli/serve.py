"""``fbupscale serve``: the engine for many desks, on Ray Serve (:mod:`.host.server`).

Ray is imported only when the command runs, so the other commands start as fast as before;
without it (the optional ``serve`` extra) the command says what to install.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from fbupscale_gui.cli.common import SERVE_PACKAGES, missing_extra

__all__ = ["add_serve_parser"]


def add_serve_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve the engine to review desks over HTTP (Ray Serve)",
        description=(
            "Serve the engine over HTTP to desks and 'fbupscale upscale --server'. Every call "
            "needs the token (FBUPSCALE_TOKEN or 'token' in the config file). Put TLS in "
            "front with a reverse proxy (see README)."
        ),
    )
    p.add_argument("--config", metavar="FILE.toml", help="server settings (models folders...)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8765)")
    p.add_argument(
        "--address", metavar="RAY_ADDRESS", help="join this Ray cluster (default: a local Ray)"
    )
    p.add_argument("--cpu-replicas", type=int, metavar="N", help="fast-engine replicas")
    p.add_argument(
        "--gpu-replicas", type=int, metavar="N", help="FLUX replicas, one GPU each (default: all)"
    )
    p.add_argument(
        "--num-cpus", type=int, metavar="N", help="CPUs a local Ray may use (default: all)"
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace, cancel: Any) -> int:
    # the optional extra first: without it, nothing else the command checks matters
    try:
        import ray
        from ray import serve

        from fbupscale_gui.host.server import build_app
    except ImportError as exc:
        raise missing_extra(exc, "serve", "serve", SERVE_PACKAGES) from None
    from fbupscale_gui.host.serve_config import ServeConfig

    config = (
        ServeConfig.load(args.config)
        .replace(
            host=args.host,
            port=args.port,
            cpu_replicas=args.cpu_replicas,
            gpu_replicas=args.gpu_replicas,
        )
        .check()
    )

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        serve.run(build_app(config, gpus=gpus), blocking=False)
        print(
            f"fbupscale: serving on http://{config.host}:{config.port} (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
