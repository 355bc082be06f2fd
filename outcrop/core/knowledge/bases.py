"""Knowledge bases and data sources (bedrock-agent's control plane), tenant-scoped; shapes as Bedrock's."""

from __future__ import annotations

import json
import secrets
import string
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.accounts import caller_of
from outcrop.core.governance import CallContext
from outcrop.core.jobs import ACTIVE, JobService
from outcrop.core.knowledge.chunking import validate_chunking
from outcrop.core.knowledge.embedder import Embedder
from outcrop.core.knowledge.index import KnowledgeIndexes
from outcrop.core.knowledge.ingestion import remove_documents
from outcrop.core.knowledge.sources import validate_source
from outcrop.errors import Invalid, NotFound
from outcrop.settings import Settings
from outcrop.storage.repositories import AccountScope, unique
from outcrop.storage.tables import DataSource, Job, KbChunk, KbDocument, KnowledgeBase

_ID = string.ascii_uppercase + string.digits
BEDROCK_STORES = ("OPENSEARCH_SERVERLESS", "PINECONE", "REDIS_ENTERPRISE_CLOUD", "RDS", "MONGO_DB_ATLAS",
                  "NEPTUNE_ANALYTICS", "OPENSEARCH_MANAGED_CLUSTER", "S3_VECTORS")


def new_id() -> str:
    return "".join(secrets.choice(_ID) for _ in range(10))


def iso(when: datetime) -> str:
    return when.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 100 or not all(c.isalnum() or c in "_-" for c in value):
        raise Invalid(f"{what} must be 1-100 characters of letters, digits, '_' or '-'")
    return value


