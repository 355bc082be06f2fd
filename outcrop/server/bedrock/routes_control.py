"""bedrock (control plane): the foundation-model catalog."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from outcrop.core.governance import CallContext
from outcrop.errors import Invalid, NotFound
from outcrop.server.bedrock.wire import json_response, parse_json
from outcrop.server.deps import operation, services
from outcrop.types import ModelSpec

router = APIRouter()

_OUTPUT = {"TEXT", "IMAGE", "EMBEDDING"}
_INFERENCE = {"ON_DEMAND", "PROVISIONED"}
_CUSTOMIZATION = {"FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION"}


def summary(region: str, model_id: str, provider: str, name: str, spec: ModelSpec) -> dict[str, Any]:
    return {
        "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{model_id}",
        "modelId": model_id,
        "modelName": name if model_id == spec.model_id else f"{name} (served by {spec.name})",
        "providerName": provider,
        "inputModalities": list(spec.input_modalities),
        "outputModalities": list(spec.output_modalities),
        "responseStreamingSupported": spec.streaming,
        "customizationsSupported": list(spec.customizations) if model_id == spec.model_id else [],
        "inferenceTypesSupported": ["ON_DEMAND"],
        "modelLifecycle": {"status": "ACTIVE"},
    }


@router.get("/foundation-models")
async def list_foundation_models(request: Request, ctx: CallContext = Depends(operation("ListFoundationModels"))) -> Response:
    svc = services(request)
    q = request.query_params
    for key, allowed in (("byOutputModality", _OUTPUT), ("byInferenceType", _INFERENCE),
                         ("byCustomizationType", _CUSTOMIZATION)):
        if key in q and q[key] not in allowed:
            raise Invalid(f"1 validation error detected: Value '{q[key]}' at '{key}' failed to satisfy constraint: "
                          f"Member must satisfy enum value set: [{', '.join(sorted(allowed))}]")
    rows = []
    for model_id, provider, name, spec in svc.inference.foundation_models(ctx):
        item = summary(svc.settings.region, model_id, provider, name, spec)
        if "byProvider" in q and q["byProvider"].lower() != provider.lower():
            continue
        if "byOutputModality" in q and q["byOutputModality"] not in item["outputModalities"]:
            continue
        if "byInferenceType" in q and q["byInferenceType"] not in item["inferenceTypesSupported"]:
            continue
        if "byCustomizationType" in q and q["byCustomizationType"] not in item["customizationsSupported"]:
            continue
        rows.append(item)
    return json_response({"modelSummaries": rows})


@router.get("/foundation-models/{model_identifier:path}")
async def get_foundation_model(request: Request, ctx: CallContext = Depends(operation("GetFoundationModel"))) -> Response:
    svc = services(request)
    raw = (request.scope.get("raw_path") or b"").decode("latin-1")
    identifier = unquote(raw.rsplit("/foundation-models/", 1)[-1]) if raw else request.path_params["model_identifier"]
    resolved = svc.inference.foundation_model(ctx, identifier)
    listed = {row[0]: row for row in svc.catalog.foundation_models()}
    if resolved.requested in listed:
        model_id, provider, name, spec = listed[resolved.requested]
    elif resolved.requested == resolved.spec.model_id:
        model_id, provider, name, spec = resolved.spec.model_id, resolved.spec.provider, resolved.spec.name, resolved.spec
    else:
        raise NotFound(f"Could not resolve the foundation model from the provided model identifier: {identifier}")
    return json_response({"modelDetails": summary(svc.settings.region, model_id, provider, name, spec)})


@router.put("/logging/modelinvocations")
async def put_logging(request: Request,
                      ctx: CallContext = Depends(operation("PutModelInvocationLoggingConfiguration"))) -> Response:
    body = parse_json(await request.body())
    services(request).invocation_log.put(ctx, body.get("loggingConfig"))
    return json_response({})


@router.get("/logging/modelinvocations")
async def get_logging(request: Request,
                      ctx: CallContext = Depends(operation("GetModelInvocationLoggingConfiguration"))) -> Response:
    config = services(request).invocation_log.get(ctx)
    return json_response({"loggingConfig": config} if config is not None else {})


@router.delete("/logging/modelinvocations")
async def delete_logging(request: Request,
                         ctx: CallContext = Depends(operation("DeleteModelInvocationLoggingConfiguration"))) -> Response:
    services(request).invocation_log.delete(ctx)
    return json_response({})
