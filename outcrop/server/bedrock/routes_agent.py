"""bedrock-agent: knowledge bases, data sources, ingestion jobs and documents (the control plane of RAG)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from outcrop.core.governance import CallContext
from outcrop.errors import Invalid
from outcrop.server.bedrock.wire import json_response, parse_json
from outcrop.server.deps import operation, services

router = APIRouter()
KB = "/knowledgebases/{kb_id}"
DS = KB + "/datasources/{ds_id}"


async def _body(request: Request) -> dict[str, Any]:
    return parse_json(await request.body())


def _page(rows: list[dict[str, Any]], body: dict[str, Any], key: str) -> dict[str, Any]:
    """maxResults / nextToken paging over an already ordered list (the token is the next offset)."""
    size = body.get("maxResults", 1000)
    token = body.get("nextToken") or "0"
    if not isinstance(size, int) or not 1 <= size <= 1000 or not str(token).isdigit():
        raise Invalid("maxResults must be between 1 and 1000, and nextToken one this API returned")
    start = int(token)
    out: dict[str, Any] = {key: rows[start:start + size]}
    if start + size < len(rows):
        out["nextToken"] = str(start + size)
    return out


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return await run_in_threadpool(fn, *args)


# -- knowledge bases -------------------------------------------------------------------------------------

@router.put("/knowledgebases/")
async def create_knowledge_base(request: Request, ctx: CallContext = Depends(operation("CreateKnowledgeBase"))
                                ) -> Response:
    kb = await _call(services(request).knowledge.bases.create, ctx, await _body(request))
    return json_response({"knowledgeBase": kb}, 202)


@router.post("/knowledgebases/")
async def list_knowledge_bases(request: Request, ctx: CallContext = Depends(operation("ListKnowledgeBases"))
                               ) -> Response:
    rows = await _call(services(request).knowledge.bases.list_bases, ctx)
    return json_response(_page(rows, await _body(request), "knowledgeBaseSummaries"))


@router.get(KB)
async def get_knowledge_base(request: Request, kb_id: str,
                             ctx: CallContext = Depends(operation("GetKnowledgeBase"))) -> Response:
    return json_response({"knowledgeBase": await _call(services(request).knowledge.bases.get, ctx, kb_id)})


@router.put(KB)
async def update_knowledge_base(request: Request, kb_id: str,
                                ctx: CallContext = Depends(operation("UpdateKnowledgeBase"))) -> Response:
    kb = await _call(services(request).knowledge.bases.update, ctx, kb_id, await _body(request))
    return json_response({"knowledgeBase": kb}, 202)


@router.delete(KB)
async def delete_knowledge_base(request: Request, kb_id: str,
                                ctx: CallContext = Depends(operation("DeleteKnowledgeBase"))) -> Response:
    return json_response(await _call(services(request).knowledge.bases.delete, ctx, kb_id), 202)


# -- data sources ----------------------------------------------------------------------------------------

@router.put(KB + "/datasources/")
async def create_data_source(request: Request, kb_id: str,
                             ctx: CallContext = Depends(operation("CreateDataSource"))) -> Response:
    ds = await _call(services(request).knowledge.bases.create_source, ctx, kb_id, await _body(request))
    return json_response({"dataSource": ds})


@router.post(KB + "/datasources/")
async def list_data_sources(request: Request, kb_id: str,
                            ctx: CallContext = Depends(operation("ListDataSources"))) -> Response:
    rows = await _call(services(request).knowledge.bases.list_sources, ctx, kb_id)
    return json_response(_page(rows, await _body(request), "dataSourceSummaries"))


@router.get(DS)
async def get_data_source(request: Request, kb_id: str, ds_id: str,
                          ctx: CallContext = Depends(operation("GetDataSource"))) -> Response:
    ds = await _call(services(request).knowledge.bases.get_source, ctx, kb_id, ds_id)
    return json_response({"dataSource": ds})


@router.put(DS)
async def update_data_source(request: Request, kb_id: str, ds_id: str,
                             ctx: CallContext = Depends(operation("UpdateDataSource"))) -> Response:
    ds = await _call(services(request).knowledge.bases.update_source, ctx, kb_id, ds_id, await _body(request))
    return json_response({"dataSource": ds})


@router.delete(DS)
async def delete_data_source(request: Request, kb_id: str, ds_id: str,
                             ctx: CallContext = Depends(operation("DeleteDataSource"))) -> Response:
    return json_response(await _call(services(request).knowledge.bases.delete_source, ctx, kb_id, ds_id), 202)


# -- ingestion jobs --------------------------------------------------------------------------------------

@router.put(DS + "/ingestionjobs/")
async def start_ingestion_job(request: Request, kb_id: str, ds_id: str,
                              ctx: CallContext = Depends(operation("StartIngestionJob"))) -> Response:
    body = await _body(request)
    job = await _call(services(request).knowledge.ingestion.start, ctx, kb_id, ds_id, body.get("description"))
    return json_response({"ingestionJob": job}, 202)


@router.post(DS + "/ingestionjobs/")
async def list_ingestion_jobs(request: Request, kb_id: str, ds_id: str,
                              ctx: CallContext = Depends(operation("ListIngestionJobs"))) -> Response:
    body = await _body(request)
    rows = await _call(services(request).knowledge.ingestion.list_jobs, ctx, kb_id, ds_id, body)
    return json_response(_page(rows, body, "ingestionJobSummaries"))


@router.get(DS + "/ingestionjobs/{job_id}")
async def get_ingestion_job(request: Request, kb_id: str, ds_id: str, job_id: str,
                            ctx: CallContext = Depends(operation("GetIngestionJob"))) -> Response:
    job = await _call(services(request).knowledge.ingestion.get, ctx, kb_id, ds_id, job_id)
    return json_response({"ingestionJob": job})


@router.post(DS + "/ingestionjobs/{job_id}/stop")
async def stop_ingestion_job(request: Request, kb_id: str, ds_id: str, job_id: str,
                             ctx: CallContext = Depends(operation("StopIngestionJob"))) -> Response:
    job = await _call(services(request).knowledge.ingestion.stop, ctx, kb_id, ds_id, job_id)
    return json_response({"ingestionJob": job}, 202)


# -- documents -------------------------------------------------------------------------------------------

@router.put(DS + "/documents")
async def ingest_documents(request: Request, kb_id: str, ds_id: str,
                           ctx: CallContext = Depends(operation("IngestKnowledgeBaseDocuments"))) -> Response:
    body = await _body(request)
    details = await _call(services(request).knowledge.ingestion.ingest_documents, ctx, kb_id, ds_id,
                          body.get("documents"))
    return json_response({"documentDetails": details}, 202)


@router.post(DS + "/documents")
async def list_documents(request: Request, kb_id: str, ds_id: str,
                         ctx: CallContext = Depends(operation("ListKnowledgeBaseDocuments"))) -> Response:
    rows = await _call(services(request).knowledge.ingestion.list_documents, ctx, kb_id, ds_id)
    return json_response(_page(rows, await _body(request), "documentDetails"))


@router.post(DS + "/documents/getDocuments")
async def get_documents(request: Request, kb_id: str, ds_id: str,
                        ctx: CallContext = Depends(operation("GetKnowledgeBaseDocuments"))) -> Response:
    body = await _body(request)
    details = await _call(services(request).knowledge.ingestion.get_documents, ctx, kb_id, ds_id,
                          body.get("documentIdentifiers"))
    return json_response({"documentDetails": details})


@router.post(DS + "/documents/deleteDocuments")
async def delete_documents(request: Request, kb_id: str, ds_id: str,
                           ctx: CallContext = Depends(operation("DeleteKnowledgeBaseDocuments"))) -> Response:
    body = await _body(request)
    details = await _call(services(request).knowledge.ingestion.delete_documents, ctx, kb_id, ds_id,
                          body.get("documentIdentifiers"))
    return json_response({"documentDetails": details}, 202)