class KnowledgeBaseService:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session], access: AccessService,
                 embedder: Embedder, indexes: KnowledgeIndexes, jobs: JobService) -> None:
        self.settings = settings
        self.sessions = sessions
        self.access = access
        self.embedder = embedder
        self.indexes = indexes
        self.jobs = jobs

    def arn(self, account_id: str, kb_id: str) -> str:
        return f"arn:aws:bedrock:{self.settings.region}:{account_id}:knowledge-base/{kb_id}"

    # -- knowledge bases ------------------------------------------------------------------------------

    def create(self, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
        account = caller_of(ctx).account_id
        kb_id = new_id()
        self.access.require(ctx, self.arn(account, kb_id))
        name = _name(body.get("name"), "name")
        if not isinstance(body.get("roleArn"), str):
            raise Invalid("roleArn is required")
        configuration, model_arn = self._configuration(body.get("knowledgeBaseConfiguration"))
        store = self._store(body.get("storageConfiguration"))
        dims = (configuration["vectorKnowledgeBaseConfiguration"].get("embeddingModelConfiguration") or {}).get(
            "bedrockEmbeddingModelConfiguration", {}).get("dimensions")
        native = self.embedder.dimension(model_arn)
        if dims is not None and (not isinstance(dims, int) or not 0 < dims <= native):
            raise Invalid(f"embeddingModelConfiguration dimensions must be between 1 and {native} for {model_arn}")
        now = datetime.now(UTC)
        row = KnowledgeBase(id=kb_id, name=name, description=body.get("description"), role_arn=body["roleArn"],
                            configuration=json.dumps(configuration), status="ACTIVE", store=store,
                            storage=json.dumps(body["storageConfiguration"]) if body.get("storageConfiguration") else None,
                            dimension=dims or native, revision=0, salt=secrets.token_bytes(16),
                            created_at=now, updated_at=now)
        with unique(f"A knowledge base named {name} already exists"), self.sessions.begin() as session:
            AccountScope(session, account).add(row)
            return self.render(row)

    def _configuration(self, configuration: Any) -> tuple[dict[str, Any], str]:
        if not isinstance(configuration, dict) or configuration.get("type") != "VECTOR":
            kind = configuration.get("type") if isinstance(configuration, dict) else None
            raise Invalid(f"knowledgeBaseConfiguration.type {kind!r} is not supported: Outcrop builds VECTOR "
                          "knowledge bases")
        vector = configuration.get("vectorKnowledgeBaseConfiguration")
        if not isinstance(vector, dict) or not isinstance(vector.get("embeddingModelArn"), str):
            raise Invalid("knowledgeBaseConfiguration.vectorKnowledgeBaseConfiguration.embeddingModelArn is required")
        settings = (vector.get("embeddingModelConfiguration") or {}).get("bedrockEmbeddingModelConfiguration") or {}
        if settings.get("embeddingDataType", "FLOAT32") != "FLOAT32":
            raise Invalid("embeddingDataType BINARY is not supported; use FLOAT32")
        self.embedder.spec(vector["embeddingModelArn"])
        return configuration, vector["embeddingModelArn"]

    def _store(self, storage: Any) -> str:
        names = sorted(self.indexes.stores)
        if storage is None:
            return "embedded"
        kind = storage.get("type") if isinstance(storage, dict) else None
        if isinstance(kind, str) and kind.lower() in self.indexes.stores:
            return kind.lower()
        if kind in BEDROCK_STORES:
            raise Invalid(f"storageConfiguration type {kind} is an AWS-hosted store, which Outcrop does not reach. "
                          f"Omit storageConfiguration to use the embedded vector store (available: {', '.join(names)}).")
        raise Invalid(f"storageConfiguration.type {kind!r} is not a vector store of this server "
                      f"(available: {', '.join(n.upper() for n in names)})")

    def get(self, ctx: CallContext, kb_id: str) -> dict[str, Any]:
        return self.render(self.row(ctx, kb_id))

    def row(self, ctx: CallContext, kb_id: str) -> KnowledgeBase:
        account = caller_of(ctx).account_id
        self.access.require(ctx, self.arn(account, kb_id))
        with self.sessions() as session:
            row = AccountScope(session, account).get(KnowledgeBase, kb_id)
            if row is None:
                raise NotFound(f"Knowledge base with id {kb_id} does not exist")
            session.expunge(row)
        return row

    def list_bases(self, ctx: CallContext) -> list[dict[str, Any]]:
        account = caller_of(ctx).account_id
        self.access.require(ctx, self.arn(account, "*"))
        with self.sessions() as session:
            rows = AccountScope(session, account).rows(KnowledgeBase)
            return [{"knowledgeBaseId": r.id, "name": r.name, "description": r.description, "status": r.status,
                     "updatedAt": iso(r.updated_at)} for r in rows]

    def update(self, ctx: CallContext, kb_id: str, body: dict[str, Any]) -> dict[str, Any]:
        current = self.row(ctx, kb_id)
        configuration, _ = self._configuration(body.get("knowledgeBaseConfiguration"))
        before = json.loads(current.configuration)["vectorKnowledgeBaseConfiguration"]
        if configuration["vectorKnowledgeBaseConfiguration"] != before:
            raise Invalid("The embedding model of a knowledge base cannot be changed; create a new knowledge base")
        if self._store(body.get("storageConfiguration")) != current.store:
            raise Invalid("The storage configuration of a knowledge base cannot be changed")
        with unique("A knowledge base with that name already exists"), self.sessions.begin() as session:
            row = AccountScope(session, current.account_id).get(KnowledgeBase, kb_id)
            if row is None:
                raise NotFound(f"Knowledge base with id {kb_id} does not exist")
            row.name = _name(body.get("name"), "name")
            row.description, row.role_arn = body.get("description"), body.get("roleArn", row.role_arn)
            row.updated_at = datetime.now(UTC)
            session.flush()
            return self.render(row)

    def delete(self, ctx: CallContext, kb_id: str) -> dict[str, Any]:
        row = self.row(ctx, kb_id)
        self._stop_jobs(row.account_id, f"{kb_id}/")
        with self.indexes.lock(kb_id), self.sessions.begin() as session:
            scope = AccountScope(session, row.account_id)
            for model in (KbChunk, KbDocument, DataSource):
                for child in scope.rows(model, model.knowledge_base_id == kb_id):  # type: ignore[attr-defined]
                    session.delete(child)
            session.flush()
            stored = scope.get(KnowledgeBase, kb_id)
            if stored is not None:
                scope.delete(stored)
        self.indexes.drop(row.account_id, kb_id)
        return {"knowledgeBaseId": kb_id, "status": "DELETING"}

    def _stop_jobs(self, account_id: str, target_prefix: str) -> None:
        with self.sessions.begin() as session:
            session.execute(update(Job).where(Job.account_id == account_id, Job.target.startswith(target_prefix),
                                              Job.status.in_(ACTIVE)).values(status="stopping"))

    def render(self, row: KnowledgeBase) -> dict[str, Any]:
        out: dict[str, Any] = {
            "knowledgeBaseId": row.id, "name": row.name, "knowledgeBaseArn": self.arn(row.account_id, row.id),
            "roleArn": row.role_arn, "knowledgeBaseConfiguration": json.loads(row.configuration),
            "status": row.status, "createdAt": iso(row.created_at), "updatedAt": iso(row.updated_at)}
        if row.description:
            out["description"] = row.description
        if row.storage:
            out["storageConfiguration"] = json.loads(row.storage)
        return out


    # -- data sources ---------------------------------------------------------------------------------

    def create_source(self, ctx: CallContext, kb_id: str, body: dict[str, Any]) -> dict[str, Any]:
        kb = self.row(ctx, kb_id)
        now = datetime.now(UTC)
        row = DataSource(id=new_id(), knowledge_base_id=kb_id, name=_name(body.get("name"), "name"),
                         description=body.get("description"), status="AVAILABLE", created_at=now, updated_at=now,
                         **self._source_fields(body))
        with unique(f"A data source named {row.name} already exists in {kb_id}"), \
                self.sessions.begin() as session:
            AccountScope(session, kb.account_id).add(row)
            return self.render_source(row)

    def _source_fields(self, body: dict[str, Any]) -> dict[str, Any]:
        configuration = validate_source(self.settings, body.get("dataSourceConfiguration"))
        ingestion = dict(body.get("vectorIngestionConfiguration") or {})
        unsupported = set(ingestion) - {"chunkingConfiguration", "parsingConfiguration"}
        if unsupported:
            raise Invalid(f"vectorIngestionConfiguration.{sorted(unsupported)[0]} is not supported by Outcrop")
        if (ingestion.get("parsingConfiguration") or {}).get("parsingStrategy") not in (None, "BEDROCK_DATA_AUTOMATION"):
            raise Invalid("parsingConfiguration: only the default parser is available (omit parsingConfiguration)")
        ingestion["chunkingConfiguration"] = validate_chunking(ingestion.get("chunkingConfiguration"))
        policy = body.get("dataDeletionPolicy", "DELETE")
        if policy not in ("RETAIN", "DELETE"):
            raise Invalid("dataDeletionPolicy must be RETAIN or DELETE")
        return {"configuration": json.dumps(configuration), "ingestion": json.dumps(ingestion),
                "deletion_policy": policy}

    def source(self, ctx: CallContext, kb_id: str, ds_id: str) -> tuple[KnowledgeBase, DataSource]:
        kb = self.row(ctx, kb_id)
        with self.sessions() as session:
            row = AccountScope(session, kb.account_id).get(DataSource, ds_id)
            if row is None or row.knowledge_base_id != kb_id or row.status == "DELETED":
                raise NotFound(f"Data source {ds_id} does not exist in knowledge base {kb_id}")
            session.expunge(row)
        return kb, row

    def get_source(self, ctx: CallContext, kb_id: str, ds_id: str) -> dict[str, Any]:
        return self.render_source(self.source(ctx, kb_id, ds_id)[1])

    def list_sources(self, ctx: CallContext, kb_id: str) -> list[dict[str, Any]]:
        kb = self.row(ctx, kb_id)
        with self.sessions() as session:
            rows = AccountScope(session, kb.account_id).rows(DataSource, DataSource.knowledge_base_id == kb_id,
                                                               DataSource.status != "DELETED")
            return [{"knowledgeBaseId": kb_id, "dataSourceId": r.id, "name": r.name, "status": r.status,
                     "description": r.description, "updatedAt": iso(r.updated_at)} for r in rows]

    def update_source(self, ctx: CallContext, kb_id: str, ds_id: str, body: dict[str, Any]) -> dict[str, Any]:
        kb, _ = self.source(ctx, kb_id, ds_id)
        fields = self._source_fields(body)
        with unique("A data source with that name already exists"), self.sessions.begin() as session:
            row = AccountScope(session, kb.account_id).get(DataSource, ds_id)
            assert row is not None
            row.name, row.description = _name(body.get("name"), "name"), body.get("description")
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = datetime.now(UTC)
            session.flush()
            return self.render_source(row)

    def delete_source(self, ctx: CallContext, kb_id: str, ds_id: str) -> dict[str, Any]:
        """DELETE drops the source's chunks from the index; RETAIN keeps them searchable (as on Bedrock)."""
        kb, source = self.source(ctx, kb_id, ds_id)
        self._stop_jobs(kb.account_id, f"{kb_id}/{ds_id}")
        with self.indexes.lock(kb_id):
            if source.deletion_policy == "DELETE":
                remove_documents(self.sessions, self.indexes, kb, ds_id, None)
            with self.sessions.begin() as session:
                row = AccountScope(session, kb.account_id).get(DataSource, ds_id)
                if row is not None:
                    row.status, row.updated_at = "DELETED", datetime.now(UTC)
        return {"knowledgeBaseId": kb_id, "dataSourceId": ds_id, "status": "DELETING"}

    def render_source(self, row: DataSource) -> dict[str, Any]:
        out: dict[str, Any] = {
            "knowledgeBaseId": row.knowledge_base_id, "dataSourceId": row.id, "name": row.name,
            "status": row.status, "dataSourceConfiguration": json.loads(row.configuration),
            "vectorIngestionConfiguration": json.loads(row.ingestion), "dataDeletionPolicy": row.deletion_policy,
            "createdAt": iso(row.created_at), "updatedAt": iso(row.updated_at)}
        if row.description:
            out["description"] = row.description
        return out
