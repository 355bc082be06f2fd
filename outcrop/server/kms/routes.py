"""AWS KMS's operations (JSON 1.1, `X-Amz-Target: TrentService.<Operation>`) for customer-managed keys.

boto3's `kms` client works unchanged with `endpoint_url` pointed here; server/awsjson.py dispatches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from outcrop import errors
from outcrop.core.governance import CallContext
from outcrop.core.kms import KeyService
from outcrop.server import fields

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


# Operation → handler(services, ctx, body). Each name must also be in outcrop.core.access.OPERATIONS.
HANDLERS: dict[str, Callable[[Any, CallContext, dict[str, Any]], dict[str, Any]]] = {
    "CreateKey": lambda svc, ctx, body: _create(svc.keys, ctx, body),
    "DescribeKey": lambda svc, ctx, body: {"KeyMetadata": svc.keys.describe_key(ctx, _key_id(body))},
    "ListKeys": lambda svc, ctx, body: {"Keys": svc.keys.list_keys(ctx), "Truncated": False},
    "EnableKey": lambda svc, ctx, body: (svc.keys.enable(ctx, _key_id(body)), {})[1],
    "DisableKey": lambda svc, ctx, body: (svc.keys.disable(ctx, _key_id(body)), {})[1],
    "ScheduleKeyDeletion": lambda svc, ctx, body: _scheduled(
        svc.keys.schedule_deletion(ctx, _key_id(body), _pending_window(body)), _pending_window(body)),
    "CancelKeyDeletion": lambda svc, ctx, body: {"KeyId": svc.keys.cancel_deletion(ctx, _key_id(body))["Arn"]},
}


def _scheduled(meta: dict[str, Any], days: int) -> dict[str, Any]:
    return {"KeyId": meta["Arn"], "DeletionDate": meta["DeletionDate"], "KeyState": meta["KeyState"],
            "PendingWindowInDays": days}


CODES: list[tuple[type[errors.OutcropError], str]] = [
    (errors.NotFound, "NotFoundException"),
    (errors.Invalid, "ValidationException"),
    (errors.Conflict, "KMSInvalidStateException"),
    (errors.AccessDenied, "AccessDeniedException"),
    (errors.Throttled, "ThrottlingException"),
]
