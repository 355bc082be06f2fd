"""bedrock-agent-runtime: Retrieve, RetrieveAndGenerate(+Stream), Rerank."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from outcrop.core.governance import CallContext
from outcrop.core.knowledge.retrieval import Passage
from outcrop.errors import Invalid
from outcrop.server import streams
from outcrop.server.bedrock import eventstream
from outcrop.server.bedrock.wire import error_code, json_response, parse_json
from outcrop.server.deps import operation, services

router = APIRouter()
EVENTSTREAM = "application/vnd.amazon.eventstream"
SESSION_HEADER = "x-amzn-bedrock-knowledge-base-session-id"


def result(passage: Passage) -> dict[str, Any]:
    return {"content": {"text": passage.text, "type": "TEXT"}, "location": passage.location,
            "score": passage.score, "metadata": passage.metadata}


@router.post("/knowledgebases/{kb_id}/retrieve")
async def retrieve(request: Request, kb_id: str, ctx: CallContext = Depends(operation("Retrieve"))) -> Response:
    body = parse_json(await request.body())
    if body.get("nextToken"):
        raise Invalid("nextToken: every result fits in one page (numberOfResults ≤ 100)")
    if body.get("guardrailConfiguration"):
        raise Invalid("guardrailConfiguration is not available yet on this server")
    passages = await run_in_threadpool(services(request).knowledge.retrieval.retrieve, ctx, kb_id,
                                       body.get("retrievalQuery"), body.get("retrievalConfiguration"))
    return json_response({"retrievalResults": [result(p) for p in passages]})


@router.post("/retrieveAndGenerate")
async def retrieve_and_generate(request: Request, ctx: CallContext = Depends(operation("RetrieveAndGenerate"))
                                ) -> Response:
    answer = await services(request).knowledge.generation.answer(ctx, parse_json(await request.body()))
    return json_response(answer)


@router.post("/retrieveAndGenerateStream")
async def retrieve_and_generate_stream(request: Request,
                                       ctx: CallContext = Depends(operation("RetrieveAndGenerateStream"))) -> Response:
    session_id, events = await services(request).knowledge.generation.answer_stream(
        ctx, parse_json(await request.body()))
    events = await streams.started(events)
    return StreamingResponse(_frames(events), media_type=EVENTSTREAM, headers={SESSION_HEADER: session_id})


async def _frames(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            for name, payload in event.items():
                yield eventstream.event(name, payload)
    except Exception as exc:  # after the 200 went out, failures travel as exception frames
        yield _exception_frame(exc)


_STREAM_ERRORS = {"AccessDeniedException", "BadGatewayException", "ConflictException", "InternalServerException",
                  "ResourceNotFoundException", "ServiceQuotaExceededException", "ThrottlingException",
                  "ValidationException"}


def _exception_frame(exc: Exception) -> bytes:
    """RetrieveAndGenerateStream's own exception members; a model failure is a failed dependency."""
    code, _ = error_code(exc)
    code = code if code in _STREAM_ERRORS else "DependencyFailedException"
    message = getattr(exc, "message", None) or "The server encountered an internal error."
    return eventstream.exception(code[0].lower() + code[1:], {"message": message})


@router.post("/rerank")
async def rerank(request: Request, ctx: CallContext = Depends(operation("Rerank"))) -> Response:
    body = parse_json(await request.body())
    if body.get("nextToken"):
        raise Invalid("nextToken: every result fits in one page")
    results = await run_in_threadpool(services(request).knowledge.retrieval.rerank, ctx, body)
    return json_response({"results": results})
