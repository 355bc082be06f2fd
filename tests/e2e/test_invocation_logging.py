"""Model invocation logging through boto3: off by default, each modality flag, sealed on disk."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from tests.e2e.iam import new_account
from tests.e2e.test_encryption import scan

CHAT = "anthropic.claude-3-haiku-20240307-v1:0"
EMBED = "amazon.titan-embed-text-v2:0"


@pytest.fixture(scope="module")
def tenant(server):  # type: ignore[no-untyped-def]
    return new_account(server, f"logging-{uuid.uuid4().hex[:6]}")


def logs(tenant, since_marker: str) -> list[dict]:  # type: ignore[no-untyped-def]
    records = tenant.ok("GET", "/outcrop/v1/invocation-logs?MaxResults=1000")["InvocationLogs"]
    return [r for r in records if since_marker in str(r) or since_marker == "*"]


def converse(tenant, text: str) -> dict:  # type: ignore[no-untyped-def]
    return tenant.client("bedrock-runtime").converse(modelId=CHAT, inferenceConfig={"maxTokens": 5},
                                                     messages=[{"role": "user", "content": [{"text": text}]}])


def test_off_by_default_writes_nothing(server, tenant):
    bedrock = tenant.client("bedrock")
    assert "loggingConfig" not in bedrock.get_model_invocation_logging_configuration()
    converse(tenant, "nothing to see")
    assert tenant.ok("GET", "/outcrop/v1/invocation-logs")["InvocationLogs"] == []


def test_each_flag_and_sealed_on_disk(server, tenant):
    bedrock = tenant.client("bedrock")
    config = {"cloudWatchConfig": {"logGroupName": "outcrop-invocations", "roleArn": "arn:aws:iam::x:role/r"},
              "s3Config": {"bucketName": "tenant-logs", "keyPrefix": "bedrock"},
              "textDataDeliveryEnabled": True, "embeddingDataDeliveryEnabled": False}
    bedrock.put_model_invocation_logging_configuration(loggingConfig=config)
    assert bedrock.get_model_invocation_logging_configuration()["loggingConfig"]["s3Config"]["bucketName"] == "tenant-logs"
    canary = f"the cartographer {uuid.uuid4().hex} maps fog"
    reply = converse(tenant, canary)
    tenant.openai().embeddings.create(model=EMBED, input=f"embedded {canary}")
    records = tenant.ok("GET", "/outcrop/v1/invocation-logs")["InvocationLogs"]
    chat = [r for r in records if r["operation"] == "Converse"]
    embedding = [r for r in records if r["operation"] == "CreateEmbedding"]
    assert len(chat) == 1 and len(embedding) == 1
    record = chat[0]
    assert record["schemaType"] == "ModelInvocationLog" and record["modelId"] == CHAT
    assert record["accountId"] == tenant.ok("GET", "/outcrop/v1/account")["Account"]["AccountId"]
    assert record["identity"]["arn"].endswith(":user/admin")
    assert canary in str(record["input"]["inputBodyJson"])
    assert record["input"]["inputTokenCount"] == reply["usage"]["inputTokens"]
    assert record["output"]["outputTokenCount"] == reply["usage"]["outputTokens"]
    assert record["output"]["outputBodyJson"]["text"] == reply["output"]["message"]["content"][0]["text"]
    assert "inputBodyJson" not in embedding[0]["input"]  # embeddingDataDeliveryEnabled is off
    assert embedding[0]["input"]["inputTokenCount"] > 0
    files = list((server.home / "invocation-logs" / "tenant-logs").rglob("*.sealed"))
    assert len(files) == 2 and all("/bedrock/AWSLogs/" in str(f) for f in files)
    assert scan(server.home, canary.encode()) == []  # prompts in the logs are sealed, in the table and the files

    config["embeddingDataDeliveryEnabled"] = True
    bedrock.put_model_invocation_logging_configuration(loggingConfig=config)
    tenant.openai().embeddings.create(model=EMBED, input="now with its body")
    latest = [r for r in tenant.ok("GET", "/outcrop/v1/invocation-logs")["InvocationLogs"]
              if r["operation"] == "CreateEmbedding"][0]
    assert latest["input"]["inputBodyJson"]["texts"] == ["now with its body"]
    assert len(latest["output"]["outputBodyJson"]["vectors"][0]) > 0

    bedrock.delete_model_invocation_logging_configuration()
    before = len(tenant.ok("GET", "/outcrop/v1/invocation-logs")["InvocationLogs"])
    converse(tenant, "not logged any more")
    assert len(tenant.ok("GET", "/outcrop/v1/invocation-logs")["InvocationLogs"]) == before


def test_configuration_is_validated(tenant):
    bedrock = tenant.client("bedrock")
    with pytest.raises(ClientError) as excinfo:
        bedrock.put_model_invocation_logging_configuration(loggingConfig={"textDataDeliveryEnabled": True})
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
