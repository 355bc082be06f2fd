"""Ingestion throughput vs the raw embedding throughput of the same model, in one run (issue 5's ratio ≥ 0.8).

Corpus: Python's own reference documentation (`pydoc_data.topics`, shipped with CPython), one text file per
topic, in a directory data source. The ingestion job runs in-process exactly as the server's worker runs it
(listing, reading, parsing, chunking, embedding in batches, sealing, committing, indexing, the snapshot).
The reference embeds the very same chunk texts with the same engine in batches of the same size. The two
are measured alternately (raw, ingest, raw, ingest, …) and each ratio pairs neighbours, since these machines
are shared and noisy.

    .venv/bin/python bench/ingestion.py [--rounds 3] [--docs 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outcrop.core.governance import CallContext  # noqa: E402
from outcrop.core.identity import Caller  # noqa: E402
from outcrop.core.knowledge.chunking import chunk_document, validate_chunking  # noqa: E402
from outcrop.core.knowledge.parsing import parse  # noqa: E402
from outcrop.server.deps import Services  # noqa: E402
from outcrop.settings import Settings  # noqa: E402
from outcrop.storage.repositories import Accounts, AccountScope  # noqa: E402
from outcrop.storage.tables import Principal  # noqa: E402

SEED = Path.home() / ".outcrop" / "models"


def corpus(folder: Path, docs: int) -> list[Path]:
    from pydoc_data.topics import topics

    folder.mkdir(parents=True)
    paths = []
    for name, text in sorted(topics.items(), key=lambda kv: -len(kv[1]))[:docs]:
        path = folder / f"{name}.txt"
        path.write_text(text)
        paths.append(path)
    return paths


def admin(svc: Services, operation: str) -> CallContext:
    with svc.identity.sessions() as session:
        account = Accounts(session).first()
        assert account is not None
        principal = AccountScope(session, account.id).first(Principal, Principal.is_admin.is_(True))
        assert principal is not None
    return CallContext(Caller(account.id, principal.id, principal.name, True, None, "sigv4", "user", True), operation)


def ingest_once(svc: Services, folder: Path, round_: int) -> tuple[float, int]:
    kb = svc.knowledge.bases.create(admin(svc, "CreateKnowledgeBase"), {
        "name": f"bench-{round_}", "roleArn": "arn:aws:iam::1:role/kb", "knowledgeBaseConfiguration": {
            "type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": svc.settings.default_embedding_model}}})
    ds = svc.knowledge.bases.create_source(admin(svc, "CreateDataSource"), kb["knowledgeBaseId"], {
        "name": "docs", "dataSourceConfiguration": {"type": "S3", "s3Configuration": {"bucketArn": folder.as_uri()}}})
    job = svc.knowledge.ingestion.start(admin(svc, "StartIngestionJob"), kb["knowledgeBaseId"], ds["dataSourceId"], None)
    started = time.perf_counter()
    assert svc.jobs.run_job(job["ingestionJobId"])
    elapsed = time.perf_counter() - started
    done = svc.knowledge.ingestion.get(admin(svc, "GetIngestionJob"), kb["knowledgeBaseId"], ds["dataSourceId"],
                                       job["ingestionJobId"])
    assert done["status"] == "COMPLETE", done
    with svc.identity.sessions() as session:
        from sqlalchemy import func, select

        from outcrop.storage.tables import KbChunk

        chunks = session.scalar(select(func.count()).select_from(KbChunk).where(
            KbChunk.knowledge_base_id == kb["knowledgeBaseId"]))
    return elapsed, int(chunks or 0)


def raw_once(svc: Services, texts: list[str]) -> float:
    engine = svc.knowledge.bases.embedder._engine(svc.settings.default_embedding_model)
    batch = svc.settings.kb_embed_batch
    started = time.perf_counter()
    for i in range(0, len(texts), batch):
        engine.embed(texts[i:i + batch], None, True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--docs", type=int, default=200)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="outcrop-bench-ingest-"))
    try:
        if SEED.is_dir():
            (home / "models").symlink_to(SEED)
        folder = home / "files" / "pydoc"
        paths = corpus(folder, args.docs)
        svc = Services.build(Settings(home=home))
        svc.accounts.bootstrap()
        config = validate_chunking(None)
        texts = [c.text for p in paths for c in chunk_document(parse(p.name, p.read_bytes()), config) if c.text.strip()]
        raw_once(svc, texts[:64])  # load and warm the model
        rows = []
        for round_ in range(args.rounds):
            raw = raw_once(svc, texts)
            ingest, chunks = ingest_once(svc, folder, round_)
            assert chunks == len(texts), (chunks, len(texts))
            rows.append({"chunks": chunks, "raw_chunks_per_s": len(texts) / raw, "ingest_chunks_per_s": chunks / ingest,
                         "ratio": raw / ingest})
            print(json.dumps(rows[-1]))
        ratio = statistics.median(r["ratio"] for r in rows)
        print(f"\n{len(paths)} documents, {len(texts)} chunks (FIXED_SIZE 300/20, batch {svc.settings.kb_embed_batch})")
        print("| round | raw embedding chunks/s | ingestion chunks/s | ratio |")
        print("|---|---|---|---|")
        for i, r in enumerate(rows, 1):
            print(f"| {i} | {r['raw_chunks_per_s']:.1f} | {r['ingest_chunks_per_s']:.1f} | {r['ratio']:.3f} |")
        print(f"\nmedian ratio ingestion ÷ raw embedding: {ratio:.3f}")
        out = ROOT / "bench" / "results" / "ingestion.json"
        out.write_text(json.dumps({"rows": rows, "median_ratio": ratio, "documents": len(paths)}, indent=2))
        svc.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
