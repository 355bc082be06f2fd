"""The embedded vector store: FAISS HNSW in process, filters evaluated inside the search, BM25 beside it.

Rows get sequential internal numbers (FAISS's own ids); `row_ids` maps them to the caller's chunk ids.
Deletes and replacements are tombstones honoured by the same bitmap selector as filters; the index is
rebuilt without them once they pass COMPACT_DEAD_FRACTION of the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from outcrop.errors import Invalid
from outcrop.vectorstores.base import METRICS, SEARCH_MODES, Hit, ReadWriteLock, pack_arrays, unpack_arrays
from outcrop.vectorstores.filters import Filter, Growable, MetadataColumns, compile_filter
from outcrop.vectorstores.keyword import KeywordIndex, fuse_min_max, top_k

HNSW_M = 32
EF_CONSTRUCTION = 200
# Smallest efSearch with recall@10 >= 0.95 on bench/vectorstore.py's clustered data at 1M rows (see its results).
EF_SEARCH = 64
# Exact scan instead of HNSW when few rows are allowed: exact costs ~allowed rows, a filtered HNSW walk costs
# ~efSearch / selectivity and loses recall when the filter is selective. Crossover measured by
# bench/vectorstore.py (--crossover): see docs/benchmarks.md.
EXACT_MAX_ROWS = 20_000
EXACT_MAX_FRACTION = 0.05
COMPACT_DEAD_FRACTION = 0.2
HYBRID_POOL = 50  # candidates taken from each of the vector and keyword searches before fusion
_EXACT_CHUNK = 16_384  # rows gathered per matmul in an exact scan (bounds the temporary copy to ~24 MB at 384-d)
_FORMAT = "outcrop.embedded/1"


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise Invalid("the embedded vector store needs FAISS: pip install 'outcrop[kb]'") from exc
    return faiss


class EmbeddedCollection:
    """A Collection on FAISS IndexHNSWFlat (inner product; vectors L2-normalized for cosine)."""

    def __init__(self, dimension: int, metric: str = "cosine", *, ef_search: int = EF_SEARCH,
                 index: Any = None) -> None:
        if not isinstance(dimension, int) or dimension < 1:
            raise Invalid("dimension must be a positive integer")
        if metric not in METRICS:
            raise Invalid(f"metric must be one of {', '.join(METRICS)}")
        faiss = _faiss()
        self.dimension, self.metric, self.ef_search = dimension, metric, ef_search
        self.fusion: Callable[[np.ndarray, np.ndarray], np.ndarray] = fuse_min_max
        self._index = index if index is not None else self._new_index()
        self._index.hnsw.efSearch = ef_search
        self._flat = faiss.downcast_index(self._index.storage)
        self._row_ids = Growable(np.int64)
        self._row_of: dict[int, int] = {}
        self._alive = Growable(np.bool_)
        self._dead = 0
        self._alive_bits: np.ndarray | None = None  # packed `alive`, cached between writes
        self._metadata = MetadataColumns()
        self._keywords = KeywordIndex()
        self._lock = ReadWriteLock()

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
        try:
            id_array = np.asarray(ids, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise Invalid("ids must be 64-bit integers") from exc
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
        self._index.hnsw.efSearch = self.ef_search
        self._index.add(vectors)
        self._flat = _faiss().downcast_index(self._index.storage)
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
        query = self._check_vectors(vector, 1)[0]
        node = compile_filter(filter) if filter is not None else None
        with self._lock.reading():
            mask = self._allowed(node)
            if mode == "HYBRID":
                rows, scores = self._hybrid(query, k, mask, str(text))
            else:
                rows, sims = self._nearest(query, k, mask)
                scores = self._similarity_score(sims)
            ids = self._row_ids.view[rows].tolist()
        return [Hit(i, s) for i, s in zip(ids, scores.tolist(), strict=True)]

    def _allowed(self, node: Filter | None) -> np.ndarray | None:
        """Rows a search may return: the filter's rows that are alive; None when that is every row."""
        if node is None:
            return self._alive.view if self._dead else None
        mask = self._metadata.mask(node)
        if self._dead:
            mask &= self._alive.view
        return mask

    def _nearest(self, query: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        total = len(self._row_ids)
        allowed = total if mask is None else int(np.count_nonzero(mask))
        if not allowed:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if allowed <= EXACT_MAX_ROWS and (allowed < EXACT_MAX_FRACTION * total or allowed <= k * 100):
            rows = np.arange(total) if mask is None else np.flatnonzero(mask)
            return self._exact(query, k, rows)
        return self._hnsw(query, k, mask)

    def _hnsw(self, query: np.ndarray, k: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if mask is None:
            sims, rows = self._index.search(query[None, :], k)
        else:
            faiss = _faiss()
            bits = self._alive_bitmap() if mask is self._alive.view else np.packbits(mask, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.ef_search, k))
            sims, rows = self._index.search(query[None, :], k, params=params)
        found = rows[0] >= 0
        return rows[0][found], sims[0][found]

    def _alive_bitmap(self) -> np.ndarray:
        bits = self._alive_bits
        if bits is None:  # racing readers compute the same bitmap; writers reset it under the write lock
            bits = self._alive_bits = np.packbits(self._alive.view, bitorder="little")
        return bits

    def _exact(self, query: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vectors = self._vectors()
        best_rows, best_sims = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        for start in range(0, len(rows), _EXACT_CHUNK):
            chunk = rows[start: start + _EXACT_CHUNK]
            sims = vectors[chunk] @ query
            best_rows, best_sims = top_k(np.concatenate([best_rows, chunk]), np.concatenate([best_sims, sims]), k)
        return best_rows, best_sims

    def _vectors(self) -> np.ndarray:
        """The stored vectors as a zero-copy view; valid until the next write (callers hold a lock)."""
        total = self._index.ntotal
        if not total:
            return np.empty((0, self.dimension), dtype=np.float32)
        pointer = self._flat.get_xb()
        return _faiss().rev_swig_ptr(pointer, total * self.dimension).reshape(total, self.dimension)

    def _similarity_score(self, sims: np.ndarray) -> np.ndarray:
        """Cosine mapped to [0, 1] as (1 + cos) / 2; a dot product is returned as it is."""
        if self.metric == "cosine":
            return np.clip((1.0 + sims.astype(np.float64)) / 2.0, 0.0, 1.0)
        return sims.astype(np.float64)

    def _hybrid(self, query: np.ndarray, k: int, mask: np.ndarray | None, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Vector and BM25 candidates under the same mask, each rescored on both sides, then fused."""
        pool = max(k, HYBRID_POOL)
        vector_rows, _ = self._nearest(query, pool, mask)
        keyword_rows, keyword_scores = self._keywords.scores(text, mask)
        best_keyword_rows, _ = top_k(keyword_rows, keyword_scores, pool)
        candidates = np.union1d(vector_rows, best_keyword_rows)
        if not len(candidates):
            return candidates, np.empty(0, dtype=np.float64)
        semantic = self._similarity_score(self._vectors()[candidates] @ query)
        keyword = _lookup(keyword_rows, keyword_scores, candidates)
        return top_k(candidates, self.fusion(semantic, keyword), k)

    # --- serialization ---

    def dump(self) -> bytes:
        faiss = _faiss()
        with self._lock.reading():
            metadata_keys, metadata_arrays = self._metadata.to_arrays()
            keyword_meta, keyword_arrays = self._keywords.to_arrays()
            meta = {"format": _FORMAT, "dimension": self.dimension, "metric": self.metric,
                    "ef_search": self.ef_search, "rows": len(self._row_ids), "metadata": metadata_keys,
                    "keywords": keyword_meta}
            arrays = {"hnsw": faiss.serialize_index(self._index), "row_ids": self._row_ids.view,
                      "alive": self._alive.view, **metadata_arrays, **keyword_arrays}
            return pack_arrays(meta, arrays)

    @classmethod
    def from_dump(cls, data: bytes) -> EmbeddedCollection:
        meta, arrays = unpack_arrays(data)
        if meta.get("format") != _FORMAT:
            raise Invalid(f"vector index dump: expected format {_FORMAT!r}, got {meta.get('format')!r}")
        rows = int(meta["rows"])
        index = _deserialize(arrays["hnsw"], int(meta["dimension"]), rows)
        collection = cls(int(meta["dimension"]), str(meta["metric"]), ef_search=int(meta["ef_search"]), index=index)
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
        index = faiss.deserialize_index(np.array(blob))
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

