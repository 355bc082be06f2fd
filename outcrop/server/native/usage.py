"""GET /outcrop/v1/usage: invocations and tokens per day, model and key, for the caller's account."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from outcrop.core.governance import CallContext
from outcrop.core.governance.usage import DIMENSIONS
from outcrop.server.deps import operation, services
from outcrop.server.native.wire import json_response

router = APIRouter(prefix="/outcrop/v1")


@router.get("/usage")
async def get_usage(request: Request, ctx: CallContext = Depends(operation("GetUsage"))) -> Response:
    """Query: Since, Until (YYYY-MM-DD, UTC, inclusive), GroupBy (day,model,key by default), AccountId (operator)."""
    q = request.query_params
    group_by = q["GroupBy"].split(",") if q.get("GroupBy") else DIMENSIONS
    # The read first waits for pending usage to reach the database: off the event loop.
    rows = await run_in_threadpool(services(request).usage.usage, ctx, q.get("Since"), q.get("Until"), group_by,
                                   q.get("AccountId"))
    return json_response({"Usage": rows})
