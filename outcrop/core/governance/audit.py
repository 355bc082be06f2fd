"""The audit trail: one CloudTrail-shaped event per API call, appended to a hash chain per account.

Calls enqueue their event (a dict append); a writer thread appends them in batches, so the request path
never waits for the database. Integrity (digests, verification) lives in governance/integrity.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import queue
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import OPERATIONS, AccessService
from outcrop.core.governance import CallContext
from outcrop.core.identity import Caller
from outcrop.errors import Invalid
from outcrop.storage.repositories import Accounts, AuthLookup
from outcrop.storage.tables import AuditEvent

log = logging.getLogger("outcrop.audit")
GENESIS = "0" * 64
_READ_PREFIXES = ("Get", "List", "Describe", "Lookup", "Retrieve", "Verify", "Count")
# Bedrock records model invocations as read-only management events; file bytes are data events.
_INVOCATIONS = {"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream",
                "CreateChatCompletion", "CreateCompletion", "CreateEmbedding", "Rerank", "ApplyGuardrail"}
_DATA_EVENTS = {"CreateFile", "RetrieveFileContent"}
LOOKUP_KEYS = {"EventId": "id", "EventName": "event_name", "ReadOnly": "read_only", "Username": "username",
               "AccessKeyId": "access_key_id", "EventSource": "event_source"}


def chain_hash(prev_hash: str, record: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{record}".encode()).hexdigest()


@dataclass
class Outcome:
    """What became of one API call, as the HTTP layer saw it."""

    operation: str
    started: datetime
    context: CallContext | None  # None: authentication failed
    source_ip: str | None
    user_agent: str | None
    region: str
    request_id: str
    attempted_key: str | None = None  # the access key ID a failed authentication named
    error_code: str | None = None
    error_message: str | None = None
    request_parameters: dict[str, Any] | None = None
    response_elements: dict[str, Any] | None = None
    response_body: bytes = b""  # a write's JSON answer; only its IDs and ARNs reach the event (off the request path)


def event_record(outcome: Outcome, account_id: str, event_id: str) -> dict[str, Any]:
    action = OPERATIONS.get(outcome.operation, "outcrop:Unknown")
    caller = outcome.context.caller if outcome.context else None
    record: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": _identity(caller, outcome.attempted_key, account_id),
        "eventTime": outcome.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": f"{action.split(':', 1)[0]}.amazonaws.com",
        "eventName": outcome.operation,
        "awsRegion": outcome.region,
        "sourceIPAddress": outcome.source_ip,
        "userAgent": outcome.user_agent,
        "requestParameters": outcome.request_parameters,
        "responseElements": outcome.response_elements or response_ids(outcome.response_body),
        "requestID": outcome.request_id,
        "eventID": event_id,
        "readOnly": outcome.operation.startswith(_READ_PREFIXES) or outcome.operation in _INVOCATIONS,
        "eventType": "AwsApiCall",
        "managementEvent": outcome.operation not in _DATA_EVENTS,
        "eventCategory": "Data" if outcome.operation in _DATA_EVENTS else "Management",
        "recipientAccountId": account_id,
    }
    if outcome.error_code:
        record["errorCode"] = outcome.error_code
        record["errorMessage"] = outcome.error_message
    return record


_ID_KEY = re.compile(r"(?:Id|Arn|ARN|^id)$")
_NEVER = {"SecretAccessKey", "ServiceApiKeyValue"}


def response_ids(body: bytes) -> dict[str, Any] | None:
    """IDs and ARNs from a write's answer (two levels deep): never content, never secrets."""
    if not body:
        return None
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    found = _ids(value, 0)
    return found or None


