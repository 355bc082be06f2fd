"""OpenAI's Files API: uploads are sealed under the account's key (or a customer key) before they touch disk."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.responses import Response

from outcrop.core.files import FileInfo
from outcrop.core.governance import CallContext
from outcrop.errors import Invalid
from outcrop.server.deps import operation, services
from outcrop.server.openai.wire import json_response

router = APIRouter(prefix="/v1")


def file_object(info: FileInfo) -> dict[str, Any]:
    return {"id": info.id, "object": "file", "bytes": info.bytes, "created_at": info.created_at,
            "filename": info.filename, "purpose": info.purpose, "status": "processed",
            "status_details": None if info.filename is not None else "the key that sealed this file is not usable",
            "kms_key_arn": info.kms_key_arn}


@router.post("/files")
async def create_file(request: Request, ctx: CallContext = Depends(operation("CreateFile", bearer_only=True))) -> Response:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Invalid("Uploads must be sent as multipart/form-data with 'file' and 'purpose' fields.")
    parser = MultiPartParser(request.headers, request.stream(), max_files=1, max_fields=8)
    # Starlette spools parts over 1 MiB to $TMPDIR: customer bytes on disk before they are sealed. The body
    # limit (Guard) bounds the upload, so it stays in memory until FileService seals it.
    parser.spool_max_size = services(request).settings.max_body_bytes
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise Invalid(f"Could not parse the multipart form: {exc.message}") from None
    upload, purpose, key = form.get("file"), form.get("purpose"), form.get("kms_key_id")
    if not isinstance(upload, UploadFile):
        raise Invalid("Missing required parameter: 'file'.")
    if not isinstance(purpose, str):
        raise Invalid("Missing required parameter: 'purpose'.")
    data = await upload.read()
    info = services(request).files.create(ctx, upload.filename or "upload", purpose, data,
                                          key if isinstance(key, str) and key else None)
    return json_response(file_object(info))


@router.get("/files")
async def list_files(request: Request, ctx: CallContext = Depends(operation("ListFiles", bearer_only=True))) -> Response:
    rows = services(request).files.list_files(ctx, request.query_params.get("purpose"))
    return json_response({"object": "list", "data": [file_object(r) for r in rows], "has_more": False})


@router.get("/files/{file_id}")
async def retrieve_file(file_id: str, request: Request,
                        ctx: CallContext = Depends(operation("RetrieveFile", bearer_only=True))) -> Response:
    return json_response(file_object(services(request).files.get(ctx, file_id)))


@router.get("/files/{file_id}/content")
async def file_content(file_id: str, request: Request,
                       ctx: CallContext = Depends(operation("RetrieveFileContent", bearer_only=True))) -> Response:
    return Response(services(request).files.content(ctx, file_id), media_type="application/octet-stream")


@router.delete("/files/{file_id}")
async def delete_file(file_id: str, request: Request,
                      ctx: CallContext = Depends(operation("DeleteFile", bearer_only=True))) -> Response:
    services(request).files.delete(ctx, file_id)
    return json_response({"id": file_id, "object": "file", "deleted": True})
