"""SigV4 refusals through real requests: each tampering is refused with the code AWS uses."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.e2e.iam import MANAGED, operator

PATH = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/count-tokens"
BODY = json.dumps({"input": {"converse": {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}}}).encode()


def signed(server, service="bedrock", region="us-east-1", when=None, akid=None, secret=None):  # type: ignore[no-untyped-def]
    request = AWSRequest(method="POST", url=server.endpoint + PATH, data=BODY,
                         headers={"Content-Type": "application/json", "X-Amz-Meta-Purpose": "test"})
    auth = SigV4Auth(Credentials(akid or server.creds["access_key_id"], secret or server.creds["secret_access_key"]),
                     service, region)
    if when is None:
        auth.add_auth(request)
    else:  # sign as if at another time, exactly as botocore would have then
        request.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
        auth._modify_request_before_signing(request)
        signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        auth._inject_signature_to_request(request, signature)
    return dict(request.headers.items())


def send(server, headers, body=BODY):  # type: ignore[no-untyped-def]
    return httpx.post(server.endpoint + PATH, content=body, headers=headers, timeout=120)


def error_code(response: httpx.Response) -> str:
    return response.headers.get("x-amzn-ErrorType", "").split(":")[0]


def test_untampered_request_passes(server):
    response = send(server, signed(server))
    assert response.status_code == 200, response.text
    assert response.json()["inputTokens"] > 0


def test_tampered_body(server):
    response = send(server, signed(server), BODY.replace(b"hi", b"yo"))
    assert response.status_code == 403 and error_code(response) == "InvalidSignatureException"


def test_tampered_signed_header(server):
    headers = signed(server)
    headers["X-Amz-Meta-Purpose"] = "other"
    response = send(server, headers)
    assert response.status_code == 403 and error_code(response) == "InvalidSignatureException"


def test_signed_header_removed(server):
    headers = signed(server)
    del headers["X-Amz-Meta-Purpose"]
    response = send(server, headers)
    assert response.status_code == 403 and error_code(response) == "IncompleteSignatureException"


@pytest.mark.parametrize("service,region,needle", [("s3", "us-east-1", "service"), ("bedrock", "eu-west-1", "region")])
def test_wrong_scope(server, service, region, needle):
    response = send(server, signed(server, service=service, region=region))
    assert response.status_code == 403 and error_code(response) == "InvalidSignatureException"
    assert needle in response.json()["message"]


@pytest.mark.parametrize("minutes", [-16, 16])
def test_date_outside_window(server, minutes):
    when = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    response = send(server, signed(server, when=when))
    assert response.status_code == 403 and error_code(response) == "InvalidSignatureException"
    assert "Signature expired" in response.json()["message"] or "not yet current" in response.json()["message"]


def test_deactivated_key(server):
    admin = operator(server)
    user = admin.new_user("sigv4-deactivated", MANAGED + "OutcropInvokeOnly")
    assert send(server, signed(server, akid=user.access_key_id, secret=user.secret_access_key)).status_code == 200
    admin.ok("PATCH", f"/outcrop/v1/access-keys/{user.access_key_id}", {"Status": "Inactive"})
    response = send(server, signed(server, akid=user.access_key_id, secret=user.secret_access_key))
    assert response.status_code == 403 and error_code(response) == "UnrecognizedClientException"


def test_signed_payload_hash_must_match_the_body(server):
    """botocore signs a declared x-amz-content-sha256 instead of hashing the body: the server checks both."""
    import hashlib

    request = AWSRequest(method="POST", url=server.endpoint + PATH, data=BODY,
                         headers={"Content-Type": "application/json",
                                  "X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    SigV4Auth(Credentials(server.creds["access_key_id"], server.creds["secret_access_key"]), "bedrock",
              "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    assert send(server, headers).status_code == 200
    response = send(server, headers, BODY.replace(b"hi", b"yo"))
    assert response.status_code == 403 and error_code(response) == "InvalidSignatureException"
