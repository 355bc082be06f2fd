"""OpenAI API under /v1: models, chat completions, completions, embeddings."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from outcrop.core.governance import CallContext
from outcrop.core.guardrails.runtime import GuardConfig, Guarded
from outcrop.ids import hex_id
from outcrop.server import streams
from outcrop.server.deps import operation, services
from outcrop.server.openai import translate
from outcrop.server.openai.wire import error_body, json_response, parse_json
from outcrop.types import Finished, TextDelta, ToolCall

router = APIRouter(prefix="/v1")


@router.get("/models")
async def list_models(request: Request, ctx: CallContext = Depends(operation("ListModels", bearer_only=True))) -> Response:
    data = [{"id": model_id, "object": "model", "created": 0, "owned_by": provider}
            for model_id, provider, _, _ in services(request).inference.foundation_models(ctx)]
    return json_response({"object": "list", "data": data})


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request, ctx: CallContext = Depends(operation("RetrieveModel", bearer_only=True))) -> Response:
    resolved = services(request).inference.foundation_model(ctx, model_id)
    return json_response({"id": model_id, "object": "model", "created": 0, "owned_by": resolved.spec.provider})


@router.post("/chat/completions")
async def chat_completions(request: Request, ctx: CallContext = Depends(operation("CreateChatCompletion", bearer_only=True))) -> Response:
    body = parse_json(await request.body())
    chat = translate.chat_request(body)
    svc = services(request)
    guard = translate.guardrail_config(body)
    if not body.get("stream"):
        if guard is None:
            return json_response(translate.chat_response(chat.model_id, await svc.inference.chat(ctx, chat)))
        response = await svc.guardrails.guard_chat(ctx, chat, guard, Guarded.of_messages(chat.messages))
        return json_response(translate.chat_response(chat.model_id, response, guarded=True))
    include_usage = _include_usage(body)
    if guard is None:
        events = await streams.started(svc.inference.chat_stream(ctx, chat))
    else:
        events = await streams.started(svc.guardrails.guard_stream(ctx, chat, guard, Guarded.of_messages(chat.messages)))
    return StreamingResponse(_chat_sse(chat.model_id, events, include_usage, guard), media_type="text/event-stream")


async def _chat_sse(model: str, events: AsyncIterator[Any], include_usage: bool,
                    guard: GuardConfig | None = None) -> AsyncIterator[bytes]:
    base = {"id": f"chatcmpl-{hex_id()}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        payload = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    calls = 0
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                yield chunk({"content": event.text})
            elif isinstance(event, ToolCall):
                yield chunk({"tool_calls": [{"index": calls, **translate.tool_call_json(event.block)}]})
                calls += 1
            elif isinstance(event, Finished):
                extra = {"guardrail": translate.guardrail_json(event.stop_reason, event.trace)} if guard else {}
                yield chunk({}, translate.FINISH[event.stop_reason], **extra)
                if include_usage:
                    yield _usage_chunk(base, event)
    except Exception as exc:  # after the 200: report in-band, as OpenAI does
        yield b"data: " + json.dumps(error_body(exc)[1]).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


@router.post("/completions")
async def completions(request: Request, ctx: CallContext = Depends(operation("CreateCompletion", bearer_only=True))) -> Response:
    body = parse_json(await request.body())
    chat = translate.completion_request(body)
    inference = services(request).inference
    if not body.get("stream"):
        return json_response(translate.completion_response(chat.model_id, await inference.chat(ctx, chat)))
    events = await streams.started(inference.chat_stream(ctx, chat))
    return StreamingResponse(_completion_sse(chat.model_id, events, _include_usage(body)), media_type="text/event-stream")


def _include_usage(body: dict[str, Any]) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def _usage_chunk(base: dict[str, Any], event: Finished) -> bytes:
    usage = translate.usage_json(event.usage.input_tokens, event.usage.output_tokens)
    return b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"


async def _completion_sse(model: str, events: AsyncIterator[Any], include_usage: bool) -> AsyncIterator[bytes]:
    base = {"id": f"cmpl-{hex_id()}", "object": "text_completion", "created": int(time.time()), "model": model}
    try:
        async for event in events:
            choice: dict[str, Any] | None = None
            if isinstance(event, TextDelta):
                choice = {"index": 0, "text": event.text, "logprobs": None, "finish_reason": None}
            elif isinstance(event, Finished):
                choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": translate.FINISH[event.stop_reason]}
            if choice is not None:
                yield b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n"
            if isinstance(event, Finished) and include_usage:
                yield _usage_chunk(base, event)
    except Exception as exc:
        yield b"data: " + json.dumps(error_body(exc)[1]).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


@router.post("/embeddings")
async def embeddings(request: Request, ctx: CallContext = Depends(operation("CreateEmbedding", bearer_only=True))) -> Response:
    emb, encoding = translate.embedding_request(parse_json(await request.body()))
    result = await services(request).inference.embed(ctx, emb)
    return json_response(translate.embedding_response(emb.model_id, result, encoding))
