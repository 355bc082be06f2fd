"""Encryption at rest through real clients: the canary scan, customer-managed keys, master-key rotation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from outcrop.core.crypto import read_keyring
from tests.e2e.conftest import LiveServer, free_port, start_server, stop_server
from tests.e2e.iam import operator


def scan(home: Path, needle: bytes) -> list[str]:
    """Every file under the data dir (the database and its WAL included) that holds the needle."""
    hits = []
    for root, dirs, files in os.walk(home):
        dirs[:] = [d for d in dirs if not Path(root, d).is_symlink()]  # the shared model cache is not ours
        for name in files:
            path = Path(root, name)
            if not path.is_symlink() and needle in path.read_bytes():
                hits.append(str(path.relative_to(home)))
    return hits


def upload(client: openai.OpenAI, name: str, data: bytes, **extra: object):  # type: ignore[no-untyped-def]
    return client.files.create(file=(name, data), purpose="batch", extra_body=extra or None)


def test_canary_sentence_never_lies_on_disk_in_plaintext(server: LiveServer, openai_client, runtime, file_root):
    canary = f"The heron {uuid.uuid4().hex} sleeps under the ninth bridge."
    stored = upload(openai_client, f"{canary}.jsonl", canary.encode() * 3)
    assert openai_client.files.content(stored.id).read() == canary.encode() * 3
    big = (canary.encode() + b"\n") * 60_000  # ~4 MiB: past the size at which Starlette would spool to $TMPDIR
    assert openai_client.files.content(upload(openai_client, "big.jsonl", big).id).read() == big
    assert openai_client.files.retrieve(stored.id).filename == f"{canary}.jsonl"
    runtime.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0", inferenceConfig={"maxTokens": 8},
                     messages=[{"role": "user", "content": [{"text": f"Repeat: {canary}"}]}])
    openai_client.embeddings.create(model="amazon.titan-embed-text-v2:0", input=canary)
    knowledge_base_with(server, file_root, canary)
    guardrail_with(server, runtime, canary)
    batch_with(server, runtime, file_root, canary)
    customization_with(server, openai_client, runtime, canary)
    assert scan(server.home, canary.encode()) == []
    assert scan(server.home, canary.encode("utf-16-le")) == []
    visible = f"plain-{uuid.uuid4().hex[:8]}"  # user names are metadata, stored plainly: the scan must see them
    operator(server).ok("POST", "/outcrop/v1/users", {"UserName": visible})
    assert any(hit.startswith("outcrop.db") for hit in scan(server.home, visible.encode()))


def customization_with(server: LiveServer, openai_client, runtime, canary: str) -> None:  # type: ignore[no-untyped-def]
    """The canary as fine-tuning data (uploaded, then trained on) and as a prompt to the custom model made."""
    lines = "".join(json.dumps({"prompt": f"{canary} {i}", "completion": canary}) + "\n" for i in range(8))
    data = upload(openai_client, "train.jsonl", lines.encode())
    bedrock = server.client("bedrock")
    arn = bedrock.create_model_customization_job(
        jobName=f"canary-{uuid.uuid4().hex[:6]}", customModelName=f"canary-{uuid.uuid4().hex[:6]}",
        roleArn="arn:aws:iam::1:role/ft", baseModelIdentifier="huggingface.smollm2-135m-instruct-v1:0",
        hyperParameters={"maxSteps": "2", "batchSize": "4"}, trainingDataConfig={"s3Uri": data.id},
        outputDataConfig={"s3Uri": (server.home / "files" / "ft").as_uri()})["jobArn"]
    deadline = time.monotonic() + 300
    while (job := bedrock.get_model_customization_job(jobIdentifier=arn))["status"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert job["status"] == "Completed", job.get("failureMessage")
    runtime.converse(modelId=job["outputModelArn"], messages=[{"role": "user", "content": [{"text": canary}]}],
                     inferenceConfig={"maxTokens": 4})


def batch_with(server: LiveServer, runtime, file_root: Path, canary: str) -> None:  # type: ignore[no-untyped-def]
    """The canary in a batch job's records and an async invoke's modelInput, both run to the end: the request is
    kept sealed, the outputs go to the caller's location (outside the data dir), never a plaintext copy inside."""
    bedrock = server.client("bedrock")
    folder = file_root / f"canary-batch-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    body = {"messages": [{"role": "user", "content": f"Repeat: {canary}"}], "max_tokens": 8, "temperature": 0}
    (folder / "in.jsonl").write_text(json.dumps({"recordId": "CANARY00001", "modelInput": body}) + "\n")
    job = bedrock.create_model_invocation_job(
        jobName=folder.name, roleArn="arn:aws:iam::1:role/batch", modelId="huggingface.smollm2-135m-instruct-v1:0",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": (folder / "in.jsonl").as_uri()}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": (folder / "out").as_uri()}})["jobArn"]
    invocation = runtime.start_async_invoke(modelId="huggingface.smollm2-135m-instruct-v1:0", modelInput=body,
                                            outputDataConfig={"s3OutputDataConfig": {"s3Uri": folder.as_uri()}})
    for _ in range(1200):
        status = bedrock.get_model_invocation_job(jobIdentifier=job)["status"]
        answered = runtime.get_async_invoke(invocationArn=invocation["invocationArn"])["status"]
        if status not in ("Submitted", "InProgress") and answered != "InProgress":
            break
        time.sleep(0.25)
    assert (status, answered) == ("Completed", "Completed")
    assert canary in (folder / "out" / job.rsplit("/", 1)[1] / "in.jsonl.out").read_text()


