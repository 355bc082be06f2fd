"""One live server per test session: a free port, a temp data dir, the real default models."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from botocore.config import Config

from outcrop.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything here drives real models: `pytest -m "not slow"` skips it locally; CI runs it all."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    endpoint: str
    home: Path
    creds: dict[str, str]
    process: subprocess.Popen[bytes]

    def client(self, service: str, **overrides: object):  # type: ignore[no-untyped-def]
        config = Config(retries={"total_max_attempts": 1}, read_timeout=600, connect_timeout=10)
        kwargs: dict[str, object] = {"endpoint_url": self.endpoint, "region_name": "us-east-1", "config": config,
                                     "aws_access_key_id": self.creds["access_key_id"],
                                     "aws_secret_access_key": self.creds["secret_access_key"]}
        kwargs.update(overrides)
        return boto3.client(service, **kwargs)  # type: ignore[call-overload]


def start_server(home: Path, port: int, extra_env: dict[str, str] | None = None, tls: bool = False) -> LiveServer:
    home.mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(exist_ok=True)  # the server's TMPDIR lies inside the data dir, so the canary scan covers it
    shared = Settings(home=Path(os.environ.get("OUTCROP_TEST_MODEL_CACHE", Path.home() / ".outcrop"))).model_cache
    if shared.exists() and not (home / "models").exists():
        (home / "models").symlink_to(shared)  # reuse models assembled by `make packs`
    env = {**os.environ, "OUTCROP_HOME": str(home), "OUTCROP_PORT": str(port), "OUTCROP_SLOTS": "4",
           "OUTCROP_CONTEXT_SIZE": "16384",
           "OUTCROP_AUTH_FAILURES_PER_MINUTE": "1000", "TMPDIR": str(home / "tmp"), **({"OUTCROP_TLS_SELF_SIGNED": "1"} if tls else {}), **(extra_env or {})}
    env.pop("AWS_BEARER_TOKEN_BEDROCK", None)
    log = (home / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "outcrop", "serve"], env=env, stdout=log, stderr=log)
    endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    cert = home / "tls" / "self-signed.crt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {(home / 'server.log').read_text()[-3000:]}")
        try:
            verify: bool | str = str(cert) if tls else True
            if (not tls or cert.exists()) and httpx.get(f"{endpoint}/healthz", timeout=1, verify=verify).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError("server did not become healthy")
    creds = json.loads((home / "credentials.json").read_text())
    return LiveServer(endpoint, home, creds, process)


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


@dataclass
class S3Server:
    endpoint: str

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")


@pytest.fixture(scope="session")
def s3_server():  # type: ignore[no-untyped-def]
    """An S3-compatible server on loopback (moto's server mode): the endpoint of the S3 data sources."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    yield S3Server(f"http://127.0.0.1:{port}")
    moto.stop()


@pytest.fixture(scope="session")
def file_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory the server may read file:// data sources from (OUTCROP_FILE_ROOTS)."""
    return tmp_path_factory.mktemp("file-root")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, file_root: Path):  # type: ignore[no-untyped-def]
    live = start_server(tmp_path_factory.mktemp("outcrop-home"), free_port(), {
        "OUTCROP_S3_ENDPOINT_URL": s3_server.endpoint, "OUTCROP_S3_ACCESS_KEY_ID": "testing",
        "OUTCROP_S3_SECRET_ACCESS_KEY": "testing", "OUTCROP_FILE_ROOTS": json.dumps([str(file_root)])})
    yield live
    stop_server(live)


@pytest.fixture(scope="session")
def runtime(server: LiveServer):  # type: ignore[no-untyped-def]
    return server.client("bedrock-runtime")


@pytest.fixture(scope="session")
def bedrock(server: LiveServer):  # type: ignore[no-untyped-def]
    return server.client("bedrock")


@pytest.fixture(scope="session")
def openai_client(server: LiveServer):  # type: ignore[no-untyped-def]
    import openai

    return openai.OpenAI(base_url=f"{server.endpoint}/v1", api_key=server.creds["api_key"], max_retries=0, timeout=600)


def signed_post(server: LiveServer, path: str, body: bytes) -> httpx.Response:
    """A SigV4-signed request that boto3's client-side validation would not let through."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=server.endpoint + path, data=body,
                         headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(server.creds["access_key_id"], server.creds["secret_access_key"]), "bedrock",
              "us-east-1").add_auth(request)
    return httpx.post(server.endpoint + path, content=body, headers=dict(request.headers.items()), timeout=300)
