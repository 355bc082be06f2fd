"""An ingestion job survives its server being killed: after a restart it resumes and completes, and the
index holds every document exactly once (never half-indexed, never duplicated)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.e2e.conftest import free_port, start_server, stop_server
from tests.e2e.test_knowledge import EMBEDDER, ROLE, wait_job

DOCS = 240


def test_a_killed_server_resumes_its_ingestion_job(tmp_path: Path) -> None:
    home = tmp_path / "home"
    corpus = home / "files" / "corpus"
    corpus.mkdir(parents=True)
    for i in range(DOCS):
        (corpus / f"doc-{i:04d}.txt").write_text(
            f"Record {i}: the lighthouse keeper number {i} logged {i * 7 % 101} ships on night {i}. " * 12)
    env = {"OUTCROP_JOB_LEASE_S": "3", "OUTCROP_KB_EMBED_BATCH": "8"}
    server = start_server(home, free_port(), env)
    agent = server.client("bedrock-agent")
    kb = agent.create_knowledge_base(name="logs", roleArn=ROLE, knowledgeBaseConfiguration={
        "type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": EMBEDDER}})["knowledgeBase"]
    kb_id = kb["knowledgeBaseId"]
    ds = agent.create_data_source(knowledgeBaseId=kb_id, name="corpus", dataSourceConfiguration={
        "type": "S3", "s3Configuration": {"bucketArn": corpus.as_uri()}})["dataSource"]["dataSourceId"]
    job_id = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds)["ingestionJob"]["ingestionJobId"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it part-way through
        job = agent.get_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds, ingestionJobId=job_id)["ingestionJob"]
        if job["statistics"]["numberOfNewDocumentsIndexed"] >= 16:
            break
        time.sleep(0.05)
    assert job["status"] == "IN_PROGRESS", job
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)

    server = start_server(home, free_port(), env)
    try:
        agent = server.client("bedrock-agent")
        done = wait_job(agent, kb_id, ds, job_id, timeout=300)
        assert done["status"] == "COMPLETE", done
        assert done["statistics"]["numberOfNewDocumentsIndexed"] == DOCS
        assert done["statistics"]["numberOfDocumentsFailed"] == 0
        runtime = server.client("bedrock-agent-runtime")
        hits = runtime.retrieve(knowledgeBaseId=kb_id, retrievalQuery={"text": "lighthouse keeper number 123"},
                                retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 100}})
        uris = [r["metadata"]["x-amz-bedrock-kb-source-uri"] for r in hits["retrievalResults"]]
        assert uris[0].endswith("doc-0123.txt")
        documents = agent.list_knowledge_base_documents(knowledgeBaseId=kb_id, dataSourceId=ds)["documentDetails"]
        assert len(documents) == DOCS and {d["status"] for d in documents} == {"INDEXED"}
        again = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds)["ingestionJob"]
        stats = wait_job(agent, kb_id, ds, again["ingestionJobId"])["statistics"]
        assert stats["numberOfDocumentsScanned"] == DOCS and stats["numberOfNewDocumentsIndexed"] == 0
    finally:
        stop_server(server)
