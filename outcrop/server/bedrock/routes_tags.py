"""TagResource, UntagResource and ListTagsForResource (bedrock), for every taggable resource (core.tags)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from outcrop.core.governance import CallContext
from outcrop.server.bedrock.wire import json_response, parse_json
from outcrop.server.deps import operation, services

router = APIRouter()


@router.post("/tagResource")
async def tag_resource(request: Request, ctx: CallContext = Depends(operation("TagResource"))) -> Response:
    body = parse_json(await request.body())
    services(request).tags.tag(ctx, body.get("resourceARN"), body.get("tags"))
    return json_response({})


@router.post("/untagResource")
async def untag_resource(request: Request, ctx: CallContext = Depends(operation("UntagResource"))) -> Response:
    body = parse_json(await request.body())
    services(request).tags.untag(ctx, body.get("resourceARN"), body.get("tagKeys"))
    return json_response({})


@router.post("/listTagsForResource")
async def list_tags(request: Request, ctx: CallContext = Depends(operation("ListTagsForResource"))) -> Response:
    body = parse_json(await request.body())
    return json_response({"tags": services(request).tags.list(ctx, body.get("resourceARN"))})
