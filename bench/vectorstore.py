"""The embedded vector store (outcrop.vectorstores.embedded) against raw FAISS on clustered synthetic data.

Data: 384-d points from 1,000 Gaussian clusters (centre + spread * N(0, I/d), L2-normalized); queries are fresh
points from the same clusters. Ground truth is exact (chunked matmul). For each size:
  build      EmbeddedCollection.upsert in batches of 10k (ids, vectors, metadata, empty texts), default threads
  reference  raw faiss.IndexHNSWFlat, same M / efConstruction / efSearch, built the same way (or, with
             --reference copy, a deserialized copy of our graph: identical graph, so the QPS ratio is pure overhead)
  unfiltered recall@10 and QPS, ours vs reference, one thread (faiss.omp_set_num_threads(1)), one query per call,
             alternating blocks of queries (ABAB) so both see the same machine load
  filtered   ours only, filters allowing ~10 % (a number equals) and ~1 % (a string equals) of rows; recall
             against the exact filtered ground truth
  memory     dump bytes per million vectors and RSS growth of the build
  ef sweep   recall@10 and QPS of both at several efSearch values (how EF_SEARCH was picked)
--crossover also times both search paths (filtered HNSW walk vs exact scan of the allowed rows) across
selectivities; that is how the EXACT_* thresholds were picked.
A 1M-row build should take ~30 min on 2 busy cores (measured 3.3 min at 100k, 9 min at 300k): use --reference
copy there to build once.

Run: python bench/vectorstore.py [--sizes 100000,1000000] [--queries 1000] [--ef-sweep 16,24,32,48,64]
                                 [--crossover] [--reference build|copy]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import CpuWatch, emit, machine_notes, rss_kib  # noqa: E402

from outcrop.vectorstores import embedded  # noqa: E402

DIM = 384
CLUSTERS = 1000
K = 10
BATCH = 10_000
FILTERS = {"10%": {"equals": {"key": "bucket", "value": 3}},
           "1%": {"equals": {"key": "group", "value": "g42"}}}


def clustered(n: int, centres: np.ndarray, spread: float, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        noise = rng.standard_normal((m, DIM), dtype=np.float32) * np.float32(spread / math.sqrt(DIM))
        block = centres[rng.integers(0, len(centres), m)] + noise
        out[start: start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top(data: np.ndarray, queries: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Exact top-K row numbers per query (inner product), optionally among `allowed` rows only."""
    best_sims = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), K), dtype=np.int64)
    for start in range(0, len(data), 50_000):
        sims = queries @ data[start: start + 50_000].T
        if allowed is not None:
            sims[:, ~allowed[start: start + 50_000]] = -np.inf
        rows = np.broadcast_to(np.arange(start, start + sims.shape[1]), sims.shape)
        all_sims, all_rows = np.hstack([best_sims, sims]), np.hstack([best_rows, rows])
        part = np.argpartition(-all_sims, K - 1, axis=1)[:, :K]
        best_sims, best_rows = np.take_along_axis(all_sims, part, 1), np.take_along_axis(all_rows, part, 1)
    return best_rows


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))


def make_metadata(n: int, rng: np.random.Generator) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    bucket, group, rank = rng.integers(0, 10, n), rng.integers(0, 100, n), rng.integers(0, 10_000, n)
    metadata = [{"bucket": int(b), "group": f"g{g:02d}", "rank": int(r)}
                for b, g, r in zip(bucket.tolist(), group.tolist(), rank.tolist(), strict=True)]
    return metadata, {"10%": bucket == 3, "1%": group == 42, "rank": rank}


def build_ours(data: np.ndarray, metadata: list[dict[str, Any]], ef: int) -> tuple[Any, float, int]:
    rss0 = rss_kib(os.getpid())
    collection = embedded.EmbeddedCollection(DIM, "cosine", ef_search=ef)
    t0 = time.perf_counter()
    for start in range(0, len(data), BATCH):
        stop = min(start + BATCH, len(data))
        collection.upsert(np.arange(start, stop), data[start:stop], metadata[start:stop], [""] * (stop - start))
    return collection, time.perf_counter() - t0, (rss_kib(os.getpid()) - rss0) * 1024


