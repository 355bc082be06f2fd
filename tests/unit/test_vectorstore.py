"""The embedded vector store against brute force: search, filters, tombstones, compaction, dumps, BM25, hybrid."""

from __future__ import annotations

import operator
import threading
from typing import Any

import numpy as np
import pytest

pytest.importorskip("faiss")

from outcrop.errors import Invalid  # noqa: E402
from outcrop.vectorstores import embedded  # noqa: E402
from outcrop.vectorstores.embedded import EmbeddedCollection, EmbeddedStore, builtin_stores  # noqa: E402
from outcrop.vectorstores.filters import MetadataColumns, compile_filter  # noqa: E402
from outcrop.vectorstores.keyword import KeywordIndex, fuse_min_max, tokenize  # noqa: E402

DIM = 24


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_force(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int,
                allowed: np.ndarray | None = None) -> list[int]:
    sims = unit(vectors) @ unit(query)
    if allowed is not None:
        sims = np.where(allowed, sims, -np.inf)
    order = np.argsort(-sims, kind="stable")[:k]
    return [int(ids[i]) for i in order if np.isfinite(sims[i])]


def filled(n: int, seed: int = 0, metadata: list[dict[str, Any]] | None = None,
           texts: list[str] | None = None) -> tuple[EmbeddedCollection, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    collection = EmbeddedStore().create(DIM, "cosine")
    collection.upsert(ids, vectors, metadata or [{}] * n, texts or [""] * n)
    return collection, vectors, ids


@pytest.fixture
def force_hnsw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "EXACT_SMALL_ROWS", 0)
    monkeypatch.setattr(embedded, "EXACT_MAX_ROWS", 0)


# --- vector search ---

def test_small_collection_search_is_exact_with_mapped_scores() -> None:
    collection, vectors, ids = filled(1500)
    rng = np.random.default_rng(1)
    for query in rng.standard_normal((10, DIM)).astype(np.float32):
        hits = collection.search(query, 10)
        assert [h.id for h in hits] == brute_force(vectors, ids, query, 10)
        position = {int(i): p for p, i in enumerate(ids)}
        cosines = unit(vectors[[position[h.id] for h in hits]]) @ unit(query)
        expected = (1 + cosines) / 2
        assert np.allclose([h.score for h in hits], expected, atol=1e-5)
        assert all(0.0 <= h.score <= 1.0 for h in hits)


def test_hnsw_search_has_high_recall(force_hnsw: None) -> None:
    collection, vectors, ids = filled(3000)
    queries = np.random.default_rng(2).standard_normal((30, DIM)).astype(np.float32)
    found = [{h.id for h in collection.search(q, 10)} for q in queries]
    recall = np.mean([len(f & set(brute_force(vectors, ids, q, 10))) / 10 for f, q in zip(found, queries, strict=True)])
    assert recall >= 0.95


def test_upsert_replaces_and_delete_removes() -> None:
    collection, vectors, ids = filled(500)
    target = int(ids[7])
    fresh = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
    collection.upsert([target], fresh[None, :], [{"v": 2}], ["replaced"])
    assert len(collection) == 500
    assert collection.search(fresh, 1)[0].id == target
    assert collection.search(vectors[7], 500, filter={"equals": {"key": "v", "value": 2}})[0].id == target
    collection.delete([target, 10**12])  # an unknown id is ignored
    assert len(collection) == 499
    assert target not in {h.id for h in collection.search(fresh, 50)}


def test_invalid_writes_and_queries_change_nothing() -> None:
    collection, vectors, ids = filled(100)
    with pytest.raises(Invalid, match="dimension"):
        collection.upsert([1], np.zeros((1, DIM + 1)), [{}], [""])
    with pytest.raises(Invalid, match="unique"):
        collection.upsert([1, 1], np.ones((2, DIM)), [{}, {}], ["", ""])
    with pytest.raises(Invalid, match="metadata"):
        collection.upsert([1], np.ones((1, DIM)), [{"bad": {"nested": 1}}], [""])
    with pytest.raises(Invalid, match="finite"):
        collection.upsert([1], np.full((1, DIM), np.nan), [{}], [""])
    with pytest.raises(Invalid, match="HYBRID"):
        collection.search(vectors[0], 5, mode="HYBRID")
    with pytest.raises(Invalid, match="mode"):
        collection.search(vectors[0], 5, mode="KEYWORD")
    with pytest.raises(Invalid, match="dimension"):
        collection.search(vectors[0][:5], 5)
    assert len(collection) == 100 and len(collection._row_ids) == 100
    assert collection.search(vectors[0], 1)[0].id == ids[0]


