"""The served engine (``fbupscale serve``): protocol, security, same pixels, faults.

The tests marked ``ray`` start one local Ray (2 CPUs, no dashboard) and one Serve
application for the whole module (two CPU replicas), and shut both down at the end; select
them with ``-m ray``. The rest (wire format, names, config) need no Ray.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fbupscale_gui.core.errors import RequestError
from fbupscale_gui.core.job import Progress
from fbupscale_gui.core.messages import (
    Cancelled,
    CandidateReady,
    Done,
    EngineCrashed,
    Failed,
    JobProgress,
    Message,
    ReconstructJob,
    Warning,
    failed_from,
)
from fbupscale_gui.core.request import ModelRef, Preprocess, ReconstructionRequest
from fbupscale_gui.core.wire import message_from_json, message_to_json, model_name
from fbupscale_gui.host.remote import RemoteAuthError, ServerClient, for_server, remote_handle
from fbupscale_gui.host.serve_config import ServeConfig, ServeConfigError
from fbupscale_gui.storage.cutouts import make_source

TOKEN = "t0ken-for-the-served-engine-tests"
ROOT = Path(__file__).resolve().parents[1]


def _request(path: Path, engine: str = "lanczos", **changes: Any) -> ReconstructionRequest:
    return ReconstructionRequest(
        engine=engine, source=make_source(path), preprocess=Preprocess(size=256), **changes
    )


@pytest.fixture(scope="module")
def cutout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fbupscale_gui.engine.testing import tiny_cutout

    path = tmp_path_factory.mktemp("serve") / "player 7.png"
    tiny_cutout(40, 52, seed=3).save(path)
    return path


def _messages(
    client: ServerClient, request: ReconstructionRequest, job_id: int = 1
) -> list[Message]:
    return list(remote_handle(client, job_id, ReconstructJob(request), lambda: False))


def _local(request: ReconstructionRequest) -> list[Message]:
    from fbupscale_gui.engine import Engine
    from fbupscale_gui.engine.facade import handle

    return list(handle(Engine(), 1, ReconstructJob(request), lambda: False))


# -- no Ray ---------------------------------------------------------------------------------


def test_every_message_round_trips_through_json(cutout: Path) -> None:
    request = _request(cutout)
    messages = [
        *_local(request),
        failed_from(3, EngineCrashed("replica died", "last lines")),
        Cancelled(3, "hard"),
        JobProgress(3, Progress("fast", 1, 2, 1, 2)),
    ]
    ready = next(m for m in messages if isinstance(m, CandidateReady))
    assert ready.number_check is not None  # the engine's number check travels too
    report = {"stages": ["stage2"], "layers": 12, "scale": 0.9}
    messages.append(dataclasses.replace(ready, lora_report=report))
    for message in messages:
        text = json.dumps(message_to_json(message))
        assert message_from_json(json.loads(text)) == message


def test_the_wire_refuses_unknown_or_malformed_messages() -> None:
    with pytest.raises(RequestError, match="unknown message type"):
        message_from_json({"type": "Exec", "job_id": 1})
    bad = {
        "type": "CandidateReady",
        "job_id": 1,
        "pixels": {"width": 2, "height": 2, "data": "AAA="},
    }
    with pytest.raises(RequestError):
        message_from_json(bad)


@pytest.mark.parametrize(
    "name", ["../x.pth", "/etc/passwd", "a/b.pth", "C:\\m.pth", "~root", "..", "", "x\0y"]
)
def test_path_shaped_model_names_are_refused(name: str) -> None:
    with pytest.raises(RequestError, match="not a model name"):
        model_name(name, "sr_model")


def test_a_desk_sends_names_never_its_paths(cutout: Path) -> None:
    request = _request(cutout, "model:span", sr_model=ModelRef(path="/home/op/models/4x.pth"))
    sent = for_server(request)
    assert sent.sr_model is not None and sent.sr_model.path == "4x.pth"
    assert sent.source is not None and sent.source.path == "player 7.png"
    assert sent.source.sha256 == request.source.sha256  # type: ignore[union-attr]


def test_the_server_refuses_to_run_without_a_real_token(tmp_path: Path) -> None:
    with pytest.raises(ServeConfigError, match="FBUPSCALE_TOKEN"):
        ServeConfig.load(None, environ={}).check()
    config = tmp_path / "serve.toml"
    config.write_text(f'token = "short"\nmodels_dirs = ["{tmp_path}"]\nport = 9000\n')
    with pytest.raises(ServeConfigError, match="token"):
        ServeConfig.load(config, environ={}).check()
    loaded = ServeConfig.load(config, environ={"FBUPSCALE_TOKEN": TOKEN}).check()
    assert (loaded.token, loaded.port, loaded.models_dirs) == (TOKEN, 9000, (str(tmp_path),))
    config.write_text("tokn = 1\n")
    with pytest.raises(ServeConfigError, match="unknown setting"):
        ServeConfig.load(config, environ={})


def test_readme_documents_serve_server_and_settings() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for text in ("fbupscale serve", "--server", "Settings › Engine", "FBUPSCALE_TOKEN", "TLS"):
        assert text in readme, text


# -- a served engine ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ray = pytest.importorskip("ray")
    from ray import serve

    from fbupscale_gui.host.server import build_app

    models = tmp_path_factory.mktemp("server-models")
    (models / "tiny.safetensors").write_bytes(b"not really a model")
    port = _free_port()
    config = ServeConfig(
        token=TOKEN,
        models_dirs=(str(models),),
        port=port,
        cpu_replicas=2,
        max_upload_bytes=64 * 1024,
        factory="fbupscale_gui.host.testing:stalling_engine",
    ).check()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(config), blocking=False)
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def _raw(url: str, method: str = "GET", body: bytes | None = None, token: str | None = None) -> int:
    req = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _job_body(cutout: Path, request: ReconstructionRequest, data: bytes | None = None) -> bytes:
    raw = cutout.read_bytes() if data is None else data
    return json.dumps(
        {
            "job_id": 1,
            "request": for_server(request).to_dict(),
            "cutout": base64.b64encode(raw).decode(),
        }
    ).encode()


@pytest.mark.ray
@pytest.mark.slow
def test_two_concurrent_clients_get_the_local_pixels(server: str, cutout: Path) -> None:
    requests = [_request(cutout, "lanczos"), _request(cutout, "realesrgan", device="cpu")]
    results: dict[int, list[Message]] = {}

    def desk(n: int) -> None:
        results[n] = _messages(ServerClient(server, TOKEN), requests[n], job_id=n)

    threads = [threading.Thread(target=desk, args=(n,), daemon=True) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for n, request in enumerate(requests):
        served = [m for m in results[n] if isinstance(m, CandidateReady)]
        local = [m for m in _local(request) if isinstance(m, CandidateReady)]
        assert isinstance(results[n][-1], Done), results[n][-1]
        assert len(served) == len(local) == 1
        assert served[0].pixels == local[0].pixels  # byte for byte
        assert served[0].runtime == local[0].runtime
        assert served[0].lr_consistency == pytest.approx(local[0].lr_consistency)
        assert served[0].request == request  # the desk's own request, its paths included
        assert served[0].job_id == n


@pytest.mark.ray
@pytest.mark.slow
def test_missing_or_wrong_token_is_refused_and_nothing_runs(server: str, cutout: Path) -> None:
    client = ServerClient(server, TOKEN)
    before = len(client.jobs())
    body = _job_body(cutout, _request(cutout))
    for token in (None, "wrong-token-of-some-length", ""):
        assert _raw(f"{server}/v1/health", token=token) == 401
        assert _raw(f"{server}/v1/models", token=token) == 401
        assert _raw(f"{server}/v1/jobs", "POST", body, token=token) == 401
    with pytest.raises(RemoteAuthError, match="401"):
        ServerClient(server, "wrong-token-of-some-length").health()
    assert len(client.jobs()) == before


@pytest.mark.ray
@pytest.mark.slow
def test_an_oversized_upload_is_refused(server: str, cutout: Path) -> None:
    client = ServerClient(server, TOKEN)
    before = len(client.jobs())
    body = _job_body(cutout, _request(cutout), data=os.urandom(80 * 1024))
    assert _raw(f"{server}/v1/jobs", "POST", body, token=TOKEN) == 413
    assert len(client.jobs()) == before


@pytest.mark.ray
@pytest.mark.slow
def test_path_shaped_and_unknown_model_names_are_refused(server: str, cutout: Path) -> None:
    client = ServerClient(server, TOKEN)
    before = len(client.jobs())
    for path in ("../../etc/passwd", "/etc/passwd", "sub/tiny.safetensors", "missing.pth"):
        request = _request(cutout, "model:x", sr_model=ModelRef(path=path))
        data = json.loads(_job_body(cutout, request))
        data["request"]["sr_model"]["path"] = path  # what a hostile client sends
        assert _raw(f"{server}/v1/jobs", "POST", json.dumps(data).encode(), token=TOKEN) == 400
    assert len(client.jobs()) == before
    listed = client.models()
    assert [m["name"] for m in listed["models"]] == ["tiny.safetensors"]
    assert len(listed["models"][0]["sha256"]) == 64


def _within(seconds: float, fn: Any) -> Any:
    """``fn()``, failing (instead of hanging the run) if it takes over ``seconds``."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"no answer within {seconds} s"
    return result[0]


