"""Quotas on a live server: the operator limits one account, which gets Bedrock's ThrottlingException and
OpenAI's 429 while other accounts keep their answers; the count holds across two server processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import openai
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import free_port, start_server, stop_server
from tests.e2e.iam import Principal, new_account, operator

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
IN_PATH = "anthropic.claude-3-haiku-20240307-v1%3A0"
MESSAGES = [{"role": "user", "content": [{"text": "hi"}]}]
REFUSED = "Too many requests, please wait before trying again."


def converse(who: Any) -> dict[str, Any]:
    client = who if not isinstance(who, Principal) else who.client("bedrock-runtime")
    return client.converse(modelId=HAIKU, messages=MESSAGES, inferenceConfig={"maxTokens": 1})  # type: ignore[no-any-return]


def assert_throttled(who: Any) -> None:
    with pytest.raises(ClientError) as caught:
        converse(who)
    error = caught.value.response
    assert error["Error"]["Code"] == "ThrottlingException", error
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error["Error"]["Message"].startswith(REFUSED)


def outcrop(home: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUTCROP_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "outcrop", *args], capture_output=True, text=True, env=env, timeout=300)


def fresh_minute(need: float = 30) -> None:
    """Counts reset each minute: start a test's burst early in one, so it cannot straddle two."""
    left = 60 - time.time() % 60
    if left < need:
        time.sleep(left + 0.2)


def account_id(who: Principal) -> str:
    return who.ok("GET", "/outcrop/v1/account")["Account"]["AccountId"]  # type: ignore[no-any-return]


def limited(server: Any, name: str, **limits: int) -> tuple[Principal, str]:
    """A new account with the given limits on the default chat alias, set by the operator."""
    who = new_account(server, name)
    account = account_id(who)
    quota = operator(server).ok("PUT", f"/outcrop/v1/quotas/{account}/{IN_PATH}", limits)["Quota"]
    assert quota["AccountId"] == account and quota["ModelId"] == HAIKU
    return who, account


def test_the_fourth_converse_in_a_minute_is_throttled_while_others_answer(server):
    b, _ = limited(server, "quota-b", RequestsPerMinute=3)
    c = new_account(server, "quota-c")
    converse(c)  # the model is loaded before the minute starts
    fresh_minute()
    for _ in range(3):
        assert converse(b)["output"]["message"]["role"] == "assistant"
    assert_throttled(b)
    for _ in range(4):
        assert converse(c)["output"]["message"]["role"] == "assistant"
    assert_throttled(b)


def test_openai_route_answers_429_with_retry_after(server):
    d, _ = limited(server, "quota-d", RequestsPerMinute=1)
    client = d.openai()
    fresh_minute()
    client.chat.completions.create(model=HAIKU, max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=HAIKU, max_tokens=1, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"]
    assert caught.value.response.json()["error"]["message"].startswith(REFUSED)


def test_accounts_read_their_own_quotas_and_only_the_operator_changes_them(server):
    e, account = limited(server, "quota-e", RequestsPerMinute=1, TokensPerMinute=100000)
    other = account_id(new_account(server, "quota-f"))
    mine = e.ok("GET", "/outcrop/v1/quotas")["Quotas"]
    assert mine == [{"AccountId": account, "ModelId": HAIKU, "RequestsPerMinute": 1, "TokensPerMinute": 100000,
                     "ConcurrentStreams": None}]
    assert e.call("GET", f"/outcrop/v1/quotas?AccountId={other}").status_code == 404
    denied = e.call("PUT", f"/outcrop/v1/quotas/{account}/{IN_PATH}", {"RequestsPerMinute": 1000})
    assert denied.status_code == 403 and "outcrop:PutQuota" in denied.text
    assert e.call("DELETE", f"/outcrop/v1/quotas/{account}/{IN_PATH}").status_code == 403
    assert operator(server).ok("GET", f"/outcrop/v1/quotas?AccountId={account}")["Quotas"] == mine
    bad = operator(server).call("PUT", f"/outcrop/v1/quotas/{account}/{IN_PATH}", {"RequestsPerMinute": 0})
    assert bad.status_code == 400
    fresh_minute()
    converse(e)
    assert_throttled(e)
    assert operator(server).call("DELETE", f"/outcrop/v1/quotas/{account}/{IN_PATH}").status_code == 204
    converse(e)
    assert e.ok("GET", "/outcrop/v1/quotas")["Quotas"] == []


def test_cli_quota_applies_to_the_running_server(server):
    g = new_account(server, "quota-g")
    account = account_id(g)
    result = outcrop(server.home, "quotas", "set", account, f"us.{HAIKU}", "--rpm", "1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ModelId"] == HAIKU
    listed = json.loads(outcrop(server.home, "quotas", "list", "--account", account).stdout)["Quotas"]
    assert [q["RequestsPerMinute"] for q in listed] == [1]
    time.sleep(1.5)  # the server reads the quotas generation at most once a second
    fresh_minute()
    converse(g)
    assert_throttled(g)
    assert outcrop(server.home, "quotas", "delete", account, HAIKU).returncode == 0
    time.sleep(1.5)
    converse(g)


def test_the_limit_holds_across_two_server_processes(tmp_path_factory):
    home = tmp_path_factory.mktemp("quota-shared-home")
    first = start_server(home, free_port())
    second = None
    try:
        second = start_server(home, free_port())  # the same data dir and database, its own port and models
        b, account = limited(first, "quota-shared", RequestsPerMinute=3)
        b_there = Principal(second.endpoint, b.access_key_id, b.secret_access_key, b.api_key)
        time.sleep(1.5)  # the second process sees the new account and its quota within a second
        converse(operator(first))  # both models loaded before the minute starts
        converse(operator(second))
        fresh_minute()
        for who in (b, b_there, b):
            converse(who)
        assert_throttled(b_there)
        assert_throttled(b)
        converse(operator(second))  # the operator's own account has no quota
    finally:
        for live in (second, first):
            if live is not None:
                stop_server(live)
