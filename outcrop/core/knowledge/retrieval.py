"""Retrieve (semantic or hybrid search with filters, optional reranking) and Rerank."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from outcrop.core.access import AccessService
from outcrop.core.catalog import normalize_model_id
from outcrop.core.governance import CallContext
from outcrop.core.knowledge.bases import KnowledgeBaseService
from outcrop.core.knowledge.embedder import Embedder
from outcrop.core.knowledge.index import KnowledgeIndexes, StoredChunk
from outcrop.core.knowledge.ingestion import CHUNK_ID, DATA_SOURCE, SOURCE_URI
from outcrop.engines.openmp import on_own_thread
from outcrop.errors import Invalid, NotFound
from outcrop.settings import Settings
from outcrop.storage.repositories import AccountScope
from outcrop.storage.tables import DataSource, KnowledgeBase

DEFAULT_RESULTS = 5
RERANK_POOL = 20  # at least this many candidates for a reranker to reorder (twice the results when more)


@dataclass(frozen=True)
class Passage:
    """A retrieval result in neutral form (Retrieve renders it; RetrieveAndGenerate cites it)."""

    text: str
    score: float
    metadata: dict[str, Any]
    location: dict[str, Any]


class Reranker:
    """Re-scores passages against a query: a sentence-transformers CrossEncoder when one is configured by
    path, else cosine similarity under an embedding model (DESIGN.md §3: no cross-encoder ships offline)."""

    def __init__(self, settings: Settings, embedder: Embedder) -> None:
        self.settings = settings
        self.embedder = embedder
        self._cross: Any = None
        self._lock = threading.Lock()

    def model_for(self, model_arn: str | None) -> str:
        """The embedding model that scores for `model_arn` (Bedrock's rerank models map to the default)."""
        if model_arn:
            try:
                self.embedder.spec(model_arn)
                return model_arn
            except Invalid:
                if "rerank" not in normalize_model_id(model_arn):
                    raise
        return self.settings.default_embedding_model

    def scores(self, model_arn: str | None, query: str, texts: list[str]) -> np.ndarray:
        if self.settings.reranker_model_path is not None:
            return self._cross_encode(self.settings.reranker_model_path, query, texts)
        model = self.model_for(model_arn)
        vectors = self.embedder.embed(model, [query, *texts])
        return (1.0 + vectors[1:] @ vectors[0]) / 2.0  # type: ignore[no-any-return]

    def _cross_encode(self, path: Path, query: str, texts: list[str]) -> np.ndarray:
        with self._lock:
            # On a thread of its own, so torch's OpenMP team ends with the call (engines.openmp).
            logits = on_own_thread(lambda: self._cross_logits(path, query, texts))
        return 1.0 / (1.0 + np.exp(-logits))  # type: ignore[no-any-return]

    def _cross_logits(self, path: Path, query: str, texts: list[str]) -> np.ndarray:
        if self._cross is None:
            from sentence_transformers import CrossEncoder

            self._cross = CrossEncoder(str(path), device="cpu", local_files_only=True)
        import torch

        return np.asarray(self._cross.predict([(query, t) for t in texts], activation_fn=torch.nn.Identity()),
                          dtype=np.float32)


class RetrievalService:
    def __init__(self, settings: Settings, bases: KnowledgeBaseService, indexes: KnowledgeIndexes,
                 embedder: Embedder, access: AccessService) -> None:
        self.settings = settings
        self.bases = bases
        self.indexes = indexes
        self.embedder = embedder
        self.access = access
        self.reranker = Reranker(settings, embedder)

    def retrieve(self, ctx: CallContext, kb_id: str, query: Any, configuration: Any,
                 extra_action: str | None = None) -> list[Passage]:
        kb = self.bases.row(ctx, kb_id)
        if extra_action:
            self.access.require(ctx, self.bases.arn(kb.account_id, kb_id), extra_action)
        text = query.get("text") if isinstance(query, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise Invalid("retrievalQuery.text is required")
        search = (configuration or {}).get("vectorSearchConfiguration") or {}
        count = search.get("numberOfResults", DEFAULT_RESULTS)
        if not isinstance(count, int) or not 1 <= count <= 100:
            raise Invalid("numberOfResults must be between 1 and 100")
        # no override: HYBRID, at least as good as SEMANTIC on every measure of the labelled set (docs/benchmarks.md)
        mode = search.get("overrideSearchType", "HYBRID")
        if mode not in ("HYBRID", "SEMANTIC"):
            raise Invalid("overrideSearchType must be HYBRID or SEMANTIC")
        rerank = search.get("rerankingConfiguration")
        model_arn, keep = self._reranking(rerank, count) if rerank else (None, count)
        model = json.loads(kb.configuration)["vectorKnowledgeBaseConfiguration"]["embeddingModelArn"]
        vector = self.embedder.embed(model, [text], kb.dimension)[0]
        collection = self.indexes.collection(kb)
        wanted = max(2 * count, RERANK_POOL) if rerank else count
        hits = collection.search(vector, wanted * 2, filter=search.get("filter"), text=text, mode=mode)
        passages = self._passages(kb, hits, wanted)
        if rerank:
            scores = self.reranker.scores(model_arn, text, [p.text for p in passages])
            order = np.argsort(-scores, kind="stable")[:keep]
            passages = [Passage(passages[i].text, float(scores[i]), passages[i].metadata, passages[i].location)
                        for i in order]
        return passages

    def _reranking(self, rerank: Any, count: int) -> tuple[str | None, int]:
        if not isinstance(rerank, dict) or rerank.get("type") != "BEDROCK_RERANKING_MODEL":
            raise Invalid("rerankingConfiguration.type must be BEDROCK_RERANKING_MODEL")
        config = rerank.get("bedrockRerankingConfiguration") or {}
        model = (config.get("modelConfiguration") or {}).get("modelArn")
        keep = config.get("numberOfRerankedResults", count)
        if not isinstance(keep, int) or not 1 <= keep <= 100:
            raise Invalid("numberOfRerankedResults must be between 1 and 100")
        return model, keep

    def _passages(self, kb: KnowledgeBase, hits: list[Any], count: int) -> list[Passage]:
        chunks = self.indexes.chunks(kb.account_id, kb.id, [h.id for h in hits])
        kinds = self._source_kinds(kb)
        passages: list[Passage] = []
        seen_parents: set[str] = set()
        for hit in hits:
            chunk = chunks.get(hit.id)
            if chunk is None:
                continue
            if chunk.parent is not None:  # HIERARCHICAL: the parent chunk answers for its children
                if chunk.parent in seen_parents:
                    continue
                seen_parents.add(chunk.parent)
            passages.append(self._passage(chunk, hit.score, kinds))
            if len(passages) == count:
                break
        return passages

    def _passage(self, chunk: StoredChunk, score: float, kinds: dict[str, str]) -> Passage:
        metadata = {**chunk.metadata, CHUNK_ID: str(chunk.id)}
        uri = metadata.get(SOURCE_URI, "")
        if kinds.get(metadata.get(DATA_SOURCE, "")) == "CUSTOM":
            location = {"type": "CUSTOM", "customDocumentLocation": {"id": uri}}
        else:
            location = {"type": "S3", "s3Location": {"uri": uri}}
        return Passage(chunk.parent or chunk.text, float(score), metadata, location)

    def _source_kinds(self, kb: KnowledgeBase) -> dict[str, str]:
        with self.bases.sessions() as session:
            rows = AccountScope(session, kb.account_id).rows(DataSource, DataSource.knowledge_base_id == kb.id)
            return {r.id: json.loads(r.configuration)["type"] for r in rows}

    def rerank(self, ctx: CallContext, body: dict[str, Any]) -> list[dict[str, Any]]:
        self.access.require(ctx)
        queries = body.get("queries")
        if not isinstance(queries, list) or len(queries) != 1:
            raise Invalid("queries must hold exactly one query")
        query = (queries[0].get("textQuery") or {}).get("text") if queries[0].get("type") == "TEXT" else None
        if not isinstance(query, str) or not query:
            raise Invalid("queries[0] must be a TEXT query with textQuery.text")
        sources = body.get("sources")
        if not isinstance(sources, list) or not 1 <= len(sources) <= 1000:
            raise Invalid("sources must list 1 to 1000 documents")
        texts = [_source_text(s, i) for i, s in enumerate(sources)]
        config = (body.get("rerankingConfiguration") or {})
        if config.get("type") != "BEDROCK_RERANKING_MODEL":
            raise Invalid("rerankingConfiguration.type must be BEDROCK_RERANKING_MODEL")
        bedrock = config.get("bedrockRerankingConfiguration") or {}
        model = (bedrock.get("modelConfiguration") or {}).get("modelArn")
        if not isinstance(model, str):
            raise Invalid("rerankingConfiguration.bedrockRerankingConfiguration.modelConfiguration.modelArn is required")
        keep = bedrock.get("numberOfResults", len(texts))
        if not isinstance(keep, int) or not 1 <= keep <= 1000:
            raise Invalid("numberOfResults must be between 1 and 1000")
        try:
            scores = self.reranker.scores(model, query, texts)
        except NotFound as exc:
            raise Invalid(f"The reranking model {model} is not available") from exc
        order = np.argsort(-scores, kind="stable")[:keep]
        return [{"index": int(i), "relevanceScore": float(scores[i]), "document": sources[i]["inlineDocumentSource"]}
                for i in order]


def _source_text(source: Any, index: int) -> str:
    inline = source.get("inlineDocumentSource") if isinstance(source, dict) else None
    if not isinstance(inline, dict) or source.get("type") != "INLINE":
        raise Invalid(f"sources[{index}] must be an INLINE document source")
    if inline.get("type") == "TEXT":
        text = (inline.get("textDocument") or {}).get("text")
    elif inline.get("type") == "JSON":
        text = json.dumps(inline.get("jsonDocument"))
    else:
        raise Invalid(f"sources[{index}].inlineDocumentSource.type must be TEXT or JSON")
    if not isinstance(text, str) or not text:
        raise Invalid(f"sources[{index}] has no text")
    return text
