"""bedrock-runtime: Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream, CountTokens."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response, StreamingResponse

from outcrop.core.governance import CallContext
from outcrop.core.guardrails.engine import TextUnit
from outcrop.core.guardrails.runtime import GuardConfig, Guarded
from outcrop.errors import Invalid
from outcrop.server import streams
from outcrop.server.bedrock import eventstream, translate
from outcrop.server.bedrock.families import family_for
from outcrop.server.bedrock.wire import exception_frame, json_response, parse_json
from outcrop.server.deps import operation, services
from outcrop.types import ChatRequest, Finished, TextDelta, ToolCall

router = APIRouter()
EVENTSTREAM = "application/vnd.amazon.eventstream"


def model_label(request: Request) -> str:
    """The {modelId} label from the raw path: an ARN's `/` arrives as `%2F`, inside one segment."""
    raw = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1")
    segments = raw.split("/")
    return unquote(segments[segments.index("model") + 1])


@router.post("/model/{model_id:path}/converse")
async def converse(request: Request, ctx: CallContext = Depends(operation("Converse"))) -> Response:
    body = parse_json(await request.body())
    return json_response(await converse_body(services(request), ctx, model_label(request), body))


async def converse_body(svc: Any, ctx: CallContext, model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Converse's answer to one request body, apart from HTTP (batch records run it too)."""
    chat = translate.converse_request(model_id, body)
    guard = GuardConfig.parse(body.get("guardrailConfig"))
    if guard is None:
        response = await svc.inference.chat(ctx, chat)
    else:
        response = await svc.guardrails.guard_chat(ctx, chat, guard, guarded_input(body, chat))
    return translate.converse_response(response)


@router.post("/model/{model_id:path}/converse-stream")
async def converse_stream(request: Request, ctx: CallContext = Depends(operation("ConverseStream"))) -> Response:
    started = time.perf_counter()
    body = parse_json(await request.body())
    chat = translate.converse_request(model_label(request), body)
    svc = services(request)
    guard = GuardConfig.parse(body.get("guardrailConfig"))
    if guard is None:
        events = await streams.started(svc.inference.chat_stream(ctx, chat))
    else:
        events = await streams.started(svc.guardrails.guard_stream(ctx, chat, guard, guarded_input(body, chat)))
    return StreamingResponse(_converse_frames(events, started), media_type=EVENTSTREAM)


def guarded_input(body: dict[str, Any], chat: ChatRequest) -> Guarded:
    """What the guardrail checks of a Converse request: its guardContent blocks if any, else every text."""
    selected = []
    for message in [*(body.get("messages") or []), {"content": body.get("system") or []}]:
        for block in message.get("content") or [] if isinstance(message, dict) else []:
            guard = block.get("guardContent") if isinstance(block, dict) else None
            text = (guard or {}).get("text") if isinstance(guard, dict) else None
            if isinstance(text, dict) and isinstance(text.get("text"), str):
                qualifiers = text.get("qualifiers") or ["guard_content"]
                selected.append(TextUnit(text["text"], frozenset(q for q in qualifiers if isinstance(q, str))))
    return Guarded.of_messages(chat.messages, selected)


def header_guard(request: Request) -> GuardConfig | None:
    """InvokeModel's guardrail, from the X-Amzn-Bedrock-Guardrail* and -Trace headers."""
    identifier = request.headers.get("x-amzn-bedrock-guardrailidentifier")
    version = request.headers.get("x-amzn-bedrock-guardrailversion")
    if identifier is None and version is None:
        return None
    trace = (request.headers.get("x-amzn-bedrock-trace") or "DISABLED").lower()
    return GuardConfig.parse({"guardrailIdentifier": identifier, "guardrailVersion": version, "trace": trace},
                             "X-Amzn-Bedrock-GuardrailIdentifier/Version")


def _guard_fields(payload: dict[str, Any], guard: GuardConfig, stop_reason: str, trace: Any) -> dict[str, Any]:
    payload["amazon-bedrock-guardrailAction"] = "INTERVENED" if stop_reason == "guardrail_intervened" else "NONE"
    if guard.trace != "disabled" and trace is not None:
        payload["amazon-bedrock-trace"] = trace
    return payload


async def _converse_frames(events: AsyncIterator[Any], started: float) -> AsyncIterator[bytes]:
    encoder = translate.ConverseStreamEncoder()
    for name, payload in encoder.start():
        yield eventstream.event(name, payload)
    try:
        async for event in events:
            latency = int((time.perf_counter() - started) * 1000)
            for name, payload in encoder.encode(event, latency):
                yield eventstream.event(name, payload)
    except Exception as exc:  # after the 200 went out, failures travel as exception frames
        yield exception_frame(exc)


@router.post("/model/{model_id:path}/invoke")
async def invoke_model(request: Request, ctx: CallContext = Depends(operation("InvokeModel"))) -> Response:
    svc = services(request)
    requested, family, body = _family(request, svc, await request.body())
    started = time.perf_counter()
    payload, tokens_in, tokens_out = await invoke_body(svc, ctx, requested, family, body, header_guard(request))
    latency = int((time.perf_counter() - started) * 1000)
    return json_response(payload, headers={
        "X-Amzn-Bedrock-Input-Token-Count": str(tokens_in),
        "X-Amzn-Bedrock-Output-Token-Count": str(tokens_out),
        "X-Amzn-Bedrock-Invocation-Latency": str(latency),
    })


async def invoke_body(svc: Any, ctx: CallContext, requested: str, family: Any, body: dict[str, Any],
                      guard: GuardConfig | None = None) -> tuple[dict[str, Any], int, int]:
    """InvokeModel's answer to one body and its token counts, apart from HTTP (batch records and async invokes run
    it too, so their outputs are exactly InvokeModel's)."""
    if _is_embedding(family):
        emb = family.request(requested, body)
        result = await svc.inference.embed(ctx, emb)
        return family.response(body, emb, result), result.input_tokens, 0
    chat = family.request(requested, body)
    if guard is None:
        response = await svc.inference.chat(ctx, chat)
    else:
        response = await svc.guardrails.guard_chat(ctx, chat, guard, Guarded.of_messages(chat.messages))
    payload = family.response(requested, response)
    if guard is not None:
        _guard_fields(payload, guard, response.stop_reason, response.trace)
    return payload, response.usage.input_tokens, response.usage.output_tokens


@router.post("/model/{model_id:path}/invoke-with-response-stream")
async def invoke_model_stream(request: Request, ctx: CallContext = Depends(operation("InvokeModelWithResponseStream"))) -> Response:
    svc = services(request)
    requested, family, body = _family(request, svc, await request.body())
    if _is_embedding(family):
        raise Invalid(f"The model {requested} does not support response streaming.")
    chat = family.request(requested, body)
    renderer = family.stream(requested)
    started = time.perf_counter()
    guard = header_guard(request)
    if guard is None:
        events = await streams.started(svc.inference.chat_stream(ctx, chat))
    else:
        events = await streams.started(svc.guardrails.guard_stream(ctx, chat, guard, Guarded.of_messages(chat.messages)))
    return StreamingResponse(_chunk_frames(events, renderer, started, guard), media_type=EVENTSTREAM,
                             headers={"X-Amzn-Bedrock-Content-Type": "application/json"})


async def _chunk_frames(events: AsyncIterator[Any], renderer: Any, started: float,
                        guard: GuardConfig | None = None) -> AsyncIterator[bytes]:
    first: int | None = None

    def frames(chunks: list[dict[str, Any]]) -> list[bytes]:
        return [eventstream.event("chunk", {"bytes": base64.b64encode(json.dumps(c).encode()).decode()})
                for c in chunks]

    try:
        for frame in frames(renderer.start()):
            yield frame
        async for event in events:
            if isinstance(event, TextDelta):
                first = first if first is not None else int((time.perf_counter() - started) * 1000)
                chunks = renderer.text(event.text)
            elif isinstance(event, ToolCall):
                chunks = renderer.tool(event.block)
            else:
                assert isinstance(event, Finished)
                latency = int((time.perf_counter() - started) * 1000)
                chunks = renderer.finish(event, {"latency": latency, "first_byte": first or latency})
                if guard is not None and chunks:
                    _guard_fields(chunks[-1], guard, event.stop_reason, event.trace)
            for frame in frames(chunks):
                yield frame
    except Exception as exc:
        yield exception_frame(exc)


@router.post("/model/{model_id:path}/count-tokens")
async def count_tokens(request: Request, ctx: CallContext = Depends(operation("CountTokens"))) -> Response:
    svc = services(request)
    model_id = model_label(request)
    body = parse_json(await request.body())
    source = body.get("input")
    if not isinstance(source, dict) or len(source) != 1 or not set(source) <= {"converse", "invokeModel"}:
        raise Invalid("Malformed input request: input must contain exactly one of converse, invokeModel")
    if "converse" in source:
        chat: ChatRequest = translate.converse_request(model_id, source["converse"] or {})
    else:
        raw = (source["invokeModel"] or {}).get("body")
        if not isinstance(raw, str):
            raise Invalid("Malformed input request: input.invokeModel.body is required")
        try:
            decoded = base64.b64decode(raw, validate=True)
        except ValueError:
            raise Invalid("Malformed input request: input.invokeModel.body is not valid base64") from None
        requested, family, inner = _family(request, svc, decoded)
        if _is_embedding(family):
            raise Invalid(f"CountTokens is not supported for {requested}")
        chat = family.request(requested, inner)
    return json_response({"inputTokens": await svc.inference.count_tokens(ctx, chat)})


def _family(request: Request, svc: Any, raw: bytes) -> tuple[str, Any, dict[str, Any]]:
    model_id = model_label(request)
    family = family_of(svc, request.scope["outcrop.ctx"], model_id)
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if content_type not in ("application/json", "*/*", ""):
        raise Invalid(f"Unsupported content type {content_type!r}; send application/json")
    return model_id, family, parse_json(raw)


def family_of(svc: Any, ctx: CallContext, model_id: str) -> Any:
    """The InvokeModel body format of the model an ID names (for the caller: private models resolve per account)."""
    resolved = svc.inference.resolve_for(ctx, model_id)
    return family_for(resolved.requested, resolved.spec.kind)


def _is_embedding(family: object) -> bool:
    return bool(getattr(family, "embeds", False))