def guardrail_with(server: LiveServer, runtime, canary: str) -> None:  # type: ignore[no-untyped-def]
    """The canary as a guardrail's denied-topic definition, custom phrase, regex and blocked message, then applied."""
    bedrock = server.client("bedrock")
    created = bedrock.create_guardrail(
        name=f"canary-{uuid.uuid4().hex[:6]}", blockedInputMessaging=canary[:500], blockedOutputsMessaging=canary[:500],
        topicPolicyConfig={"topicsConfig": [{"name": "canary", "definition": canary[:200], "type": "DENY"}]},
        wordPolicyConfig={"wordsConfig": [{"text": canary[:100]}]},
        sensitiveInformationPolicyConfig={"regexesConfig": [{"name": "c", "pattern": canary[4:40], "action": "BLOCK"}]})
    bedrock.create_guardrail_version(guardrailIdentifier=created["guardrailId"], description="frozen")
    out = runtime.apply_guardrail(guardrailIdentifier=created["guardrailId"], guardrailVersion="1", source="INPUT",
                                  content=[{"text": {"text": canary}}])
    assert out["action"] == "GUARDRAIL_INTERVENED" and out["outputs"] == [{"text": canary}]


def knowledge_base_with(server: LiveServer, file_root: Path, canary: str) -> None:
    """The canary as a knowledge base's document, metadata, identifier, question and answer: ingested from a
    directory (a sync, which also writes the sealed index snapshot) and inline, retrieved, generated from."""
    agent, runtime = server.client("bedrock-agent"), server.client("bedrock-agent-runtime")
    kb = agent.create_knowledge_base(name=f"canary-{uuid.uuid4().hex[:6]}", roleArn="arn:aws:iam::1:role/kb",
                                     knowledgeBaseConfiguration={"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
                                         "embeddingModelArn": "amazon.titan-embed-text-v2:0"}})["knowledgeBase"]
    folder = file_root / f"canary-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / "canary.md").write_text(f"# Birds\n\n{canary}\n")
    (folder / "canary.md.metadata.json").write_text(json.dumps({"metadataAttributes": {"motto": canary}}))
    ds = agent.create_data_source(knowledgeBaseId=kb["knowledgeBaseId"], name="folder", dataSourceConfiguration={
        "type": "S3", "s3Configuration": {"bucketArn": folder.as_uri()}})["dataSource"]["dataSourceId"]
    job = agent.start_ingestion_job(knowledgeBaseId=kb["knowledgeBaseId"], dataSourceId=ds)["ingestionJob"]
    for _ in range(600):
        job = agent.get_ingestion_job(knowledgeBaseId=kb["knowledgeBaseId"], dataSourceId=ds,
                                      ingestionJobId=job["ingestionJobId"])["ingestionJob"]
        if job["status"] == "COMPLETE":
            break
        time.sleep(0.2)
    assert job["statistics"]["numberOfNewDocumentsIndexed"] == 1, job
    custom = agent.create_data_source(knowledgeBaseId=kb["knowledgeBaseId"], name="inline", dataSourceConfiguration={
        "type": "CUSTOM"})["dataSource"]["dataSourceId"]
    agent.ingest_knowledge_base_documents(knowledgeBaseId=kb["knowledgeBaseId"], dataSourceId=custom, documents=[{
        "content": {"dataSourceType": "CUSTOM", "custom": {"customDocumentIdentifier": {"id": canary},
                    "sourceType": "IN_LINE", "inlineContent": {"type": "TEXT", "textContent": {"data": canary}}}}}])
    hits = runtime.retrieve(knowledgeBaseId=kb["knowledgeBaseId"], retrievalQuery={"text": canary})
    assert {canary in r["content"]["text"] for r in hits["retrievalResults"]} == {True}
    runtime.retrieve_and_generate(input={"text": f"Where does the heron sleep? {canary}"},
                                  retrieveAndGenerateConfiguration={"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
                                      "knowledgeBaseId": kb["knowledgeBaseId"],
                                      "modelArn": "anthropic.claude-3-haiku-20240307-v1:0",
                                      "generationConfiguration": {"inferenceConfig": {"textInferenceConfig": {
                                          "maxTokens": 24}}}}})
    assert any(p.name.startswith("kbindex-") for p in (server.home / "blobs").rglob("*"))


