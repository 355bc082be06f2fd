"""Usage per account, model, key and UTC day: counted in memory, added to usage_daily off the request path.

Rows are written as additive upserts, so several server processes on one database add up.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.governance import CallContext, Invocation
from outcrop.core.governance.metrics import ModelLabels
from outcrop.errors import AccessDenied, Invalid
from outcrop.storage.repositories import Accounts
from outcrop.storage.tables import UsageDaily

log = logging.getLogger("outcrop.usage")
NO_ACCOUNT = "000000000000"  # local calls before any account exists (as the audit trail does)
DIMENSIONS = ("day", "model", "key")
_KEYS = ("account_id", "model_id", "key_id", "day")
_COUNTS = ("invocations", "input_tokens", "output_tokens", "errors")
_COLUMNS = {"day": (UsageDaily.day, "Day"), "model": (UsageDaily.model_id, "ModelId"),
            "key": (UsageDaily.key_id, "KeyId")}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BATCH = 200  # rows per INSERT: 8 parameters each stays far below SQLite's variable limit

Key = tuple[str | None, str, str, str]  # (account or None for a local call, model, key ID, day)


class UsageLedger:
    """A Recorder: `record` adds to a dict; a daemon thread flushes it every `flush_every` seconds."""

    def __init__(self, sessions: sessionmaker[Session], access: AccessService, models: ModelLabels | None = None,
                 flush_every: float = 2.0) -> None:
        self.sessions = sessions
        self.access = access
        self.models = models  # bounds the model column to catalog IDs; without it, served_by is kept as is
        self.flush_every = flush_every
        self._pending: dict[Key, list[int]] = {}
        self._lock = threading.Lock()  # guards _pending (request threads and the flusher)
        self._writing = threading.Lock()  # one flush at a time, so a read waits for a batch in flight
        self._stop = threading.Event()
        self._operator: str | None = None
        self._day = (-1, "")
        self._thread = threading.Thread(target=self._run, name="outcrop-usage", daemon=True)
        self._thread.start()

    def record(self, invocation: Invocation) -> None:
        """Called once per invocation on the request path: a dict update, never a database write."""
        caller = invocation.context.caller
        model = self.models(invocation.served_by) if self.models else invocation.served_by[:256]
        # API keys and local callers carry no access key ID: their usage goes under key "".
        key = (caller.account_id if caller else None, model, (caller.access_key_id or "") if caller else "",
               self._today())
        with self._lock:
            counts = self._pending.get(key)
            if counts is None:
                counts = self._pending[key] = [0, 0, 0, 0]
            counts[0] += 1
            counts[1] += invocation.input_tokens
            counts[2] += invocation.output_tokens
            counts[3] += invocation.error is not None

    def flush(self) -> None:
        """Add everything recorded so far to the database; on failure keep it for the next try."""
        with self._writing:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return
            try:
                self._write(batch)
            except Exception:
                log.exception("usage: could not add %d rows; keeping them for the next flush", len(batch))
                self._requeue(batch)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.flush()

    # -- reading -------------------------------------------------------------------------------------

    def usage(self, ctx: CallContext, since_day: str | None = None, until_day: str | None = None,
              group_by: Sequence[str] = DIMENSIONS, account_id: str | None = None) -> list[dict[str, Any]]:
        """The caller's account's usage, summed over what group_by leaves out; an operator may name an account."""
        self.access.require(ctx)
        since, until = _day(since_day, "Since"), _day(until_day, "Until")
        if since and until and since > until:
            raise Invalid("Since must not be after Until")
        dimensions = _dimensions(group_by)
        self.flush()  # a read right after a call sees it
        columns = [_COLUMNS[d][0] for d in dimensions]
        sums = [func.sum(getattr(UsageDaily, name)) for name in _COUNTS]
        with self.sessions() as session:
            query = select(*columns, *sums).where(UsageDaily.account_id == self._account_for(session, ctx, account_id))
            if since:
                query = query.where(UsageDaily.day >= since)
            if until:
                query = query.where(UsageDaily.day <= until)
            rows = session.execute(query.group_by(*columns).order_by(*columns)).all()
        names = [_COLUMNS[d][1] for d in dimensions] + ["Invocations", "InputTokens", "OutputTokens", "Errors"]
        return [{name: (int(value) if name not in ("Day", "ModelId", "KeyId") else value)
                 for name, value in zip(names, row, strict=True)} for row in rows]

    def _account_for(self, session: Session, ctx: CallContext, account_id: str | None) -> str:
        caller = ctx.caller
        if caller is None:  # a local operator holding the data dir
            return account_id or self._operator_account(session)
        if account_id in (None, caller.account_id) or caller.is_operator:
            return account_id or caller.account_id
        raise AccessDenied(f"User: {caller.arn} is not authorized to read the usage of account {account_id}")

    # -- writing -------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.flush_every):
            self.flush()

    def _write(self, batch: dict[Key, list[int]]) -> None:
        with self.sessions.begin() as session:
            totals: dict[tuple[str, str, str, str], list[int]] = {}
            for (account, model, key_id, day), counts in batch.items():
                row = totals.setdefault((account or self._operator_account(session), model, key_id, day), [0] * 4)
                for i, value in enumerate(counts):
                    row[i] += value
            rows = [dict(zip(_KEYS + _COUNTS, key + tuple(counts), strict=True)) for key, counts in totals.items()]
            for start in range(0, len(rows), _BATCH):
                _add(session, rows[start:start + _BATCH])

    def _requeue(self, batch: dict[Key, list[int]]) -> None:
        with self._lock:
            for key, counts in batch.items():
                pending = self._pending.setdefault(key, [0] * 4)
                for i, value in enumerate(counts):
                    pending[i] += value

    def _operator_account(self, session: Session) -> str:
        """Where local calls (no caller) are counted: the first account, the operator's."""
        if self._operator is None:
            first = Accounts(session).first()
            if first is None:
                return NO_ACCOUNT
            self._operator = first.id
        return self._operator

    def _today(self) -> str:
        day_number = int(time.time()) // 86400
        if self._day[0] != day_number:  # formatting a date per call costs more than this check
            self._day = (day_number, datetime.fromtimestamp(day_number * 86400, UTC).strftime("%Y-%m-%d"))
        return self._day[1]


def _add(session: Session, rows: list[dict[str, Any]]) -> None:
    """Add the counts to existing rows, creating missing ones, in one statement where the database can."""
    table = cast(Table, UsageDaily.__table__)
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table).values(rows)
        session.execute(insert.on_conflict_do_update(
            index_elements=list(_KEYS), set_={c: table.c[c] + insert.excluded[c] for c in _COUNTS}))
        return
    for row in rows:  # other databases: update, then insert what was not there
        where = [table.c[k] == row[k] for k in _KEYS]
        done = session.execute(update(table).where(*where).values({c: table.c[c] + row[c] for c in _COUNTS}))
        if not done.rowcount:  # type: ignore[attr-defined]
            session.execute(table.insert().values(row))


def _day(value: str | None, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not _DAY.match(value):
        raise Invalid(f"{name} must be a day as YYYY-MM-DD, not {value!r}")
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise Invalid(f"{name} is not a calendar day: {value}") from None
    return value


def _dimensions(group_by: Iterable[str]) -> list[str]:
    chosen = [d.strip().lower() for d in group_by if d.strip()]
    unknown = [d for d in chosen if d not in _COLUMNS]
    if unknown:
        raise Invalid(f"GroupBy accepts {', '.join(DIMENSIONS)}; not {', '.join(unknown)}")
    return [d for d in DIMENSIONS if d in chosen]  # a fixed order, whatever order was asked