def test_dot_metric_keeps_raw_inner_products() -> None:
    collection = EmbeddedCollection(3, "dot")
    collection.upsert([1, 2], np.array([[2.0, 0, 0], [0, 1.0, 0]]), [{}, {}], ["", ""])
    hits = collection.search(np.array([3.0, 1.0, 0]), 2)
    assert [(h.id, round(h.score, 4)) for h in hits] == [(1, 6.0), (2, 1.0)]


# --- filters: compiled masks against a brute-force evaluator ---

def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, int | float):
        return "n"
    return "s" if isinstance(value, str) else None


def _same(a: Any, b: Any) -> bool:
    return _kind(a) is not None and _kind(a) == _kind(b) and a == b


_COMPARE = {"greaterThan": operator.gt, "greaterThanOrEquals": operator.ge, "lessThan": operator.lt,
            "lessThanOrEquals": operator.le}


def matches(meta: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Bedrock's filter semantics as documented in outcrop.vectorstores.filters, one row at a time."""
    ((op, body),) = spec.items()
    if op == "andAll":
        return all(matches(meta, child) for child in body)
    if op == "orAll":
        return any(matches(meta, child) for child in body)
    if op in ("notEquals", "notIn"):
        return not matches(meta, {"equals" if op == "notEquals" else "in": body})
    value, wanted = meta.get(body["key"]), body["value"]
    if value is None:
        return False
    if op == "equals":
        return _same(value, wanted)
    if op == "in":
        return any(_same(value, w) for w in wanted)
    if op in _COMPARE:
        return _kind(value) == _kind(wanted) in ("n", "s") and _COMPARE[op](value, wanted)
    if op == "startsWith":
        return isinstance(value, str) and value.startswith(wanted)
    if op == "listContains":
        return isinstance(value, list) and any(_same(e, wanted) for e in value)
    assert op == "stringContains"
    strings = [value] if isinstance(value, str) else [e for e in value if isinstance(e, str)] if isinstance(value, list) else []
    return any(wanted in s for s in strings)


WORDS = ["alpha", "beta", "alphabet", "gamma", "Beta", "delta", ""]


def random_value(rng: np.random.Generator) -> Any:
    choice = rng.integers(0, 8)
    if choice == 0:
        return None  # missing
    if choice == 1:
        return int(rng.integers(-3, 4))
    if choice == 2:
        return float(rng.integers(-6, 7)) / 2
    if choice == 3:
        return bool(rng.integers(0, 2))
    if choice in (4, 5):
        return WORDS[rng.integers(0, len(WORDS))]
    if choice == 6:
        return [WORDS[i] for i in rng.integers(0, len(WORDS), rng.integers(0, 4))]
    return [int(rng.integers(0, 3)), bool(rng.integers(0, 2)), "gamma"][: rng.integers(1, 4)]


def random_metadata(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row = {key: random_value(rng) for key in ("a", "b", "c")}
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def random_condition(rng: np.random.Generator) -> dict[str, Any]:
    ops = ["equals", "notEquals", "greaterThan", "greaterThanOrEquals", "lessThan", "lessThanOrEquals", "in",
           "notIn", "startsWith", "listContains", "stringContains"]
    op = ops[rng.integers(0, len(ops))]
    key = ["a", "b", "c", "absent"][rng.integers(0, 4)]
    scalars = [1, 0, -1.5, 2.0, True, False, "alpha", "beta", "gamma", "", "zeta"]
    if op in ("in", "notIn"):
        value: Any = [scalars[i] for i in rng.integers(0, len(scalars), rng.integers(0, 4))]
    elif op in ("startsWith", "stringContains"):
        value = ["al", "a", "ph", "B", "", "zz"][rng.integers(0, 6)]
    elif op in _COMPARE:
        value = [1, -1.5, 0.5, "alpha", "b", ""][rng.integers(0, 6)]
    else:
        value = scalars[rng.integers(0, len(scalars))]
    return {op: {"key": key, "value": value}}


def random_filter(rng: np.random.Generator, depth: int = 0) -> dict[str, Any]:
    if depth < 2 and rng.random() < 0.4:
        op = "andAll" if rng.random() < 0.5 else "orAll"
        return {op: [random_filter(rng, depth + 1) for _ in range(rng.integers(2, 4))]}
    return random_condition(rng)


def test_every_operator_matches_brute_force() -> None:
    metadata = random_metadata(400, seed=4)
    columns = MetadataColumns()
    columns.append(metadata[:150])
    columns.append(metadata[150:])  # two batches: keys first seen in the second one are back-filled
    rng = np.random.default_rng(5)
    seen_ops = set()
    for _ in range(600):
        spec = random_filter(rng)
        seen_ops.add(next(iter(spec)))
        expected = np.array([matches(row, spec) for row in metadata])
        assert np.array_equal(columns.mask(compile_filter(spec)), expected), spec
    assert {"andAll", "orAll", "equals", "stringContains"} <= seen_ops


@pytest.mark.parametrize(("spec", "expected"), [
    ({"equals": {"key": "a", "value": 1}}, [True, False, False, False, False]),
    ({"notEquals": {"key": "a", "value": 1}}, [False, True, True, True, True]),  # missing key: "not equal"
    ({"greaterThan": {"key": "a", "value": 0}}, [True, False, False, False, False]),  # "2" is a string
    ({"lessThan": {"key": "a", "value": "3"}}, [False, True, False, False, False]),
    ({"equals": {"key": "a", "value": True}}, [False, False, True, False, False]),  # True is not 1
    ({"listContains": {"key": "a", "value": "x"}}, [False, False, False, True, False]),
    ({"stringContains": {"key": "a", "value": "y"}}, [False, False, False, True, False]),
    ({"in": {"key": "a", "value": ["2", 1]}}, [True, True, False, False, False]),
    ({"notIn": {"key": "a", "value": ["2", 1]}}, [False, False, True, True, True]),
])
def test_filter_semantics(spec: dict[str, Any], expected: list[bool]) -> None:
    columns = MetadataColumns()
    columns.append([{"a": 1}, {"a": "2"}, {"a": True}, {"a": ["x", "xyz"]}, {"b": 1}])
    assert columns.mask(compile_filter(spec)).tolist() == expected


@pytest.mark.parametrize(("spec", "message"), [
    ({"andAll": [{"equals": {"key": "a", "value": 1}}]}, "filter.andAll must list at least 2 filters"),
    ({"orAll": {"equals": {"key": "a", "value": 1}}}, "filter.orAll must list at least 2 filters"),
    ({"foo": {"key": "a", "value": 1}}, "unknown filter operator 'foo'"),
    ({"in": {"key": "a", "value": 1}}, "filter.in.value must be a list"),
    ({"notIn": {"key": "a", "value": [{"x": 1}]}}, r"filter.notIn.value\[0\] must be a string, number or boolean"),
    ({"equals": {"key": "", "value": 1}}, "filter.equals.key must be a non-empty string"),
    ({"equals": {"key": "a"}}, "filter.equals.value is required"),
    ({"equals": {"key": "a", "value": 1, "extra": 2}}, "unknown field"),
    ({"startsWith": {"key": "a", "value": 3}}, "filter.startsWith.value must be a string"),
    ({"greaterThan": {"key": "a", "value": True}}, "filter.greaterThan.value must be a number or a string"),
    ({"equals": {"key": "a", "value": 1}, "notEquals": {"key": "a", "value": 1}}, "exactly one operator"),
    ({"andAll": [{"equals": {"key": "a", "value": 1}}, {"bar": {}}]}, "unknown filter operator 'bar' in filter.andAll"),
    ({"orAll": [{"equals": {"key": "a", "value": 1}}, {"andAll": []}]}, r"filter.orAll\[1\].andAll must list"),
    ([], "filter must be an object"),
])
def test_malformed_filters_are_invalid(spec: Any, message: str) -> None:
    collection, vectors, _ = filled(20)
    with pytest.raises(Invalid, match=message):
        collection.search(vectors[0], 3, filter=spec)


def _paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    taken: list[str] = []
    for name in ("_exact", "_hnsw"):
        original = getattr(EmbeddedCollection, name)

        def spy(self: Any, *args: Any, _original: Any = original, _name: str = name) -> Any:
            taken.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(EmbeddedCollection, name, spy)
    return taken


def test_selective_filter_scans_exactly_and_broad_filter_walks_hnsw(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "EXACT_SMALL_ROWS", 100)
    monkeypatch.setattr(embedded, "EXACT_MAX_ROWS", 500)
    n = 3000
    metadata = [{"shard": i % 100, "half": i % 2 == 0} for i in range(n)]
    collection, vectors, ids = filled(n, seed=6, metadata=metadata)
    taken = _paths(monkeypatch)
    queries = np.random.default_rng(7).standard_normal((20, DIM)).astype(np.float32)
    shard = np.array([m["shard"] for m in metadata])
    selective = {"in": {"key": "shard", "value": [3, 4, 5]}}  # 90 rows: exact
    for q in queries:
        assert [h.id for h in collection.search(q, 10, filter=selective)] == brute_force(
            vectors, ids, q, 10, np.isin(shard, [3, 4, 5]))
    assert set(taken) == {"_exact"}
    taken.clear()
    broad = {"equals": {"key": "half", "value": True}}  # 1,500 rows: the HNSW walk with the bitmap
    half = np.arange(n) % 2 == 0
    allowed_ids = set(ids[half].tolist())
    recalls = []
    for q in queries:
        hits = [h.id for h in collection.search(q, 10, filter=broad)]
        assert len(hits) == 10 and set(hits) <= allowed_ids
        recalls.append(len(set(hits) & set(brute_force(vectors, ids, q, 10, half))) / 10)
    assert set(taken) == {"_hnsw"} and np.mean(recalls) >= 0.95


def test_tombstones_then_compaction(force_hnsw: None) -> None:
    n = 1000
    metadata = [{"tag": "even" if i % 2 == 0 else "odd"} for i in range(n)]
    texts = [f"row {i} " + ("walrus" if i % 50 == 0 else "plain") for i in range(n)]
    collection, vectors, ids = filled(n, seed=8, metadata=metadata, texts=texts)
    collection.fusion = fuse_min_max  # equal weights: these test the mechanism, not the tuned default
    collection.delete(ids[:150].tolist())  # 15 %: tombstones only
    assert collection._dead == 150 and len(collection) == 850
    query = vectors[0]
    hits = [h.id for h in collection.search(query, 20)]
    assert not set(hits) & set(ids[:150].tolist())
    collection.delete(ids[150:250].tolist())  # 25 % dead: compacted
    assert collection._dead == 0 and len(collection._row_ids) == 750 == len(collection)
    alive = np.arange(n) >= 250
    even = alive & (np.arange(n) % 2 == 0)
    assert [h.id for h in collection.search(query, 10, filter={"equals": {"key": "tag", "value": "even"}})][:3] == \
        brute_force(vectors, ids, query, 3, even)
    walrus = {h.id for h in collection.search(query, 16, text="walrus", mode="HYBRID")}
    assert {int(ids[i]) for i in range(250, n, 50)} <= walrus


def test_dump_and_load_give_identical_results() -> None:
    n = 800
    metadata = random_metadata(n, seed=9)
    texts = [f"document {i} about {WORDS[i % len(WORDS)]} and {'otters' if i % 7 == 0 else 'rivers'}" for i in range(n)]
    collection, vectors, ids = filled(n, seed=10, metadata=metadata, texts=texts)
    collection.delete(ids[:50].tolist())
    loaded = EmbeddedStore().load(collection.dump())
    assert len(loaded) == len(collection) and loaded.metric == "cosine" and loaded.dimension == DIM
    rng = np.random.default_rng(11)
    for q in rng.standard_normal((5, DIM)).astype(np.float32):
        spec = random_filter(rng)
        for kwargs in ({}, {"filter": spec}, {"text": "otters", "mode": "HYBRID"}):
            assert collection.search(q, 10, **kwargs) == loaded.search(q, 10, **kwargs)
    loaded.upsert([10**9], vectors[:1] * -1, [{"a": "new"}], ["fresh"])
    assert loaded.search(vectors[0] * -1, 1)[0].id == 10**9


def test_corrupt_dumps_are_invalid() -> None:
    collection, _, _ = filled(30)
    data = collection.dump()
    for broken in (b"", b"not a dump at all", data[:100], data[: len(data) // 2]):
        with pytest.raises(Invalid):
            EmbeddedStore().load(broken)


# --- keyword search and hybrid ---

def test_tokenizer_lowercases_and_drops_stopwords() -> None:
    assert tokenize("The Quick, brown FOX is in the den_2!") == ["quick", "brown", "fox", "den_2"]


def test_bm25_scores_follow_okapi() -> None:
    index = KeywordIndex()
    index.add(["apple banana", "apple apple cherry cherry", "banana"])
    rows, scores = index.search("apple", 3)
    # N=3, df=2: idf = ln(1 + 1.5/2.5); avgdl = 7/3
    idf = np.log(1 + 1.5 / 2.5)

    def bm25(tf: int, dl: int) -> float:
        return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / (7 / 3)))

    assert rows.tolist() == [1, 0]
    assert np.allclose(scores, [bm25(2, 4), bm25(1, 2)])
    index.delete(np.array([1]))
    assert index.search("apple", 3)[0].tolist() == [0]
    assert index.search("apple", 3, mask=np.array([False, True, True]))[0].tolist() == []


def naive_bm25(docs: list[list[str]], alive: list[bool], query: list[str]) -> dict[int, float]:
    live = [d for d, a in zip(docs, alive, strict=True) if a]
    n, avg = len(live), sum(map(len, live)) / len(live)
    out: dict[int, float] = {}
    for term in set(query):
        df = sum(term in d for d in live)
        for i, doc in enumerate(docs):
            if alive[i] and term in doc:
                tf = doc.count(term)
                idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
                out[i] = out.get(i, 0.0) + idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len(doc) / avg))
    return out