def build_reference(data: np.ndarray, ours: Any, ef: int, how: str) -> tuple[Any, float]:
    import faiss

    t0 = time.perf_counter()
    if how == "copy":
        index = faiss.deserialize_index(faiss.serialize_index(ours._index))
    else:
        index = faiss.IndexHNSWFlat(DIM, embedded.HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = embedded.EF_CONSTRUCTION
        for start in range(0, len(data), BATCH):
            index.add(data[start: start + BATCH])
    index.hnsw.efSearch = ef
    return index, time.perf_counter() - t0


def timed_blocks(runners: dict[str, Any], queries: np.ndarray, rounds: int) -> dict[str, tuple[float, list]]:
    """Alternate blocks of queries between runners (ABAB...); per runner: QPS and its results for every query."""
    blocks = np.array_split(np.arange(len(queries)), rounds)
    elapsed = dict.fromkeys(runners, 0.0)
    results: dict[str, list] = {name: [None] * len(queries) for name in runners}
    for i, block in enumerate(blocks):
        order = list(runners) if i % 2 == 0 else list(reversed(runners))
        for name in order:
            run = runners[name]
            t0 = time.perf_counter()
            out = [run(queries[j]) for j in block]
            elapsed[name] += time.perf_counter() - t0
            for j, r in zip(block, out, strict=True):
                results[name][j] = r
    return {name: (len(queries) / elapsed[name], results[name]) for name in runners}


def ef_sweep(ours: Any, reference: Any, queries: np.ndarray, truth: np.ndarray, values: list[int]) -> list[dict]:
    """Recall@10 and QPS (one thread) of ours and the reference at several efSearch values."""
    rows = []
    for ef in values:
        ours.ef_search = reference.hnsw.efSearch = ef
        runs = timed_blocks({"ours": lambda q: [h.id for h in ours.search(q, K)],
                             "faiss": lambda q: reference.search(q[None, :], K)[1][0].tolist()}, queries, 4)
        rows.append({"ef": ef, "recall_ours": round(recall(runs["ours"][1], truth), 4),
                     "recall_faiss": round(recall(runs["faiss"][1], truth), 4),
                     "qps_ours": round(runs["ours"][0]), "qps_faiss": round(runs["faiss"][0]),
                     "qps_ratio": round(runs["ours"][0] / runs["faiss"][0], 3)})
        print(f"  ef sweep {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def time_path(collection: Any, path: str, queries: np.ndarray, allowed: np.ndarray) -> tuple[float, list]:
    """One search path of ours, forced: the HNSW walk with the filter's bitmap, or the exact scan (mask to rows
    included, as in `EmbeddedCollection._nearest`)."""
    t0 = time.perf_counter()
    if path == "hnsw":
        found = [collection._hnsw(q, K, embedded.Allowed(allowed, int(allowed.sum())))[0].tolist() for q in queries]
    else:
        found = [collection._exact(q, K, np.flatnonzero(allowed))[0].tolist() for q in queries]
    return time.perf_counter() - t0, found


def crossover(collection: Any, queries: np.ndarray, data: np.ndarray, rank: np.ndarray) -> list[dict[str, Any]]:
    """Filtered HNSW walk vs exact scan of the allowed rows, across selectivities (ours, private paths)."""
    rows = []
    for fraction in (0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5):
        allowed = rank < fraction * 10_000
        truth = exact_top(data, queries, allowed)
        entry: dict[str, Any] = {"allowed_fraction": fraction, "allowed_rows": int(allowed.sum())}
        for path in ("hnsw", "exact"):
            seconds, found = time_path(collection, path, queries, allowed)
            entry[f"{path}_ms"] = round(seconds / len(queries) * 1e3, 3)
            entry[f"{path}_recall"] = round(recall(found, truth), 4)
        rows.append(entry)
        print(f"  crossover {entry}", file=sys.stderr, flush=True)
    return rows


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    import faiss

    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((CLUSTERS, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data, queries = clustered(n, centres, args.spread, rng), clustered(args.queries, centres, args.spread, rng)
    metadata, masks = make_metadata(n, rng)
    build_threads = faiss.omp_get_max_threads()
    ours, build_s, rss_growth = build_ours(data, metadata, args.ef)
    del metadata
    print(f"n={n}: ours built in {build_s:.1f} s", file=sys.stderr, flush=True)
    reference, reference_s = build_reference(data, ours, args.ef, args.reference)
    dump_bytes = len(ours.dump())
    truth = exact_top(data, queries)
    faiss.omp_set_num_threads(1)
    runs = timed_blocks({"ours": lambda q: [h.id for h in ours.search(q, K)],
                         "faiss": lambda q: reference.search(q[None, :], K)[1][0].tolist()}, queries, args.rounds)
    result: dict[str, Any] = {
        "n": n, "build_threads": build_threads, "search_threads": 1, "ef_search": args.ef,
        "build_s": round(build_s, 1), "reference_build_s": round(reference_s, 1), "reference": args.reference,
        "recall_ours": round(recall(runs["ours"][1], truth), 4), "recall_faiss": round(recall(runs["faiss"][1], truth), 4),
        "qps_ours": round(runs["ours"][0]), "qps_faiss": round(runs["faiss"][0]),
        "qps_ratio": round(runs["ours"][0] / runs["faiss"][0], 3),
        "dump_mb_per_million": round(dump_bytes / n * 1e6 / 1e6, 1), "rss_growth_mb_per_million": round(rss_growth / n, 1),
    }
    for label, spec in FILTERS.items():
        filtered_truth = exact_top(data, queries, masks[label])
        qps, found = timed_blocks({"ours": lambda q, spec=spec: [h.id for h in ours.search(q, K, filter=spec)]},
                                  queries, 1)["ours"]
        result[f"filtered_{label}"] = {"qps": round(qps), "recall": round(recall(found, filtered_truth), 4),
                                       "allowed_rows": int(masks[label].sum())}
    if args.ef_sweep:
        result["ef_sweep"] = ef_sweep(ours, reference, queries, truth, [int(e) for e in args.ef_sweep.split(",")])
        ours.ef_search = reference.hnsw.efSearch = args.ef
    if args.crossover:
        result["crossover"] = crossover(ours, queries[: args.crossover_queries], data, masks["rank"])
    faiss.omp_set_num_threads(build_threads)
    return result


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| n | build s (ours / FAISS) | recall@10 ours / FAISS | QPS ours / FAISS (ratio) | filtered 10 %: QPS, recall "
             "| filtered 1 %: QPS, recall | dump MB per 1M | RSS growth MB per 1M |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        f10, f1 = r["filtered_10%"], r["filtered_1%"]
        lines.append(f"| {r['n']:,} | {r['build_s']} / {r['reference_build_s']} ({r['reference']}) | {r['recall_ours']} / "
                     f"{r['recall_faiss']} | {r['qps_ours']:,} / {r['qps_faiss']:,} ({r['qps_ratio']}) | "
                     f"{f10['qps']:,}, {f10['recall']} | {f1['qps']:,}, {f1['recall']} | {r['dump_mb_per_million']} | "
                     f"{r['rss_growth_mb_per_million']} |")
    for r in results:
        if "ef_sweep" in r:
            lines += ["", f"efSearch sweep at n={r['n']:,} (one thread):", "",
                      "| efSearch | recall@10 ours / FAISS | QPS ours / FAISS (ratio) |", "|---|---|---|"]
            lines += [f"| {e['ef']} | {e['recall_ours']} / {e['recall_faiss']} | {e['qps_ours']:,} / {e['qps_faiss']:,} "
                      f"({e['qps_ratio']}) |" for e in r["ef_sweep"]]
        if "crossover" in r:
            lines += ["", f"Crossover at n={r['n']:,} (ms per query, recall@10):", "",
                      "| allowed | rows | HNSW ms | HNSW recall | exact ms | exact recall |", "|---|---|---|---|---|---|"]
            lines += [f"| {c['allowed_fraction']:.1%} | {c['allowed_rows']:,} | {c['hnsw_ms']} | {c['hnsw_recall']} | "
                      f"{c['exact_ms']} | {c['exact_recall']} |" for c in r["crossover"]]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated collection sizes")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=10, help="alternating blocks in the unfiltered QPS comparison")
    ap.add_argument("--ef", type=int, default=embedded.EF_SEARCH)
    ap.add_argument("--spread", type=float, default=1.0, help="cluster noise norm relative to the centre")
    ap.add_argument("--reference", choices=("build", "copy"), default="build")
    ap.add_argument("--ef-sweep", default="16,24,32,48,64", help="efSearch values to sweep ('' for none)")
    ap.add_argument("--crossover", action="store_true")
    ap.add_argument("--crossover-queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    watch = CpuWatch().__enter__()
    results = [measure(int(size), args) for size in args.sizes.split(",")]
    print(table(results), flush=True)
    emit({"bench": "vectorstore", "machine": machine_notes(), "dim": DIM, "clusters": CLUSTERS, "k": K,
          "spread": args.spread, "m": embedded.HNSW_M, "ef_construction": embedded.EF_CONSTRUCTION,
          "exact_small_rows": embedded.EXACT_SMALL_ROWS, "exact_max_rows": embedded.EXACT_MAX_ROWS, "exact_max_fraction": embedded.EXACT_MAX_FRACTION,
          "results": results, "cpu_contention": watch.summary()}, "vectorstore")


if __name__ == "__main__":
    main()
