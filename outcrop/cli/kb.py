"""`outcrop kb`: knowledge bases from the terminal, in-process on the data dir, as the account's admin.

`sync` runs the ingestion job here with a progress bar when it gets to claim it; when a running server's
worker claimed it first, it follows that job's progress instead. Either way the job is the same database row.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from outcrop.cli.admin import ACCOUNT, _run
from outcrop.cli.common import console

app = typer.Typer(help="Knowledge bases: create, add sources, sync, query, ask.", no_args_is_help=True)

CHUNKING = {"fixed": "FIXED_SIZE", "hierarchical": "HIERARCHICAL", "semantic": "SEMANTIC", "none": "NONE"}


@app.command("create")
def create(name: str, embedding_model: str = typer.Option(None, "--embedding-model", "-e",
                                                          help="default: the server's default embedding model"),
           description: str = typer.Option(None), account: str = ACCOUNT) -> None:
    """Create a vector knowledge base on the embedded store."""
    def call(svc: Any, ctx: Any) -> Any:
        model = embedding_model or svc.settings.default_embedding_model
        body = {"name": name, "description": description, "roleArn": f"arn:aws:iam::{ctx.caller.account_id}:role/outcrop-kb",
                "knowledgeBaseConfiguration": {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
                    "embeddingModelArn": model}}}
        return svc.knowledge.bases.create(ctx, body)
    _run("CreateKnowledgeBase", account, call)


@app.command("list")
def listing(account: str = ACCOUNT) -> None:
    _run("ListKnowledgeBases", account, lambda s, ctx: s.knowledge.bases.list_bases(ctx))


@app.command("add-source")
def add_source(kb: str, name: str,
               s3: str = typer.Option(None, help="s3://bucket/prefix on the configured S3 endpoint"),
               directory: Path = typer.Option(None, "--dir", help="a directory on this machine, inside the file roots"),
               chunking: str = typer.Option("fixed", help="fixed | hierarchical | semantic | none"),
               max_tokens: int = typer.Option(300, help="chunk size (the child size for hierarchical)"),
               overlap: int = typer.Option(20, help="overlap: percent (fixed) or tokens (hierarchical)"),
               account: str = ACCOUNT) -> None:
    """Add an S3 or directory data source (or a CUSTOM one, fed by the API, when neither is given)."""
    if s3 and directory:
        console.print("[red]give --s3 or --dir, not both[/red]")
        raise typer.Exit(2)
    if s3:
        bucket, _, prefix = s3.removeprefix("s3://").partition("/")
        source: dict[str, Any] = {"type": "S3", "s3Configuration": {"bucketArn": f"arn:aws:s3:::{bucket}",
                                                                   **({"inclusionPrefixes": [prefix]} if prefix else {})}}
    elif directory:
        source = {"type": "S3", "s3Configuration": {"bucketArn": directory.expanduser().resolve().as_uri()}}
    else:
        source = {"type": "CUSTOM"}
    body = {"name": name, "dataSourceConfiguration": source,
            "vectorIngestionConfiguration": {"chunkingConfiguration": _chunking(chunking, max_tokens, overlap)}}
    _run("CreateDataSource", account, lambda s, ctx: s.knowledge.bases.create_source(ctx, kb, body))


def _chunking(kind: str, max_tokens: int, overlap: int) -> dict[str, Any]:
    strategy = CHUNKING.get(kind)
    if strategy is None:
        console.print(f"[red]--chunking must be one of {', '.join(CHUNKING)}[/red]")
        raise typer.Exit(2)
    if strategy == "FIXED_SIZE":
        return {"chunkingStrategy": strategy, "fixedSizeChunkingConfiguration": {
            "maxTokens": max_tokens, "overlapPercentage": overlap}}
    if strategy == "HIERARCHICAL":
        return {"chunkingStrategy": strategy, "hierarchicalChunkingConfiguration": {
            "levelConfigurations": [{"maxTokens": max_tokens * 5}, {"maxTokens": max_tokens}],
            "overlapTokens": overlap}}
    if strategy == "SEMANTIC":
        return {"chunkingStrategy": strategy, "semanticChunkingConfiguration": {
            "maxTokens": max_tokens, "bufferSize": 0, "breakpointPercentileThreshold": 95}}
    return {"chunkingStrategy": strategy}


@app.command("sync")
def sync(kb: str, source: str, account: str = ACCOUNT) -> None:
    """Ingest a data source: only new and changed documents are embedded, deleted ones removed."""
    def call(svc: Any, ctx: Any) -> Any:
        job = svc.knowledge.ingestion.start(ctx, kb, source, "outcrop kb sync")
        job_id = job["ingestionJobId"]
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("sync", total=None)
            watcher = _Watcher(svc, ctx, kb, source, job_id, progress, task)
            svc.jobs.register("ingestion", watcher.wrap(svc.jobs.handlers["ingestion"]))
            if not svc.jobs.run_job(job_id):  # a running server's worker has it: follow it
                watcher.follow()
        return svc.knowledge.ingestion.get(ctx, kb, source, job_id)
    _run("StartIngestionJob", account, call)


class _Watcher:
    """Shows a job's scanned-document count as it goes."""

    def __init__(self, svc: Any, ctx: Any, kb: str, source: str, job_id: str, progress: Progress, task: Any) -> None:
        self.svc, self.ctx, self.kb, self.source, self.job_id = svc, ctx, kb, source, job_id
        self.progress, self.task = progress, task

    def show(self, stats: dict[str, Any]) -> None:
        done = stats.get("numberOfDocumentsScanned", 0)
        self.progress.update(self.task, completed=done, description=(
            f"sync: {stats.get('numberOfNewDocumentsIndexed', 0)} new, "
            f"{stats.get('numberOfModifiedDocumentsIndexed', 0)} modified, "
            f"{stats.get('numberOfDocumentsFailed', 0)} failed"))

    def wrap(self, handler: Any) -> Any:
        def run(job: Any) -> None:
            report = job.report

            def reported(force: bool = False, **progress: Any) -> None:
                report(force, **progress)
                self.show(job.progress)
            job.report = reported
            handler(job)
        return run

    def follow(self) -> None:
        while True:
            job = self.svc.knowledge.ingestion.get(self.ctx, self.kb, self.source, self.job_id)
            self.show(job["statistics"])
            if job["status"] in ("COMPLETE", "FAILED", "STOPPED"):
                return
            time.sleep(0.5)