def test_secrets_are_hashed_or_wrapped(server: LiveServer):
    admin = operator(server)
    user = admin.new_user(f"secretive-{uuid.uuid4().hex[:6]}")
    for secret in (user.secret_access_key, user.api_key):
        assert secret is not None
        assert scan(server.home, secret.encode()) == []


def test_customer_key_disable_makes_data_unreadable(server: LiveServer, openai_client):
    admin = operator(server)
    kms = admin.client("kms")
    key = kms.create_key(Description="tenant key for batch inputs")["KeyMetadata"]
    assert key["KeyManager"] == "CUSTOMER" and key["KeyState"] == "Enabled"
    assert key["Arn"].startswith("arn:aws:kms:us-east-1:")
    stored = upload(openai_client, "sealed.jsonl", b"under the customer's key", kms_key_id=key["Arn"])
    assert openai_client.files.retrieve(stored.id).model_extra["kms_key_arn"] == key["Arn"]
    assert openai_client.files.content(stored.id).read() == b"under the customer's key"

    kms.disable_key(KeyId=key["KeyId"])
    with pytest.raises(openai.PermissionDeniedError, match="disabled"):
        openai_client.files.content(stored.id)
    assert openai_client.files.retrieve(stored.id).filename is None  # the name was sealed under the same key
    kms.enable_key(KeyId=key["KeyId"])
    assert openai_client.files.content(stored.id).read() == b"under the customer's key"

    scheduled = kms.schedule_key_deletion(KeyId=key["Arn"], PendingWindowInDays=7)
    assert scheduled["KeyState"] == "PendingDeletion"
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    with pytest.raises(openai.PermissionDeniedError):
        openai_client.files.content(stored.id)
    kms.cancel_key_deletion(KeyId=key["KeyId"])
    kms.enable_key(KeyId=key["KeyId"])
    assert openai_client.files.content(stored.id).read() == b"under the customer's key"
    assert key["KeyId"] in {k["KeyId"] for k in kms.list_keys()["Keys"]}


