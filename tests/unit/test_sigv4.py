from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from outcrop.core.identity import Caller
from outcrop.errors import InvalidSignature, UnrecognizedClient
from outcrop.server.auth import verify_sigv4

CALLER = Caller("123456789012", "AIDAX", "admin", True, "AKIATEST", "sigv4")


class Keys:
    def access_key_secret(self, akid):
        if akid != "AKIATEST":
            raise UnrecognizedClient("The security token included in the request is invalid.")
        return CALLER, "secret"


def signed(secret="secret", akid="AKIATEST", when=None):
    path = "/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Ainference-profile%2Fus.x%3A0/converse"
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:8480{path}", data=b'{"a":1}',
                         headers={"Content-Type": "application/json"})
    auth = SigV4Auth(Credentials(akid, secret), "bedrock", "us-west-2")
    if when is not None:
        request.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
        auth._modify_request_before_signing(request)
        canonical = auth.canonical_request(request)
        signature = auth.signature(auth.string_to_sign(request, canonical), request)
        auth._inject_signature_to_request(request, signature)
    else:
        auth.add_auth(request)
    return path, {"Host": "127.0.0.1:8480", **dict(request.headers.items())}, request.body


def test_valid_signature_over_raw_path():
    path, headers, body = signed()
    assert verify_sigv4("POST", path, headers, body, Keys()) == CALLER


def test_wrong_secret():
    path, headers, body = signed(secret="wrong")
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_sigv4("POST", path, headers, body, Keys())


def test_unknown_key():
    path, headers, body = signed(akid="AKIAOTHER")
    with pytest.raises(UnrecognizedClient):
        verify_sigv4("POST", path, headers, body, Keys())


def test_stale_date():
    path, headers, body = signed(when=datetime.now(UTC) - timedelta(minutes=20))
    with pytest.raises(InvalidSignature, match="Signature expired"):
        verify_sigv4("POST", path, headers, body, Keys())


def test_tampered_body():
    path, headers, _ = signed()
    with pytest.raises(InvalidSignature):
        verify_sigv4("POST", path, headers, b'{"a":2}', Keys())