@app.command("query")
def query(kb: str, text: str, results: int = typer.Option(5, "-n", help="number of results"),
          semantic: bool = typer.Option(False, "--semantic", help="vector search only (default: hybrid)"),
          filter_json: str = typer.Option(None, "--filter", help="a Bedrock RetrievalFilter, as JSON"),
          account: str = ACCOUNT) -> None:
    """Retrieve passages, as Retrieve does."""
    search: dict[str, Any] = {"numberOfResults": results, "overrideSearchType": "SEMANTIC" if semantic else "HYBRID"}
    if filter_json:
        search["filter"] = json.loads(filter_json)

    def call(svc: Any, ctx: Any) -> Any:
        passages = svc.knowledge.retrieval.retrieve(ctx, kb, {"text": text}, {"vectorSearchConfiguration": search})
        return [{"score": round(p.score, 4), "source": p.metadata.get("x-amz-bedrock-kb-source-uri"),
                 "page": p.metadata.get("x-amz-bedrock-kb-document-page-number"), "text": p.text} for p in passages]
    _run("Retrieve", account, call)


@app.command("ask")
def ask(kb: str, question: str, model: str = typer.Option(None, "--model", "-m", help="default: the default chat model"),
        account: str = ACCOUNT) -> None:
    """Answer from the knowledge base, streamed, then its citations."""
    def call(svc: Any, ctx: Any) -> Any:
        body = {"input": {"text": question}, "retrieveAndGenerateConfiguration": {
            "type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
                "knowledgeBaseId": kb, "modelArn": model or svc.settings.default_chat_model}}}

        async def stream() -> list[dict[str, Any]]:
            _, events = await svc.knowledge.generation.answer_stream(ctx, body)
            citations = []
            async for event in events:
                if "output" in event:
                    sys.stdout.write(event["output"]["text"])
                    sys.stdout.flush()
                else:
                    citations.append(event["citation"])
            print()
            return citations

        citations = asyncio.run(stream())
        return [{"text": c["generatedResponsePart"]["textResponsePart"]["text"],
                 "sources": [r["metadata"].get("x-amz-bedrock-kb-source-uri") for r in c["retrievedReferences"]]}
                for c in citations]
    _run("RetrieveAndGenerate", account, call)
