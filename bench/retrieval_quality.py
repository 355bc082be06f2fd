"""Retrieval quality on a labelled set built from real data (bench/retrieval_set.py: TREC 2024 RAG topics over
MS MARCO v2.1 segments, relevance from the segments human writers cited): recall@1, recall@5, MRR and
nDCG@10 for SEMANTIC, HYBRID and HYBRID + rerank, with the default embedder, through the knowledge-base
services exactly as Retrieve runs them (ingested by a directory-source ingestion job).

    pip install --no-deps ir_axioms==1.2.5
    .venv/bin/python bench/retrieval_quality.py [--limit-queries 100]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import retrieval_set  # noqa: E402
from bench.ingestion import admin  # noqa: E402
from outcrop.server.deps import Services  # noqa: E402
from outcrop.settings import Settings  # noqa: E402

SEED = Path.home() / ".outcrop" / "models"
RERANK = {"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {
    "numberOfRerankedResults": 10, "modelConfiguration": {
        "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.rerank-v1:0"}}}
MODES: dict[str, dict[str, Any]] = {
    "SEMANTIC": {"overrideSearchType": "SEMANTIC"},
    "HYBRID": {"overrideSearchType": "HYBRID"},
    "HYBRID + rerank": {"overrideSearchType": "HYBRID", "rerankingConfiguration": RERANK},
}


def metrics(ranked: list[str], relevant: set[str]) -> dict[str, float]:
    def recall(k: int) -> float:
        return len(set(ranked[:k]) & relevant) / len(relevant)

    rr = next((1.0 / i for i, doc in enumerate(ranked, 1) if doc in relevant), 0.0)
    dcg = sum(1.0 / math.log2(i + 1) for i, doc in enumerate(ranked[:10], 1) if doc in relevant)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant), 10) + 1))
    return {"recall@1": recall(1), "recall@5": recall(5), "success@1": float(bool(ranked[:1]) and ranked[0] in relevant),
            "MRR": rr, "nDCG@10": dcg / ideal}


def ingest(svc: Services, folder: Path, documents: dict[str, str]) -> tuple[str, float]:
    folder.mkdir(parents=True)
    for doc_id, text in documents.items():
        (folder / f"{doc_id}.txt").write_text(text)
    kb = svc.knowledge.bases.create(admin(svc, "CreateKnowledgeBase"), {
        "name": "quality", "roleArn": "arn:aws:iam::1:role/kb", "knowledgeBaseConfiguration": {
            "type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": svc.settings.default_embedding_model}}})
    kb_id = kb["knowledgeBaseId"]
    ds = svc.knowledge.bases.create_source(admin(svc, "CreateDataSource"), kb_id, {
        "name": "segments", "dataSourceConfiguration": {"type": "S3", "s3Configuration": {"bucketArn": folder.as_uri()}}})
    job = svc.knowledge.ingestion.start(admin(svc, "StartIngestionJob"), kb_id, ds["dataSourceId"], None)
    started = time.perf_counter()
    assert svc.jobs.run_job(job["ingestionJobId"])
    return kb_id, time.perf_counter() - started


def ranked_docs(svc: Services, kb_id: str, query: str, search: dict[str, Any]) -> list[str]:
    passages = svc.knowledge.retrieval.retrieve(admin(svc, "Retrieve"), kb_id, {"text": query},
                                                {"vectorSearchConfiguration": {"numberOfResults": 10, **search}})
    out: list[str] = []
    for passage in passages:  # a long segment may have several chunks: rank each document once
        doc = Path(unquote(passage.metadata["x-amz-bedrock-kb-source-uri"])).stem
        if doc not in out:
            out.append(doc)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit-queries", type=int, default=None)
    args = parser.parse_args()
    documents, queries, qrels = retrieval_set.load(args.limit_queries)
    home = Path(tempfile.mkdtemp(prefix="outcrop-bench-quality-"))
    try:
        if SEED.is_dir():
            (home / "models").symlink_to(SEED)
        svc = Services.build(Settings(home=home))
        svc.accounts.bootstrap()
        kb_id, ingest_s = ingest(svc, home / "files" / "segments", documents)
        table: dict[str, dict[str, float]] = {}
        for mode, search in MODES.items():
            started = time.perf_counter()
            scores = [metrics(ranked_docs(svc, kb_id, queries[q], search), qrels[q]) for q in queries]
            table[mode] = {k: sum(s[k] for s in scores) / len(scores) for k in scores[0]}
            table[mode]["ms/query"] = (time.perf_counter() - started) * 1000 / len(queries)
            print(mode, json.dumps(table[mode]))
        print(f"\n{len(documents)} documents, {len(queries)} queries, ingestion {ingest_s:.0f} s\n")
        keys = ["recall@1", "recall@5", "success@1", "MRR", "nDCG@10", "ms/query"]
        print("| mode | " + " | ".join(keys) + " |")
        print("|---|" + "---|" * len(keys))
        for mode, row in table.items():
            print(f"| {mode} | " + " | ".join(f"{row[k]:.3f}" if k != "ms/query" else f"{row[k]:.1f}" for k in keys)
                  + " |")
        (ROOT / "bench" / "results" / "retrieval_quality.json").write_text(json.dumps({
            "documents": len(documents), "queries": len(queries), "ingest_s": ingest_s, "modes": table}, indent=2))
        svc.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
