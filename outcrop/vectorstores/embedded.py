"""The embedded vector store: FAISS HNSW in process, filters evaluated inside the search, BM25 beside it.

Rows get sequential internal numbers (FAISS's own ids); `row_ids` maps them to the caller's chunk ids.
Deletes and replacements are tombstones honoured by the same bitmap selector as filters; the index is
rebuilt without them once they pass COMPACT_DEAD_FRACTION of the rows.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from outcrop.errors import Invalid
from outcrop.vectorstores.base import METRICS, SEARCH_MODES, Hit, ReadWriteLock, pack_arrays, unpack_arrays
from outcrop.vectorstores.filters import Filter, Growable, MetadataColumns, compile_filter
from outcrop.vectorstores.keyword import KeywordIndex, fuse_adaptive, top_k

HNSW_M = 32
EF_CONSTRUCTION = 200
# recall@10 on bench/vectorstore.py's clustered data at efSearch 16 / 24 / 32 / 48 / 64:
#   100k rows 0.950 / 0.985 / 0.995 / 0.9993 / 1.0;  300k rows 0.900 / 0.956 / 0.980 / 0.9955 / 0.9989.
# Recall at a fixed efSearch falls as the collection grows; 48 should stay >= 0.95 at 1M (not measured here).
EF_SEARCH = 48
# Exact scan instead of the HNSW walk when few rows are allowed. bench/vectorstore.py --crossover at 100k rows
# (one thread): exact costs ~0.2-0.3 ms per 1k allowed rows (0.18 ms at 1k, 3.3 ms at 10k, 6.4 ms at 20k), a
# filtered walk ~0.6-0.8 ms whatever the selectivity, but its recall@10 collapses on selective filters (0.35 at
# 1 % allowed, 0.72 at 5 %, 0.94 at 10 %, >= 0.995 from 20 %): on clustered data a walk only finds allowed rows
# near the query, so what matters is how many allowed rows there are, not which fraction.
EXACT_SMALL_ROWS = 4_000  # always exact up to here (<= ~1 ms, about one unfiltered walk)
EXACT_MAX_ROWS = 20_000  # exact up to here (<= ~6 ms) when a filter leaves under EXACT_MAX_FRACTION of the rows
EXACT_MAX_FRACTION = 0.5  # above it the filter hardly restricts the walk (unfiltered 20k rows: recall 0.9997)
COMPACT_DEAD_FRACTION = 0.2
HYBRID_POOL = 50  # candidates taken from each of the vector and keyword searches before fusion
_FORMAT = "outcrop.embedded/1"


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise Invalid("the embedded vector store needs FAISS: pip install 'outcrop[kb]'") from exc
    return faiss


@dataclass
class Allowed:
    """The rows one search may return: `mask` None means every row; `bits` is the mask packed for FAISS."""

    mask: np.ndarray | None
    count: int
    bits: np.ndarray | None = None

    def bitmap(self) -> np.ndarray:
        if self.bits is None:
            mask = self.mask if self.mask is not None else np.ones(self.count, dtype=bool)
            self.bits = np.packbits(mask, bitorder="little")  # IDSelectorBitmap reads bit i of byte i >> 3
        return self.bits

    def rows(self) -> np.ndarray:
        return np.arange(self.count, dtype=np.int64) if self.mask is None else np.flatnonzero(self.mask)


class EmbeddedCollection:
    """A Collection on FAISS IndexHNSWFlat (inner product; vectors L2-normalized for cosine)."""

    def __init__(self, dimension: int, metric: str = "cosine", *, ef_search: int = EF_SEARCH,
                 index: Any = None) -> None:
        if not isinstance(dimension, int) or dimension < 1:
            raise Invalid("dimension must be a positive integer")
        if metric not in METRICS:
            raise Invalid(f"metric must be one of {', '.join(METRICS)}")
        self._faiss = faiss = _faiss()
        self.dimension, self.metric = dimension, metric
        # chosen on half of a labelled set (bench/fusion_tuning.py, docs/benchmarks.md): keywords weigh up to
        # 0.5, as much as they tell the best semantic candidates apart
        self.fusion: Callable[[np.ndarray, np.ndarray], np.ndarray] = functools.partial(fuse_adaptive, weight=0.5)
        self._index = index if index is not None else self._new_index()
        self.ef_search = ef_search
        self._flat = faiss.downcast_index(self._index.storage)
        self._row_ids = Growable(np.int64)
        self._row_of: dict[int, int] = {}
        self._alive = Growable(np.bool_)
        self._dead = 0
        self._alive_bits: np.ndarray | None = None  # packed `alive`, cached between writes
        self._metadata = MetadataColumns()
        self._keywords = KeywordIndex()
        self._lock = ReadWriteLock()

    @property
    def ef_search(self) -> int:
        """Candidates kept during an HNSW walk (at least k are): the recall / speed knob."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef_search = self._index.hnsw.efSearch = int(value)

    def _new_index(self) -> Any:
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(self.dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        return index

    def __len__(self) -> int:
        return len(self._row_of)

    # --- writes ---

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]],
               texts: Sequence[str]) -> None:
        id_array, vectors = self._check_batch(ids, vectors, metadata, texts)
        if not len(id_array):
            return
        with self._lock.writing():
            self._metadata.append(metadata)  # validates every value before it changes anything
            self._tombstone([self._row_of[i] for i in id_array.tolist() if i in self._row_of])
            start = len(self._row_ids)
            self._index.add(vectors)
            self._keywords.add(texts)
            self._row_ids.extend(id_array)
            self._alive.extend(np.ones(len(id_array), dtype=bool))
            self._row_of.update(zip(id_array.tolist(), range(start, start + len(id_array)), strict=True))
            self._maybe_compact()

    def _check_batch(self, ids: Sequence[int], vectors: np.ndarray, metadata: Sequence[Mapping[str, Any]],
                     texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        raw_ids = np.asarray(ids).reshape(-1)
        if raw_ids.size and raw_ids.dtype.kind not in "iu":
            raise Invalid("ids must be integers")
        id_array = raw_ids.astype(np.int64)
        vectors = self._check_vectors(vectors, len(id_array))
        if len(np.unique(id_array)) != len(id_array):
            raise Invalid("ids must be unique within one upsert")
        if len(metadata) != len(id_array) or len(texts) != len(id_array):
            raise Invalid("upsert needs one metadata mapping and one text per id")
        if not all(isinstance(m, Mapping) for m in metadata) or not all(isinstance(t, str) for t in texts):
            raise Invalid("metadata must be mappings and texts strings")
        return id_array, vectors

    def _check_vectors(self, vectors: Any, count: int) -> np.ndarray:
        vectors = np.array(vectors, dtype=np.float32, ndmin=2)  # a copy: normalized in place below
        if vectors.shape != (count, self.dimension):
            raise Invalid(f"expected {count} vectors of dimension {self.dimension}, got shape {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise Invalid("vectors must be finite")
        if self.metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors /= np.where(norms > 0, norms, 1.0)
        return vectors

    def _check_query(self, vector: Any) -> tuple[np.ndarray, float]:
        """The query as a contiguous float32 row (maybe the caller's own array: never written to) and the factor
        that turns its inner products into cosines. The query itself is not normalized: scaling it changes no
        ranking, and every numpy call saved counts here (each runs with caches cold from the graph walk)."""
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if query.shape != (self.dimension,):
            raise Invalid(f"the query vector must have dimension {self.dimension}, got {query.size} values")
        squared = float(np.dot(query, query))
        if not math.isfinite(squared):
            raise Invalid("the query vector must be finite")
        if self.metric != "cosine" or squared == 0.0:
            return query, 1.0
        return query, 1.0 / math.sqrt(squared)

    def delete(self, ids: Iterable[int]) -> None:
        with self._lock.writing():
            self._tombstone([self._row_of[i] for i in map(int, ids) if i in self._row_of])
            self._maybe_compact()

    def _tombstone(self, rows: list[int]) -> None:
        if not rows:
            return
        row_array = np.asarray(rows, dtype=np.int64)
        for row_id in self._row_ids.view[row_array].tolist():
            del self._row_of[row_id]
        self._alive.view[row_array] = False
        self._keywords.delete(row_array)
        self._dead += len(rows)
        self._alive_bits = None

    def _maybe_compact(self) -> None:
        self._alive_bits = None
        if self._dead > COMPACT_DEAD_FRACTION * len(self._alive):
            self.compact()

    def compact(self) -> None:
        """Rebuild the HNSW graph from the live rows only (a full build: minutes at 1M rows)."""
        keep = np.flatnonzero(self._alive.view)
        vectors = np.array(self._vectors()[keep])
        self._index = self._new_index()
        self.ef_search = self._ef_search  # onto the new graph
        self._index.add(vectors)
        self._flat = self._faiss.downcast_index(self._index.storage)
        self._metadata.take(keep)
        self._keywords.take(keep)
        self._row_ids = Growable(np.int64, self._row_ids.view[keep])
        self._alive = Growable(np.bool_, np.ones(len(keep), dtype=bool))
        self._row_of = dict(zip(self._row_ids.view.tolist(), range(len(keep)), strict=True))
        self._dead = 0
        self._alive_bits = None

    # --- search ---

    def search(self, vector: np.ndarray, k: int, *, filter: Mapping[str, Any] | None = None,
               text: str | None = None, mode: str = "SEMANTIC") -> list[Hit]:
        if mode not in SEARCH_MODES:
            raise Invalid(f"mode must be one of {', '.join(SEARCH_MODES)}")
        if not isinstance(k, int) or k < 1:
            raise Invalid("k must be a positive integer")
        if mode == "HYBRID" and (not isinstance(text, str) or not text.strip()):
            raise Invalid("HYBRID search needs the query text")
        query, scale = self._check_query(vector)
        node = compile_filter(filter) if filter is not None else None
        self._lock.acquire_read()
        try:
            allowed = self._allowed(node)
            if mode == "HYBRID":
                rows, fused = self._hybrid(query, scale, k, allowed, str(text))
                scores = fused.tolist()
            else:
                rows, sims = self._nearest(query, k, allowed)
                scores = self._similarity_scores(sims, scale)
            ids = self._row_ids.view.take(rows).tolist()
        finally:
            self._lock.release_read()
        return list(map(Hit, ids, scores))

    def _allowed(self, node: Filter | None) -> Allowed:
        """Rows a search may return: the filter's rows that are alive."""
        total = len(self._row_ids)
        if node is None:
            if not self._dead:
                return Allowed(None, total)
            return Allowed(self._alive.view, total - self._dead, self._alive_bitmap())
        mask = self._metadata.mask(node)
        if self._dead:
            mask &= self._alive.view
        return Allowed(mask, int(np.count_nonzero(mask)))

    def _alive_bitmap(self) -> np.ndarray:
        bits = self._alive_bits
        if bits is None:  # racing readers pack the same bitmap; writers reset it under the write lock
            bits = self._alive_bits = np.packbits(self._alive.view, bitorder="little")
        return bits

    def _nearest(self, query: np.ndarray, k: int, allowed: Allowed) -> tuple[np.ndarray, np.ndarray]:
        total, count = len(self._row_ids), allowed.count
        if not count:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        k = min(k, count)
        if count <= EXACT_SMALL_ROWS or (count <= EXACT_MAX_ROWS and count < EXACT_MAX_FRACTION * total):
            return self._exact(query, k, allowed.rows())
        return self._hnsw(query, k, allowed)

    def _hnsw(self, query: np.ndarray, k: int, allowed: Allowed) -> tuple[np.ndarray, np.ndarray]:
        faiss = self._faiss
        params = selector = bits = None  # all three must stay referenced until search_c returns
        if allowed.mask is not None:
            bits = allowed.bitmap()
            selector = faiss.IDSelectorBitmap(len(allowed.mask), faiss.swig_ptr(bits))
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search, k))
        sims, rows = np.empty(k, dtype=np.float32), np.empty(k, dtype=np.int64)
        # search_c skips the wrapper's conversions and checks: `query` is already a contiguous float32 row
        self._index.search_c(1, faiss.swig_ptr(query), k, faiss.swig_ptr(sims), faiss.swig_ptr(rows), params)
        if rows[k - 1] < 0:  # fewer than k found: FAISS pads the tail with -1
            found = rows >= 0
            return rows[found], sims[found]
        return rows, sims

    def _exact(self, query: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k among `rows`, by FAISS reading the rows in place: ~0.18 µs per 384-d row here, where a
        numpy gather + matmul was 2-4x slower (the copy, and OpenBLAS threads waking up under load)."""
        faiss = self._faiss
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        query = np.ascontiguousarray(query, dtype=np.float32)
        vectors = self._vectors()
        sims, found = np.empty(k, dtype=np.float32), np.empty(k, dtype=np.int64)
        faiss.knn_inner_products_by_idx(faiss.swig_ptr(query), faiss.swig_ptr(vectors), faiss.swig_ptr(rows),
                                        self.dimension, 1, len(vectors), len(rows), k, faiss.swig_ptr(sims),
                                        faiss.swig_ptr(found), len(rows))
        kept = found >= 0
        return found[kept], sims[kept]

    def _vectors(self) -> np.ndarray:
        """The stored vectors as a zero-copy view; valid until the next write (callers hold a lock)."""
        total = self._index.ntotal
        if not total:
            return np.empty((0, self.dimension), dtype=np.float32)
        pointer = self._flat.get_xb()
        return self._faiss.rev_swig_ptr(pointer, total * self.dimension).reshape(total, self.dimension)

    def _similarity_scores(self, sims: np.ndarray, scale: float) -> list[float]:
        """Cosine mapped to [0, 1] as (1 + cos) / 2 (clamped: float32 rounding); a dot product as it is."""
        if self.metric != "cosine":
            return sims.tolist()
        return [min(1.0, max(0.0, 0.5 + 0.5 * scale * sim)) for sim in sims.tolist()]

    def _hybrid(self, query: np.ndarray, scale: float, k: int, allowed: Allowed,
                text: str) -> tuple[np.ndarray, np.ndarray]:
        """Vector and BM25 candidates under the same mask, each rescored on both sides, then fused."""
        pool = max(k, HYBRID_POOL)
        vector_rows, _ = self._nearest(query, pool, allowed)
        keyword_rows, keyword_scores = self._keywords.scores(text, allowed.mask)
        best_keyword_rows, _ = top_k(keyword_rows, keyword_scores, pool)
        candidates = np.union1d(vector_rows, best_keyword_rows)
        if not len(candidates):
            return candidates, np.empty(0, dtype=np.float64)
        semantic = np.array(self._similarity_scores(self._vectors()[candidates] @ query, scale))
        keyword = _lookup(keyword_rows, keyword_scores, candidates)
        return top_k(candidates, self.fusion(semantic, keyword), k)

    # --- serialization ---

    def dump(self) -> bytes:
        faiss = _faiss()
        with self._lock.reading():
            metadata_keys, metadata_arrays = self._metadata.to_arrays()
            keyword_meta, keyword_arrays = self._keywords.to_arrays()
            meta = {"format": _FORMAT, "dimension": self.dimension, "metric": self.metric,
                    "rows": len(self._row_ids), "metadata": metadata_keys, "keywords": keyword_meta}
            arrays = {"hnsw": faiss.serialize_index(self._index), "row_ids": self._row_ids.view,
                      "alive": self._alive.view, **metadata_arrays, **keyword_arrays}
            return pack_arrays(meta, arrays)

    @classmethod
    def from_dump(cls, data: bytes) -> EmbeddedCollection:
        meta, arrays = unpack_arrays(data)
        if meta.get("format") != _FORMAT:
            raise Invalid(f"vector index dump: expected format {_FORMAT!r}, got {meta.get('format')!r}")
        try:
            return cls._restore(meta, arrays)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise Invalid("vector index dump: malformed header or arrays") from exc

    @classmethod
    def _restore(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> EmbeddedCollection:
        rows = int(meta["rows"])
        index = _deserialize(arrays["hnsw"], int(meta["dimension"]), rows)
        # efSearch is not kept: a retuned default applies to indexes dumped before
        collection = cls(int(meta["dimension"]), str(meta["metric"]), index=index)
        row_ids, alive = arrays["row_ids"], arrays["alive"]
        if row_ids.shape != (rows,) or alive.shape != (rows,):
            raise Invalid("vector index dump: row arrays do not match the index")
        collection._row_ids = Growable(np.int64, row_ids)
        collection._alive = Growable(np.bool_, alive)
        collection._dead = rows - int(np.count_nonzero(alive))
        live = np.flatnonzero(alive)
        collection._row_of = dict(zip(row_ids[live].tolist(), live.tolist(), strict=True))
        collection._metadata = MetadataColumns.from_arrays(meta["metadata"], arrays, rows)
        collection._keywords = KeywordIndex.from_arrays(meta["keywords"], arrays, rows)
        return collection


def _lookup(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """values[keys == w] for each w in `wanted` (keys sorted ascending), 0 where a key is absent."""
    if not len(keys):
        return np.zeros(len(wanted), dtype=np.float64)
    position = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[position] == wanted, values[position], 0.0)


def _deserialize(blob: np.ndarray, dimension: int, rows: int) -> Any:
    faiss = _faiss()
    try:
        index = faiss.deserialize_index(blob)  # FAISS copies it; a read-only view will do
    except RuntimeError as exc:
        raise Invalid("vector index dump: the HNSW index cannot be read") from exc
    if not isinstance(index, faiss.IndexHNSWFlat) or index.d != dimension or index.ntotal != rows:
        raise Invalid("vector index dump: the HNSW index does not match its header")
    return index


class EmbeddedStore:
    """The built-in store: everything in process memory, persisted by the caller as one (encrypted) blob."""

    name = "embedded"

    def create(self, dimension: int, metric: str) -> EmbeddedCollection:
        return EmbeddedCollection(dimension, metric)

    def load(self, data: bytes) -> EmbeddedCollection:
        return EmbeddedCollection.from_dump(data)


def builtin_stores() -> list[type]:
    return [EmbeddedStore]

