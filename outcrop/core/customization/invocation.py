"""Running model invocations for a job, later and without a request: as the principal that created the job, through a
runner the server layer injects (InvokeModel's own code path), so IAM, quotas, usage and invocation logs apply to
every record as they would to the same call made directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.customization.records import ModelJobs
from outcrop.core.governance import CallContext
from outcrop.core.identity import Caller
from outcrop.core.inference import InferenceService
from outcrop.errors import Invalid, Throttled
from outcrop.ids import request_id
from outcrop.settings import Settings
from outcrop.storage.repositories import AuthLookup

INVOCATION_TYPES = ("InvokeModel", "Converse")
THROTTLE_RETRIES = 40  # a record over the account's quota waits (about 3 minutes in all) rather than failing


@dataclass
class RecordResult:
    """One invocation's outcome: the model's answer as the API returns it, or Bedrock's per-record error."""

    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None  # {"errorCode": <HTTP status>, "errorMessage": ...}
    input_tokens: int = 0
    output_tokens: int = 0


# (context, model ID, invocation type, body) → the result. It raises Throttled to have the call retried later;
# every other failure comes back as the result's error.
RecordRunner = Callable[[CallContext, str, str, dict[str, Any]], Awaitable[RecordResult]]


class InvocationService:
    """What batch jobs and async invokes share: the settings, the job records, the inference service that
    resolves their models, and the server's closing flag (a running job stops taking records when it is set)."""

    def __init__(self, settings: Settings, records: ModelJobs, inference: InferenceService,
                 closing: threading.Event) -> None:
        self.settings = settings
        self.records = records
        self.inference = inference
        self.closing = closing


def creator(ctx: CallContext) -> dict[str, Any]:
    """What a job keeps (sealed, in its request) of who created it, to act as them later."""
    caller = ctx.caller
    if caller is None:
        raise Invalid("a job runs as a principal; create it through the API with credentials")
    return {"principal": caller.principal_id, "auth": caller.auth, "secure": ctx.secure}


def context_of(sessions: sessionmaker[Session], region: str, who: dict[str, Any], operation: str) -> CallContext:
    """A call context for the job's creator as they are now: a deleted principal or a suspended account stops the
    job, and policy changes made since the job was created apply to its records."""
    with sessions() as session:
        lookup = AuthLookup(session)
        principal = lookup.principal(who["principal"])
        account = lookup.account(principal.account_id) if principal is not None else None
        if principal is None or account is None or account.status != "Active":
            raise Invalid("The principal that created this job no longer exists or its account is not active")
        caller = Caller(account.id, principal.id, principal.name, principal.is_admin, None, who.get("auth", "sigv4"),
                        principal.kind, principal.is_operator)
    return CallContext(caller, operation, source_ip=None, user_agent="outcrop-jobs", secure=bool(who.get("secure")),
                       region=region)


async def invoke(runner: RecordRunner, ctx: CallContext, model_id: str, invocation_type: str, body: dict[str, Any],
                 stopping: Callable[[], bool] = lambda: False) -> RecordResult:
    """One invocation (with its own request ID), retried with backoff while the account is throttled (unless the
    job is stopping)."""
    ctx = dataclasses.replace(ctx, request_id=request_id())
    for attempt in range(THROTTLE_RETRIES):
        try:
            return await runner(ctx, model_id, invocation_type, body)
        except Throttled as exc:
            if attempt == THROTTLE_RETRIES - 1 or stopping():
                return RecordResult(error={"errorCode": 429, "errorMessage": exc.message})
            await asyncio.sleep(min(0.25 * 2 ** attempt, 5.0))
    raise AssertionError("unreachable")


def abandon_if(closing: threading.Event) -> None:
    """On shutdown, leave the job `running` rather than end it: records failed by the closing engine would make a
    finished-looking job of an interrupted one. Once its lease lapses the next start re-claims it (and starts over).
    The worker thread is a daemon, so the process exits around the wait."""
    if closing.is_set():
        threading.Event().wait()
