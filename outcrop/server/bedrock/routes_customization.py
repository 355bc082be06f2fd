"""Model customization on Bedrock's wire (bedrock control plane): fine-tuning jobs, custom models, model import,
imported models and provisioned throughput."""

from __future__ import annotations

from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from outcrop.core.governance import CallContext
from outcrop.server.bedrock.wire import json_response, parse_json
from outcrop.server.deps import operation, services

router = APIRouter()


def _label(request: Request, name: str) -> str:
    """A path parameter; an identifier may be an ARN, whose `/` boto3 may or may not have percent-encoded."""
    return unquote(request.path_params[name])


# -- customization jobs --------------------------------------------------------------------------------

@router.post("/model-customization-jobs")
async def create_job(request: Request, ctx: CallContext = Depends(operation("CreateModelCustomizationJob"))) -> Response:
    body = parse_json(await request.body())
    # the training data is read and checked before the job is accepted: off the event loop
    return json_response(await run_in_threadpool(services(request).customization.finetune.create, ctx, body),
                         status=201)


@router.get("/model-customization-jobs")
async def list_jobs(request: Request, ctx: CallContext = Depends(operation("ListModelCustomizationJobs"))) -> Response:
    return json_response(services(request).customization.finetune.list_jobs(ctx, request.query_params))


@router.post("/model-customization-jobs/{job_id:path}/stop")
async def stop_job(request: Request, ctx: CallContext = Depends(operation("StopModelCustomizationJob"))) -> Response:
    services(request).customization.finetune.stop(ctx, _label(request, "job_id"))
    return json_response({})


@router.get("/model-customization-jobs/{job_id:path}")
async def get_job(request: Request, ctx: CallContext = Depends(operation("GetModelCustomizationJob"))) -> Response:
    return json_response(services(request).customization.finetune.get(ctx, _label(request, "job_id")))


# -- custom and imported models ------------------------------------------------------------------------

@router.get("/custom-models")
async def list_custom(request: Request, ctx: CallContext = Depends(operation("ListCustomModels"))) -> Response:
    return json_response(services(request).customization.models.summaries(ctx, "custom", request.query_params))


@router.get("/custom-models/{model_id:path}")
async def get_custom(request: Request, ctx: CallContext = Depends(operation("GetCustomModel"))) -> Response:
    models = services(request).customization.models
    return json_response(models.describe(models.find(ctx, "custom", _label(request, "model_id"))))


@router.delete("/custom-models/{model_id:path}")
async def delete_custom(request: Request, ctx: CallContext = Depends(operation("DeleteCustomModel"))) -> Response:
    services(request).customization.models.delete(ctx, "custom", _label(request, "model_id"))
    return json_response({})


@router.post("/model-import-jobs")
async def create_import(request: Request, ctx: CallContext = Depends(operation("CreateModelImportJob"))) -> Response:
    body = parse_json(await request.body())
    return json_response(await run_in_threadpool(services(request).customization.imports.create, ctx, body),
                         status=201)


@router.get("/model-import-jobs")
async def list_imports(request: Request, ctx: CallContext = Depends(operation("ListModelImportJobs"))) -> Response:
    return json_response(services(request).customization.imports.list_jobs(ctx, request.query_params))


@router.get("/model-import-jobs/{job_id:path}")
async def get_import(request: Request, ctx: CallContext = Depends(operation("GetModelImportJob"))) -> Response:
    return json_response(services(request).customization.imports.get(ctx, _label(request, "job_id")))


@router.get("/imported-models")
async def list_imported(request: Request, ctx: CallContext = Depends(operation("ListImportedModels"))) -> Response:
    return json_response(services(request).customization.models.summaries(ctx, "imported", request.query_params))


@router.get("/imported-models/{model_id:path}")
async def get_imported(request: Request, ctx: CallContext = Depends(operation("GetImportedModel"))) -> Response:
    models = services(request).customization.models
    return json_response(models.describe(models.find(ctx, "imported", _label(request, "model_id"))))


@router.delete("/imported-models/{model_id:path}")
async def delete_imported(request: Request, ctx: CallContext = Depends(operation("DeleteImportedModel"))) -> Response:
    services(request).customization.models.delete(ctx, "imported", _label(request, "model_id"))
    return json_response({})


# -- provisioned throughput ----------------------------------------------------------------------------

@router.post("/provisioned-model-throughput")
async def create_provisioned(request: Request,
                             ctx: CallContext = Depends(operation("CreateProvisionedModelThroughput"))) -> Response:
    body = parse_json(await request.body())
    return json_response(services(request).customization.provisioned.create(ctx, body), status=201)


@router.get("/provisioned-model-throughputs")
async def list_provisioned(request: Request,
                           ctx: CallContext = Depends(operation("ListProvisionedModelThroughputs"))) -> Response:
    return json_response(services(request).customization.provisioned.list_all(ctx, request.query_params))


@router.get("/provisioned-model-throughput/{pid:path}")
async def get_provisioned(request: Request,
                          ctx: CallContext = Depends(operation("GetProvisionedModelThroughput"))) -> Response:
    return json_response(services(request).customization.provisioned.get(ctx, _label(request, "pid")))


@router.patch("/provisioned-model-throughput/{pid:path}")
async def update_provisioned(request: Request,
                             ctx: CallContext = Depends(operation("UpdateProvisionedModelThroughput"))) -> Response:
    body = parse_json(await request.body())
    services(request).customization.provisioned.update(ctx, _label(request, "pid"), body)
    return json_response({})


@router.delete("/provisioned-model-throughput/{pid:path}")
async def delete_provisioned(request: Request,
                             ctx: CallContext = Depends(operation("DeleteProvisionedModelThroughput"))) -> Response:
    services(request).customization.provisioned.delete(ctx, _label(request, "pid"))
    return json_response({})
