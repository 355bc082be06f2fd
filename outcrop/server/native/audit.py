"""The audit trail and the invocation log store through the native API (the CLI's and the console's)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from outcrop.core.governance import CallContext
from outcrop.errors import Invalid
from outcrop.server.deps import operation, services
from outcrop.server.native.wire import json_response

router = APIRouter(prefix="/outcrop/v1")


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{name} must be an ISO 8601 time, e.g. 2026-11-28T12:00:00Z") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.get("/audit/events")
async def lookup(request: Request, ctx: CallContext = Depends(operation("LookupEvents"))) -> Response:
    q = request.query_params
    attributes = [(key, q[key]) for key in ("EventName", "Username", "AccessKeyId", "ReadOnly", "EventId",
                                            "EventSource") if key in q]
    max_results = q.get("MaxResults", "50")
    if not max_results.isdigit():
        raise Invalid("MaxResults must be an integer")
    rows, token = services(request).audit.lookup(ctx, attributes, _time(q.get("Since"), "Since"),
                                                 _time(q.get("Until"), "Until"), int(max_results), q.get("NextToken"),
                                                 q.get("AccountId"))
    return json_response({"Events": [json.loads(row.record) for row in rows], **({"NextToken": token} if token else {})})


@router.post("/audit/verify")
async def verify(request: Request, ctx: CallContext = Depends(operation("VerifyTrail"))) -> Response:
    """Verify the caller's own trail (an operator: every account's)."""
    svc = services(request)
    svc.audit.flush()
    checked, findings = svc.signer.verify_trail(ctx, svc.access)
    return json_response({"RecordsChecked": checked, "Valid": not findings,
                          "Findings": [str(f) for f in findings]})


@router.get("/invocation-logs")
async def invocation_logs(request: Request, ctx: CallContext = Depends(operation("ListInvocationLogs"))) -> Response:
    """Records of the local log store (the `cloudWatchConfig` destination), opened for the caller's account."""
    q = request.query_params
    max_results = q.get("MaxResults", "100")
    if not max_results.isdigit():
        raise Invalid("MaxResults must be an integer")
    records = services(request).invocation_log.list_logs(ctx, _time(q.get("Since"), "Since"), q.get("ModelId"),
                                                         int(max_results))
    return json_response({"InvocationLogs": records})
