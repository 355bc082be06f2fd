"""Ingestion: source documents → parsed → chunked → embedded in batches → chunks and index, incrementally.

A document is re-embedded only when its keyed content digest (content, sidecar and chunking settings) changed;
documents gone from the source are removed. Each batch commits its chunks and the knowledge base's revision
in one transaction, then updates the open index (see index.py for why a crash cannot half-index silently).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.jobs import JobRun
from outcrop.core.kms import KeyService
from outcrop.core.knowledge.chunking import chunk_document
from outcrop.core.knowledge.embedder import Embedder
from outcrop.core.knowledge.index import KnowledgeIndexes, NewChunk, bump_revision
from outcrop.core.knowledge.parsing import parse, parse_sidecar
from outcrop.core.knowledge.sources import SourceDocument, open_source
from outcrop.errors import Invalid, NotFound
from outcrop.settings import Settings
from outcrop.storage.repositories import AccountScope
from outcrop.storage.tables import DataSource, KbDocument, KnowledgeBase

SOURCE_URI = "x-amz-bedrock-kb-source-uri"
DATA_SOURCE = "x-amz-bedrock-kb-data-source-id"
PAGE = "x-amz-bedrock-kb-document-page-number"
CHUNK_ID = "x-amz-bedrock-kb-chunk-id"
_MAX_REASONS = 50


def digest(salt: bytes, *parts: bytes) -> str:
    h = hashlib.sha256(salt)
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


@dataclass
class Prepared:
    """One document parsed and chunked, waiting for its embeddings."""

    uri: str
    uri_digest: str
    content_digest: str
    chunks: list[NewChunk]
    vectors_from: int = 0  # position of its first chunk in the batch


@dataclass
class Statistics:
    numberOfDocumentsScanned: int = 0
    numberOfMetadataDocumentsScanned: int = 0
    numberOfNewDocumentsIndexed: int = 0
    numberOfModifiedDocumentsIndexed: int = 0
    numberOfMetadataDocumentsModified: int = 0
    numberOfDocumentsDeleted: int = 0
    numberOfDocumentsFailed: int = 0
    failureReasons: list[str] = field(default_factory=list)

    def failed(self, uri: str, reason: str) -> None:
        self.numberOfDocumentsFailed += 1
        if len(self.failureReasons) < _MAX_REASONS:
            self.failureReasons.append(f"{uri}: {reason}")


class Ingestor:
    """Writes documents into one knowledge base's data source."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], keys: KeyService,
                 indexes: KnowledgeIndexes, embedder: Embedder, kb: KnowledgeBase, source: DataSource) -> None:
        self.settings = settings
        self.sessions = sessions
        self.keys = keys
        self.indexes = indexes
        self.embedder = embedder
        self.kb = kb
        self.source = source
        vector = json.loads(kb.configuration)["vectorKnowledgeBaseConfiguration"]
        self.model_arn = vector["embeddingModelArn"]
        self.chunking = json.loads(source.ingestion)["chunkingConfiguration"]
        self._settings_digest = json.dumps(self.chunking, sort_keys=True).encode() + str(kb.dimension).encode()

    def uri_digest(self, uri: str) -> str:
        return digest(self.kb.salt, b"uri", uri.encode())

    def known(self) -> dict[str, KbDocument]:
        with self.sessions() as session:
            rows = AccountScope(session, self.kb.account_id).rows(KbDocument,
                                                                    KbDocument.data_source_id == self.source.id)
            for row in rows:
                session.expunge(row)
            return {row.uri_digest: row for row in rows}

    def check_size(self, size: int) -> None:
        if size > self.settings.kb_max_document_bytes:
            raise Invalid(f"the file is {size} bytes, over the limit of {self.settings.kb_max_document_bytes}")

    def content_digest(self, data: bytes, sidecar: bytes) -> str:
        """What decides whether a document is re-embedded: its bytes, its sidecar and the chunking settings."""
        return digest(self.kb.salt, data, sidecar, self._settings_digest)

    def prepare(self, uri: str, name: str, data: bytes, metadata: dict[str, Any], sidecar: bytes = b"",
                content_digest: str | None = None) -> Prepared:
        """Parse and chunk (raises Invalid with the reason when the document cannot be indexed)."""
        self.check_size(len(data))
        parsed = parse(name, data)
        embed = (lambda texts: self.embedder.embed(self.model_arn, texts)) \
            if self.chunking["chunkingStrategy"] == "SEMANTIC" else None
        base = {**metadata, SOURCE_URI: uri, DATA_SOURCE: self.source.id}
        chunks = [NewChunk(c.text, {**base, **({PAGE: c.page} if c.page is not None else {})}, None,  # type: ignore[arg-type]
                           c.parent, c.page)
                  for c in chunk_document(parsed, self.chunking, embed) if c.text.strip()]
        if not chunks:
            raise Invalid("the document has no text to index")
        return Prepared(uri, self.uri_digest(uri), content_digest or self.content_digest(data, sidecar), chunks)

    def commit(self, batch: list[Prepared], known: dict[str, KbDocument]) -> list[str]:
        """Embed a batch and write it in one transaction; answers 'new' or 'modified' per document."""
        texts = [c.text for p in batch for c in p.chunks]
        vectors = self.embedder.embed(self.model_arn, texts, self.kb.dimension if self.kb.dimension else None)
        position = 0
        for prepared in batch:
            for chunk in prepared.chunks:
                chunk.vector = vectors[position]
                position += 1
        outcome: list[str] = []
        with self.indexes.lock(self.kb.id):
            with self.sessions.begin() as session:
                scope = AccountScope(session, self.kb.account_id)
                removed: list[int] = []
                added = []
                for prepared in batch:
                    row = self._document(scope, prepared.uri, prepared.uri_digest, known)
                    outcome.append("modified" if row.content_digest else "new")
                    removed += self.indexes.remove(session, self.kb.account_id, self.kb.id, [row.id])
                    added += self.indexes.write(session, self.kb, row.id, prepared.chunks)
                    row.content_digest, row.status, row.status_reason = prepared.content_digest, "INDEXED", None
                    row.chunks, row.updated_at = len(prepared.chunks), datetime.now(UTC)
                kb = bump_revision(session, self.kb.account_id, self.kb.id)
                revision = kb.revision
            self.indexes.apply(self.kb, revision, removed, added)
            self.kb.revision = revision
        return outcome

    def _document(self, scope: AccountScope, uri: str, uri_digest: str, known: dict[str, KbDocument]) -> KbDocument:
        row = scope.first(KbDocument, KbDocument.data_source_id == self.source.id, KbDocument.uri_digest == uri_digest)
        if row is None:
            now = datetime.now(UTC)
            row = KbDocument(id=str(uuid.uuid4()), knowledge_base_id=self.kb.id, data_source_id=self.source.id,
                             uri_digest=uri_digest, content_digest=None, status="STARTING", chunks=0,
                             uri_sealed=self.keys.seal(self.kb.account_id, uri.encode(), f"kb-uri:{self.kb.id}"),
                             created_at=now, updated_at=now)
            scope.add(row)
            known[uri_digest] = row
        return row

    def fail(self, uri: str, reason: str, known: dict[str, KbDocument]) -> None:
        """Record a document that could not be indexed; the chunks of an earlier version stay searchable."""
        with self.sessions.begin() as session:
            row = self._document(AccountScope(session, self.kb.account_id), uri, self.uri_digest(uri), known)
            row.status, row.status_reason, row.updated_at = "FAILED", reason[:2000], datetime.now(UTC)

    def remove(self, document_ids: list[str]) -> None:
        remove_documents(self.sessions, self.indexes, self.kb, self.source.id, document_ids)