def test_bm25_matches_a_naive_implementation() -> None:
    rng = np.random.default_rng(15)
    vocab = ["common"] * 6 + [f"w{i}" for i in range(40)]
    docs = [[vocab[j] for j in rng.integers(0, len(vocab), rng.integers(1, 12))] for _ in range(500)]
    index = KeywordIndex()
    index.add([" ".join(d) for d in docs[:300]])
    index.add([" ".join(d) for d in docs[300:]])
    index.delete(np.arange(0, 500, 9))
    alive = [i % 9 != 0 for i in range(500)]
    for query in (["common"], ["w3"], ["w5", "common", "w7"], ["absent"]):  # dense and sparse accumulation
        rows, scores = index.scores(" ".join(query))
        assert dict(zip(rows.tolist(), scores.tolist(), strict=True)) == pytest.approx(naive_bm25(docs, alive, query))


def test_bm25_ranks_the_exact_term_document_first() -> None:
    texts = [f"general notes about shipping and invoices number {i}" for i in range(300)]
    texts[123] = "the quarterly zeppelin maintenance schedule"
    collection, vectors, ids = filled(300, seed=12, texts=texts)
    collection.fusion = fuse_min_max  # equal weights: these test the mechanism, not the tuned default
    rows, _ = collection._keywords.search("zeppelin schedule", 5)
    assert int(collection._row_ids.view[rows[0]]) == ids[123]
    hits = collection.search(vectors[5], 5, text="Zeppelin", mode="HYBRID")
    assert hits[0].id == ids[123] or ids[123] in {h.id for h in hits}