def _ids(value: Any, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not isinstance(value, dict) or depth > 2:
        return out
    for key, item in value.items():
        if key in _NEVER:
            continue
        if isinstance(item, str) and _ID_KEY.search(key):
            out[key] = item
        elif isinstance(item, dict) and (nested := _ids(item, depth + 1)):
            out[key] = nested
    return out


def _identity(caller: Caller | None, attempted_key: str | None, account_id: str) -> dict[str, Any]:
    if caller is None:
        return {"type": "Unknown", "accountId": account_id, "accessKeyId": attempted_key}
    identity: dict[str, Any] = {
        "type": "IAMUser" if caller.kind == "user" else "AssumedRole",
        "principalId": caller.principal_id, "arn": caller.arn, "accountId": caller.account_id,
        "accessKeyId": caller.access_key_id, "userName": caller.principal_name,
    }
    if caller.auth == "local":
        identity["invokedBy"] = "outcrop-cli"
    return identity


class AuditTrail:
    """Append-only, per-account hash-chained CloudTrail events; written off the request path."""

    def __init__(self, sessions: sessionmaker[Session], access: AccessService, flush_every: float = 0.2,
                 on_batch: Callable[[set[str]], None] | None = None) -> None:
        self.sessions = sessions
        self.access = access
        self.flush_every = flush_every
        self.on_batch = on_batch  # told which accounts got events (the digest signer)
        self._queue: queue.Queue[Outcome | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="outcrop-audit", daemon=True)
        self._thread.start()
        self._operator: str | None = None

    def record(self, outcome: Outcome) -> None:
        """Called once per API call; costs a queue put."""
        self._idle.clear()
        self._queue.put(outcome)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything recorded so far is in the database (reads call this first)."""
        self._queue.put(None)
        self._idle.wait(timeout)

    def close(self) -> None:
        self.flush()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get(timeout=self.flush_every if batch[-1] is not None else 0))
                except queue.Empty:
                    break
                if len(batch) >= 500:
                    break
            outcomes = [o for o in batch if o is not None]
            try:
                if outcomes:
                    accounts = self._append(outcomes)
                    if self.on_batch is not None:
                        self.on_batch(accounts)
            except Exception:
                log.exception("audit: could not append %d events", len(outcomes))
            if self._queue.empty():
                self._idle.set()

    def _append(self, outcomes: list[Outcome]) -> set[str]:
        by_account: dict[str, list[Outcome]] = {}
        with self.sessions() as session:
            for outcome in outcomes:
                by_account.setdefault(self._account_of(session, outcome), []).append(outcome)
        for account_id, items in by_account.items():
            for attempt in range(5):  # another process may append to the same chain at the same moment
                try:
                    self._append_chain(account_id, items)
                    break
                except IntegrityError:
                    if attempt == 4:
                        raise
        return set(by_account)

    def _append_chain(self, account_id: str, outcomes: list[Outcome]) -> None:
        with self.sessions.begin() as session:
            last = session.execute(select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.account_id == account_id)
                                   .order_by(AuditEvent.seq.desc()).limit(1)).first()
            seq, prev = (last[0], last[1]) if last else (0, GENESIS)
            for outcome in outcomes:
                seq += 1
                event_id = str(uuid.uuid4())
                record = json.dumps(event_record(outcome, account_id, event_id), sort_keys=True,
                                    separators=(",", ":"))
                digest = chain_hash(prev, record)
                caller = outcome.context.caller if outcome.context else None
                session.add(AuditEvent(
                    id=event_id, account_id=account_id, seq=seq, event_time=outcome.started,
                    event_name=outcome.operation,
                    event_source=f"{OPERATIONS.get(outcome.operation, 'outcrop:x').split(':', 1)[0]}.amazonaws.com",
                    read_only=bool(json.loads(record)["readOnly"]),
                    username=caller.principal_name if caller else None,
                    access_key_id=(caller.access_key_id if caller else outcome.attempted_key),
                    error_code=outcome.error_code, record=record, prev_hash=prev, hash=digest))
                prev = digest

    def _account_of(self, session: Session, outcome: Outcome) -> str:
        """The caller's account; for a failed authentication, the named key's account, else the operator's."""
        if outcome.context is not None and outcome.context.caller is not None:
            return outcome.context.caller.account_id
        if outcome.attempted_key:
            key = AuthLookup(session).access_key(outcome.attempted_key)
            if key is not None:
                return key.account_id
        if self._operator is None:
            first = Accounts(session).first()
            self._operator = first.id if first is not None else "000000000000"
        return self._operator

    # -- reading -----------------------------------------------------------------------------------

    def lookup(self, ctx: CallContext, attributes: list[tuple[str, str]] | None = None,
               start: datetime | None = None, end: datetime | None = None, max_results: int = 50,
               next_token: str | None = None, account_id: str | None = None) -> tuple[list[AuditEvent], str | None]:
        """Newest first, like CloudTrail. An operator may read another account's trail."""
        caller = ctx.caller
        self.access.require(ctx)
        account = account_id or (caller.account_id if caller else None)
        if account is None:
            raise Invalid("an account is required")
        if caller is not None and account != caller.account_id and not caller.is_operator:
            account = caller.account_id  # never another tenant's trail
        if not 1 <= max_results <= 50:
            raise Invalid("MaxResults must be between 1 and 50")
        self.flush()
        query = select(AuditEvent).where(AuditEvent.account_id == account)
        for key, value in attributes or []:
            column = LOOKUP_KEYS.get(key)
            if column is None:
                raise Invalid(f"Attribute key {key} is not supported. Use one of {sorted(LOOKUP_KEYS)}.")
            query = query.where(getattr(AuditEvent, column) == (value.lower() == "true" if key == "ReadOnly" else value))
        if start is not None:
            query = query.where(AuditEvent.event_time >= start)
        if end is not None:
            query = query.where(AuditEvent.event_time <= end)
        if next_token:
            before_seq = _decode_token(next_token)
            query = query.where(AuditEvent.seq < before_seq)
        with self.sessions() as session:
            rows = list(session.scalars(query.order_by(AuditEvent.seq.desc()).limit(max_results + 1)))
        more = len(rows) > max_results
        rows = rows[:max_results]
        return rows, (_encode_token(rows[-1].seq) if more and rows else None)


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode()


def _decode_token(token: str) -> int:
    try:
        kind, seq = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        assert kind == "v1"
        return int(seq)
    except Exception:
        raise Invalid("Invalid NextToken") from None


def utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=value.tzinfo or UTC) if value is not None else None
