"""The native API's JSON in and out; errors use the Bedrock envelope (x-amzn-ErrorType + message)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from outcrop.errors import Invalid
from outcrop.server import fields


async def body_of(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        value = json.loads(raw) if raw else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Invalid("The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise Invalid("The request body must be a JSON object.")
    return value


def field(body: dict[str, Any], name: str, kind: type, required: bool = True) -> Any:
    return fields.get(body, name, kind, "", required=required)


def json_response(payload: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type="application/json")


def no_content() -> Response:
    return Response(status_code=204)
