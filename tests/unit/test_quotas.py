"""Quotas in-process: counts shared between two services on one database (two processes), tokens, stream
leases, the free path for accounts without a limit, and who may manage quotas."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import event, func, select

from outcrop.core.governance import CallContext, Invocation
from outcrop.core.governance.quotas import QuotaService
from outcrop.core.identity import Caller
from outcrop.errors import AccessDenied, Invalid, NotFound, Throttled
from outcrop.server.deps import Services
from outcrop.settings import Settings
from outcrop.storage.db import make_engine, session_factory
from outcrop.storage.repositories import Accounts, AccountScope
from outcrop.storage.tables import Principal, QuotaLease, QuotaUsage

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
TITAN = "amazon.titan-embed-text-v2:0"
START = 1_700_000_040.0  # the start of a minute


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def svc(tmp_path) -> Services:
    services = Services.build(Settings(home=tmp_path))
    services.accounts.bootstrap()
    return services


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def quotas(svc, clock) -> QuotaService:
    return QuotaService(svc.identity.sessions, svc.access, clock=clock, every=0)


@pytest.fixture
def other_process(svc, clock) -> QuotaService:
    """A second QuotaService on its own engine and connections: what another server process holds."""
    return QuotaService(session_factory(make_engine(svc.settings.database_url)), svc.access, clock=clock, every=0)


def admin_of(svc: Services, account_id: str | None = None, operation: str = "PutQuota") -> CallContext:
    with svc.identity.sessions() as session:
        account = Accounts(session).get(account_id) if account_id else Accounts(session).first()
        assert account is not None
        admin = AccountScope(session, account.id).first(Principal, Principal.is_admin.is_(True))
        assert admin is not None
    return CallContext(Caller(account.id, admin.id, admin.name, True, None, "sigv4", "user", admin.is_operator),
                       operation)


@pytest.fixture
def tenant(svc) -> str:
    return svc.accounts.create_account(admin_of(svc, operation="CreateAccount"), "tenant")["Account"]["AccountId"]


def call(account_id: str, model_id: str = HAIKU, streaming: bool = False, kind: str = "chat") -> Invocation:
    return Invocation(CallContext(Caller(account_id, "AIDAUSER", "bob", False), "Converse"), model_id, model_id,
                      streaming=streaming, kind=kind)


def admitted(service: QuotaService, invocation: Invocation) -> bool:
    try:
        service.admit(invocation)
    except Throttled:
        return False
    return True


def test_two_processes_share_the_requests_per_minute(svc, quotas, other_process, tenant, clock):
    quotas.put_quota(admin_of(svc), tenant, HAIKU, requests_per_minute=3)
    verdicts = [admitted(service, call(tenant)) for service in (quotas, other_process, quotas, other_process, quotas)]
    assert verdicts == [True, True, True, False, False]
    with pytest.raises(Throttled, match=r"^Too many requests, please wait before trying again\. .*3 requests per minute"):
        other_process.admit(call(tenant))
    clock.now += 60
    assert admitted(other_process, call(tenant))


def test_concurrent_admissions_never_overshoot(svc, quotas, other_process, tenant):
    quotas.put_quota(admin_of(svc), tenant, HAIKU, requests_per_minute=10)
    results: list[bool] = []

    def hammer(service: QuotaService) -> None:
        for _ in range(5):
            results.append(admitted(service, call(tenant)))

    threads = [threading.Thread(target=hammer, args=(s,)) for s in (quotas, other_process) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 40 and results.count(True) == 10


def test_tokens_per_minute_count_what_released_calls_used(svc, quotas, other_process, tenant, clock):
    quotas.put_quota(admin_of(svc), tenant, HAIKU, tokens_per_minute=10)
    for service, used in ((quotas, 6), (other_process, 5)):
        invocation = call(tenant)
        service.admit(invocation)
        invocation.input_tokens, invocation.output_tokens = used - 1, 1
        service.release(invocation)
        service.flush()  # tokens are settled off the request path; flush makes them visible now
    with pytest.raises(Throttled, match="10 tokens per minute"):
        quotas.admit(call(tenant))
    clock.now += 60
    assert admitted(quotas, call(tenant))


def test_concurrent_streams_hold_leases_until_released(svc, quotas, other_process, tenant):
    quotas.put_quota(admin_of(svc), tenant, HAIKU, concurrent_streams=2)
    first, second = call(tenant, streaming=True), call(tenant, streaming=True)
    quotas.admit(first)
    other_process.admit(second)
    with pytest.raises(Throttled, match="2 concurrent streams"):
        quotas.admit(call(tenant, streaming=True))
    assert admitted(quotas, call(tenant))  # a whole answer is not a stream
    other_process.release(second)
    third = call(tenant, streaming=True)
    assert admitted(quotas, third)
    quotas.release(first)
    quotas.release(third)
    assert _count(svc, QuotaLease) == 0


def test_a_lease_expires_when_its_process_died(svc, quotas, other_process, tenant, clock):
    quotas.put_quota(admin_of(svc), tenant, HAIKU, concurrent_streams=1)
    other_process.admit(call(tenant, streaming=True))  # never released: that process "died"
    assert not admitted(quotas, call(tenant, streaming=True))
    clock.now += 11 * 60
    assert admitted(quotas, call(tenant, streaming=True))


def test_a_refusal_counts_nothing(svc, quotas, tenant):
    quotas.put_quota(admin_of(svc), tenant, HAIKU, requests_per_minute=5, concurrent_streams=1)
    quotas.admit(call(tenant, streaming=True))
    assert not admitted(quotas, call(tenant, streaming=True))
    with svc.identity.sessions() as session:
        assert session.scalar(select(QuotaUsage.requests)) == 1
    assert _count(svc, QuotaLease) == 1


def test_a_model_quota_wins_over_every_model_and_ids_are_normalized(svc, quotas, tenant):
    quotas.put_quota(admin_of(svc), tenant, "*", requests_per_minute=1)
    quotas.put_quota(admin_of(svc), tenant, f"us.{HAIKU}", requests_per_minute=2)
    assert [q["ModelId"] for q in quotas.list_quotas(admin_of(svc), tenant)] == ["*", HAIKU]
    arn = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"
    assert [admitted(quotas, call(tenant, m)) for m in (HAIKU, arn, HAIKU)] == [True, True, False]
    assert [admitted(quotas, call(tenant, m)) for m in (TITAN, TITAN)] == [True, False]
    assert admitted(quotas, call(tenant, "meta.llama3-8b-instruct-v1:0"))  # "*" counts each model apart


def test_no_limit_costs_no_database_access(svc, tenant, clock):
    operator = admin_of(svc)
    service = QuotaService(svc.identity.sessions, svc.access, clock=clock, every=3600)
    service.put_quota(operator, tenant, HAIKU, requests_per_minute=1)
    statements: list[str] = []
    engine = svc.identity.sessions.kw["bind"]
    listener = lambda *args: statements.append(args[2])  # noqa: E731 (conn, cursor, statement, ...)
    event.listen(engine, "before_cursor_execute", listener)
    try:
        for _ in range(200):
            service.admit(call(operator.caller.account_id))  # an account without quotas
            service.admit(call(tenant, TITAN))  # a model without one
            service.admit(Invocation(CallContext(None, "Local"), HAIKU, HAIKU))  # the CLI
            service.admit(call(tenant, kind="count_tokens"))
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert statements == []


def test_old_minutes_and_expired_leases_are_swept(svc, quotas, tenant, clock):
    quotas.put_quota(admin_of(svc), tenant, HAIKU, requests_per_minute=100, concurrent_streams=5)
    quotas.admit(call(tenant, streaming=True))  # never released
    clock.now += 15 * 60
    quotas.admit(call(tenant))
    with svc.identity.sessions() as session:
        assert session.scalars(select(QuotaUsage.window)).all() == [int(clock.now // 60)]
    assert _count(svc, QuotaLease) == 0


def test_a_quota_from_another_process_applies_within_its_refresh(svc, quotas, other_process, tenant):
    quotas.put_quota(admin_of(svc), tenant, HAIKU, requests_per_minute=1)  # other_process was built before
    assert admitted(other_process, call(tenant))
    assert not admitted(other_process, call(tenant))  # every=0: the generation is read on each call
    quotas.delete_quota(admin_of(svc, operation="DeleteQuota"), tenant, HAIKU)
    assert admitted(other_process, call(tenant))


def test_only_the_operator_sets_quotas(svc, quotas, tenant):
    operator = admin_of(svc)
    their_admin = admin_of(svc, tenant)
    with pytest.raises(AccessDenied, match="outcrop:PutQuota"):
        quotas.put_quota(their_admin, tenant, HAIKU, requests_per_minute=1000)
    quotas.put_quota(operator, tenant, HAIKU, requests_per_minute=3)
    with pytest.raises(AccessDenied, match="outcrop:DeleteQuota"):
        quotas.delete_quota(admin_of(svc, tenant, "DeleteQuota"), tenant, HAIKU)
    assert quotas.list_quotas(operator)[0]["RequestsPerMinute"] == 3


def test_each_account_lists_only_its_own_quotas(svc, quotas, tenant):
    operator = admin_of(svc)
    quotas.put_quota(operator, tenant, HAIKU, tokens_per_minute=500)
    quotas.put_quota(operator, operator.caller.account_id, "*", requests_per_minute=50)
    theirs = admin_of(svc, tenant, "ListQuotas")
    assert quotas.list_quotas(theirs) == [{"AccountId": tenant, "ModelId": HAIKU, "RequestsPerMinute": None,
                                           "TokensPerMinute": 500, "ConcurrentStreams": None}]
    assert quotas.list_quotas(theirs, tenant) == quotas.list_quotas(theirs)
    with pytest.raises(NotFound):
        quotas.list_quotas(theirs, operator.caller.account_id)
    assert len(quotas.list_quotas(admin_of(svc, operation="ListQuotas"))) == 2
    assert len(quotas.list_quotas(admin_of(svc, operation="ListQuotas"), tenant)) == 1
    nobody = CallContext(Caller(tenant, "AIDANOBODY", "nobody", False), "ListQuotas")
    with pytest.raises(AccessDenied, match="servicequotas:ListServiceQuotas"):
        quotas.list_quotas(nobody)


@pytest.mark.parametrize("limits", [{"requests_per_minute": 0}, {"tokens_per_minute": -5},
                                    {"concurrent_streams": True}, {"requests_per_minute": "3"},
                                    {"requests_per_minute": 2**31}, {}])
def test_limits_must_be_positive_whole_numbers(svc, quotas, tenant, limits: dict[str, Any]):
    with pytest.raises(Invalid):
        quotas.put_quota(admin_of(svc), tenant, HAIKU, **limits)


def test_unknown_accounts_and_quotas_are_not_found(svc, quotas, tenant):
    with pytest.raises(NotFound):
        quotas.put_quota(admin_of(svc), "999999999999", HAIKU, requests_per_minute=1)
    with pytest.raises(NotFound):
        quotas.delete_quota(admin_of(svc, operation="DeleteQuota"), tenant, HAIKU)
    with pytest.raises(NotFound):
        quotas.list_quotas(admin_of(svc, operation="ListQuotas"), "999999999999")


def _count(svc: Services, table: Any) -> int:
    with svc.identity.sessions() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0