def remove_documents(sessions: sessionmaker[Session], indexes: KnowledgeIndexes, kb: KnowledgeBase, ds_id: str,
                     document_ids: list[str] | None) -> int:
    """Delete documents (all of the data source's when None) and their chunks, in one transaction."""
    with indexes.lock(kb.id):
        with sessions.begin() as session:
            scope = AccountScope(session, kb.account_id)
            where = [KbDocument.data_source_id == ds_id]
            if document_ids is not None:
                where.append(KbDocument.id.in_(document_ids))
            rows = scope.rows(KbDocument, *where)
            if not rows:
                return 0
            removed = indexes.remove(session, kb.account_id, kb.id, [r.id for r in rows])
            for row in rows:
                session.delete(row)
            revision = bump_revision(session, kb.account_id, kb.id).revision
        indexes.apply(kb, revision, removed, [])
        kb.revision = revision
    return len(rows)


def run_ingestion(settings: Settings, sessions: sessionmaker[Session], keys: KeyService,
                  indexes: KnowledgeIndexes, embedder: Embedder, run: JobRun) -> None:
    """The ingestion job: sync one data source into its knowledge base."""
    kb_id, ds_id = run.target.split("/")
    with sessions() as session:
        scope = AccountScope(session, run.account_id)
        kb, source = scope.get(KnowledgeBase, kb_id), scope.get(DataSource, ds_id)
        if kb is None or source is None or source.status == "DELETED":
            raise NotFound("The knowledge base or data source of this job was deleted")
        session.expunge_all()
    ingestor = Ingestor(settings, sessions, keys, indexes, embedder, kb, source)
    indexes.collection(kb)  # open (or rebuild) the index before changing it
    # a resumed job (its worker died) keeps what it had indexed: those documents are unchanged now
    stats = Statistics()
    for key in ("numberOfNewDocumentsIndexed", "numberOfModifiedDocumentsIndexed", "numberOfDocumentsDeleted"):
        setattr(stats, key, int(run.progress.get(key, 0)))
    known = ingestor.known()
    seen: set[str] = set()
    origin = open_source(settings, json.loads(source.configuration))
    batch: list[Prepared] = []
    pending = 0

    def flush() -> None:
        nonlocal batch, pending
        if batch:
            for prepared, outcome in zip(batch, ingestor.commit(batch, known), strict=True):
                if outcome == "new":
                    stats.numberOfNewDocumentsIndexed += 1
                else:
                    stats.numberOfModifiedDocumentsIndexed += 1
                del prepared
            batch, pending = [], 0
        run.report(**vars(stats))

    for document in origin.documents() if origin is not None else iter(()):
        run.check()
        stats.numberOfDocumentsScanned += 1
        prepared = _prepare_source_document(ingestor, document, known, stats)
        seen.add(ingestor.uri_digest(document.uri))
        if prepared is not None:
            batch.append(prepared)
            pending += len(prepared.chunks)
            if pending >= settings.kb_embed_batch:
                flush()
        else:
            run.report(**vars(stats))
    flush()
    if origin is not None:
        gone = [row.id for digest_, row in known.items() if digest_ not in seen]
        if gone:
            run.check()
            ingestor.remove(gone)
            stats.numberOfDocumentsDeleted = len(gone)
    run.report(force=True, **vars(stats))
    with sessions() as session:
        latest = AccountScope(session, kb.account_id).get(KnowledgeBase, kb.id)
        if latest is not None:
            indexes.snapshot(latest)


