"""Each knowledge base's search index: the database holds the truth, the vector store a derived, sealed copy.

Chunks (text, metadata, vector) are rows in `kb_chunks`, sealed under the account's key, written in the same
transaction that bumps the knowledge base's `revision`. The in-memory collection (ANN + keyword index) is
persisted as one sealed blob tagged with the revision it reflects; at load, a blob whose revision is not the
database's is ignored and the index is rebuilt from the rows. So a crash between a commit and a snapshot
costs a rebuild, never a silently half-indexed knowledge base.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.kms import KeyService
from outcrop.errors import NotFound
from outcrop.storage.blobs import BlobStore
from outcrop.storage.repositories import AccountScope
from outcrop.storage.tables import KbChunk, KnowledgeBase
from outcrop.vectorstores.base import Collection, VectorStore


@dataclass
class NewChunk:
    text: str
    metadata: dict[str, Any]  # filterable attributes, Bedrock's x-amz-bedrock-kb-* keys included
    vector: np.ndarray
    parent: str | None = None
    page: int | None = None


@dataclass(frozen=True)
class StoredChunk:
    id: int
    document_id: str
    text: str
    metadata: dict[str, Any]
    parent: str | None
    page: int | None


def _chunk_context(kb_id: str) -> str:
    return f"kb-chunk:{kb_id}"


class KnowledgeIndexes:
    def __init__(self, sessions: sessionmaker[Session], keys: KeyService, blobs: BlobStore,
                 stores: dict[str, VectorStore]) -> None:
        self.sessions = sessions
        self.keys = keys
        self.blobs = blobs
        self.stores = stores
        self._open: dict[str, tuple[int, Collection]] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def lock(self, kb_id: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(kb_id, threading.RLock())

    # -- reading --------------------------------------------------------------------------------------

    def collection(self, kb: KnowledgeBase) -> Collection:
        """The KB's collection at the database's revision: cached, else the snapshot, else rebuilt."""
        with self.lock(kb.id):
            cached = self._open.get(kb.id)
            if cached is not None and cached[0] == kb.revision:
                return cached[1]
            collection = self._from_snapshot(kb) or self._rebuild(kb)
            self._open[kb.id] = (kb.revision, collection)
            return collection

    def chunks(self, account_id: str, kb_id: str, ids: Sequence[int]) -> dict[int, StoredChunk]:
        with self.sessions() as session:
            rows = session.scalars(select(KbChunk).where(KbChunk.id.in_(list(ids)), KbChunk.account_id == account_id,
                                                         KbChunk.knowledge_base_id == kb_id)).all()
            return {row.id: self._open_chunk(row) for row in rows}

    def _open_chunk(self, row: KbChunk) -> StoredChunk:
        payload = json.loads(self.keys.open(row.account_id, row.sealed, _chunk_context(row.knowledge_base_id)))
        return StoredChunk(row.id, row.document_id, payload["text"], payload["metadata"], payload.get("parent"),
                           payload.get("page"))

    def _from_snapshot(self, kb: KnowledgeBase) -> Collection | None:
        try:
            sealed = self.blobs.get(kb.account_id, _blob_id(kb.id))
        except FileNotFoundError:
            return None
        data = self.keys.open(kb.account_id, sealed, f"kb-index:{kb.id}")
        (revision,) = struct.unpack_from(">Q", data)
        if revision != kb.revision:
            return None
        return self.stores[kb.store].load(data[8:])

    def _rebuild(self, kb: KnowledgeBase) -> Collection:
        collection = self.stores[kb.store].create(kb.dimension, "cosine")
        with self.sessions() as session:
            rows = session.scalars(select(KbChunk).where(KbChunk.account_id == kb.account_id,
                                                         KbChunk.knowledge_base_id == kb.id)
                                   .execution_options(yield_per=2000))
            batch: list[KbChunk] = []
            for row in rows:
                batch.append(row)
                if len(batch) == 2000:
                    self._load_rows(kb, collection, batch)
                    batch = []
            self._load_rows(kb, collection, batch)
        return collection

    def _load_rows(self, kb: KnowledgeBase, collection: Collection, rows: list[KbChunk]) -> None:
        if not rows:
            return
        chunks = [self._open_chunk(row) for row in rows]
        vectors = np.stack([np.frombuffer(self.keys.open(kb.account_id, row.vector, _chunk_context(kb.id)),
                                          dtype=np.float32) for row in rows])
        collection.upsert([c.id for c in chunks], vectors, [c.metadata for c in chunks], [c.text for c in chunks])

    # -- writing --------------------------------------------------------------------------------------

    def write(self, session: Session, kb: KnowledgeBase, document_id: str, chunks: Iterable[NewChunk]
              ) -> list[tuple[int, NewChunk]]:
        """Add a document's chunks in the caller's transaction; returns them with their new IDs."""
        now = datetime.now(UTC)
        scope = AccountScope(session, kb.account_id)
        added: list[tuple[KbChunk, NewChunk]] = []
        for chunk in chunks:
            payload = {"text": chunk.text, "metadata": chunk.metadata, "parent": chunk.parent, "page": chunk.page}
            row = KbChunk(knowledge_base_id=kb.id, document_id=document_id, created_at=now,
                          sealed=self.keys.seal(kb.account_id, json.dumps(payload).encode(), _chunk_context(kb.id)),
                          vector=self.keys.seal(kb.account_id, np.asarray(chunk.vector, dtype=np.float32).tobytes(),
                                                _chunk_context(kb.id)))
            added.append((row, chunk))
        scope.add(*(row for row, _ in added))
        return [(row.id, chunk) for row, chunk in added]

    def remove(self, session: Session, account_id: str, kb_id: str, document_ids: Sequence[str]) -> list[int]:
        """Delete documents' chunks in the caller's transaction; returns the removed IDs."""
        if not document_ids:
            return []
        where = (KbChunk.account_id == account_id, KbChunk.knowledge_base_id == kb_id,
                 KbChunk.document_id.in_(list(document_ids)))
        ids = list(session.scalars(select(KbChunk.id).where(*where)))
        session.execute(delete(KbChunk).where(*where))
        return ids

    def apply(self, kb: KnowledgeBase, revision: int, removed: Sequence[int], added: Sequence[tuple[int, NewChunk]]
              ) -> None:
        """After the commit of `revision`: bring the open collection up to it (the caller holds `lock`)."""
        cached = self._open.get(kb.id)
        if cached is None or cached[0] != revision - 1:
            self._open.pop(kb.id, None)  # someone else moved the revision: reload lazily from the rows
            return
        collection = cached[1]
        if removed:
            collection.delete(removed)
        if added:
            collection.upsert([i for i, _ in added], np.stack([np.asarray(c.vector, dtype=np.float32) for _, c in added]),
                              [c.metadata for _, c in added], [c.text for _, c in added])
        self._open[kb.id] = (revision, collection)

    def snapshot(self, kb: KnowledgeBase) -> None:
        with self.lock(kb.id):
            cached = self._open.get(kb.id)
            if cached is None:
                return
            revision, collection = cached
            data = struct.pack(">Q", revision) + collection.dump()
            self.blobs.put(kb.account_id, _blob_id(kb.id), self.keys.seal(kb.account_id, data, f"kb-index:{kb.id}"))

    def open_ids(self) -> list[str]:
        return list(self._open)

    def drop(self, account_id: str, kb_id: str) -> None:
        with self.lock(kb_id):
            self._open.pop(kb_id, None)
            self.blobs.delete(account_id, _blob_id(kb_id))


def _blob_id(kb_id: str) -> str:
    return f"kbindex-{kb_id}"


def bump_revision(session: Session, account_id: str, kb_id: str) -> KnowledgeBase:
    kb = AccountScope(session, account_id).get(KnowledgeBase, kb_id)
    if kb is None:
        raise NotFound(f"Knowledge base {kb_id} was deleted")
    kb.revision += 1
    kb.updated_at = datetime.now(UTC)
    session.flush()
    return kb
