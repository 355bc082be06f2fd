"""Batch inference on Bedrock's wire (bedrock: *ModelInvocationJob*) and async invoke (bedrock-runtime: *AsyncInvoke*),
and the record runner their jobs use: InvokeModel's and Converse's own code paths, so outputs are exactly theirs."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from outcrop.core.customization.invocation import RecordResult, RecordRunner
from outcrop.core.governance import CallContext
from outcrop.errors import OutcropError, Throttled
from outcrop.server.bedrock import routes_runtime
from outcrop.server.bedrock.wire import error_code, json_response, parse_json
from outcrop.server.deps import Services, operation, services

router = APIRouter()
log = logging.getLogger("outcrop.batch")


def _label(request: Request, name: str) -> str:
    """An identifier from the path; an ARN's `/` and `:` arrive percent-encoded, or not, depending on the client."""
    return unquote(request.path_params[name])


def _audited(request: Request, body: dict[str, Any], *keys: str) -> None:
    """Names and IDs of the request for its audit event (never the model input, never the URIs)."""
    request.scope["outcrop.request_parameters"] = {k: body[k] for k in keys if isinstance(body.get(k), str)}


@router.post("/model-invocation-job")
async def create_model_invocation_job(request: Request,
                                      ctx: CallContext = Depends(operation("CreateModelInvocationJob"))) -> Response:
    body = parse_json(await request.body())
    _audited(request, body, "jobName", "modelId", "modelInvocationType")
    return json_response(services(request).batch.invocation_jobs.create(ctx, body))


@router.get("/model-invocation-jobs")
async def list_model_invocation_jobs(request: Request,
                                     ctx: CallContext = Depends(operation("ListModelInvocationJobs"))) -> Response:
    return json_response(services(request).batch.invocation_jobs.list(ctx, dict(request.query_params)))


@router.get("/model-invocation-job/{job_identifier:path}")
async def get_model_invocation_job(request: Request,
                                   ctx: CallContext = Depends(operation("GetModelInvocationJob"))) -> Response:
    return json_response(services(request).batch.invocation_jobs.get(ctx, _label(request, "job_identifier")))


@router.post("/model-invocation-job/{job_identifier:path}/stop")
async def stop_model_invocation_job(request: Request,
                                    ctx: CallContext = Depends(operation("StopModelInvocationJob"))) -> Response:
    services(request).batch.invocation_jobs.stop(ctx, _label(request, "job_identifier"))
    return json_response({})


@router.post("/async-invoke")
async def start_async_invoke(request: Request, ctx: CallContext = Depends(operation("StartAsyncInvoke"))) -> Response:
    body = parse_json(await request.body())
    _audited(request, body, "modelId")
    return json_response(services(request).batch.async_invokes.start(ctx, body))


@router.get("/async-invoke")
async def list_async_invokes(request: Request, ctx: CallContext = Depends(operation("ListAsyncInvokes"))) -> Response:
    return json_response(services(request).batch.async_invokes.list(ctx, dict(request.query_params)))


@router.get("/async-invoke/{invocation_arn:path}")
async def get_async_invoke(request: Request, ctx: CallContext = Depends(operation("GetAsyncInvoke"))) -> Response:
    return json_response(services(request).batch.async_invokes.get(ctx, _label(request, "invocation_arn")))


def record_runner(svc: Services) -> RecordRunner:
    """One record as InvokeModel (or Converse) would answer it; a failure becomes Bedrock's per-record error."""

    async def run(ctx: CallContext, model_id: str, invocation_type: str, body: dict[str, Any]) -> RecordResult:
        try:
            if invocation_type == "Converse":
                payload = await routes_runtime.converse_body(svc, ctx, model_id, body)
                usage = payload.get("usage") or {}
                return RecordResult(payload, None, usage.get("inputTokens", 0), usage.get("outputTokens", 0))
            family = routes_runtime.family_of(svc, ctx, model_id)
            payload, tokens_in, tokens_out = await routes_runtime.invoke_body(svc, ctx, model_id, family, body)
            return RecordResult(payload, None, tokens_in, tokens_out)
        except Throttled:
            raise  # the job waits and tries again
        except Exception as exc:
            if not isinstance(exc, OutcropError):
                log.exception("a batch record failed unexpectedly")
            message = exc.message if isinstance(exc, OutcropError) else "The server encountered an internal error."
            return RecordResult(error={"errorCode": error_code(exc)[1], "errorMessage": message})

    return run


def attach(svc: Services) -> None:
    """Run batch jobs and async invokes in the job worker (call before it starts)."""
    svc.batch.register(svc.jobs, record_runner(svc), svc.objects)