def _wait_for(path: Path, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


@pytest.mark.ray
@pytest.mark.slow
def test_cancel_and_resume_a_stream_by_id(server: str, cutout: Path, tmp_path: Path) -> None:
    client = ServerClient(server, TOKEN)
    pid_file = tmp_path / "stall.pid"
    server_id = client.submit(5, _request(cutout, prompt=f"stall:{pid_file}"))
    _wait_for(pid_file)
    client.cancel(server_id)
    messages = _within(60, lambda: list(client.follow(server_id)))
    assert isinstance(messages[-1], Cancelled)
    # a client that lost its connection after two messages resumes from the third
    resumed = _within(60, lambda: list(client.follow(server_id, since=2)))
    assert resumed == messages[2:]
    assert [j["state"] for j in client.jobs() if j["id"] == server_id] == ["cancelled"]


@pytest.mark.ray
@pytest.mark.slow
def test_a_replica_killed_mid_job_fails_that_job_and_others_go_on(
    server: str, cutout: Path, tmp_path: Path
) -> None:
    client = ServerClient(server, TOKEN)
    pid_file = tmp_path / "stall.pid"
    stalled: list[Message] = []
    doomed = threading.Thread(
        target=lambda: stalled.extend(
            _messages(client, _request(cutout, prompt=f"stall:{pid_file}"), job_id=8)
        ),
        daemon=True,
    )
    doomed.start()
    pid = _wait_for(pid_file)
    other = _within(
        120, lambda: _messages(client, _request(cutout), job_id=9)
    )  # the other replica serves it
    assert isinstance(other[-1], Done)
    os.kill(pid, signal.SIGKILL)
    doomed.join(120)
    last = stalled[-1]
    assert isinstance(last, Failed) and last.crashed, last
    assert "replica died" in last.reason and "run the job again" in last.reason
    assert sum(isinstance(m, Failed) for m in stalled) == 1  # failed once, not retried
    after = _within(
        120, lambda: _messages(client, _request(cutout), job_id=10)
    )  # the server keeps serving
    assert isinstance(after[-1], Done)


@pytest.mark.ray
@pytest.mark.slow
def test_cli_upscale_on_a_server(
    server: str, cutout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from fbupscale_gui.cli import main

    out = tmp_path / "out"
    monkeypatch.setenv("FBUPSCALE_TOKEN", "wrong-token-of-some-length")
    args = ["upscale", str(cutout), "-o", str(out), "--engine", "lanczos", "--size", "256", "-q"]
    assert main([*args, "--server", server]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "401" in err and "token" in err
    assert not out.exists()  # wrote nothing
    monkeypatch.setenv("FBUPSCALE_TOKEN", TOKEN)
    assert main([*args, "--server", server]) == 0
    served = sorted(out.iterdir())
    local_out = tmp_path / "local"
    assert main([*args[:3], str(local_out), *args[4:]]) == 0
    from PIL import Image

    assert len(served) == 1
    with Image.open(served[0]) as a, Image.open(next(local_out.iterdir())) as b:
        assert a.tobytes() == b.tobytes()


class _Proxy:
    """A TCP forwarder between a desk and the server whose connections can be cut."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for s in self.conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self.conns.clear()


@pytest.mark.ray
@pytest.mark.slow
def test_a_dropped_connection_keeps_the_job_and_the_desk_reattaches(
    server: str, cutout: Path, tmp_path: Path
) -> None:
    from fbupscale_gui.host.remote import RemoteEngine

    proxy = _Proxy(int(server.rsplit(":", 1)[1]))
    received: list[Message] = []
    done = threading.Event()

    def on_message(message: Message) -> None:
        received.append(message)
        if isinstance(message, (Done, Failed, Cancelled)):
            done.set()

    desk = RemoteEngine(on_message, f"http://127.0.0.1:{proxy.port}", TOKEN)
    pid_file = tmp_path / "stall.pid"
    desk.submit(4, ReconstructJob(_request(cutout, prompt=f"stall:{pid_file}")))
    _wait_for(pid_file)
    time.sleep(0.5)  # the desk follows the job's stream now
    proxy.cut()
    deadline = time.monotonic() + 60
    while not any(isinstance(m, Warning) for m in received) and time.monotonic() < deadline:
        time.sleep(0.1)
    desk.cancel(4)  # over a new connection: the job was still running on the server
    assert done.wait(60)
    kinds = [type(m).__name__ for m in received]
    assert kinds[0] == "Queued" and kinds[-1] == "Cancelled", kinds
    assert kinds.count("Queued") == 1 and kinds.count("Started") == 1, (
        kinds
    )  # resumed, not replayed
    assert "Warning" in kinds and "reattaching" in next(
        m.text for m in received if isinstance(m, Warning)
    )
    desk.shutdown(5)


def test_settings_engine_chooses_this_computer_or_a_server() -> None:
    from fbupscale_gui.core.settings import Settings, SettingsError

    settings = Settings.defaults()
    assert settings.engine_server == ""  # this computer
    farm = settings.replace(engine_server=" https://farm.example:8765/ ", engine_token="abc")
    assert farm.engine_server == "https://farm.example:8765"
    with pytest.raises(SettingsError, match="http"):
        settings.replace(engine_server="farm.example:8765")
    stored = Settings.from_mapping({"engine_server": "file:///etc"})
    assert stored.engine_server == ""  # a bad stored value falls back to this computer


def test_the_desk_sends_reconstructions_to_the_server(qtbot: Any, cutout: Path) -> None:
    from fbupscale_gui.worker.bridge import Delivery
    from fbupscale_gui.worker.engine_process import ProcessLink

    port = _free_port()  # nothing listens there
    link = ProcessLink(server=(f"http://127.0.0.1:{port}", TOKEN))
    try:
        with qtbot.waitSignal(link.delivered, timeout=30_000) as blocker:
            link.submit(3, ReconstructJob(_request(cutout)))
        delivery = blocker.args[0]
        assert isinstance(delivery, Delivery)
        assert isinstance(delivery.message, Failed)
        assert f"127.0.0.1:{port}" in delivery.message.reason  # it went to the server
        assert not link.process.is_alive()  # and never to this computer's engine process
    finally:
        link.shutdown(5_000)