def test_hybrid_finds_documents_only_keyword_search_sees() -> None:
    n = 400
    texts = ["ordinary text about weather"] * n
    texts[77] = "the xylophone recital"
    metadata = [{"group": i % 4} for i in range(n)]
    collection, vectors, ids = filled(n, seed=13, metadata=metadata, texts=texts)
    collection.fusion = fuse_min_max  # equal weights: these test the mechanism, not the tuned default
    query = -vectors[77]  # as far as possible from the keyword match
    semantic = [h.id for h in collection.search(query, 5)]
    hybrid = collection.search(query, 5, text="xylophone", mode="HYBRID")
    assert ids[77] not in semantic and ids[77] in {h.id for h in hybrid}
    assert all(0.0 <= h.score <= 1.0 for h in hybrid)
    excluded = collection.search(query, 5, text="xylophone", mode="HYBRID",
                                 filter={"notEquals": {"key": "group", "value": 77 % 4}})
    assert ids[77] not in {h.id for h in excluded}


# --- plumbing ---

def test_concurrent_searches_and_writes() -> None:
    collection, vectors, ids = filled(600, seed=14)
    errors: list[BaseException] = []

    def search() -> None:
        try:
            for q in vectors[:100]:
                assert len(collection.search(q, 5)) == 5
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(0, 200, 20):
        batch = np.arange(10**6 + start, 10**6 + start + 20)
        collection.upsert(batch, vectors[start: start + 20], [{}] * 20, [""] * 20)
        collection.delete(batch[:5].tolist())
    for t in threads:
        t.join()
    assert not errors and len(collection) == 600 + 150


def test_builtin_store_registration() -> None:
    assert builtin_stores() == [EmbeddedStore] and EmbeddedStore.name == "embedded"


def test_adaptive_fusion_weighs_keywords_only_when_they_discriminate() -> None:
    from outcrop.vectorstores.keyword import fuse_adaptive

    semantic = np.array([0.9, 0.8, 0.7, 0.6, 0.2])
    everywhere = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # every top candidate has the terms: the semantic order stands
    assert list(np.argsort(-fuse_adaptive(semantic, everywhere, top=4))) == [0, 1, 2, 3, 4]
    rare = np.array([0.0, 0.0, 0.0, 0.0, 9.0])  # only one candidate has the rare term: it rises
    assert np.argmax(fuse_adaptive(semantic, rare, weight=0.5, top=4)) in (0, 4)
    assert fuse_adaptive(semantic, rare, weight=0.5, top=4)[4] > fuse_adaptive(semantic, everywhere * 0, top=4)[4]
    assert list(fuse_adaptive(semantic, np.zeros(5))) == list((semantic - 0.2) / 0.7)
