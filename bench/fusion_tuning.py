"""Choose HYBRID's fusion on half of the labelled set (odd topics), check it on the other half (even topics).

Same corpus and pipeline as bench/retrieval_quality.py; only the collection's fusion function changes
between runs, so one ingestion serves every candidate.

    .venv/bin/python bench/fusion_tuning.py [--limit-queries 100]
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import retrieval_set  # noqa: E402
from bench.retrieval_quality import SEED, ingest, metrics, ranked_docs  # noqa: E402
from outcrop.server.deps import Services  # noqa: E402
from outcrop.settings import Settings  # noqa: E402
from outcrop.storage.tables import KnowledgeBase  # noqa: E402
from outcrop.vectorstores.keyword import fuse_adaptive, fuse_boost, fuse_min_max, fuse_reciprocal_rank  # noqa: E402

CANDIDATES: dict[str, Callable[..., object] | None] = {
    "SEMANTIC": None,
    **{f"min-max w={w}": functools.partial(fuse_min_max, weight=w) for w in (0.5, 0.6, 0.7, 0.8)},
    **{f"boost λ={w}": functools.partial(fuse_boost, weight=w) for w in (0.02, 0.05, 0.1, 0.2)},
    **{f"adaptive w={w}": functools.partial(fuse_adaptive, weight=w) for w in (0.3, 0.5)},
    **{f"adaptive graded w={w}": functools.partial(fuse_adaptive, weight=w, graded=True) for w in (0.3, 0.5)},
    "RRF k=60": fuse_reciprocal_rank,
}


def evaluate(svc: Services, kb_id: str, queries: dict[str, str], qrels: dict[str, set[str]], mode: str
             ) -> dict[str, float]:
    scores = [metrics(ranked_docs(svc, kb_id, queries[q], {"overrideSearchType": mode}), qrels[q]) for q in queries]
    return {k: round(sum(s[k] for s in scores) / len(scores), 4) for k in ("recall@5", "MRR", "nDCG@10")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit-queries", type=int, default=100)
    args = parser.parse_args()
    documents, queries, qrels = retrieval_set.load(args.limit_queries)
    ordered = sorted(queries)
    halves = {"dev": {q: queries[q] for q in ordered[0::2]}, "test": {q: queries[q] for q in ordered[1::2]}}
    home = Path(tempfile.mkdtemp(prefix="outcrop-bench-fusion-"))
    try:
        if SEED.is_dir():
            (home / "models").symlink_to(SEED)
        svc = Services.build(Settings(home=home))
        svc.accounts.bootstrap()
        kb_id, _ = ingest(svc, home / "files" / "segments", documents)
        with svc.identity.sessions() as session:
            kb = session.get(KnowledgeBase, kb_id)
            assert kb is not None
            session.expunge(kb)
        collection = svc.knowledge.indexes.collection(kb)
        default = collection.fusion  # type: ignore[attr-defined]
        results = {}
        for name, fusion in CANDIDATES.items():
            collection.fusion = fusion or default  # type: ignore[attr-defined]
            mode = "SEMANTIC" if fusion is None else "HYBRID"
            results[name] = {half: evaluate(svc, kb_id, qs, qrels, mode) for half, qs in halves.items()}
            print(name, json.dumps(results[name]))
        print("\n| fusion | dev MRR | dev nDCG@10 | test MRR | test nDCG@10 | test recall@5 |")
        print("|---|---|---|---|---|---|")
        for name, row in results.items():
            print(f"| {name} | {row['dev']['MRR']:.3f} | {row['dev']['nDCG@10']:.3f} | {row['test']['MRR']:.3f} | "
                  f"{row['test']['nDCG@10']:.3f} | {row['test']['recall@5']:.3f} |")
        (ROOT / "bench" / "results" / "fusion_tuning.json").write_text(json.dumps(results, indent=2))
        svc.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
