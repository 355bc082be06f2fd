"""Guardrails on Bedrock's wire: the control plane (bedrock) and ApplyGuardrail (bedrock-runtime)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from outcrop.core.governance import CallContext
from outcrop.core.guardrails.engine import TextUnit
from outcrop.errors import Invalid
from outcrop.server.bedrock.wire import json_response, parse_json
from outcrop.server.deps import operation, services

router = APIRouter()
_QUALIFIERS = {"grounding_source", "query", "guard_content"}


def _label(request: Request, name: str = "guardrail_id") -> str:
    """A path parameter; an identifier may be an ARN, whose `/` boto3 may or may not have percent-encoded."""
    return unquote(request.path_params[name])


@router.post("/guardrails")
async def create_guardrail(request: Request, ctx: CallContext = Depends(operation("CreateGuardrail"))) -> Response:
    body = parse_json(await request.body())
    return json_response(services(request).guardrails.service.create(ctx, body), status=202)


@router.get("/guardrails")
async def list_guardrails(request: Request, ctx: CallContext = Depends(operation("ListGuardrails"))) -> Response:
    q = request.query_params
    rows = services(request).guardrails.service.list_guardrails(ctx, q.get("guardrailIdentifier"))
    limit = _int(q.get("maxResults"), "maxResults", 1, 1000, 100)
    start = _int(q.get("nextToken"), "nextToken", 0, 1 << 31, 0)
    page: dict[str, Any] = {"guardrails": rows[start:start + limit]}
    if start + limit < len(rows):
        page["nextToken"] = str(start + limit)
    return json_response(page)


@router.get("/guardrails/{guardrail_id:path}")
async def get_guardrail(request: Request, ctx: CallContext = Depends(operation("GetGuardrail"))) -> Response:
    guardrails = services(request).guardrails.service
    return json_response(guardrails.get(ctx, _label(request), request.query_params.get("guardrailVersion")))


@router.put("/guardrails/{guardrail_id:path}")
async def update_guardrail(request: Request, ctx: CallContext = Depends(operation("UpdateGuardrail"))) -> Response:
    body = parse_json(await request.body())
    return json_response(services(request).guardrails.service.update(ctx, _label(request), body),
                         status=202)


@router.post("/guardrails/{guardrail_id:path}")
async def create_guardrail_version(request: Request,
                                   ctx: CallContext = Depends(operation("CreateGuardrailVersion"))) -> Response:
    body = parse_json(await request.body())
    guardrails = services(request).guardrails.service
    return json_response(guardrails.create_version(ctx, _label(request), body), status=202)


@router.delete("/guardrails/{guardrail_id:path}")
async def delete_guardrail(request: Request, ctx: CallContext = Depends(operation("DeleteGuardrail"))) -> Response:
    guardrails = services(request).guardrails.service
    guardrails.delete(ctx, _label(request), request.query_params.get("guardrailVersion"))
    return json_response({}, status=202)


@router.post("/guardrail/{guardrail_id:path}/version/{version}/apply")
async def apply_guardrail(request: Request, ctx: CallContext = Depends(operation("ApplyGuardrail"))) -> Response:
    body = parse_json(await request.body())
    source = body.get("source")
    if source not in ("INPUT", "OUTPUT"):
        raise Invalid("1 validation error detected: Value at 'source' failed to satisfy constraint: "
                      "Member must satisfy enum value set: [INPUT, OUTPUT]")
    scope = body.get("outputScope") or "INTERVENTIONS"
    if scope not in ("INTERVENTIONS", "FULL"):
        raise Invalid("outputScope must be INTERVENTIONS or FULL")
    units = content_units(body.get("content"), "content")
    _, _, outcome = await services(request).guardrails.apply(
        ctx, _label(request), _label(request, "version"), source, units, full=scope == "FULL")
    return json_response({
        "usage": outcome.usage, "action": outcome.action, "actionReason": outcome.action_reason,
        "outputs": [{"text": text} for text in outcome.outputs], "assessments": [outcome.assessment],
        "guardrailCoverage": outcome.coverage,
    })


def content_units(content: Any, where: str) -> list[TextUnit]:
    """ApplyGuardrail's content blocks → text units (images are refused: no image classifier is available)."""
    if not isinstance(content, list) or not content:
        raise Invalid(f"1 validation error detected: {where} must be a non-empty list of content blocks")
    units = []
    for i, block in enumerate(content):
        if not isinstance(block, dict) or len(block) != 1 or not ({"text", "image"} & block.keys()):
            raise Invalid(f"{where}[{i}] must hold exactly one of text, image")
        if "image" in block:
            image = block["image"] or {}
            if isinstance(image.get("source"), dict) and isinstance(image["source"].get("bytes"), str):
                base64.b64decode(image["source"]["bytes"], validate=False)
            raise Invalid(f"{where}[{i}]: image content is not supported by this server's guardrails "
                          "(no offline image classifier); send text")
        text = block["text"]
        if not isinstance(text, dict) or not isinstance(text.get("text"), str):
            raise Invalid(f"{where}[{i}].text.text is required")
        qualifiers = text.get("qualifiers") or []
        if not isinstance(qualifiers, list) or not set(qualifiers) <= _QUALIFIERS:
            raise Invalid(f"{where}[{i}].text.qualifiers must be among grounding_source, query, guard_content")
        units.append(TextUnit(text["text"], frozenset(qualifiers)))
    return units


def _int(value: str | None, name: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise Invalid(f"{name} must be a number from {low} to {high}")
    return int(value)
