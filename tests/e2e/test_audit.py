"""The audit trail through real clients: one event per call (denied and invalid ones too), no customer
content in any event, and CloudTrail's LookupEvents through boto3 and the AWS CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.iam import MANAGED, Principal, operator
from tests.e2e.test_isolation import OPERATIONS, _fill, call, world  # noqa: F401 - world is a fixture


def trail(who: Principal, **filters: str) -> list[dict]:
    """Every event of the caller's account (native API, all pages)."""
    events, token = [], None
    while True:
        query = "&".join(f"{k}={v}" for k, v in {"MaxResults": "50", **filters,
                                                  **({"NextToken": token} if token else {})}.items())
        page = who.ok("GET", f"/outcrop/v1/audit/events?{query}")
        events += page["Events"]
        token = page.get("NextToken")
        if not token:
            return events


def test_every_operation_emits_exactly_one_event(world):  # noqa: F811 - the fixture imported above
    """The route table walked by a principal with no policy: each call is one AccessDenied event."""
    tag = f"audit-walk-{uuid.uuid4().hex[:8]}"
    names = world["names"]
    for i, (operation, method, path, body, _) in enumerate(OPERATIONS):  # a row's index tells same-route rows apart
        call(world["nobody"], method, _fill(path, names), _fill(body, names) if body is not None else None,
             agent=f"{tag}/{operation}/{method}/{path}#{i}")
    events = [e for e in trail(world["a"]) if (e.get("userAgent") or "").startswith(tag)]
    counts = Counter(e["userAgent"] for e in events)
    expected = {f"{tag}/{op}/{method}/{path}#{i}" for i, (op, method, path, _, _) in enumerate(OPERATIONS)}
    assert set(counts) == expected, sorted(expected - set(counts))
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1]
    for event in events:
        operation = event["userAgent"].split("/")[1]
        assert event["eventName"] == operation
        assert event["errorCode"] == "AccessDeniedException", event
        assert event["userIdentity"]["userName"].startswith("nobody-")
        assert event["recipientAccountId"] == event["userIdentity"]["accountId"]


def test_validation_errors_and_successes_are_recorded_without_content(server, runtime, openai_client):
    canary = f"the lighthouse keeper {uuid.uuid4().hex} counts gulls"
    agent = f"audit-content-{uuid.uuid4().hex[:8]}"
    admin = operator(server)
    runtime.converse(modelId="anthropic.claude-3-haiku-20240307-v1:0", inferenceConfig={"maxTokens": 4},
                     messages=[{"role": "user", "content": [{"text": canary}]}])
    openai_client.embeddings.create(model="amazon.titan-embed-text-v2:0", input=canary)
    openai_client.files.create(file=(f"{canary}.txt", canary.encode()), purpose="batch")
    bad = admin.call("POST", "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
                     {"messages": [{"role": "user", "content": [{"text": canary}]}], "inferenceConfig":
                      {"temperature": 9}}, headers={"User-Agent": agent})
    assert bad.status_code == 400
    events = trail(admin)
    assert not [e for e in events if canary in json.dumps(e)]
    invalid = [e for e in events if e.get("userAgent") == agent]
    assert len(invalid) == 1 and invalid[0]["errorCode"] == "ValidationException"
    assert invalid[0]["requestParameters"] == {"model_id": "anthropic.claude-3-haiku-20240307-v1:0"}
    assert any(e["eventName"] == "Converse" and "errorCode" not in e for e in events)
    assert any(e["eventName"] == "CreateFile" and e["eventCategory"] == "Data" for e in events)


def test_failed_authentication_lands_in_the_keys_account(server):
    admin = operator(server)
    user = admin.new_user(f"wrong-secret-{uuid.uuid4().hex[:6]}", MANAGED + "AmazonBedrockReadOnly")
    impostor = Principal(server.endpoint, user.access_key_id, "not-the-secret")
    assert impostor.call("GET", "/foundation-models").status_code == 403
    events = trail(admin, AccessKeyId=user.access_key_id)
    assert events[0]["errorCode"] == "InvalidSignatureException"
    assert events[0]["userIdentity"] == {"type": "Unknown", "accountId": server.creds["account_id"],
                                         "accessKeyId": user.access_key_id}


def test_boto3_cloudtrail_lookup_events(server):
    admin = operator(server)
    user = admin.new_user(f"trail-{uuid.uuid4().hex[:6]}", MANAGED + "AmazonBedrockReadOnly")
    bedrock = user.client("bedrock")
    started = datetime.now(UTC) - timedelta(seconds=2)
    for _ in range(5):
        bedrock.list_foundation_models()
    cloudtrail = admin.client("cloudtrail")
    by_user = cloudtrail.lookup_events(LookupAttributes=[{"AttributeKey": "Username", "AttributeValue":
                                                          admin_user_name(user, admin)}])["Events"]
    assert [e["EventName"] for e in by_user].count("ListFoundationModels") == 5
    assert all(e["EventTime"] >= started.replace(microsecond=0) for e in by_user)
    by_key = cloudtrail.lookup_events(LookupAttributes=[{"AttributeKey": "AccessKeyId",
                                                         "AttributeValue": user.access_key_id}])["Events"]
    assert {e["AccessKeyId"] for e in by_key} == {user.access_key_id} and len(by_key) == 5
    record = json.loads(by_key[0]["CloudTrailEvent"])
    assert record["eventSource"] == "bedrock.amazonaws.com" and record["readOnly"] is True
    by_name = cloudtrail.lookup_events(LookupAttributes=[{"AttributeKey": "EventName",
                                                          "AttributeValue": "CreateUser"}])["Events"]
    assert by_name and {e["EventName"] for e in by_name} == {"CreateUser"}
    writes = cloudtrail.lookup_events(LookupAttributes=[{"AttributeKey": "ReadOnly", "AttributeValue": "false"}],
                                      StartTime=started - timedelta(minutes=5))["Events"]
    assert writes and all(e["ReadOnly"] == "false" for e in writes)
    assert not cloudtrail.lookup_events(StartTime=datetime.now(UTC) + timedelta(hours=1))["Events"]
    pages = list(cloudtrail.get_paginator("lookup_events").paginate(
        LookupAttributes=[{"AttributeKey": "AccessKeyId", "AttributeValue": user.access_key_id}],
        PaginationConfig={"PageSize": 2}))
    assert [len(p["Events"]) for p in pages] == [2, 2, 1]
    ids = [e["EventId"] for p in pages for e in p["Events"]]
    assert len(set(ids)) == 5
    with pytest.raises(cloudtrail.exceptions.InvalidLookupAttributesException):
        cloudtrail.lookup_events(LookupAttributes=[{"AttributeKey": "Nonsense", "AttributeValue": "x"}])


