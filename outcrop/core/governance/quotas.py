"""Per-account, per-model quotas: requests and tokens per minute, concurrent streams (an Admission).

Limits are held in memory, refreshed from the "quotas" generation; the counters live in the database,
so every server process on one database counts against the same limits.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.cache import Generation
from outcrop.core.catalog import normalize_model_id
from outcrop.core.governance import CallContext, Invocation
from outcrop.errors import Invalid, NotFound, OutcropError, Throttled
from outcrop.storage.repositories import Accounts
from outcrop.storage.tables import QuotaLease, QuotaLimit, QuotaUsage

log = logging.getLogger("outcrop.quotas")

EVERY_MODEL = "*"
LEASE = timedelta(minutes=10)  # a stream whose process died stops counting after this long
SWEEP_EVERY = 60.0  # seconds between two clean-ups of old counters and expired leases, per process
KEEP_WINDOWS = 2  # minutes of counters kept behind the current one
_MOST = 2**31 - 1  # the columns are 32-bit integers
_REFUSED = "Too many requests, please wait before trying again."
_WIRE = {"requests_per_minute": "RequestsPerMinute", "tokens_per_minute": "TokensPerMinute",
         "concurrent_streams": "ConcurrentStreams"}


@dataclass(frozen=True)
class Limit:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_streams: int | None = None


@dataclass(frozen=True)
class _Ticket:
    """What an admitted invocation holds until it is released."""

    account_id: str
    model_id: str
    lease_id: str | None


class QuotaService:
    """Admits or throttles each model call against its account's limits; the operator sets the limits.

    A model's own limit replaces the account's "*" one; "*" gives each other model the same allowance,
    counted per model (Service Quotas are per model), not one allowance shared by all."""

    def __init__(self, sessions: sessionmaker[Session], access: AccessService,
                 clock: Callable[[], float] = time.time, every: float = 1.0) -> None:
        dialect = sessions.kw["bind"].dialect.name
        if dialect not in ("sqlite", "postgresql"):  # checked once here, not on every admitted call
            raise OutcropError(f"quotas need INSERT … ON CONFLICT … RETURNING: SQLite or PostgreSQL, not {dialect}")
        self.sessions = sessions
        self.access = access
        self.clock = clock
        self.generation = Generation(sessions, "quotas", every)
        self._limits = self._load()
        self._tickets: dict[int, _Ticket] = {}  # id(invocation) → its ticket; the invocation lives until release
        self._lock = threading.Lock()
        self._reload = threading.Lock()
        self._unsettled: dict[tuple[str, str, int], int] = {}  # (account, model, minute) → tokens not yet written
        self._settler: threading.Thread | None = None
        self._wake = threading.Event()
        self._flush_lock = threading.Lock()
        self._swept = float("-inf")

    # -- the Admission hook ------------------------------------------------------------------------

    def admit(self, invocation: Invocation) -> None:
        caller = invocation.context.caller
        if caller is None or invocation.kind == "count_tokens":  # the CLI; counting tokens runs no model
            return
        limit, model = self._applicable(caller.account_id, invocation.model_id)
        if limit is None:
            return
        ticket = self._charge(caller.account_id, model, limit, invocation.streaming)
        self._tickets[id(invocation)] = ticket
        self._sweep_now_and_then()

    def release(self, invocation: Invocation) -> None:
        """Adds the tokens the call used to this minute's count and ends its stream lease.

        A stream's lease ends at once (the next stream may need the room); a whole answer's tokens are
        added by a background thread, batched, off the request path — tokens/minute sees them within
        ~LINGER_S, as Bedrock's own token quotas are settled after the fact."""
        ticket = self._tickets.pop(id(invocation), None)
        if ticket is None:
            return
        tokens = invocation.input_tokens + invocation.output_tokens
        if ticket.lease_id is None:
            if tokens:
                self._settle(ticket, _window(self.clock()), tokens)
            return
        try:
            with self.sessions.begin() as session:
                if tokens:
                    window = _window(self.clock())
                    session.execute(*_upsert(ticket.account_id, ticket.model_id, window, 0, tokens))
                session.execute(delete(QuotaLease).where(QuotaLease.id == ticket.lease_id))
        except Exception:  # the call already succeeded; an unreleased lease expires by itself
            log.exception("releasing the quota of %s on %s failed", ticket.account_id, ticket.model_id)

    def _settle(self, ticket: _Ticket, window: int, tokens: int) -> None:
        with self._lock:
            key = (ticket.account_id, ticket.model_id, window)
            self._unsettled[key] = self._unsettled.get(key, 0) + tokens
            if self._settler is None:
                self._settler = threading.Thread(target=self._settle_loop, name="outcrop-quota-tokens", daemon=True)
                self._settler.start()
        self._wake.set()

    def _settle_loop(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(LINGER_S)  # gather a batch: one transaction for many calls
            self.flush()

    def flush(self) -> None:
        """Write the tokens released so far (the settler does it by itself; tests and shutdown call it)."""
        with self._flush_lock:
            with self._lock:
                pending, self._unsettled = self._unsettled, {}
                self._wake.clear()
            if not pending:
                return
            try:
                with self.sessions.begin() as session:
                    for (account_id, model_id, window), tokens in pending.items():
                        session.execute(*_upsert(account_id, model_id, window, 0, tokens))
            except Exception:
                log.exception("adding %d released token counts failed", len(pending))

    def _applicable(self, account_id: str, model_id: str) -> tuple[Limit | None, str]:
        """The limit for this call, found in memory: this runs before every model call."""
        with self._reload:  # check and reload as one step: no thread may see "unchanged" with the old limits
            if self.generation.changed():
                self._limits = self._load()
        models = self._limits.get(account_id)
        if not models:
            return None, ""
        model = normalize_model_id(model_id)
        return models.get(model) or models.get(EVERY_MODEL), model

    def _charge(self, account_id: str, model: str, limit: Limit, streaming: bool) -> _Ticket:
        """Count the request, check tokens, take a stream lease: all or nothing, in one transaction."""
        now = self.clock()
        lease_id = None
        with self.sessions.begin() as session:
            # The counter's upsert comes first and is a write: on SQLite it takes the database's write lock
            # before anything is read (on PostgreSQL, the counter row's lock), so admissions from every
            # process run one at a time; a refusal below rolls the count back. At the limit the row is not
            # updated and nothing is returned.
            counted = session.execute(*_upsert(account_id, model, _window(now), 1, 0,
                                              below=limit.requests_per_minute)).first()
            if counted is None:
                raise _refused(f"{limit.requests_per_minute} requests per minute", model)
            if limit.tokens_per_minute is not None and counted.tokens >= limit.tokens_per_minute:
                raise _refused(f"{limit.tokens_per_minute} tokens per minute", model)
            if streaming and limit.concurrent_streams is not None:
                lease_id = _lease(session, account_id, model, now, limit.concurrent_streams)
        return _Ticket(account_id, model, lease_id)

    def _sweep_now_and_then(self) -> None:
        """Drop counters of past minutes and expired leases: once a minute per process, never per request."""
        now = self.clock()
        with self._lock:
            if now - self._swept < SWEEP_EVERY:
                return
            self._swept = now
        try:
            with self.sessions.begin() as session:
                session.execute(delete(QuotaUsage).where(QuotaUsage.window < _window(now) - KEEP_WINDOWS))
                session.execute(delete(QuotaLease).where(QuotaLease.expires_at <= _at(now)))
        except Exception:  # housekeeping; the next sweep tries again
            log.exception("sweeping quota counters failed")

    def _load(self) -> dict[str, dict[str, Limit]]:
        limits: dict[str, dict[str, Limit]] = {}
        with self.sessions() as session:
            for row in session.scalars(select(QuotaLimit)):
                limits.setdefault(row.account_id, {})[row.model_id] = Limit(
                    row.requests_per_minute, row.tokens_per_minute, row.concurrent_streams)
        return limits

    # -- management --------------------------------------------------------------------------------

    def put_quota(self, ctx: CallContext, account_id: str, model_id: str, requests_per_minute: int | None = None,
                  tokens_per_minute: int | None = None, concurrent_streams: int | None = None) -> dict[str, Any]:
        """Set (replace) an account's limits on one model, or on every model with "*" (operator only)."""
        self.access.require(ctx, quota_arn(ctx.region, account_id, model_id))
        model = _model_key(model_id)
        given = {"requests_per_minute": requests_per_minute, "tokens_per_minute": tokens_per_minute,
                 "concurrent_streams": concurrent_streams}
        values = {name: _positive(value, _WIRE[name]) for name, value in given.items()}
        if all(value is None for value in values.values()):
            raise Invalid("Give at least one of RequestsPerMinute, TokensPerMinute, ConcurrentStreams")
        with self.sessions.begin() as session:
            _account(session, account_id)
            row = session.get(QuotaLimit, (account_id, model))
            if row is None:
                row = QuotaLimit(account_id=account_id, model_id=model)
                session.add(row)
            for name, value in values.items():
                setattr(row, name, value)
            self.generation.bump(session)
        self._limits = self._load()
        return _quota(row)

    def delete_quota(self, ctx: CallContext, account_id: str, model_id: str) -> None:
        self.access.require(ctx, quota_arn(ctx.region, account_id, model_id))
        model = _model_key(model_id)
        with self.sessions.begin() as session:
            row = session.get(QuotaLimit, (account_id, model))
            if row is None:
                raise NotFound(f"No quota is set for account {account_id} on model {model}.")
            session.delete(row)
            self.generation.bump(session)
        self._limits = self._load()

    def list_quotas(self, ctx: CallContext, account_id: str | None = None) -> list[dict[str, Any]]:
        """The operator sees any account's quotas (all by default); everyone else only their own account's."""
        caller = ctx.caller
        operator = caller is None or caller.is_operator
        own = caller.account_id if caller is not None else None
        target = account_id if operator else own
        self.access.require(ctx, quota_arn(ctx.region, target or "*", "*"))
        if account_id is not None and account_id != target:
            raise NotFound(f"Account {account_id} does not exist.")  # another tenant's: as if absent
        query = select(QuotaLimit).order_by(QuotaLimit.account_id, QuotaLimit.model_id)
        with self.sessions() as session:
            if target is not None:
                _account(session, target)
                query = query.where(QuotaLimit.account_id == target)
            return [_quota(row) for row in session.scalars(query)]


def quota_arn(region: str, account_id: str, model_id: str) -> str:
    return f"arn:aws:servicequotas:{region}:{account_id}:bedrock/{model_id}"


# One statement, written once: SQLite and PostgreSQL share this upsert syntax. Building it with the ORM's
# insert().on_conflict_do_update() on every call cost ~2 ms of Python per admitted call (cache keys).
_UPSERT = text(
    'INSERT INTO quota_usage (account_id, model_id, "window", requests, tokens) VALUES (:a, :m, :w, :r, :t) '
    'ON CONFLICT (account_id, model_id, "window") DO UPDATE SET requests = quota_usage.requests + :r, '
    "tokens = quota_usage.tokens + :t WHERE quota_usage.requests < :below RETURNING requests, tokens")
_NO_CEILING = 2**62
LINGER_S = 0.05


def _upsert(account_id: str, model_id: str, window: int, requests: int, tokens: int,
            below: int | None = None) -> tuple[Any, dict[str, Any]]:
    """The statement and parameters that add to one minute's counters atomically; with `below`, only while
    requests stay under it."""
    return _UPSERT, {"a": account_id, "m": model_id, "w": window, "r": requests, "t": tokens,
                     "below": below if below is not None else _NO_CEILING}


def _lease(session: Session, account_id: str, model_id: str, now: float, most: int) -> str:
    """Take a stream lease, then count: the new lease is inside the count, so at the limit it is refused."""
    lease = QuotaLease(id=str(uuid.uuid4()), account_id=account_id, model_id=model_id, expires_at=_at(now) + LEASE)
    session.add(lease)
    session.flush()
    running = session.scalar(select(func.count()).select_from(QuotaLease).where(
        QuotaLease.account_id == account_id, QuotaLease.model_id == model_id, QuotaLease.expires_at > _at(now)))
    if (running or 0) > most:
        raise _refused(f"{most} concurrent streams", model_id)
    return lease.id


def _refused(limit: str, model_id: str) -> Throttled:
    return Throttled(f"{_REFUSED} This account's quota on {model_id} is {limit}; wait before trying again.")


def _window(now: float) -> int:
    return int(now // 60)


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _model_key(model_id: object) -> str:
    if model_id == EVERY_MODEL:
        return EVERY_MODEL
    if not isinstance(model_id, str):
        raise Invalid("ModelId must be a string")
    model = normalize_model_id(model_id)
    if len(model) > 256:
        raise Invalid("ModelId must be at most 256 characters")
    return model


def _positive(value: object, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MOST:
        raise Invalid(f"{name} must be a whole number between 1 and {_MOST}")
    return value


def _account(session: Session, account_id: str) -> None:
    if not isinstance(account_id, str) or Accounts(session).get(account_id) is None:
        raise NotFound(f"Account {account_id} does not exist.")


def _quota(row: QuotaLimit) -> dict[str, Any]:
    return {"AccountId": row.account_id, "ModelId": row.model_id, "RequestsPerMinute": row.requests_per_minute,
            "TokensPerMinute": row.tokens_per_minute, "ConcurrentStreams": row.concurrent_streams}
