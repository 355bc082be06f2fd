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
