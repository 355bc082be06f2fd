"""The audit trail in-process: the chain, digests, verification of tampering, lookup paging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from outcrop.core.governance import CallContext
from outcrop.core.governance.audit import GENESIS, Outcome, chain_hash
from outcrop.core.governance.integrity import verify
from outcrop.core.identity import Caller
from outcrop.server.deps import Services
from outcrop.settings import Settings


@pytest.fixture
def svc(tmp_path) -> Services:
    services = Services.build(Settings(home=tmp_path))
    services.accounts.bootstrap()
    yield services
    services.close()


def admin(svc: Services, operation: str = "ListUsers") -> CallContext:
    creds = svc.identity.credentials()
    caller = svc.identity.access_key_secret(creds.access_key_id)[0]
    return CallContext(caller, operation)


def record_calls(svc: Services, count: int, operation: str = "ListUsers") -> None:
    for i in range(count):
        ctx = admin(svc, operation)
        svc.audit.record(Outcome(operation, datetime.now(UTC) - timedelta(seconds=count - i), ctx, "127.0.0.1",
                                 "test", "us-east-1", ctx.request_id,
                                 request_parameters={"i": i}))
    svc.audit.flush()


def rows(svc: Services):  # type: ignore[no-untyped-def]
    with svc.audit.sessions() as session:
        return session.execute(text("SELECT seq, id, record, prev_hash, hash FROM audit_events ORDER BY seq")).all()


def test_events_form_a_chain_and_carry_cloudtrail_fields(svc):
    record_calls(svc, 5)
    chain = rows(svc)
    assert [r.seq for r in chain] == [1, 2, 3, 4, 5]
    assert chain[0].prev_hash == GENESIS
    for before, after in zip(chain, chain[1:], strict=False):
        assert after.prev_hash == before.hash == chain_hash(before.prev_hash, before.record)
    event = json.loads(chain[0].record)
    for field in ("eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
                  "userAgent", "userIdentity", "requestParameters", "responseElements", "requestID", "eventID",
                  "readOnly", "eventType", "managementEvent", "eventCategory", "recipientAccountId"):
        assert field in event, field
    assert event["eventSource"] == "iam.amazonaws.com" and event["readOnly"] is True
    assert event["userIdentity"]["type"] == "IAMUser"
    assert verify(svc.audit.sessions, svc.signer.key.public_key()) == (5, [])


@pytest.mark.parametrize("tamper,needle", [
    ("UPDATE audit_events SET record = replace(record, 'ListUsers', 'DeleteUser') WHERE seq = 3", "#3"),
    ("DELETE FROM audit_events WHERE seq = 2", "#2"),
    ("UPDATE audit_events SET seq = CASE seq WHEN 3 THEN 4 WHEN 4 THEN 3 END WHERE seq IN (3, 4)", "reordered"),
])
def test_tampering_is_named(svc, tamper, needle):
    record_calls(svc, 6)
    svc.signer.sign(admin(svc).caller.account_id)
    with svc.audit.sessions.begin() as session:
        session.execute(text("PRAGMA defer_foreign_keys = ON"))
        if "CASE" in tamper:  # the unique (account, seq) constraint: swap through a free value
            session.execute(text("UPDATE audit_events SET seq = -3 WHERE seq = 3"))
            session.execute(text("UPDATE audit_events SET seq = 3 WHERE seq = 4"))
            session.execute(text("UPDATE audit_events SET seq = 4 WHERE seq = -3"))
        else:
            session.execute(text(tamper))
    checked, findings = verify(svc.audit.sessions, svc.signer.key.public_key())
    assert findings, "tampering went unnoticed"
    assert any(needle in str(f) for f in findings), [str(f) for f in findings]


def test_truncated_tail_is_caught_by_the_signed_digest(svc):
    record_calls(svc, 4)
    svc.signer.sign(admin(svc).caller.account_id)
    with svc.audit.sessions.begin() as session:
        session.execute(text("DELETE FROM audit_events WHERE seq = 4"))
    _, findings = verify(svc.audit.sessions, svc.signer.key.public_key())
    assert any("truncated" in str(f) for f in findings)


def test_rewritten_chain_fails_the_digest(svc):
    record_calls(svc, 3)
    svc.signer.sign(admin(svc).caller.account_id)
    with svc.audit.sessions.begin() as session:  # a consistent rewrite of the last record: chain OK, digest not
        last = session.execute(text("SELECT prev_hash, record FROM audit_events WHERE seq = 3")).one()
        forged = last.record.replace('"i":2', '"i":7')
        session.execute(text("UPDATE audit_events SET record = :r, hash = :h WHERE seq = 3"),
                        {"r": forged, "h": chain_hash(last.prev_hash, forged)})
    _, findings = verify(svc.audit.sessions, svc.signer.key.public_key())
    assert {f.problem.split()[0] for f in findings} == {"digest-mismatch"}


def test_lookup_pages_newest_first_and_stays_in_the_account(svc):
    record_calls(svc, 7, "ListUsers")
    record_calls(svc, 2, "GetAccount")
    ctx = admin(svc, "LookupEvents")
    seen, token = [], None
    while True:
        page, token = svc.audit.lookup(ctx, [("EventName", "ListUsers")], max_results=3, next_token=token)
        seen += page
        if token is None:
            break
    assert [r.seq for r in seen] == sorted((r.seq for r in seen), reverse=True) and len(seen) == 7
    other = svc.accounts.create_account(admin(svc, "CreateAccount"), "other")
    stranger = Caller(other["Account"]["AccountId"], "AIDAX", "admin", True)
    page, _ = svc.audit.lookup(CallContext(stranger, "LookupEvents"), account_id=ctx.caller.account_id)
    assert all(r.account_id == stranger.account_id for r in page)


def test_verify_cli_names_an_edited_record(tmp_path):
    services = Services.build(Settings(home=tmp_path))
    services.accounts.bootstrap()
    record_calls(services, 3)
    services.close()
    env = {**os.environ, "OUTCROP_HOME": str(tmp_path)}
    ok = subprocess.run([sys.executable, "-m", "outcrop", "audit", "verify"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "intact: 3 records" in ok.stdout, ok.stderr
    with services.audit.sessions.begin() as session:
        session.execute(text("UPDATE audit_events SET record = replace(record, 'ListUsers', 'GetUser') WHERE seq = 2"))
    bad = subprocess.run([sys.executable, "-m", "outcrop", "audit", "verify"], env=env, capture_output=True,
                         text=True)
    assert bad.returncode == 1 and "record #2" in bad.stderr and "edited" in bad.stderr


def test_retention_keeps_the_rest_verifiable(svc):
    from outcrop.core.governance.integrity import prune

    record_calls(svc, 6)  # event times: 6 s ago .. 1 s ago
    assert prune(svc.audit.sessions, svc.signer, datetime.now(UTC) - timedelta(seconds=3, milliseconds=500)) == 3
    assert [r.seq for r in rows(svc)] == [4, 5, 6]
    assert verify(svc.audit.sessions, svc.signer.key.public_key()) == (3, [])
    with svc.audit.sessions.begin() as session:  # removing one more beyond the anchor is still caught
        session.execute(text("DELETE FROM audit_events WHERE seq = 4"))
    _, findings = verify(svc.audit.sessions, svc.signer.key.public_key())
    assert any("deleted" in str(f) for f in findings)


def test_json_log_lines_carry_the_request_id():
    import logging

    from outcrop.server.logs import REQUEST_ID, JsonFormatter

    record = logging.LogRecord("outcrop.test", logging.WARNING, __file__, 1, "model %s failed", ("m",), None)
    token = REQUEST_ID.set("0b5e4f7e-1111-4222-8333-444455556666")
    try:
        entry = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert entry["requestId"] == "0b5e4f7e-1111-4222-8333-444455556666"
    assert entry["message"] == "model m failed" and entry["level"] == "warning"
