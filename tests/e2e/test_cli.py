"""The `outcrop` command, run as a person would, on the real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from outcrop.settings import Settings


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shared = Settings().model_cache
    if shared.exists():
        (tmp_path / "models").symlink_to(shared)
    return tmp_path


def outcrop(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUTCROP_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "outcrop", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=300)


def test_env_prints_export_lines(server):
    result = outcrop(server.home, "env")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("export AWS_ENDPOINT_URL=http://127.0.0.1:")
    assert f"AWS_ACCESS_KEY_ID={server.creds['access_key_id']}" in lines[1]
    assert f"OPENAI_API_KEY={server.creds['api_key']}" in lines[2]


def test_env_without_first_start(home):
    result = outcrop(home, "env")
    assert result.returncode == 1 and "outcrop serve" in result.stderr


def test_models_list_and_add(home, tmp_path):
    listed = outcrop(home, "models", "list")
    assert listed.returncode == 0 and "qwen.qwen2-5-coder-0-5b-instruct-v1:0" in listed.stderr
    gguf = Settings().model_cache / "smollm2-135m-instruct-q4_1.gguf"
    added = outcrop(home, "models", "add", "mine.smol-v1:0", "--path", str(gguf))
    assert added.returncode == 0, added.stderr
    assert "mine.smol-v1:0" in outcrop(home, "models", "list").stderr
    bad = outcrop(home, "models", "add", "mine.bad-v1:0", "--path", str(tmp_path / "nope.gguf"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_chat_streams_a_real_answer(home):
    result = outcrop(home, "chat", "--temperature", "0", stdin="What is the capital of France?\n\n")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert "end_turn" in result.stderr


def test_embed(home):
    result = outcrop(home, "embed", "hello world", "--dimensions", "8")
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout.splitlines()[0])
    assert line["text"] == "hello world" and len(line["embedding"]) == 8


def test_admin_commands_while_the_server_runs(server):
    """The CLI acts on the data dir; the running server sees each change within a second."""
    import time

    from botocore.exceptions import ClientError

    from tests.e2e.iam import MANAGED, Principal

    def run(*args: str) -> object:
        result = outcrop(server.home, *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if result.stdout.strip() else None

    name = f"cli-{os.getpid()}"
    assert run("users", "create", name)["UserName"] == name  # type: ignore[index]
    run("policies", "attach", name, MANAGED + "AmazonBedrockReadOnly")
    key = run("keys", "create", name)
    user = Principal(server.endpoint, key["AccessKeyId"], key["SecretAccessKey"])  # type: ignore[index]
    assert user.client("bedrock").list_foundation_models()["modelSummaries"]
    run("keys", "deactivate", key["AccessKeyId"])  # type: ignore[index]
    time.sleep(1.2)
    with pytest.raises(ClientError) as excinfo:
        user.client("bedrock").list_foundation_models()
    assert excinfo.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert any(u["UserName"] == name for u in run("users", "list"))  # type: ignore[union-attr]
    cmk = run("keys", "kms-create", "--description", "from the CLI")
    assert cmk["KeyState"] == "Enabled"  # type: ignore[index]
    assert run("keys", "kms-disable", cmk["KeyId"])["KeyState"] == "Disabled"  # type: ignore[index]
    denied = outcrop(server.home, "accounts", "suspend", server.creds["account_id"])
    assert denied.returncode == 1 and "own account" in denied.stderr


def test_kb_commands_beside_a_running_server(server):
    """`outcrop kb` in-process on the running server's data dir: the server sees what the CLI indexed."""
    import uuid

    folder = server.home / "files" / f"cli-{uuid.uuid4().hex[:6]}"  # <home>/files: allowed by default
    folder.mkdir(parents=True)
    (folder / "tides.md").write_text("# Tides\n\nThe Quillon harbour gate closes two hours before low tide.\n")
    (folder / "birds.txt").write_text("Puffins nest on the north cliffs of Skarvey from April to August.\n")
    name = f"cli-{uuid.uuid4().hex[:6]}"
    created = outcrop(server.home, "kb", "create", name)
    assert created.returncode == 0, created.stderr
    kb_id = json.loads(created.stdout)["knowledgeBaseId"]
    added = outcrop(server.home, "kb", "add-source", kb_id, "notes", "--dir", str(folder), "--max-tokens", "50")
    assert added.returncode == 0, added.stderr
    ds_id = json.loads(added.stdout)["dataSourceId"]
    synced = outcrop(server.home, "kb", "sync", kb_id, ds_id)
    assert synced.returncode == 0, synced.stderr
    job = json.loads(synced.stdout)
    assert job["status"] == "COMPLETE" and job["statistics"]["numberOfNewDocumentsIndexed"] == 2
    assert "sync: 2 new" in synced.stderr  # the progress line
    queried = outcrop(server.home, "kb", "query", kb_id, "when do puffins nest", "-n", "1")
    assert queried.returncode == 0, queried.stderr
    assert json.loads(queried.stdout)[0]["source"].endswith("birds.txt")
    asked = outcrop(server.home, "kb", "ask", kb_id, "When does the Quillon harbour gate close?")
    assert asked.returncode == 0, asked.stderr
    assert "low tide" in asked.stdout.lower()
    runtime = server.client("bedrock-agent-runtime")  # the server reloads the index the CLI changed
    hits = runtime.retrieve(knowledgeBaseId=kb_id, retrievalQuery={"text": "harbour gate tide"})["retrievalResults"]
    assert hits[0]["metadata"]["x-amz-bedrock-kb-source-uri"].endswith("tides.md")


def test_guardrail_commands_beside_a_running_server(server, tmp_path):
    """`outcrop guardrails`: create from a CreateGuardrail body, version it, apply it; the server serves it."""
    import uuid

    body = {"name": f"cli-{uuid.uuid4().hex[:6]}", "blockedInputMessaging": "no", "blockedOutputsMessaging": "no",
            "sensitiveInformationPolicyConfig": {"piiEntitiesConfig": [{"type": "EMAIL", "action": "ANONYMIZE"}]}}
    config = tmp_path / "guardrail.json"
    config.write_text(json.dumps(body))
    created = outcrop(server.home, "guardrails", "create", str(config))
    assert created.returncode == 0, created.stderr
    gid = json.loads(created.stdout)["guardrailId"]
    versioned = outcrop(server.home, "guardrails", "version", gid, "--description", "first")
    assert versioned.returncode == 0 and json.loads(versioned.stdout)["version"] == "1", versioned.stderr
    applied = outcrop(server.home, "guardrails", "apply", gid, "mail me at kim@example.net", "-v", "1")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["outputs"] == ["mail me at {EMAIL}"]
    listed = outcrop(server.home, "guardrails", "list", gid)
    assert [v["version"] for v in json.loads(listed.stdout)] == ["DRAFT", "1"]
    out = server.client("bedrock-runtime").apply_guardrail(guardrailIdentifier=gid, guardrailVersion="1", source="INPUT",
                                                           content=[{"text": {"text": "kim@example.net"}}])
    assert out["outputs"] == [{"text": "{EMAIL}"}]
    bad = outcrop(server.home, "guardrails", "apply", "nosuchguardrail", "text")
    assert bad.returncode == 1 and "does not exist" in bad.stdout + bad.stderr
