"""An in-memory Okapi BM25 index over the collection's internal row numbers.

Written by hand on purpose rather than taken from a search library: it must live inside the same encrypted
dump as the vector index, be renumbered with it on compaction, and honour the very same filter mask.
Postings are numpy arrays per term (appended in chunks, merged on first read), so scoring a query is a few
vectorized operations per query term.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from outcrop.errors import Invalid
from outcrop.vectorstores.filters import Growable

K1 = 1.2
B = 0.75
# Lucene's English stop set (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET).
STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
    "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
    "will", "with"))
_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens without stopwords."""
    return [word for word in _WORD.findall(text.lower()) if word not in STOPWORDS]


class KeywordIndex:
    """BM25 (k1=1.2, b=0.75, Lucene's non-negative idf) with tombstoned deletes."""

    def __init__(self) -> None:
        self._term_ids: dict[str, int] = {}
        self._rows: list[list[np.ndarray]] = []  # per term: chunks of row numbers, ascending
        self._tfs: list[list[np.ndarray]] = []  # per term: matching term frequencies
        self._doc_len = Growable(np.int32)
        self._alive = Growable(np.bool_)
        self._live_docs = 0
        self._live_tokens = 0

    @property
    def n_rows(self) -> int:
        return len(self._doc_len)

    def add(self, texts: Sequence[str]) -> None:
        """Index one text per new row (rows continue from `n_rows`)."""
        start = self.n_rows
        new_rows: dict[int, list[int]] = {}
        new_tfs: dict[int, list[int]] = {}
        lengths = np.zeros(len(texts), dtype=np.int32)
        for offset, text in enumerate(texts):
            tokens = tokenize(text)
            lengths[offset] = len(tokens)
            for term, count in Counter(tokens).items():
                term_id = self._term_id(term)
                new_rows.setdefault(term_id, []).append(start + offset)
                new_tfs.setdefault(term_id, []).append(count)
        for term_id, rows in new_rows.items():
            self._rows[term_id].append(np.asarray(rows, dtype=np.int64))
            self._tfs[term_id].append(np.asarray(new_tfs[term_id], dtype=np.int32))
        self._doc_len.extend(lengths)
        self._alive.extend(np.ones(len(texts), dtype=bool))
        self._live_docs += len(texts)
        self._live_tokens += int(lengths.sum())

    def _term_id(self, term: str) -> int:
        term_id = self._term_ids.get(term)
        if term_id is None:
            term_id = self._term_ids[term] = len(self._rows)
            self._rows.append([])
            self._tfs.append([])
        return term_id

    def delete(self, rows: np.ndarray) -> None:
        """Tombstone rows: they stop matching and stop counting in document frequencies and lengths."""
        alive = self._alive.view
        rows = rows[alive[rows]]
        alive[rows] = False
        self._live_docs -= len(rows)
        self._live_tokens -= int(self._doc_len.view[rows].sum())

    def _posting(self, term_id: int) -> tuple[np.ndarray, np.ndarray]:
        rows, tfs = self._rows[term_id], self._tfs[term_id]
        if len(rows) > 1:  # merge the chunks once; concurrent readers would merge to the same arrays
            rows, tfs = [np.concatenate(rows)], [np.concatenate(tfs)]
            self._rows[term_id], self._tfs[term_id] = rows, tfs
        if not rows:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
        return rows[0], tfs[0]

    def scores(self, text: str, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every live row (within `mask`) matching a query term, ascending, with its BM25 score."""
        term_ids = sorted({self._term_ids[t] for t in tokenize(text) if t in self._term_ids})
        if not term_ids or not self._live_docs:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        alive, doc_len = self._alive.view, self._doc_len.view
        avg_len = max(self._live_tokens / self._live_docs, 1e-9)
        found_rows, found_scores = [], []
        for term_id in term_ids:
            rows, tfs = self._posting(term_id)
            live = alive[rows]
            df = int(np.count_nonzero(live))
            if not df:
                continue
            idf = math.log(1.0 + (self._live_docs - df + 0.5) / (df + 0.5))
            keep = live if mask is None else live & mask[rows]
            rows, tf = rows[keep], tfs[keep].astype(np.float64)
            norm = K1 * (1.0 - B + B * doc_len[rows] / avg_len)
            found_rows.append(rows)
            found_scores.append(idf * tf * (K1 + 1.0) / (tf + norm))
        return _sum_by_row(found_rows, found_scores, self.n_rows)

    def search(self, text: str, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k best rows for `text` within `mask`, best first, with their BM25 scores."""
        rows, scores = self.scores(text, mask)
        return top_k(rows, scores, k)

    # --- compaction and serialization: postings as one CSR (offsets per term, rows, tfs) ---

    def _csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        postings = [self._posting(t) for t in range(len(self._rows))]
        lengths = np.fromiter((len(rows) for rows, _ in postings), dtype=np.int64, count=len(postings))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rows = np.concatenate([rows for rows, _ in postings]) if postings else np.empty(0, dtype=np.int64)
        tfs = np.concatenate([tfs for _, tfs in postings]) if postings else np.empty(0, dtype=np.int32)
        return offsets, rows, tfs

    def _set_csr(self, offsets: np.ndarray, rows: np.ndarray, tfs: np.ndarray) -> None:
        bounds = offsets.tolist()
        self._rows = [[rows[lo:hi]] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        self._tfs = [[tfs[lo:hi]] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]

    def take(self, keep: np.ndarray) -> None:
        """Keep only rows `keep` (sorted), renumbered 0..len(keep)-1: compaction."""
        offsets, rows, tfs = self._csr()
        renumber = np.full(self.n_rows, -1, dtype=np.int64)
        renumber[keep] = np.arange(len(keep))
        term_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        rows = renumber[rows]
        kept = rows >= 0
        counts = np.bincount(term_of[kept], minlength=len(offsets) - 1)
        self._set_csr(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), rows[kept], tfs[kept])
        self._doc_len = Growable(np.int32, self._doc_len.view[keep])
        self._alive = Growable(np.bool_, self._alive.view[keep])

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        offsets, rows, tfs = self._csr()
        meta = {"terms": list(self._term_ids), "live_docs": self._live_docs, "live_tokens": self._live_tokens}
        arrays = {"kw.offsets": offsets, "kw.rows": rows, "kw.tfs": tfs, "kw.doc_len": self._doc_len.view,
                  "kw.alive": self._alive.view}
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], n_rows: int) -> KeywordIndex:
        index = cls()
        terms = meta.get("terms", [])
        offsets, rows = arrays["kw.offsets"], np.array(arrays["kw.rows"])
        if not _consistent(len(terms), offsets, rows, arrays, n_rows):
            raise Invalid("vector index dump: corrupt keyword index")
        index._term_ids = {str(term): i for i, term in enumerate(terms)}
        index._set_csr(offsets, rows, np.array(arrays["kw.tfs"]))
        index._doc_len = Growable(np.int32, arrays["kw.doc_len"])
        index._alive = Growable(np.bool_, arrays["kw.alive"])
        index._live_docs, index._live_tokens = int(meta["live_docs"]), int(meta["live_tokens"])
        return index


