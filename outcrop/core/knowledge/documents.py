"""Ingestion jobs (Start/Get/List/StopIngestionJob) and direct document ingestion (*KnowledgeBaseDocuments)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from outcrop.core.governance import CallContext
from outcrop.core.jobs import JobRun, JobService
from outcrop.core.kms import KeyService
from outcrop.core.knowledge.bases import KnowledgeBaseService, iso
from outcrop.core.knowledge.embedder import Embedder
from outcrop.core.knowledge.index import KnowledgeIndexes
from outcrop.core.knowledge.ingestion import Ingestor, Prepared, documents_of, remove_documents, run_ingestion
from outcrop.core.knowledge.parsing import inline_metadata
from outcrop.errors import Conflict, Invalid, NotFound
from outcrop.settings import Settings
from outcrop.storage.tables import DataSource, Job, KbDocument, KnowledgeBase

KIND = "ingestion"
_STATUS = {"queued": "STARTING", "running": "IN_PROGRESS", "completed": "COMPLETE", "failed": "FAILED",
           "stopping": "STOPPING", "stopped": "STOPPED"}
_SORT = {"STATUS": lambda j: j.status, "STARTED_AT": lambda j: j.created_at}
MIME_SUFFIX = {"text/plain": ".txt", "text/markdown": ".md", "text/html": ".html", "application/pdf": ".pdf",
                "text/csv": ".csv", "application/json": ".json",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx"}


class IngestionService:
    def __init__(self, settings: Settings, bases: KnowledgeBaseService, keys: KeyService, jobs: JobService,
                 indexes: KnowledgeIndexes, embedder: Embedder) -> None:
        self.settings = settings
        self.bases = bases
        self.keys = keys
        self.jobs = jobs
        self.indexes = indexes
        self.embedder = embedder
        self.sessions = bases.sessions
        jobs.register(KIND, self._run)

    def _run(self, run: JobRun) -> None:
        run_ingestion(self.settings, self.sessions, self.keys, self.indexes, self.embedder, run)

    # -- jobs -----------------------------------------------------------------------------------------

    def start(self, ctx: CallContext, kb_id: str, ds_id: str, description: str | None) -> dict[str, Any]:
        kb, _ = self.bases.source(ctx, kb_id, ds_id)
        if self.jobs.active(kb.account_id, KIND, f"{kb_id}/{ds_id}") is not None:
            raise Conflict(f"An ingestion job is already running for data source {ds_id}; "
                           "wait for it to end or stop it first")
        return self.render(self.jobs.submit(kb.account_id, KIND, f"{kb_id}/{ds_id}", description))

    def get(self, ctx: CallContext, kb_id: str, ds_id: str, job_id: str) -> dict[str, Any]:
        kb, _ = self.bases.source(ctx, kb_id, ds_id)
        return self.render(self._job(kb.account_id, kb_id, ds_id, job_id))

    def _job(self, account_id: str, kb_id: str, ds_id: str, job_id: str) -> Job:
        job = self.jobs.get(account_id, job_id, KIND)
        if job.target != f"{kb_id}/{ds_id}":
            raise NotFound(f"Ingestion job {job_id} does not exist for data source {ds_id}")
        return job

    def list_jobs(self, ctx: CallContext, kb_id: str, ds_id: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        kb, _ = self.bases.source(ctx, kb_id, ds_id)
        rows = [self.render(job) for job in self.jobs.list(kb.account_id, KIND, f"{kb_id}/{ds_id}")]
        for flt in body.get("filters") or []:
            if flt.get("attribute") != "STATUS" or flt.get("operator") != "EQ":
                raise Invalid("filters: only attribute STATUS with operator EQ is supported")
            rows = [r for r in rows if r["status"] in flt.get("values", [])]
        sort = body.get("sortBy") or {"attribute": "STARTED_AT", "order": "DESCENDING"}
        key = {"STATUS": "status", "STARTED_AT": "startedAt"}.get(str(sort.get("attribute")))
        if key is None or sort.get("order") not in ("ASCENDING", "DESCENDING"):
            raise Invalid("sortBy: attribute must be STATUS or STARTED_AT and order ASCENDING or DESCENDING")
        rows.sort(key=lambda r: r[key], reverse=sort["order"] == "DESCENDING")
        return [{k: r[k] for k in ("knowledgeBaseId", "dataSourceId", "ingestionJobId", "description", "status",
                                   "startedAt", "updatedAt", "statistics") if k in r} for r in rows]

    def stop(self, ctx: CallContext, kb_id: str, ds_id: str, job_id: str) -> dict[str, Any]:
        kb, _ = self.bases.source(ctx, kb_id, ds_id)
        self._job(kb.account_id, kb_id, ds_id, job_id)
        return self.render(self.jobs.stop(kb.account_id, job_id, KIND))

    def render(self, job: Job) -> dict[str, Any]:
        kb_id, ds_id = job.target.split("/")
        progress = json.loads(job.progress or "{}")
        reasons = progress.pop("failureReasons", [])
        statistics = {k: int(progress.get(k, 0)) for k in (
            "numberOfDocumentsScanned", "numberOfMetadataDocumentsScanned", "numberOfNewDocumentsIndexed",
            "numberOfModifiedDocumentsIndexed", "numberOfMetadataDocumentsModified", "numberOfDocumentsDeleted",
            "numberOfDocumentsFailed")}
        out: dict[str, Any] = {"knowledgeBaseId": kb_id, "dataSourceId": ds_id, "ingestionJobId": job.id,
                               "status": _STATUS[job.status], "statistics": statistics,
                               "startedAt": iso(job.created_at), "updatedAt": iso(job.updated_at)}
        if job.description:
            out["description"] = job.description
        if job.failure or reasons:
            out["failureReasons"] = ([job.failure] if job.failure else []) + reasons
        return out

    # -- documents ------------------------------------------------------------------------------------

    def ingest_documents(self, ctx: CallContext, kb_id: str, ds_id: str, documents: Any) -> list[dict[str, Any]]:
        """Index documents given inline, now (not queued): each succeeds or fails on its own."""
        kb, source = self.bases.source(ctx, kb_id, ds_id)
        if not isinstance(documents, list) or not 1 <= len(documents) <= 25:
            raise Invalid("documents must list 1 to 25 documents")
        ingestor = Ingestor(self.settings, self.sessions, self.keys, self.indexes, self.embedder, kb, source)
        self.indexes.collection(kb)
        known = ingestor.known()
        details = []
        batch: list[Prepared] = []
        for document in documents:
            identifier, uri, name, data, metadata = self._inline(source, document)
            try:
                batch.append(ingestor.prepare(uri, name, data, metadata))
                details.append(self._detail(kb_id, ds_id, identifier, "INDEXED"))
            except Invalid as exc:
                ingestor.fail(uri, exc.message, known)
                details.append(self._detail(kb_id, ds_id, identifier, "FAILED", exc.message))
        if batch:
            ingestor.commit(batch, known)
        return details

    def _inline(self, source: DataSource, document: Any) -> tuple[dict[str, Any], str, str, bytes, dict[str, Any]]:
        content = document.get("content") if isinstance(document, dict) else None
        if not isinstance(content, dict):
            raise Invalid("each document needs content")
        metadata_spec = document.get("metadata") or {}
        if metadata_spec and metadata_spec.get("type") != "IN_LINE_ATTRIBUTE":
            raise Invalid("document metadata: only IN_LINE_ATTRIBUTE is supported (S3_LOCATION sidecars: use a sync)")
        metadata = inline_metadata(metadata_spec.get("inlineAttributes") or [])
        if content.get("dataSourceType") != "CUSTOM" or json.loads(source.configuration)["type"] != "CUSTOM":
            raise Invalid("Only CUSTOM documents can be ingested directly, into a CUSTOM data source; "
                          "S3 documents are ingested by StartIngestionJob")
        custom = content.get("custom") or {}
        doc_id = (custom.get("customDocumentIdentifier") or {}).get("id")
        if not isinstance(doc_id, str) or not doc_id:
            raise Invalid("content.custom.customDocumentIdentifier.id is required")
        if custom.get("sourceType") != "IN_LINE":
            raise Invalid("content.custom.sourceType: only IN_LINE is supported")
        inline = custom.get("inlineContent") or {}
        if inline.get("type") == "TEXT":
            text = (inline.get("textContent") or {}).get("data")
            if not isinstance(text, str):
                raise Invalid("inlineContent.textContent.data is required for TEXT content")
            name, data = "document.txt", text.encode()
        elif inline.get("type") == "BYTE":
            byte = inline.get("byteContent") or {}
            suffix = MIME_SUFFIX.get(byte.get("mimeType", ""))
            if suffix is None:
                raise Invalid(f"byteContent.mimeType {byte.get('mimeType')!r} is not supported "
                              f"({', '.join(sorted(MIME_SUFFIX))})")
            try:
                data = base64.b64decode(byte.get("data", ""), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise Invalid("byteContent.data is not valid base64") from exc
            name = "document" + suffix
        else:
            raise Invalid("inlineContent.type must be TEXT or BYTE")
        identifier = {"dataSourceType": "CUSTOM", "custom": {"id": doc_id}}
        return identifier, doc_id, name, data, metadata

    def _detail(self, kb_id: str, ds_id: str, identifier: dict[str, Any], status: str, reason: str | None = None,
                row: KbDocument | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"knowledgeBaseId": kb_id, "dataSourceId": ds_id, "status": status,
                               "identifier": identifier}
        if reason:
            out["statusReason"] = reason
        if row is not None:
            out["updatedAt"] = iso(row.updated_at)
        return out

    def _identifiers(self, source: DataSource, identifiers: Any) -> list[tuple[dict[str, Any], str]]:
        if not isinstance(identifiers, list) or not 1 <= len(identifiers) <= 25:
            raise Invalid("documentIdentifiers must list 1 to 25 documents")
        out = []
        for ident in identifiers:
            if ident.get("dataSourceType") == "CUSTOM":
                out.append((ident, (ident.get("custom") or {}).get("id", "")))
            elif ident.get("dataSourceType") == "S3":
                out.append((ident, (ident.get("s3") or {}).get("uri", "")))
            else:
                raise Invalid("documentIdentifiers: dataSourceType must be CUSTOM or S3")
        return out

    def _rows(self, kb: KnowledgeBase, source: DataSource) -> dict[str, KbDocument]:
        return dict(documents_of(self.sessions, self.keys, kb, source.id))

    def get_documents(self, ctx: CallContext, kb_id: str, ds_id: str, identifiers: Any) -> list[dict[str, Any]]:
        kb, source = self.bases.source(ctx, kb_id, ds_id)
        rows = self._rows(kb, source)
        out = []
        for ident, uri in self._identifiers(source, identifiers):
            row = rows.get(uri)
            out.append(self._detail(kb_id, ds_id, ident, row.status if row else "NOT_FOUND",
                                    row.status_reason if row else None, row))
        return out

    def list_documents(self, ctx: CallContext, kb_id: str, ds_id: str) -> list[dict[str, Any]]:
        kb, source = self.bases.source(ctx, kb_id, ds_id)
        custom = json.loads(source.configuration)["type"] == "CUSTOM"
        return [self._detail(kb_id, ds_id, {"dataSourceType": "CUSTOM", "custom": {"id": uri}} if custom
                             else {"dataSourceType": "S3", "s3": {"uri": uri}}, row.status, row.status_reason, row)
                for uri, row in documents_of(self.sessions, self.keys, kb, ds_id)]

    def delete_documents(self, ctx: CallContext, kb_id: str, ds_id: str, identifiers: Any) -> list[dict[str, Any]]:
        kb, source = self.bases.source(ctx, kb_id, ds_id)
        rows = self._rows(kb, source)
        wanted = self._identifiers(source, identifiers)
        found = [rows[uri].id for _, uri in wanted if uri in rows]
        remove_documents(self.sessions, self.indexes, kb, ds_id, found)
        return [self._detail(kb_id, ds_id, ident, "DELETING" if uri in rows else "NOT_FOUND") for ident, uri in wanted]
