"""The knowledge-base services of one server, wired together once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.inference import InferenceService
from outcrop.core.jobs import JobService
from outcrop.core.kms import KeyService
from outcrop.core.knowledge.bases import KnowledgeBaseService
from outcrop.core.knowledge.documents import IngestionService
from outcrop.core.knowledge.embedder import Embedder
from outcrop.core.knowledge.generation import GenerationService
from outcrop.core.knowledge.index import KnowledgeIndexes
from outcrop.core.knowledge.retrieval import RetrievalService
from outcrop.settings import Settings
from outcrop.storage.blobs import BlobStore
from outcrop.storage.tables import KnowledgeBase
from outcrop.vectorstores.base import VectorStore


@dataclass
class Knowledge:
    bases: KnowledgeBaseService
    ingestion: IngestionService
    retrieval: RetrievalService
    generation: GenerationService
    indexes: KnowledgeIndexes

    @classmethod
    def build(cls, settings: Settings, sessions: sessionmaker[Session], access: AccessService, keys: KeyService,
              inference: InferenceService, blobs: BlobStore, jobs: JobService,
              stores: dict[str, VectorStore]) -> Knowledge:
        embedder = Embedder(inference)
        indexes = KnowledgeIndexes(sessions, keys, blobs, stores)
        bases = KnowledgeBaseService(settings, sessions, access, embedder, indexes, jobs)
        retrieval = RetrievalService(settings, bases, indexes, embedder, access)
        return cls(bases, IngestionService(settings, bases, keys, jobs, indexes, embedder), retrieval,
                   GenerationService(retrieval, inference, keys), indexes)

    def close(self) -> None:
        """Persist every open index, so the next start loads it instead of rebuilding it."""
        with self.bases.sessions() as session:
            for kb_id in list(self.indexes.open_ids()):
                kb = session.get(KnowledgeBase, kb_id)
                if kb is not None:
                    self.indexes.snapshot(kb)
