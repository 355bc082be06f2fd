"""A server run in-process with test doubles registered through the plugin hooks: mid-stream failures,
load failures, the default-model fallback and the governance hook, driven by boto3."""

from __future__ import annotations

import threading
import time

import boto3
import httpx
import pytest
import uvicorn
from botocore.config import Config
from botocore.exceptions import EventStreamError

from outcrop import modelpacks
from outcrop.core.governance import CallContext
from outcrop.server.app import create_app
from outcrop.server.deps import Services
from outcrop.settings import Settings
from tests.doubles import ScriptedPlugin
from tests.e2e.conftest import free_port

MODELS = """
[[models]]
id = "test.scripted-v1:0"
engine = "scripted"
options = { words = ["Hello", " there", " friend"] }

[[models]]
id = "test.crashing-v1:0"
engine = "scripted"
options = { words = ["Hello", " there", " friend"], fail_after = 2 }

[[models]]
id = "test.corrupt-v1:0"
engine = "llamacpp"
path = "{corrupt}"

[[models]]
id = "test.unpacked-v1:0"
engine = "llamacpp"
pack = "missing-test-pack"
"""


@pytest.fixture(scope="module")
def inproc(tmp_path_factory, monkeypatch_module):
    home = tmp_path_factory.mktemp("inproc-home")
    corrupt = home / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + b"\0" * 64)
    (home / "models.toml").write_text(MODELS.replace("{corrupt}", str(corrupt)))
    shared = Settings().model_cache
    if shared.exists():
        (home / "models").symlink_to(shared)
    monkeypatch_module.setitem(modelpacks.PACKS, "missing-test-pack", modelpacks.Pack(
        "missing-test-pack", (("outcrop-missing-test-pack", "1.0"),), "x/part{n}.bin", "x.gguf", "0" * 64))
    port = free_port()
    settings = Settings(home=home, port=port, default_chat_model="test.unpacked-v1:0", slots=1, context_size=2048)
    services = Services.build(settings, plugins=[ScriptedPlugin()])
    creds = services.accounts.bootstrap()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, services), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    client = boto3.client("bedrock-runtime", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
                          config=Config(retries={"total_max_attempts": 1}, read_timeout=300))
    yield services, client, f"http://127.0.0.1:{port}", creds
    server.should_exit = True
    thread.join(timeout=10)
    services.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


MSG = [{"role": "user", "content": [{"text": "hi"}]}]


def test_mid_stream_failure_is_an_exception_frame(inproc):
    _, rt, _, _ = inproc
    stream = rt.converse_stream(modelId="test.crashing-v1:0", messages=MSG)["stream"]
    seen = []
    with pytest.raises(EventStreamError) as exc:
        for event in stream:
            seen.append(event)
    assert exc.value.response["Error"]["Code"] == "modelStreamErrorException"
    assert "crashed mid-answer" in exc.value.response["Error"]["Message"]
    assert "messageStart" in seen[0]


def test_model_that_fails_to_load(inproc):
    _, rt, _, _ = inproc
    with pytest.raises(rt.exceptions.ModelNotReadyException, match="failed to load"):
        rt.converse(modelId="test.corrupt-v1:0", messages=MSG)


def test_missing_default_pack_falls_back_to_smollm2_loudly(inproc, caplog):
    _, rt, endpoint, _ = inproc
    reply = rt.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0",
                        messages=[{"role": "user", "content": [{"text": "What is the capital of France?"}]}],
                        inferenceConfig={"maxTokens": 30, "temperature": 0})
    assert len(reply["output"]["message"]["content"][0]["text"]) > 10  # SmolLM2-135M: real text, not always right
    assert any("FALLING BACK to huggingface.smollm2" in r.getMessage() for r in caplog.records)
    ready = httpx.get(f"{endpoint}/readyz").json()
    assert ready["fallbacks"] == {"test.unpacked-v1:0": "huggingface.smollm2-135m-instruct-v1:0"}


def test_every_call_passes_the_governance_hook(inproc):
    services, rt, _, creds = inproc
    local = CallContext(None, "GetUsage")

    def usage() -> dict[str, dict[str, int]]:
        rows = services.usage.usage(local, group_by=("model",), account_id=creds.account_id)
        return {row["ModelId"]: row for row in rows}

    before = usage().get("test.scripted-v1:0", {})
    reply = rt.converse(modelId="test.scripted-v1:0", messages=MSG)
    assert reply["output"]["message"]["content"][0]["text"] == "Hello there friend"
    with pytest.raises(EventStreamError):
        list(rt.converse_stream(modelId="test.crashing-v1:0", messages=MSG)["stream"])
    after = usage()
    assert after["test.scripted-v1:0"]["Invocations"] == before.get("Invocations", 0) + 1
    assert after["test.scripted-v1:0"]["OutputTokens"] == before.get("OutputTokens", 0) + 3
    assert after["test.crashing-v1:0"]["Errors"] >= 1
    crashed = {"ModelId": "test.crashing-v1:0", "Operation": "ConverseStream"}
    assert services.metrics.registry.get_sample_value("InvocationServerErrors_total", crashed) >= 1
