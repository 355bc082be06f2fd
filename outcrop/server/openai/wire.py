"""OpenAI's error envelope and status codes."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from outcrop import errors

# Domain error → (HTTP status, type, code).
ERRORS: list[tuple[type[Exception], int, str, str | None]] = [
    (errors.AuthenticationFailed, 401, "invalid_request_error", "invalid_api_key"),
    (errors.PayloadTooLarge, 413, "invalid_request_error", "request_too_large"),
    (errors.Invalid, 400, "invalid_request_error", None),
    (errors.NotFound, 404, "invalid_request_error", "model_not_found"),
    (errors.Conflict, 409, "invalid_request_error", None),
    (errors.Throttled, 429, "rate_limit_exceeded", "rate_limit_exceeded"),
    (errors.AccessDenied, 403, "permission_error", None),
    (errors.ModelNotReady, 503, "server_error", "model_not_ready"),
    (errors.ModelTimeout, 504, "server_error", "timeout"),
    (errors.ModelError, 500, "server_error", None),
    (errors.Unavailable, 503, "server_error", None),
]


def error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    message = exc.message if isinstance(exc, errors.OutcropError) else "The server had an error processing your request."
    for cls, status, kind, code in ERRORS:
        if isinstance(exc, cls):
            if isinstance(exc, errors.AuthenticationFailed):
                message = "Incorrect API key provided." if not isinstance(exc, errors.IncompleteSignature) else message
            return status, {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return 500, {"error": {"message": message, "type": "server_error", "param": None, "code": None}}


def error_response(exc: Exception) -> Response:
    status, body = error_body(exc)
    headers = {"Retry-After": "1"} if status == 429 else None
    return Response(json.dumps(body), status_code=status, media_type="application/json", headers=headers)


def json_response(payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload, separators=(",", ":")), media_type="application/json")


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise errors.Invalid("We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                             "using your HTTP library correctly.)") from None
    if not isinstance(value, dict):
        raise errors.Invalid("The request body must be a JSON object.")
    return value
