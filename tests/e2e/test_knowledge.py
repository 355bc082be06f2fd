"""Knowledge bases end to end through boto3's bedrock-agent and bedrock-agent-runtime clients: an S3 data
source on a loopback S3 server, a directory source, a mixed corpus with sidecars, every filter operator,
RetrieveAndGenerate with citations on the real default models, incremental re-sync, direct ingestion, Rerank."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import LiveServer, S3Server, signed_post
from tests.e2e.kb_corpus import DIR_FILES, S3_FILES, docx, with_sidecars

EMBEDDER = "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0"
CHAT = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
ROLE = "arn:aws:iam::123456789012:role/kb-role"
SOURCE_URI = "x-amz-bedrock-kb-source-uri"
PAGE = "x-amz-bedrock-kb-document-page-number"


def wait_job(agent: Any, kb_id: str, ds_id: str, job_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = agent.get_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id, ingestionJobId=job_id)["ingestionJob"]
        if job["status"] in ("COMPLETE", "FAILED", "STOPPED"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.3)
    raise AssertionError(f"ingestion job {job_id} did not finish")


def sync(agent: Any, kb_id: str, ds_id: str) -> dict[str, Any]:
    job = agent.start_ingestion_job(knowledgeBaseId=kb_id, dataSourceId=ds_id)["ingestionJob"]
    assert job["status"] in ("STARTING", "IN_PROGRESS")
    done = wait_job(agent, kb_id, ds_id, job["ingestionJobId"])
    assert done["status"] == "COMPLETE", done
    return done


class World:
    def __init__(self, server: LiveServer, s3: S3Server, root: Path) -> None:
        self.agent = server.client("bedrock-agent")
        self.runtime = server.client("bedrock-agent-runtime")
        self.s3 = s3.client()
        self.root = root / "kb-corpus"
        self.root.mkdir()
        self.s3.create_bucket(Bucket="kb-corpus")
        for name, data in with_sidecars(S3_FILES).items():
            self.s3.put_object(Bucket="kb-corpus", Key=name, Body=data)
        self.s3.put_object(Bucket="kb-corpus", Key="elsewhere/ignored.txt", Body=b"The Zephyr-9 pump is blue.")
        for name, data in with_sidecars(DIR_FILES).items():
            (self.root / name).write_bytes(data)
        kb = self.agent.create_knowledge_base(
            name="handbook", roleArn=ROLE, description="the test corpus",
            knowledgeBaseConfiguration={"type": "VECTOR",
                                        "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": EMBEDDER}})
        self.kb = kb["knowledgeBase"]
        self.kb_id = self.kb["knowledgeBaseId"]
        chunking = {"chunkingConfiguration": {"chunkingStrategy": "FIXED_SIZE", "fixedSizeChunkingConfiguration": {
            "maxTokens": 120, "overlapPercentage": 10}}}
        self.s3_source = self.agent.create_data_source(
            knowledgeBaseId=self.kb_id, name="bucket", vectorIngestionConfiguration=chunking,
            dataSourceConfiguration={"type": "S3", "s3Configuration": {
                "bucketArn": "arn:aws:s3:::kb-corpus", "inclusionPrefixes": ["docs/"]}})["dataSource"]
        self.dir_source = self.agent.create_data_source(
            knowledgeBaseId=self.kb_id, name="directory", vectorIngestionConfiguration=chunking,
            dataSourceConfiguration={"type": "S3", "s3Configuration": {"bucketArn": self.root.as_uri()}})["dataSource"]
        self.s3_job = sync(self.agent, self.kb_id, self.s3_source["dataSourceId"])
        self.dir_job = sync(self.agent, self.kb_id, self.dir_source["dataSourceId"])

    def retrieve(self, text: str, n: int = 5, **search: Any) -> list[dict[str, Any]]:
        config = {"vectorSearchConfiguration": {"numberOfResults": n, **search}}
        return self.runtime.retrieve(knowledgeBaseId=self.kb_id, retrievalQuery={"text": text},
                                     retrievalConfiguration=config)["retrievalResults"]  # type: ignore[no-any-return]

    def sources(self, text: str, flt: dict[str, Any], n: int = 10) -> set[str]:
        return {r["metadata"][SOURCE_URI].rsplit("/", 1)[-1] for r in self.retrieve(text, n, filter=flt)}


@pytest.fixture(scope="module")
def world(server: LiveServer, s3_server: S3Server, file_root: Path) -> World:
    return World(server, s3_server, file_root)


def test_knowledge_base_resource_shapes(world: World) -> None:
    kb = world.agent.get_knowledge_base(knowledgeBaseId=world.kb_id)["knowledgeBase"]
    assert kb["status"] == "ACTIVE" and kb["name"] == "handbook"
    assert kb["knowledgeBaseArn"].endswith(f":knowledge-base/{world.kb_id}")
    assert kb["knowledgeBaseConfiguration"]["vectorKnowledgeBaseConfiguration"]["embeddingModelArn"] == EMBEDDER
    listed = world.agent.list_knowledge_bases()["knowledgeBaseSummaries"]
    assert world.kb_id in {k["knowledgeBaseId"] for k in listed}
    sources = world.agent.list_data_sources(knowledgeBaseId=world.kb_id)["dataSourceSummaries"]
    assert {s["name"] for s in sources} == {"bucket", "directory"}
    ds = world.agent.get_data_source(knowledgeBaseId=world.kb_id, dataSourceId=world.s3_source["dataSourceId"])
    assert ds["dataSource"]["dataDeletionPolicy"] == "DELETE"


def test_ingestion_statistics(world: World) -> None:
    stats = world.s3_job["statistics"]
    # the three good documents under docs/, the broken PDF failed with its reason, elsewhere/ not included
    assert stats["numberOfDocumentsScanned"] == 4
    assert stats["numberOfNewDocumentsIndexed"] == 3
    assert stats["numberOfDocumentsFailed"] == 1
    assert stats["numberOfMetadataDocumentsScanned"] == 3
    assert any("broken.pdf" in reason and "PDF" in reason for reason in world.s3_job["failureReasons"])
    dir_stats = world.dir_job["statistics"]
    assert dir_stats["numberOfDocumentsScanned"] == 3 and dir_stats["numberOfNewDocumentsIndexed"] == 3
    jobs = world.agent.list_ingestion_jobs(knowledgeBaseId=world.kb_id,
                                           dataSourceId=world.s3_source["dataSourceId"])["ingestionJobSummaries"]
    assert [j["ingestionJobId"] for j in jobs] == [world.s3_job["ingestionJobId"]]


@pytest.mark.parametrize("question, expected", [
    ("What is the calibration code for the Heron sensor?", "manual.pdf"),
    ("How many vacation days do employees get?", "handbook.md"),
    ("When does the Orchard Street office open?", "office.html"),
    ("What is the maximum pressure of the Zephyr-9 pump?", "pump.txt"),
    ("When does the Lisbon team meet?", "team-notes.docx"),
    ("How many Heron sensors are in the Tallinn warehouse?", "inventory.csv"),
])
@pytest.mark.parametrize("mode", ["SEMANTIC", "HYBRID"])
def test_retrieve_finds_the_right_document(world: World, question: str, expected: str, mode: str) -> None:
    results = world.retrieve(question, 3, overrideSearchType=mode)
    assert results[0]["metadata"][SOURCE_URI].endswith(expected), results[0]
    assert 0 < results[0]["score"] <= 1
    assert results[0]["location"]["type"] == "S3"
    assert results[0]["location"]["s3Location"]["uri"] == results[0]["metadata"][SOURCE_URI]


def test_retrieve_reports_page_numbers_and_sidecar_metadata(world: World) -> None:
    top = world.retrieve("calibration code Heron HX-4471", 1)[0]
    assert top["metadata"][SOURCE_URI] == "s3://kb-corpus/docs/manual.pdf"
    assert top["metadata"][PAGE] == 2
    assert "HX-4471" in top["content"]["text"]
    assert top["metadata"]["department"] == "engineering" and top["metadata"]["year"] == 2023
    assert top["metadata"]["tags"] == ["hardware", "sensor"]
    dir_top = world.retrieve("vacation days per year", 1)[0]
    assert dir_top["metadata"][SOURCE_URI] == (world.root / "handbook.md").as_uri()


def test_every_filter_operator(world: World) -> None:
    q = "equipment, people and places"
    everything = {"manual.pdf", "team-notes.docx", "inventory.csv", "pump.txt", "handbook.md", "office.html"}
    assert world.sources(q, {"equals": {"key": "department", "value": "engineering"}}) == {"manual.pdf", "pump.txt"}
    assert world.sources(q, {"notEquals": {"key": "department", "value": "engineering"}}, 20) == \
        everything - {"manual.pdf", "pump.txt"}
    assert world.sources(q, {"greaterThan": {"key": "year", "value": 2023}}) == {"inventory.csv", "handbook.md"}
    assert world.sources(q, {"greaterThanOrEquals": {"key": "year", "value": 2023}}) == \
        {"inventory.csv", "handbook.md", "manual.pdf"}
    assert world.sources(q, {"lessThan": {"key": "year", "value": 2021}}) == {"office.html"}
    assert world.sources(q, {"lessThanOrEquals": {"key": "year", "value": 2021}}) == {"office.html", "team-notes.docx"}
    assert world.sources(q, {"in": {"key": "department", "value": ["people", "facilities"]}}) == \
        {"handbook.md", "office.html"}
    assert world.sources(q, {"notIn": {"key": "department", "value": ["engineering", "people", "facilities"]}}) == \
        {"team-notes.docx", "inventory.csv"}
    assert world.sources(q, {"startsWith": {"key": "department", "value": "eng"}}) == {"manual.pdf", "pump.txt"}
    assert world.sources(q, {"listContains": {"key": "tags", "value": "hardware"}}) == {"manual.pdf", "pump.txt"}
    assert world.sources(q, {"stringContains": {"key": "department", "value": "istic"}}) == {"inventory.csv"}
    assert world.sources(q, {"andAll": [{"equals": {"key": "confidential", "value": False}},
                                        {"listContains": {"key": "tags", "value": "hardware"}},
                                        {"greaterThan": {"key": "year", "value": 2022}}]}) == {"manual.pdf"}
    assert world.sources(q, {"orAll": [{"equals": {"key": "confidential", "value": True}},
                                       {"equals": {"key": "department", "value": "people"}}]}) == \
        {"team-notes.docx", "handbook.md"}
    uri = (world.root / "pump.txt").as_uri()
    assert world.sources(q, {"equals": {"key": SOURCE_URI, "value": uri}}) == {"pump.txt"}


def test_bad_filters_and_requests_are_validation_errors(world: World, server: LiveServer) -> None:
    # shapes boto3 itself refuses, sent signed by hand: the server must refuse them too
    for search in ({"filter": {"andAll": [{"equals": {"key": "year", "value": 1}}]}},
                   {"filter": {"in": {"key": "year", "value": 3}}}, {"filter": {"between": {"key": "y", "value": 1}}},
                   {"numberOfResults": 500}, {"overrideSearchType": "FUZZY"}):
        body = json.dumps({"retrievalQuery": {"text": "x"}, "retrievalConfiguration": {
            "vectorSearchConfiguration": search}}).encode()
        response = signed_post(server, f"/knowledgebases/{world.kb_id}/retrieve", body)
        assert response.status_code == 400, response.text
        assert response.headers["x-amzn-ErrorType"].startswith("ValidationException")
    with pytest.raises(ClientError) as caught:
        world.runtime.retrieve(knowledgeBaseId="NOSUCHKB00", retrievalQuery={"text": "x"})
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as caught:
        world.agent.create_data_source(knowledgeBaseId=world.kb_id, name="outside", dataSourceConfiguration={
            "type": "S3", "s3Configuration": {"bucketArn": "file:///etc"}})
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as caught:
        world.agent.create_knowledge_base(
            name="other", roleArn=ROLE, storageConfiguration={"type": "PINECONE", "pineconeConfiguration": {
                "connectionString": "x", "credentialsSecretArn": "y", "fieldMapping": {
                    "textField": "t", "metadataField": "m"}}},
            knowledgeBaseConfiguration={"type": "VECTOR",
                                        "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": EMBEDDER}})
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "embedded vector store" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as caught:
        world.agent.create_data_source(knowledgeBaseId=world.kb_id, name="badchunks", dataSourceConfiguration={
            "type": "CUSTOM"}, vectorIngestionConfiguration={"chunkingConfiguration": {
                "chunkingStrategy": "HIERARCHICAL", "hierarchicalChunkingConfiguration": {
                    "levelConfigurations": [{"maxTokens": 100}, {"maxTokens": 200}], "overlapTokens": 10}}})
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_retrieve_and_generate_cites_the_right_document_and_page(world: World) -> None:
    answer = world.runtime.retrieve_and_generate(
        input={"text": "What is the calibration code for the Heron sensor?"},
        retrieveAndGenerateConfiguration={"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
            "knowledgeBaseId": world.kb_id, "modelArn": CHAT}})
    assert "HX-4471" in answer["output"]["text"]
    cited = [(c["generatedResponsePart"]["textResponsePart"], ref) for c in answer["citations"]
             for ref in c["retrievedReferences"]]
    assert cited, answer
    part, ref = next((p, r) for p, r in cited if "HX-4471" in p["text"])
    assert ref["location"]["s3Location"]["uri"] == "s3://kb-corpus/docs/manual.pdf"
    assert ref["metadata"][PAGE] == 2
    text = answer["output"]["text"]
    assert text[part["span"]["start"]:part["span"]["end"] + 1] == part["text"]
    # the session continues the conversation
    follow = world.runtime.retrieve_and_generate(
        sessionId=answer["sessionId"], input={"text": "After how many minutes of warm-up is it entered?"},
        retrieveAndGenerateConfiguration={"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
            "knowledgeBaseId": world.kb_id, "modelArn": CHAT}})
    assert follow["sessionId"] == answer["sessionId"]
    assert "ten" in follow["output"]["text"].lower() or "10" in follow["output"]["text"]


def test_retrieve_and_generate_stream(world: World) -> None:
    response = world.runtime.retrieve_and_generate_stream(
        input={"text": "How many vacation days do employees accrue per year?"},
        retrieveAndGenerateConfiguration={"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
            "knowledgeBaseId": world.kb_id, "modelArn": CHAT, "generationConfiguration": {
                "promptTemplate": {"textPromptTemplate": "Answer from these results only:\n$search_results$\n"
                                                         "Question: $query$"}}}})
    assert response["sessionId"]
    text, citations = "", []
    for event in response["stream"]:
        if "output" in event:
            text += event["output"]["text"]
        if "citation" in event:
            citations.append(event["citation"])
    assert "23" in text
    refs = [r for c in citations for r in c["retrievedReferences"]]
    assert any(r["metadata"][SOURCE_URI].endswith("handbook.md") for r in refs), (text, citations)


def test_external_sources(world: World) -> None:
    data = b"The harbour ferry to Skerry Island leaves at 9:20 every morning from pier 6."
    answer = world.runtime.retrieve_and_generate(
        input={"text": "From which pier does the Skerry Island ferry leave?"},
        retrieveAndGenerateConfiguration={"type": "EXTERNAL_SOURCES", "externalSourcesConfiguration": {
            "modelArn": CHAT, "sources": [{"sourceType": "BYTE_CONTENT", "byteContent": {
                "identifier": "ferry.txt", "contentType": "text/plain", "data": data}}]}})
    assert "6" in answer["output"]["text"]


def test_rerank_and_reranked_retrieve(world: World) -> None:
    sources = [{"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": t}}} for t in (
        "Bananas are yellow fruit.", "The Zephyr-9 pump runs at 412 kilopascals at most.", "Paris is in France.")]
    results = world.runtime.rerank(
        queries=[{"type": "TEXT", "textQuery": {"text": "pump maximum pressure"}}], sources=sources,
        rerankingConfiguration={"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {
            "numberOfResults": 2, "modelConfiguration": {
                "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.rerank-v1:0"}}})["results"]
    assert [r["index"] for r in results][0] == 1 and len(results) == 2
    assert results[0]["relevanceScore"] > results[1]["relevanceScore"]
    reranked = world.retrieve("pump pressure", 2, rerankingConfiguration={
        "type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {
            "numberOfRerankedResults": 2, "modelConfiguration": {
                "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/cohere.rerank-v3-5:0"}}})
    assert reranked[0]["metadata"][SOURCE_URI].endswith("pump.txt")


def test_direct_ingestion_of_custom_documents(world: World) -> None:
    ds = world.agent.create_data_source(knowledgeBaseId=world.kb_id, name="custom",
                                        dataSourceConfiguration={"type": "CUSTOM"})["dataSource"]["dataSourceId"]
    docs = [
        {"content": {"dataSourceType": "CUSTOM", "custom": {
            "customDocumentIdentifier": {"id": "note-1"}, "sourceType": "IN_LINE",
            "inlineContent": {"type": "TEXT", "textContent": {"data": "The Gannet drone has a range of 31 km."}}}},
         "metadata": {"type": "IN_LINE_ATTRIBUTE", "inlineAttributes": [
             {"key": "kind", "value": {"type": "STRING", "stringValue": "spec"}}]}},
        {"content": {"dataSourceType": "CUSTOM", "custom": {
            "customDocumentIdentifier": {"id": "note-2"}, "sourceType": "IN_LINE",
            "inlineContent": {"type": "BYTE", "byteContent": {
                "mimeType": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "data": docx(["The Gannet drone battery lasts 48 minutes."])}}}}},
        {"content": {"dataSourceType": "CUSTOM", "custom": {
            "customDocumentIdentifier": {"id": "note-3"}, "sourceType": "IN_LINE",
            "inlineContent": {"type": "BYTE", "byteContent": {"mimeType": "application/pdf",
                                                               "data": b"not a pdf"}}}}},
    ]
    details = world.agent.ingest_knowledge_base_documents(knowledgeBaseId=world.kb_id, dataSourceId=ds,
                                                          documents=docs)["documentDetails"]
    assert [d["status"] for d in details] == ["INDEXED", "INDEXED", "FAILED"]
    top = world.retrieve("Gannet drone range", 1, filter={"equals": {"key": "kind", "value": "spec"}})[0]
    assert top["location"] == {"type": "CUSTOM", "customDocumentLocation": {"id": "note-1"}}
    got = world.agent.get_knowledge_base_documents(knowledgeBaseId=world.kb_id, dataSourceId=ds, documentIdentifiers=[
        {"dataSourceType": "CUSTOM", "custom": {"id": "note-2"}},
        {"dataSourceType": "CUSTOM", "custom": {"id": "nope"}}])["documentDetails"]
    assert [d["status"] for d in got] == ["INDEXED", "NOT_FOUND"]
    listed = world.agent.list_knowledge_base_documents(knowledgeBaseId=world.kb_id, dataSourceId=ds)
    assert {d["identifier"]["custom"]["id"] for d in listed["documentDetails"]} == {"note-1", "note-2", "note-3"}
    world.agent.delete_knowledge_base_documents(knowledgeBaseId=world.kb_id, dataSourceId=ds, documentIdentifiers=[
        {"dataSourceType": "CUSTOM", "custom": {"id": "note-1"}}])
    assert all(r["metadata"][SOURCE_URI] != "note-1" for r in world.retrieve("Gannet drone range", 10))
    world.agent.delete_data_source(knowledgeBaseId=world.kb_id, dataSourceId=ds)
    assert all(r["metadata"][SOURCE_URI] != "note-2" for r in world.retrieve("Gannet drone battery", 10))


LONG_TEXT = (
    "The Ardent ferry company was founded in 1911 by two brothers from Oban. Its first boat carried mail and "
    "sheep to the outer isles. During the war the fleet was requisitioned and two boats were lost. "
    "After the war the company rebuilt its fleet with diesel vessels. "
    "Volcanic soils are rich in minerals such as potassium and phosphorus. They hold water well and drain "
    "quickly after rain. Vineyards on volcanic slopes often produce wines with a distinct mineral taste. "
    "Farmers on the slopes of Etna grow pistachios, citrus and grapes in black volcanic earth. ") * 3


def _custom(agent: Any, kb_id: str, name: str, chunking: dict[str, Any], policy: str = "DELETE") -> str:
    ds = agent.create_data_source(knowledgeBaseId=kb_id, name=name, dataSourceConfiguration={"type": "CUSTOM"},
                                  dataDeletionPolicy=policy,
                                  vectorIngestionConfiguration={"chunkingConfiguration": chunking})
    ds_id = ds["dataSource"]["dataSourceId"]
    details = agent.ingest_knowledge_base_documents(knowledgeBaseId=kb_id, dataSourceId=ds_id, documents=[{
        "content": {"dataSourceType": "CUSTOM", "custom": {
            "customDocumentIdentifier": {"id": f"{name}-doc"}, "sourceType": "IN_LINE",
            "inlineContent": {"type": "TEXT", "textContent": {"data": LONG_TEXT}}}}}])["documentDetails"]
    assert details[0]["status"] == "INDEXED", details
    return ds_id  # type: ignore[no-any-return]


def test_hierarchical_semantic_chunking_and_retain(world: World) -> None:
    only = {"equals": {"key": SOURCE_URI, "value": "hier-doc"}}
    _custom(world.agent, world.kb_id, "hier", {"chunkingStrategy": "HIERARCHICAL", "hierarchicalChunkingConfiguration": {
        "levelConfigurations": [{"maxTokens": 120}, {"maxTokens": 30}], "overlapTokens": 5}})
    parents = world.retrieve("Which crops grow on the volcanic slopes of Etna?", 3, filter=only)
    # children are matched, their parents returned: longer than any child, and each parent once
    assert len({r["content"]["text"] for r in parents}) == len(parents)
    assert all(40 < len(r["content"]["text"].split()) <= 140 for r in parents)
    assert "pistachios" in parents[0]["content"]["text"]
    _custom(world.agent, world.kb_id, "sem", {"chunkingStrategy": "SEMANTIC", "semanticChunkingConfiguration": {
        "maxTokens": 200, "bufferSize": 0, "breakpointPercentileThreshold": 90}})
    semantic = world.retrieve("When was the ferry company founded?", 1,
                              filter={"equals": {"key": SOURCE_URI, "value": "sem-doc"}})[0]
    assert "1911" in semantic["content"]["text"]
    kept = _custom(world.agent, world.kb_id, "kept", {"chunkingStrategy": "NONE"}, policy="RETAIN")
    world.agent.delete_data_source(knowledgeBaseId=world.kb_id, dataSourceId=kept)
    with pytest.raises(ClientError) as caught:
        world.agent.get_data_source(knowledgeBaseId=world.kb_id, dataSourceId=kept)
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    retained = world.retrieve("ferry company founded", 1, filter={"equals": {"key": SOURCE_URI, "value": "kept-doc"}})
    assert retained and "1911" in retained[0]["content"]["text"]  # RETAIN: still searchable


def test_resync_processes_only_changes(world: World) -> None:
    """Runs last in this module: it changes the corpus."""
    s3_ds, dir_ds = world.s3_source["dataSourceId"], world.dir_source["dataSourceId"]
    unchanged = sync(world.agent, world.kb_id, s3_ds)["statistics"]
    assert unchanged["numberOfNewDocumentsIndexed"] == unchanged["numberOfModifiedDocumentsIndexed"] == 0
    assert unchanged["numberOfDocumentsScanned"] == 4 and unchanged["numberOfDocumentsFailed"] == 1
    world.s3.put_object(Bucket="kb-corpus", Key="docs/team-notes.docx",
                        Body=docx(["The Lisbon team now meets every Monday at the Harbour Room."]))
    (world.root / "office.html").unlink()
    (world.root / "office.html.metadata.json").unlink()
    changed = sync(world.agent, world.kb_id, s3_ds)["statistics"]
    assert changed["numberOfModifiedDocumentsIndexed"] == 1 and changed["numberOfNewDocumentsIndexed"] == 0
    removed = sync(world.agent, world.kb_id, dir_ds)["statistics"]
    assert removed["numberOfDocumentsDeleted"] == 1
    assert removed["numberOfNewDocumentsIndexed"] == removed["numberOfModifiedDocumentsIndexed"] == 0
    top = world.retrieve("When does the Lisbon team meet?", 1)[0]
    assert "Monday" in top["content"]["text"]
    assert all(not r["metadata"][SOURCE_URI].endswith("office.html") for r in world.retrieve("office opening", 10))


def test_conflicting_and_stopped_jobs(world: World) -> None:
    ds = world.s3_source["dataSourceId"]
    first = world.agent.start_ingestion_job(knowledgeBaseId=world.kb_id, dataSourceId=ds)["ingestionJob"]
    try:
        world.agent.start_ingestion_job(knowledgeBaseId=world.kb_id, dataSourceId=ds)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "ConflictException"
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    else:  # the first job finished before the second call: then it must have completed
        assert wait_job(world.agent, world.kb_id, ds, first["ingestionJobId"])["status"] == "COMPLETE"
    try:
        world.agent.stop_ingestion_job(knowledgeBaseId=world.kb_id, dataSourceId=ds,
                                       ingestionJobId=first["ingestionJobId"])
    except ClientError as exc:  # it had already ended
        assert exc.response["Error"]["Code"] == "ConflictException"
    final = wait_job(world.agent, world.kb_id, ds, first["ingestionJobId"])
    assert final["status"] in ("STOPPED", "COMPLETE")


def test_document_content_is_not_readable_on_disk(world: World, server: LiveServer) -> None:
    """The chunk text, sidecar values and URIs are sealed: none appear in the data dir's files."""
    needles = [b"HX-4471", b"Quintela", b"kilopascals", b"Tallinn", base64.b64encode(b"HX-4471")]
    for path in server.home.rglob("*"):
        if path.is_file() and not path.is_symlink() and "models" not in path.parts and path.name != "server.log":
            data = path.read_bytes()
            for needle in needles:
                assert needle not in data, f"{needle!r} in {path}"
