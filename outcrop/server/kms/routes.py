"""AWS KMS's wire protocol (JSON 1.1, `X-Amz-Target: TrentService.<Operation>`) for customer-managed keys.

boto3's `kms` client works unchanged with `endpoint_url` pointed here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from outcrop import errors
from outcrop.core.governance import CallContext
from outcrop.core.kms import KeyService
from outcrop.server import fields
from outcrop.server.deps import call_context, services

router = APIRouter()
TARGET = "TrentService."


def _key_id(body: dict[str, Any]) -> str:
    return fields.get(body, "KeyId", str, "", required=True)  # type: ignore[no-any-return]


def _create(keys: KeyService, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
    spec = fields.get(body, "KeySpec", str, "") or "SYMMETRIC_DEFAULT"
    usage = fields.get(body, "KeyUsage", str, "") or "ENCRYPT_DECRYPT"
    if spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT":
        raise errors.Invalid("Only SYMMETRIC_DEFAULT keys for ENCRYPT_DECRYPT are supported.")
    return {"KeyMetadata": keys.create_key(ctx, fields.get(body, "Description", str, "") or "")}


def _pending_window(body: dict[str, Any]) -> int:
    value = fields.get(body, "PendingWindowInDays", int, "")
    return 30 if value is None else value  # type: ignore[no-any-return]


# Operation → handler. Each name must also be in outcrop.core.access.OPERATIONS.
HANDLERS: dict[str, Callable[[KeyService, CallContext, dict[str, Any]], dict[str, Any]]] = {
    "CreateKey": _create,
    "DescribeKey": lambda keys, ctx, body: {"KeyMetadata": keys.describe_key(ctx, _key_id(body))},
    "ListKeys": lambda keys, ctx, body: {"Keys": keys.list_keys(ctx), "Truncated": False},
    "EnableKey": lambda keys, ctx, body: (keys.enable(ctx, _key_id(body)), {})[1],
    "DisableKey": lambda keys, ctx, body: (keys.disable(ctx, _key_id(body)), {})[1],
    "ScheduleKeyDeletion": lambda keys, ctx, body: _scheduled(
        keys.schedule_deletion(ctx, _key_id(body), _pending_window(body)), _pending_window(body)),
    "CancelKeyDeletion": lambda keys, ctx, body: {"KeyId": keys.cancel_deletion(ctx, _key_id(body))["Arn"]},
}


def _scheduled(meta: dict[str, Any], days: int) -> dict[str, Any]:
    return {"KeyId": meta["Arn"], "DeletionDate": meta["DeletionDate"], "KeyState": meta["KeyState"],
            "PendingWindowInDays": days}


@router.post("/", include_in_schema=False)
async def kms(request: Request) -> Response:
    target = request.headers.get("x-amz-target", "")
    name = target[len(TARGET):] if target.startswith(TARGET) else ""
    handler = HANDLERS.get(name)
    if handler is None:
        raise errors.NotFound(f"Unknown operation: {target or 'POST /'}")
    ctx = await call_context(request, name, service="kms")
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise errors.Invalid("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise errors.Invalid("The request body must be a JSON object.")
    return Response(json.dumps(handler(services(request).keys, ctx, body)), media_type="application/x-amz-json-1.1")


_CODES: list[tuple[type[errors.OutcropError], str]] = [
    (errors.NotFound, "NotFoundException"),
    (errors.Invalid, "ValidationException"),
    (errors.Conflict, "KMSInvalidStateException"),
    (errors.AccessDenied, "AccessDeniedException"),
    (errors.Throttled, "ThrottlingException"),
]


def error_response(exc: Exception) -> Response:
    """KMS errors: HTTP 400 and the code in `__type` (JSON 1.1), 500 for what we did not mean to raise."""
    code, status = "KMSInternalException", 500
    if isinstance(exc, errors.AuthenticationFailed):
        code, status = exc.code, 400
    else:
        for cls, name in _CODES:
            if isinstance(exc, cls):
                code, status = name, 400
                break
    message = exc.message if isinstance(exc, errors.OutcropError) else "The server encountered an internal error."
    return Response(json.dumps({"__type": code, "message": message}), status_code=status,
                    headers={"x-amzn-ErrorType": code}, media_type="application/x-amz-json-1.1")