def _prepare_source_document(ingestor: Ingestor, document: SourceDocument, known: dict[str, KbDocument],
                             stats: Statistics) -> Prepared | None:
    try:
        sidecar = document.sidecar() if document.sidecar else b""
        if sidecar:
            stats.numberOfMetadataDocumentsScanned += 1
        metadata = parse_sidecar(sidecar) if sidecar else {}
        ingestor.check_size(document.size)  # before downloading it
        data = document.fetch()
        row = known.get(ingestor.uri_digest(document.uri))
        content = ingestor.content_digest(data, sidecar)
        if row is not None and row.status == "INDEXED" and row.content_digest == content:
            return None  # unchanged: not re-embedded
        return ingestor.prepare(document.uri, document.name, data, metadata, sidecar, content)
    except Invalid as exc:
        stats.failed(document.uri, exc.message)
        ingestor.fail(document.uri, exc.message, known)
        return None


def documents_of(sessions: sessionmaker[Session], keys: KeyService, kb: KnowledgeBase, ds_id: str
                 ) -> list[tuple[str, KbDocument]]:
    """Every document of a data source with its URI opened."""
    with sessions() as session:
        rows = session.scalars(select(KbDocument).where(KbDocument.account_id == kb.account_id,
                                                        KbDocument.data_source_id == ds_id)
                               .order_by(KbDocument.created_at)).all()
        session.expunge_all()
    return [(keys.open(kb.account_id, row.uri_sealed, f"kb-uri:{kb.id}").decode(), row) for row in rows]
