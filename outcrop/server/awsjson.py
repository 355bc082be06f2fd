"""`POST /` for the AWS services that speak JSON 1.1 (`X-Amz-Target: <Service>.<Operation>`): KMS, CloudTrail."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from outcrop import errors
from outcrop.server.cloudtrail import routes as cloudtrail
from outcrop.server.deps import call_context, services
from outcrop.server.kms import routes as kms

router = APIRouter()
CONTENT_TYPE = "application/x-amz-json-1.1"
# target prefix → (SigV4 service name, handlers, error codes)
SERVICES: dict[str, tuple[str, dict[str, Callable[..., dict[str, Any]]], list[tuple[type[errors.OutcropError], str]]]] = {
    kms.TARGET: ("kms", kms.HANDLERS, kms.CODES),
    cloudtrail.TARGET: ("cloudtrail", cloudtrail.HANDLERS, cloudtrail.CODES),
}


def _service(request: Request) -> tuple[str, str]:
    target = request.headers.get("x-amz-target", "")
    for prefix in SERVICES:
        if target.startswith(prefix):
            return prefix, target[len(prefix):]
    return "", target


def is_awsjson(request: Request) -> bool:
    return request.url.path == "/" and bool(_service(request)[0])


@router.post("/", include_in_schema=False)
async def dispatch(request: Request) -> Response:
    prefix, name = _service(request)
    if not prefix or name not in SERVICES[prefix][1]:
        raise errors.NotFound(f"Unknown operation: {request.headers.get('x-amz-target') or 'POST /'}")
    service, handlers, _ = SERVICES[prefix]
    ctx = await call_context(request, name, service=service)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise errors.Invalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise errors.Invalid("The request body must be a JSON object.")
    request.scope["outcrop.request_parameters"] = {k: v for k, v in body.items() if k in _PARAMETERS}
    result = handlers[name](services(request), ctx, body)
    return Response(json.dumps(result, default=str), media_type=CONTENT_TYPE)


# Request members safe to keep in the audit trail (IDs and filters; never descriptions or content).
_PARAMETERS = {"KeyId", "PendingWindowInDays", "KeySpec", "KeyUsage", "LookupAttributes", "StartTime", "EndTime",
               "MaxResults", "EventCategory"}


def error_response(request: Request, exc: Exception) -> Response:
    """JSON 1.1 errors: HTTP 400 with the code in `__type`; 500 for what we did not mean to raise."""
    prefix, _ = _service(request)
    codes = SERVICES[prefix][2] if prefix else []
    code, status = "InternalFailure", 500
    if isinstance(exc, errors.AuthenticationFailed):
        code, status = exc.code, 400
    else:
        for cls, name in codes:
            if isinstance(exc, cls):
                code, status = name, 400
                break
    message = exc.message if isinstance(exc, errors.OutcropError) else "The server encountered an internal error."
    return Response(json.dumps({"__type": code, "message": message}), status_code=status,
                    headers={"x-amzn-ErrorType": code}, media_type=CONTENT_TYPE)
