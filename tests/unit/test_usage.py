"""The usage ledger on a real SQLite file: additive upserts across processes, flushes, access rules, the CLI."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import typer
from typer.testing import CliRunner

from outcrop.cli.usage import since_day, usage
from outcrop.core.governance import LOCAL, CallContext, Invocation
from outcrop.core.governance.metrics import UNRESOLVED, ModelLabels
from outcrop.core.governance.usage import UsageLedger
from outcrop.core.identity import Caller
from outcrop.errors import AccessDenied, Invalid, NotFound
from outcrop.server.deps import Services
from outcrop.settings import Settings
from outcrop.storage.db import make_engine, session_factory
from outcrop.storage.repositories import Accounts, AccountScope
from outcrop.storage.tables import Principal, UsageDaily

MODEL = "local.chat-v1:0"


@pytest.fixture
def svc(tmp_path) -> Services:
    services = Services.build(Settings(home=tmp_path))
    services.accounts.bootstrap()
    return services


@pytest.fixture
def ledger(svc):  # type: ignore[no-untyped-def]
    book = UsageLedger(svc.identity.sessions, svc.access, flush_every=3600)  # flushes only when asked
    yield book
    book.close()


def admin(svc: Services, account_id: str | None = None, operation: str = "GetUsage",
          key: str | None = "AKIAADMIN") -> CallContext:
    with svc.identity.sessions() as session:
        accounts = Accounts(session)
        account = accounts.get(account_id) if account_id else accounts.first()
        assert account is not None
        row = AccountScope(session, account.id).first(Principal, Principal.is_admin.is_(True))
    assert row is not None
    return CallContext(Caller(account.id, row.id, row.name, True, key, "sigv4", "user", row.is_operator), operation)


def invocation(ctx: CallContext, model: str = MODEL, tokens: tuple[int, int] = (10, 5),
               error: str | None = None) -> Invocation:
    return Invocation(ctx, model, model, input_tokens=tokens[0], output_tokens=tokens[1], error=error)


def rows_in_db(svc: Services) -> int:
    with svc.identity.sessions() as session:
        return session.query(UsageDaily).count()


def test_requests_never_write_and_a_read_flushes_first(svc, ledger):
    ctx = admin(svc)
    ledger.record(invocation(ctx))
    ledger.record(invocation(ctx, tokens=(1, 2), error="ModelError"))
    assert rows_in_db(svc) == 0
    (row,) = ledger.usage(ctx)
    assert row == {"Day": row["Day"], "ModelId": MODEL, "KeyId": "AKIAADMIN", "Invocations": 2, "InputTokens": 11,
                   "OutputTokens": 7, "Errors": 1}
    assert rows_in_db(svc) == 1


def test_two_ledgers_on_one_database_add_up(svc, tmp_path):
    other_engine = make_engine(Settings(home=tmp_path).database_url)  # a second process's own connection pool
    books = [UsageLedger(svc.identity.sessions, svc.access, flush_every=0.01),
             UsageLedger(session_factory(other_engine), svc.access, flush_every=0.01)]
    ctx = admin(svc)

    def work(book: UsageLedger) -> None:
        for _ in range(300):
            book.record(invocation(ctx, tokens=(3, 2)))

    threads = [threading.Thread(target=work, args=(book,)) for book in books for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for book in books:
        book.close()
    reader = UsageLedger(svc.identity.sessions, svc.access)
    try:
        (row,) = reader.usage(ctx)
    finally:
        reader.close()
        other_engine.dispose()
    assert (row["Invocations"], row["InputTokens"], row["OutputTokens"]) == (1200, 3600, 2400)


def test_close_flushes(svc):
    book = UsageLedger(svc.identity.sessions, svc.access, flush_every=3600)
    book.record(invocation(admin(svc)))
    book.close()
    assert rows_in_db(svc) == 1


def test_a_failed_write_is_kept_for_the_next_flush(svc, ledger, monkeypatch):
    ctx = admin(svc)
    ledger.record(invocation(ctx))
    write = ledger._write

    def broken(batch):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(ledger, "_write", write)
        raise RuntimeError("database is locked")

    monkeypatch.setattr(ledger, "_write", broken)
    ledger.flush()
    ledger.record(invocation(ctx))
    assert ledger.usage(ctx)[0]["Invocations"] == 2


def test_local_calls_go_to_the_operator_account_under_key_blank(svc, ledger):
    operator = admin(svc)
    cli_admin = CallContext(Caller(operator.caller.account_id, "AIDALOCAL", "admin", True, None, "local"), "Converse")
    api_key = CallContext(Caller(operator.caller.account_id, "AIDAAPI", "bob", False, None, "api_key"), "Converse")
    for ctx in (LOCAL, cli_admin, api_key):
        ledger.record(invocation(ctx))
    (row,) = ledger.usage(operator)
    assert (row["KeyId"], row["Invocations"]) == ("", 3)


def test_grouping_and_day_range(svc, ledger, monkeypatch):
    ctx = admin(svc)
    for day, key in (("2024-01-01", "AKIA1"), ("2024-01-02", "AKIA1"), ("2024-01-02", "AKIA2"), ("2024-01-03", "AKIA1")):
        monkeypatch.setattr(ledger, "_today", lambda day=day: day)
        ledger.record(invocation(admin(svc, key=key)))
    assert [r["Day"] for r in ledger.usage(ctx, "2024-01-02", "2024-01-02")] == ["2024-01-02", "2024-01-02"]
    assert ledger.usage(ctx, group_by=("model",)) == [
        {"ModelId": MODEL, "Invocations": 4, "InputTokens": 40, "OutputTokens": 20, "Errors": 0}]
    by_key = ledger.usage(ctx, since_day="2024-01-02", group_by=("key", "day"))
    assert [(r["Day"], r["KeyId"], r["Invocations"]) for r in by_key] == [
        ("2024-01-02", "AKIA1", 1), ("2024-01-02", "AKIA2", 1), ("2024-01-03", "AKIA1", 1)]
    for bad in ({"since_day": "2024-1-2"}, {"until_day": "2024-02-30"}, {"group_by": ("account",)},
                {"since_day": "2024-01-03", "until_day": "2024-01-02"}):
        with pytest.raises(Invalid):
            ledger.usage(ctx, **bad)


def test_access_rules(svc, ledger):
    operator = admin(svc)
    other = svc.accounts.create_account(admin(svc, operation="CreateAccount"), "other")["Account"]["AccountId"]
    ledger.record(invocation(operator))
    ledger.record(invocation(admin(svc, other), tokens=(1, 1)))
    tenant = admin(svc, other)
    assert [r["InputTokens"] for r in ledger.usage(tenant)] == [1]  # never the operator's rows
    with pytest.raises(AccessDenied):
        ledger.usage(tenant, account_id=operator.caller.account_id)
    assert [r["InputTokens"] for r in ledger.usage(operator, account_id=other)] == [1]
    assert [r["InputTokens"] for r in ledger.usage(operator)] == [10]
    # A user needs bedrock:GetUsage from a policy.
    create = admin(svc, other, "CreateUser")
    user = svc.accounts.create_principal(create, "user", "carol")
    carol = CallContext(Caller(other, user["UserId"], "carol", False, "AKIACAROL", "sigv4", "user"), "GetUsage")
    with pytest.raises(AccessDenied):
        ledger.usage(carol)
    policy = svc.policies.create(admin(svc, other, "CreatePolicy"), "usage-reader", {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "bedrock:GetUsage", "Resource": "*"}]})
    svc.policies.attach(admin(svc, other, "AttachPolicy"), "user", "carol", policy["Arn"])
    assert [r["InputTokens"] for r in ledger.usage(carol)] == [1]


def test_model_column_is_bounded_by_the_catalog(svc):
    def resolve(model_id: str) -> str:
        if model_id == MODEL:
            return MODEL
        raise NotFound(model_id)

    book = UsageLedger(svc.identity.sessions, svc.access, ModelLabels(resolve), flush_every=3600)
    ctx = admin(svc)
    try:
        for n in range(50):
            book.record(invocation(ctx, model=f"made-up-{n}", tokens=(0, 0), error="NotFound"))
        book.record(invocation(ctx))
        assert {r["ModelId"]: r["Invocations"] for r in book.usage(ctx, group_by=("model",))} == {
            MODEL: 1, UNRESOLVED: 50}
    finally:
        book.close()


def test_cli_prints_the_table(svc, tmp_path, monkeypatch):
    book = UsageLedger(svc.identity.sessions, svc.access)
    book.record(invocation(LOCAL, tokens=(1234, 5)))
    book.close()
    monkeypatch.setenv("OUTCROP_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    app = typer.Typer()
    app.command()(usage)
    result = CliRunner().invoke(app, ["--since", "7d"])
    assert result.exit_code == 0, result.output
    assert MODEL in result.output and "1,234" in result.output and "total" in result.output
    assert CliRunner().invoke(app, ["--since", "yesterday"]).exit_code == 2
    assert since_day("1d", datetime(2024, 3, 2, tzinfo=UTC)) == "2024-03-02"
    assert since_day("7d", datetime(2024, 3, 2, tzinfo=UTC)) == "2024-02-25"
    assert since_day("2024-01-01") == "2024-01-01"