def admin_user_name(user: Principal, admin: Principal) -> str:
    for row in admin.ok("GET", "/outcrop/v1/users")["Users"]:
        keys = admin.ok("GET", f"/outcrop/v1/access-keys?UserName={row['UserName']}")["AccessKeyMetadata"]
        if any(k["AccessKeyId"] == user.access_key_id for k in keys):
            return str(row["UserName"])
    raise AssertionError("no such user")


def test_aws_cli_lookup_events(server):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": server.creds["access_key_id"],
           "AWS_SECRET_ACCESS_KEY": server.creds["secret_access_key"], "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_BEARER_TOKEN_BEDROCK", None)
    result = subprocess.run([sys.executable, "-m", "awscli", "cloudtrail", "lookup-events", "--endpoint-url",
                             server.endpoint, "--max-results", "3", "--lookup-attributes",
                             "AttributeKey=EventName,AttributeValue=CreateUser"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    events = json.loads(result.stdout)["Events"]
    assert events and all(e["EventName"] == "CreateUser" for e in events)


def test_cli_lookup_and_verify_on_the_live_trail(server):
    time.sleep(0.5)
    env = {**os.environ, "OUTCROP_HOME": str(server.home), "COLUMNS": "200"}
    lookup = subprocess.run([sys.executable, "-m", "outcrop", "audit", "lookup", "--event-name", "CreateUser",
                             "--since", "1h", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert lookup.returncode == 0, lookup.stderr
    assert all(json.loads(line)["eventName"] == "CreateUser" for line in lookup.stdout.splitlines())
    verify = subprocess.run([sys.executable, "-m", "outcrop", "audit", "verify"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stderr + verify.stdout
    native = operator(server).ok("POST", "/outcrop/v1/audit/verify")
    assert native["Valid"] and native["RecordsChecked"] > 0


def test_request_id_on_every_response_matches_the_audit_event(server):
    import httpx

    admin = operator(server)
    ok = admin.call("GET", "/outcrop/v1/account")
    bad = admin.call("GET", "/outcrop/v1/users/no-such-user-here")
    health = httpx.get(f"{server.endpoint}/healthz")
    for response in (ok, bad, health):
        assert len(response.headers["x-amzn-RequestId"]) == 36
    assert ok.headers["x-amzn-RequestId"] != bad.headers["x-amzn-RequestId"]
    events = {e["requestID"]: e for e in trail(admin, EventName="GetUser")}
    assert events[bad.headers["x-amzn-RequestId"]]["errorCode"] == "ResourceNotFoundException"


def test_server_logs_are_json_lines(server):
    lines = [line for line in (server.home / "server.log").read_text().splitlines() if line.startswith("{")]
    assert lines, "no structured log lines"
    entry = json.loads(lines[0])
    assert {"time", "level", "logger", "message"} <= set(entry)


def test_response_elements_keep_ids_and_arns_never_secrets(server):
    admin = operator(server)
    admin.ok("GET", "/outcrop/v1/account")
    name = f"elements-{uuid.uuid4().hex[:6]}"
    created = admin.ok("POST", "/outcrop/v1/users", {"UserName": name})["User"]
    key = admin.ok("POST", "/outcrop/v1/access-keys", {"UserName": name})["AccessKey"]
    api = admin.ok("POST", "/outcrop/v1/api-keys", {"UserName": name})["ServiceSpecificCredential"]
    events = trail(admin)
    user_event = next(e for e in events if e["eventName"] == "CreateUser" and e["requestParameters"] is None
                      and (e["responseElements"] or {}).get("User", {}).get("UserId") == created["UserId"])
    assert user_event["responseElements"] == {"User": {"UserId": created["UserId"], "Arn": created["Arn"]}}
    key_event = next(e for e in events if (e["responseElements"] or {}).get("AccessKey", {}).get("AccessKeyId")
                     == key["AccessKeyId"])
    assert key["SecretAccessKey"] not in json.dumps(key_event)
    api_event = next(e for e in events if e["eventName"] == "CreateServiceSpecificCredential"
                     and api["ServiceSpecificCredentialId"] in json.dumps(e))
    assert api["ServiceApiKeyValue"] not in json.dumps(api_event)
    assert next(e for e in events if e["eventName"] == "GetAccount")["responseElements"] is None  # reads: none