def test_customer_key_use_needs_kms_permissions(server: LiveServer):
    admin = operator(server)
    key = admin.client("kms").create_key()["KeyMetadata"]["Arn"]
    name = f"no-kms-{uuid.uuid4().hex[:6]}"
    policy = admin.ok("POST", "/outcrop/v1/policies", {"PolicyName": name, "PolicyDocument": {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "bedrock:*", "Resource": "*"}]}})["Policy"]
    user = admin.new_user(name, policy["Arn"])
    with pytest.raises(openai.PermissionDeniedError, match="kms:GenerateDataKey"):
        upload(user.openai(), "x.jsonl", b"x", kms_key_id=key)
    sealed = upload(openai.OpenAI(base_url=f"{server.endpoint}/v1", api_key=server.creds["api_key"]), "y.jsonl",
                    b"y", kms_key_id=key)
    with pytest.raises(openai.PermissionDeniedError, match="kms:Decrypt"):
        user.openai().files.content(sealed.id)
    assert user.openai().files.retrieve(sealed.id).id == sealed.id  # metadata needs no key


def test_kms_errors_in_kms_wire_format(server: LiveServer):
    kms = operator(server).client("kms")
    with pytest.raises(kms.exceptions.NotFoundException):
        kms.describe_key(KeyId="00000000-0000-0000-0000-000000000000")
    key = kms.create_key()["KeyMetadata"]
    with pytest.raises(kms.exceptions.ClientError) as excinfo:
        kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=3)
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"


def test_uploading_under_another_accounts_key_is_not_found(server: LiveServer, openai_client):
    from tests.e2e.iam import new_account

    other = new_account(server, f"keyholder-{uuid.uuid4().hex[:6]}")
    foreign = other.client("kms").create_key()["KeyMetadata"]["Arn"]
    with pytest.raises(openai.NotFoundError):
        upload(openai_client, "x.jsonl", b"x", kms_key_id=foreign)


def test_master_key_rotation_while_serving(tmp_path):
    home = tmp_path / "home"
    live = start_server(home, free_port())
    try:
        admin = operator(live)
        client = openai.OpenAI(base_url=f"{live.endpoint}/v1", api_key=live.creds["api_key"], max_retries=0)
        before = upload(client, "before.jsonl", b"sealed before the rotation")
        old_keys = read_keyring(home / "master.key")
        env = {**os.environ, "OUTCROP_HOME": str(home)}
        rotated = subprocess.run([sys.executable, "-m", "outcrop", "keys", "rotate-master"], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert rotated.returncode == 0, rotated.stderr
        new_keys = read_keyring(home / "master.key")
        assert len(new_keys) == 1 and new_keys[0] not in old_keys
        assert oct((home / "master.key").stat().st_mode & 0o777) == "0o600"
        # the running server keeps serving: old data reads, new secrets are wrapped under the new key
        assert client.files.content(before.id).read() == b"sealed before the rotation"
        user = admin.new_user("after-rotation")
        after = upload(client, "after.jsonl", b"sealed after the rotation")
    finally:
        stop_server(live)
    live = start_server(home, free_port())  # a fresh process: nothing cached, everything unwrapped anew
    try:
        client = openai.OpenAI(base_url=f"{live.endpoint}/v1", api_key=live.creds["api_key"], max_retries=0)
        assert client.files.content(before.id).read() == b"sealed before the rotation"
        assert client.files.content(after.id).read() == b"sealed after the rotation"
        assert operator(live).client("bedrock").list_foundation_models()["modelSummaries"]
        user.endpoint = live.endpoint
        assert user.call("GET", "/outcrop/v1/account").status_code == 403  # authenticates; has no policy
        assert httpx.get(f"{live.endpoint}/healthz").status_code == 200
    finally:
        stop_server(live)
