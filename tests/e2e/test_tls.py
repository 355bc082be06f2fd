"""https with a generated certificate, and boto3's bearer API keys (which it only sends over https)."""

from __future__ import annotations

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.e2e.conftest import free_port, start_server, stop_server


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    live = start_server(tmp_path_factory.mktemp("tls-home"), free_port(), tls=True)
    yield live
    stop_server(live)


def bearer_client(server, token: str, monkeypatch):  # type: ignore[no-untyped-def]
    import boto3

    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", token)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    return boto3.client("bedrock-runtime", endpoint_url=server.endpoint, region_name="us-east-1",
                        verify=str(server.home / "tls" / "self-signed.crt"),
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=300))


def test_boto3_bearer_api_key_over_https(tls_server, monkeypatch):
    rt = bearer_client(tls_server, tls_server.creds["api_key"], monkeypatch)
    reply = rt.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0",
                        messages=[{"role": "user", "content": [{"text": "What is the capital of Germany?"}]}],
                        inferenceConfig={"maxTokens": 30, "temperature": 0})
    assert "Berlin" in reply["output"]["message"]["content"][0]["text"]


def test_boto3_wrong_bearer_api_key(tls_server, monkeypatch):
    rt = bearer_client(tls_server, "ABSK-not-a-real-key", monkeypatch)
    with pytest.raises(ClientError) as exc:
        rt.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0",
                    messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert exc.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_sigv4_over_https(tls_server):
    bedrock = tls_server.client("bedrock", verify=str(tls_server.home / "tls" / "self-signed.crt"))
    assert bedrock.list_foundation_models(byProvider="Anthropic")["modelSummaries"]


def test_openai_sdk_over_https(tls_server):
    import httpx
    import openai

    cert = str(tls_server.home / "tls" / "self-signed.crt")
    client = openai.OpenAI(base_url=f"{tls_server.endpoint}/v1", api_key=tls_server.creds["api_key"], max_retries=0,
                           http_client=httpx.Client(verify=cert, timeout=300))
    reply = client.chat.completions.create(model="anthropic.claude-3-haiku-20240307-v1:0", max_tokens=30,
                                           temperature=0,
                                           messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in reply.choices[0].message.content
    assert httpx.get(f"{tls_server.endpoint}/healthz", verify=cert).headers["strict-transport-security"]


def test_secure_transport_condition_over_https(tls_server):
    from tests.e2e.iam import MANAGED, Principal

    admin = Principal(tls_server.endpoint, tls_server.creds["access_key_id"], tls_server.creds["secret_access_key"],
                      verify=str(tls_server.home / "tls" / "self-signed.crt"))
    policy = admin.ok("POST", "/outcrop/v1/policies", {"PolicyName": "https-only", "PolicyDocument": {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "bedrock:List*", "Resource": "*",
                                                "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]}})["Policy"]
    user = admin.new_user("https-user", policy["Arn"], MANAGED + "AmazonBedrockReadOnly")
    listed = user.call("GET", "/foundation-models")
    assert listed.status_code == 200 and listed.json()["modelSummaries"]
