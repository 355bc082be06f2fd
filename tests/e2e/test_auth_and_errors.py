"""Authentication (SigV4, bearer API keys) and error codes for bad input, through boto3."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import signed_post

MSG = [{"role": "user", "content": [{"text": "hi"}]}]


def code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


def test_wrong_secret(server):
    rt = server.client("bedrock-runtime", aws_secret_access_key="not-the-secret")
    with pytest.raises(ClientError) as exc:
        rt.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0", messages=MSG)
    assert code(exc) == "InvalidSignatureException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unknown_access_key(server):
    rt = server.client("bedrock", aws_access_key_id="AKIAUNKNOWNKEY000000")
    with pytest.raises(ClientError) as exc:
        rt.list_foundation_models()
    assert code(exc) == "UnrecognizedClientException"
    assert "security token included in the request is invalid" in str(exc.value)


def test_stale_date(server, monkeypatch):
    import botocore.auth

    real = botocore.auth.datetime.datetime

    class Stale(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001
            return real.now(tz) - dt.timedelta(minutes=20)

        @classmethod
        def utcnow(cls):
            return real.utcnow() - dt.timedelta(minutes=20)

    monkeypatch.setattr(botocore.auth.datetime, "datetime", Stale)
    with pytest.raises(ClientError) as exc:
        server.client("bedrock").list_foundation_models()
    assert code(exc) == "InvalidSignatureException"
    assert "Signature expired" in str(exc.value)


def test_bearer_api_key_over_http(server):
    # boto3 only sends AWS_BEARER_TOKEN_BEDROCK over https (see test_tls.py); the wire is the same header.
    headers = {"Authorization": f"Bearer {server.creds['api_key']}"}
    reply = httpx.post(f"{server.endpoint}/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse", headers=headers,
                       json={"messages": [{"role": "user", "content": [{"text": "What is the capital of Germany?"}]}],
                             "inferenceConfig": {"maxTokens": 30, "temperature": 0}}, timeout=300)
    assert reply.status_code == 200 and "Berlin" in reply.json()["output"]["message"]["content"][0]["text"]
    bad = httpx.get(f"{server.endpoint}/foundation-models", headers={"Authorization": "Bearer ABSK-not-a-real-key"})
    assert bad.status_code == 403 and bad.headers["x-amzn-ErrorType"].startswith("UnrecognizedClientException")


def test_unsigned_request_is_refused(server):
    reply = httpx.post(f"{server.endpoint}/model/anthropic.claude-v2/converse", json={"messages": MSG})
    assert reply.status_code == 403
    assert reply.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException")


def test_unknown_model(runtime):
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.converse(modelId="acme.nonexistent-v1:0", messages=MSG)
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.converse_stream(modelId="acme.nonexistent-v1:0", messages=MSG)


@pytest.mark.parametrize("messages,needle", [
    ([], "at least one message"),
    ([{"role": "robot", "content": [{"text": "x"}]}], "messages[0].role"),
    ([{"role": "assistant", "content": [{"text": "x"}]}], "user message"),
])
def test_malformed_converse_names_the_field(runtime, messages, needle):
    with pytest.raises(runtime.exceptions.ValidationException) as exc:
        runtime.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0", messages=messages)
    assert needle in str(exc.value)


def test_bad_inference_config(runtime):
    with pytest.raises(runtime.exceptions.ValidationException, match="temperature"):
        runtime.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0", messages=MSG,
                         inferenceConfig={"temperature": 5.0})


@pytest.mark.parametrize("body,needle", [
    ({"messages": [{"role": "user", "content": [{"text": "x", "image": {}}]}]}, "exactly one of"),
    ({"messages": [{"role": "user", "content": [{"text": 5}]}]}, "messages[0].content[0].text must be a string"),
    ({"messages": MSG, "inferenceConfig": {"maxTokens": 0}}, "maxTokens"),
    ({"messages": "hello"}, "messages must be a list"),
])
def test_malformed_bodies_boto3_would_not_send(server, body, needle):
    for op in ("converse", "converse-stream"):
        reply = signed_post(server, f"/model/anthropic.claude-v2/{op}", json.dumps(body).encode())
        assert reply.status_code == 400, reply.text
        assert reply.headers["x-amzn-ErrorType"].startswith("ValidationException")
        assert needle in reply.json()["message"]


def test_body_over_limit_is_a_clean_4xx(runtime):
    huge = "x" * (21 * 1024 * 1024)
    with pytest.raises(ClientError) as exc:
        runtime.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0",
                         messages=[{"role": "user", "content": [{"text": huge}]}])
    assert code(exc) == "ValidationException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_embedding_model_cannot_chat(runtime):
    with pytest.raises(runtime.exceptions.ValidationException, match="embedding model"):
        runtime.converse(modelId="amazon.titan-embed-text-v2:0", messages=MSG)


def test_health_needs_no_auth(server):
    assert httpx.get(f"{server.endpoint}/healthz").json()["status"] == "ok"
    assert "loaded_models" in httpx.get(f"{server.endpoint}/readyz").json()


def test_secrets_are_not_stored_in_plain_text(server):
    stored = b"".join(p.read_bytes() for p in server.home.glob("outcrop.db*"))
    assert stored  # the database exists (and its WAL, if any)
    for secret in (server.creds["secret_access_key"], server.creds["api_key"]):
        assert secret.encode() not in stored
    assert server.creds["access_key_id"].encode() in stored  # IDs are public; only secrets are protected
    assert oct((server.home / "credentials.json").stat().st_mode & 0o777) == "0o600"
