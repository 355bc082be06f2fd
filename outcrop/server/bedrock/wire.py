"""Bedrock's error envelope and small JSON helpers shared by the Bedrock routes."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from outcrop import errors
from outcrop.server.bedrock import eventstream

# Domain error → (Bedrock error code, HTTP status). First match in the class hierarchy wins.
ERROR_CODES: list[tuple[type[errors.OutcropError], str, int]] = [
    (errors.PayloadTooLarge, "ValidationException", 413),
    (errors.Invalid, "ValidationException", 400),
    (errors.NotFound, "ResourceNotFoundException", 404),
    (errors.Conflict, "ConflictException", 400),
    (errors.Throttled, "ThrottlingException", 429),
    (errors.AccessDenied, "AccessDeniedException", 403),
    (errors.ModelNotReady, "ModelNotReadyException", 429),
    (errors.ModelTimeout, "ModelTimeoutException", 408),
    (errors.ModelError, "ModelErrorException", 424),
    (errors.Unavailable, "ServiceUnavailableException", 503),
]


def error_code(exc: Exception) -> tuple[str, int]:
    if isinstance(exc, errors.AuthenticationFailed):
        return exc.code, 403
    for cls, code, status in ERROR_CODES:
        if isinstance(exc, cls):
            return code, status
    return "InternalServerException", 500


_AGENT_STATUS = {"ConflictException": 409, "ModelNotReadyException": 424}


def error_response(exc: Exception, agent: bool = False) -> Response:
    """`agent`: the bedrock-agent services, whose models give some errors another status."""
    code, status = error_code(exc)
    if agent:
        status = _AGENT_STATUS.get(code, status)
    message = exc.message if isinstance(exc, errors.OutcropError) else "The server encountered an internal error."
    body: dict[str, Any] = {"message": message}
    if code == "ModelErrorException":
        body["originalStatusCode"] = int(getattr(exc, "details", {}).get("original_status", 500))
        body["resourceName"] = getattr(exc, "details", {}).get("resource", "")
    headers = {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    return Response(json.dumps(body), status_code=status, headers=headers, media_type="application/json")


def exception_frame(exc: Exception) -> bytes:
    """A mid-stream failure as an event-stream exception frame (lowerCamel member name)."""
    code, _ = error_code(exc)
    if code in ("ModelErrorException", "ModelNotReadyException", "ResourceNotFoundException",
                "AccessDeniedException", "ConflictException"):
        code = "ModelStreamErrorException"
    message = exc.message if isinstance(exc, errors.OutcropError) else "The server encountered an internal error."
    payload: dict[str, Any] = {"message": message}
    if code == "ModelStreamErrorException":
        payload.update(originalStatusCode=500, originalMessage=message)
    return eventstream.exception(code[0].lower() + code[1:], payload)


def json_response(payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status, headers=headers,
                    media_type="application/json")


def parse_json(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise errors.Invalid(f"Malformed input request: the body is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}), please reformat your input and try again.") from None
    if not isinstance(value, dict):
        raise errors.Invalid("Malformed input request: expected a JSON object, please reformat your input and try again.")
    return value