def _sum_by_row(rows: list[np.ndarray], scores: list[np.ndarray], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-term contributions summed per row (rows ascending). Each term's rows are distinct, so a dense
    accumulator needs no np.add.at; it beats sorting once the postings are a sizeable share of the rows."""
    total = sum(len(r) for r in rows)
    if not total:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    if total * 16 < n_rows:
        unique, inverse = np.unique(np.concatenate(rows), return_inverse=True)
        return unique, np.bincount(inverse, weights=np.concatenate(scores), minlength=len(unique))
    dense = np.zeros(n_rows, dtype=np.float64)
    for term_rows, term_scores in zip(rows, scores, strict=True):
        dense[term_rows] += term_scores
    found = np.flatnonzero(dense)  # every contribution is > 0: idf > 0 and tf >= 1
    return found, dense[found]


def _consistent(n_terms: int, offsets: np.ndarray, rows: np.ndarray, arrays: dict[str, np.ndarray],
                n_rows: int) -> bool:
    """Whether a dumped CSR's offsets and row numbers point inside its arrays."""
    return bool(
        len(offsets) == n_terms + 1 and offsets[0] == 0 and offsets[-1] == len(rows) == len(arrays["kw.tfs"])
        and not np.any(np.diff(offsets) < 0) and arrays["kw.doc_len"].shape == (n_rows,)
        and arrays["kw.alive"].shape == (n_rows,) and (not len(rows) or (rows.min() >= 0 and rows.max() < n_rows)))


def top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k highest-scoring (row, score) pairs, best first (ties: lower row first)."""
    if len(rows) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[part], scores[part]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


# --- hybrid fusion: (semantic score in [0, 1], raw BM25 score) per candidate -> fused score in [0, 1] ---

def fuse_min_max(semantic: np.ndarray, keyword: np.ndarray, weight: float = 0.5) -> np.ndarray:
    """Weighted mean of min-max normalized semantic scores and max-normalized BM25 (OpenSearch's hybrid default).

    BM25 is divided by its maximum rather than min-max scaled so that a candidate matching no query term keeps 0.
    """
    spread = float(semantic.max() - semantic.min()) if len(semantic) else 0.0
    semantic_part = (semantic - semantic.min()) / spread if spread > 0 else np.ones_like(semantic)
    top = float(keyword.max()) if len(keyword) else 0.0
    keyword_part = keyword / top if top > 0 else np.zeros_like(keyword)
    return weight * semantic_part + (1.0 - weight) * keyword_part


def fuse_reciprocal_rank(semantic: np.ndarray, keyword: np.ndarray, constant: int = 60) -> np.ndarray:
    """Reciprocal-rank fusion (Cormack et al. 2009), scaled so that first on both lists scores 1."""
    def reciprocal(scores: np.ndarray, present: np.ndarray) -> np.ndarray:
        ranks = np.empty(len(scores), dtype=np.float64)
        ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
        return np.where(present, 1.0 / (constant + ranks), 0.0)

    fused = reciprocal(semantic, np.ones(len(semantic), dtype=bool)) + reciprocal(keyword, keyword > 0)
    return fused * (constant + 1) / 2.0


def fuse_boost(semantic: np.ndarray, keyword: np.ndarray, weight: float = 0.1) -> np.ndarray:
    """Semantic score plus a bounded keyword boost: `weight` × BM25 / its maximum.

    Unlike min-max fusion, the semantic scale is not stretched over the candidate pool, so close semantic
    scores stay close and the keyword side reorders them only by its own margin; a keyword-only candidate
    still enters the pool and can rise when its terms match strongly. Scaled back into [0, 1]."""
    top = float(keyword.max()) if len(keyword) else 0.0
    boost = weight * keyword / top if top > 0 else np.zeros_like(semantic)
    return (semantic + boost) / (1.0 + weight)  # type: ignore[no-any-return]


def fuse_adaptive(semantic: np.ndarray, keyword: np.ndarray, weight: float = 0.5, top: int = 20,
                  graded: bool = False) -> np.ndarray:
    """Min-max fusion whose keyword weight follows how much BM25 tells apart the best semantic candidates.

    When the query's terms occur in (nearly) all of the `top` semantic candidates, BM25 cannot separate them
    and its weight goes to 0 (the semantic order stands); when they occur in few — an identifier, a rare
    name — the keyword side gets up to `weight`. `graded` measures spread by normalised BM25 instead of
    presence."""
    if not len(semantic):
        return semantic
    best = np.argsort(-semantic, kind="stable")[:top]
    top_score = float(keyword.max())
    if top_score <= 0:
        return fuse_min_max(semantic, keyword, 1.0)
    evidence = keyword[best] / top_score if graded else (keyword[best] > 0).astype(np.float64)
    return fuse_min_max(semantic, keyword, 1.0 - weight * (1.0 - float(evidence.mean())))
