"""Core services in-process on a temp data dir: tenant scoping, crypto-shredding, short-term tokens, throttling."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from outcrop.core.governance import CallContext
from outcrop.core.identity import Caller
from outcrop.errors import AccessDenied, NotFound, Throttled, UnrecognizedClient
from outcrop.server.auth import AuthThrottle, ExpiredToken, verify_short_term_token
from outcrop.server.deps import Services
from outcrop.settings import Settings
from outcrop.storage.repositories import AccountScope
from outcrop.storage.tables import Principal


@pytest.fixture
def svc(tmp_path) -> Services:
    services = Services.build(Settings(home=tmp_path))
    services.accounts.bootstrap()
    return services


def admin_ctx(svc: Services, account_id: str | None = None, operation: str = "CreateKey") -> CallContext:
    with svc.identity.sessions() as session:
        from outcrop.storage.repositories import Accounts

        account = svc_account = Accounts(session).get(account_id) if account_id else Accounts(session).first()
        assert svc_account is not None
        admin = AccountScope(session, account.id).first(Principal, Principal.is_admin.is_(True))
    return CallContext(Caller(account.id, admin.id, admin.name, True, None, "sigv4", "user", admin.is_operator),
                       operation)


def test_a_scope_cannot_see_or_add_rows_of_another_account(svc):
    first = admin_ctx(svc)
    other = svc.accounts.create_account(first, "other")["Account"]["AccountId"]
    with svc.identity.sessions() as session:
        mine = AccountScope(session, first.caller.account_id)
        theirs = AccountScope(session, other)
        their_admin = theirs.first(Principal, Principal.is_admin.is_(True))
        assert mine.get(Principal, their_admin.id) is None
        assert all(p.account_id == first.caller.account_id for p in mine.rows(Principal))
        with pytest.raises(ValueError, match="cannot be added"):
            mine.add(Principal(id="AIDAX", account_id=other, name="x", kind="user", created_at=datetime.now(UTC)))


def test_sealed_data_is_bound_to_account_and_purpose(svc):
    ctx = admin_ctx(svc)
    account = ctx.caller.account_id
    sealed = svc.keys.seal(account, b"customer text", "file:1")
    assert b"customer text" not in sealed
    assert svc.keys.open(account, sealed, "file:1") == b"customer text"
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        svc.keys.open(account, sealed, "file:2")
    other = svc.accounts.create_account(ctx, "other")["Account"]["AccountId"]
    with pytest.raises(AccessDenied):
        svc.keys.open(other, sealed, "file:1")


def test_deleted_customer_key_shreds_its_data(svc):
    ctx = admin_ctx(svc)
    account = ctx.caller.account_id
    key = svc.keys.create_key(ctx, "shred me")
    sealed = svc.keys.seal(account, b"to be forgotten", "file:9", key["Arn"])
    svc.keys.schedule_deletion(ctx, key["KeyId"], 7)
    with pytest.raises(AccessDenied, match="pending deletion"):
        svc.keys.open(account, sealed, "file:9")
    assert svc.keys.purge_due() == 0  # not yet due
    with pytest.raises(Exception, match="pending deletion"):
        svc.keys.disable(ctx, key["KeyId"])  # as in KMS: cancel first
    assert svc.keys.purge_due(datetime.now(UTC) + timedelta(days=8)) == 1
    with pytest.raises(AccessDenied, match="does not exist"):
        svc.keys.open(account, sealed, "file:9")
    with pytest.raises(NotFound):
        svc.keys.describe_key(ctx, key["KeyId"])
    raw = (svc.settings.home / "outcrop.db").read_bytes()
    assert key["KeyId"].encode() not in raw  # secure_delete + checkpoint: the row is gone from the file too


def short_term(akid: str, secret: str, region: str = "us-east-1", signed_at: datetime | None = None) -> str:
    request = AWSRequest(method="POST", url="https://bedrock.amazonaws.com/", headers={"host": "bedrock.amazonaws.com"},
                         params={"Action": "CallWithBearerToken"})
    auth = SigV4QueryAuth(Credentials(akid, secret), "bedrock", region, expires=43200)
    if signed_at is None:
        auth.add_auth(request)
    else:
        request.context["timestamp"] = signed_at.strftime("%Y%m%dT%H%M%SZ")
        auth._modify_request_before_signing(request)
        signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        auth._inject_signature_to_request(request, signature)
    return "bedrock-api-key-" + base64.b64encode((request.url.replace("https://", "") + "&Version=1").encode()).decode()


def test_short_term_token_verification(svc):
    creds = svc.identity.credentials()
    token = short_term(creds.access_key_id, creds.secret_access_key)
    caller = verify_short_term_token(token, svc.identity, "us-east-1")
    assert caller.account_id == creds.account_id and caller.auth == "api_key"
    for bad in (short_term(creds.access_key_id, "wrong"), short_term(creds.access_key_id, creds.secret_access_key,
                                                                      "eu-west-1"),
                "bedrock-api-key-" + base64.b64encode(b"not a url").decode(), "bedrock-api-key-%%%"):
        with pytest.raises(UnrecognizedClient):
            verify_short_term_token(bad, svc.identity, "us-east-1")
    old = short_term(creds.access_key_id, creds.secret_access_key, signed_at=datetime.now(UTC) - timedelta(hours=13))
    with pytest.raises(ExpiredToken, match="expired"):
        verify_short_term_token(old, svc.identity, "us-east-1")


def test_auth_throttle_per_source_and_looser_per_key():
    throttle = AuthThrottle(per_minute=3)
    for _ in range(3):
        throttle.check("ip:a", "ak:K")
        throttle.failed("ip:a", "ak:K")
    with pytest.raises(Throttled):
        throttle.check("ip:a", "ak:other")
    throttle.check("ip:b", "ak:K")  # the key's owner, elsewhere, is not locked out by one guesser
    for source in "cdefghijklmn":
        throttle.failed(f"ip:{source}", "ak:K")
    with pytest.raises(Throttled):
        throttle.check("ip:z", "ak:K")
