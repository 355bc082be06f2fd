"""The native API's quotas (/outcrop/v1/quotas): the operator sets them, each account reads its own."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from outcrop.core.governance import CallContext
from outcrop.server.deps import operation, services
from outcrop.server.native.wire import body_of, field, json_response, no_content

router = APIRouter(prefix="/outcrop/v1")


@router.put("/quotas/{account_id}/{model_id:path}")
async def put_quota(account_id: str, model_id: str, request: Request,
                    ctx: CallContext = Depends(operation("PutQuota"))) -> Response:
    body = await body_of(request)
    quota = services(request).quotas.put_quota(
        ctx, account_id, model_id, field(body, "RequestsPerMinute", int, required=False),
        field(body, "TokensPerMinute", int, required=False), field(body, "ConcurrentStreams", int, required=False))
    return json_response({"Quota": quota})


@router.get("/quotas")
async def list_quotas(request: Request, ctx: CallContext = Depends(operation("ListQuotas"))) -> Response:
    quotas = services(request).quotas.list_quotas(ctx, request.query_params.get("AccountId"))
    return json_response({"Quotas": quotas})


@router.delete("/quotas/{account_id}/{model_id:path}")
async def delete_quota(account_id: str, model_id: str, request: Request,
                       ctx: CallContext = Depends(operation("DeleteQuota"))) -> Response:
    services(request).quotas.delete_quota(ctx, account_id, model_id)
    return no_content()
