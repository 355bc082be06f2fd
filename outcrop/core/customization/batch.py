"""Batch inference (Create/Get/List/StopModelInvocationJob) on ModelJobs, and the job that runs it.

The job reads every JSONL file of its input, runs each record's modelInput through the injected runner (InvokeModel's
own code path) `slots` records at a time — the engine's parallel sequences — and writes Bedrock's layout:
`<output>/<jobId>/<input file>.out`, one `{recordId, modelInput, modelOutput | error}` line per record in input order,
and `<output>/<jobId>/manifest.json.out` with the counts. A bad record is an error line, not a failed job. A stopped
(or timed-out: PartiallyCompleted) job still writes what it did. Statuses follow Bedrock's: Submitted (queued),
Validating (reading the inputs), InProgress, then Completed, PartiallyCompleted, Expired (queued past its
timeout, never begun), Failed, Stopping, Stopped.

A job re-claimed after its worker died starts over: it reads its inputs again and rewrites every output (the records
it had run are run, and counted in usage, again). Nothing of the records is kept by the service meanwhile: they live
in the worker's memory, and the request (URIs, creator) is sealed by ModelJobs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from outcrop.core.customization.async_invoke import AsyncInvokes
from outcrop.core.customization.invocation import (
    INVOCATION_TYPES,
    InvocationService,
    RecordResult,
    RecordRunner,
    abandon_if,
    context_of,
    creator,
    invoke,
)
from outcrop.core.customization.records import JobRecord, ModelJobs, check_name, filtered, iso, page
from outcrop.core.governance import CallContext
from outcrop.core.inference import InferenceService
from outcrop.core.jobs import JobRun, JobService
from outcrop.core.objects import Location, ObjectStore, parse_uri
from outcrop.core.tags import check_tags
from outcrop.errors import Invalid
from outcrop.settings import Settings

KIND = "batch"
STATUS = {"queued": "Submitted", "running": "InProgress", "completed": "Completed", "failed": "Failed",
          "stopping": "Stopping", "stopped": "Stopped"}
STATUSES = ("Submitted", "InProgress", "Completed", "Failed", "Stopping", "Stopped", "PartiallyCompleted", "Expired",
            "Validating", "Scheduled")
COUNTS = ("totalRecordCount", "processedRecordCount", "successRecordCount", "errorRecordCount")
_INPUT_URI = "inputDataConfig.s3InputDataConfig.s3Uri"
_OUTPUT_URI = "outputDataConfig.s3OutputDataConfig.s3Uri"
_RECORD_ID = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class BatchJobs(InvocationService):
    # -- the API --------------------------------------------------------------------------------------

    def create(self, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
        account, job_id, retried = self.records.opening(ctx, KIND, body.get("clientRequestToken"))
        if retried is not None:
            return {"jobArn": self.records.arn(account, KIND, retried.row.id)}
        name = check_name(body.get("jobName"), "jobName")
        model_id = body.get("modelId")
        if not isinstance(model_id, str) or not 1 <= len(model_id) <= 2048:
            raise Invalid("modelId is required")
        request = self._request(ctx, body)
        self.inference.resolve_for(ctx, model_id)  # an unknown model is ResourceNotFound now, not a failed job later
        record = self.records.create(ctx, KIND, job_id, name, model_id, request, tags=check_tags(body.get("tags")),
                                     client_token=body.get("clientRequestToken"))
        return {"jobArn": self.records.arn(account, KIND, record.row.id)}

    def get(self, ctx: CallContext, identifier: str) -> dict[str, Any]:
        return self.render(self.records.find(ctx, KIND, identifier))

    def list(self, ctx: CallContext, query: dict[str, Any]) -> dict[str, Any]:
        status = query.get("statusEquals")
        if status is not None and status not in STATUSES:
            raise Invalid(f"statusEquals must be one of {', '.join(STATUSES)}")
        others = {k: v for k, v in query.items() if k != "statusEquals"}
        chosen = [r for r in filtered(self.records.list_jobs(ctx, KIND), others, STATUS, "submitTime")
                  if status is None or status_of(r) == status]
        items, token = page(chosen, query.get("maxResults"), query.get("nextToken"))
        out: dict[str, Any] = {"invocationJobSummaries": [
            self.render(self.records.load(r.row.account_id, r.row.id)) for r in items]}
        if token is not None:
            out["nextToken"] = token
        return out

    def stop(self, ctx: CallContext, identifier: str) -> None:
        self.records.stop(ctx, KIND, identifier)

    def render(self, record: JobRecord) -> dict[str, Any]:
        row, job, request = record.row, record.job, record.request
        progress = record.progress
        out: dict[str, Any] = {
            "jobArn": self.records.arn(row.account_id, KIND, row.id), "jobName": row.name, "modelId": row.model_id,
            "roleArn": request["roleArn"], "status": status_of(record), "submitTime": iso(row.created_at),
            "lastModifiedTime": iso(job.updated_at), "inputDataConfig": request["inputDataConfig"],
            "outputDataConfig": request["outputDataConfig"],
            "timeoutDurationInHours": request["timeoutDurationInHours"],
            "jobExpirationTime": iso(row.created_at + timedelta(hours=request["timeoutDurationInHours"])),
            "modelInvocationType": request["modelInvocationType"]}
        if row.client_token:
            out["clientRequestToken"] = row.client_token
        if "vpcConfig" in request:
            out["vpcConfig"] = request["vpcConfig"]
        ended = row.ended_at or (job.updated_at if job.status in ("completed", "failed", "stopped") else None)
        if ended is not None:
            out["endTime"] = iso(ended)
        if job.failure:
            out["message"] = job.failure
        out.update({k: int(progress[k]) for k in COUNTS if k in progress})
        return out

    def _request(self, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
        """The job's configuration, checked now (URIs must name places this server may use), kept sealed."""
        source = _member(_member(body, "inputDataConfig"), "s3InputDataConfig")
        target = _member(_member(body, "outputDataConfig"), "s3OutputDataConfig")
        parse_uri(self.settings, source.get("s3Uri"), _INPUT_URI)
        parse_uri(self.settings, target.get("s3Uri"), _OUTPUT_URI).child("manifest.json.out")  # not an upload
        if source.get("s3InputFormat", "JSONL") != "JSONL":
            raise Invalid("inputDataConfig.s3InputDataConfig.s3InputFormat must be JSONL")
        role = body.get("roleArn")
        if not isinstance(role, str) or not role.startswith("arn:"):
            raise Invalid("roleArn must be an IAM role ARN")
        timeout = body.get("timeoutDurationInHours", 168)
        if isinstance(timeout, bool) or not isinstance(timeout, int) or not 24 <= timeout <= 168:
            raise Invalid("timeoutDurationInHours must be a whole number of hours from 24 to 168")
        invocation_type = body.get("modelInvocationType", "InvokeModel")
        if invocation_type not in INVOCATION_TYPES:
            raise Invalid(f"modelInvocationType must be one of {', '.join(INVOCATION_TYPES)}")
        request = {"creator": creator(ctx), "roleArn": role, "timeoutDurationInHours": timeout,
                   "modelInvocationType": invocation_type,
                   "inputDataConfig": {"s3InputDataConfig": _known(source, "s3Uri", "s3InputFormat", "s3BucketOwner")},
                   "outputDataConfig": {"s3OutputDataConfig": _known(target, "s3Uri", "s3EncryptionKeyId",
                                                                     "s3BucketOwner")}}
        if body.get("vpcConfig") is not None:
            request["vpcConfig"] = _member(body, "vpcConfig")
        return request

    # -- the job --------------------------------------------------------------------------------------

    def run(self, run: JobRun, runner: RecordRunner, store: ObjectStore) -> None:
        try:
            self._run(run, runner, store)
        finally:
            self.records.ended(run.account_id, run.id)

    def _run(self, run: JobRun, runner: RecordRunner, store: ObjectStore) -> None:
        record = self.records.load(run.account_id, run.id)
        request = record.request
        ctx = context_of(self.records.sessions, self.settings.region, request["creator"],
                         request["modelInvocationType"])
        source = parse_uri(self.settings, request["inputDataConfig"]["s3InputDataConfig"]["s3Uri"], _INPUT_URI)
        target = parse_uri(self.settings, request["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"], _OUTPUT_URI)
        deadline = record.row.created_at.replace(tzinfo=UTC) + timedelta(hours=request["timeoutDurationInHours"])
        if datetime.now(UTC) > deadline:  # queued past its timeout: Bedrock's Expired, nothing run or written
            run.report(force=True, status="Expired")
            return
        run.report(force=True, status="Validating")
        files = read_inputs(store, source)
        tally = Tally(sum(len(f.lines) for f in files))
        run.report(force=True, status="InProgress", **tally.counts())
        work = Records(run, runner, ctx, record.row.model_id, request["modelInvocationType"], tally, deadline,
                       self.closing)
        try:
            asyncio.run(work.run(files, self.settings.slots))
        finally:
            abandon_if(self.closing)
            for f in files:
                store.write(target.child(run.id, f.name + ".out"), f.output(), "application/jsonl")
            store.write(target.child(run.id, "manifest.json.out"), json.dumps(tally.counts()).encode())
            ended = "PartiallyCompleted" if tally.expired else "InProgress"
            run.report(force=True, status=ended, **tally.counts())


def status_of(record: JobRecord) -> str:
    """Bedrock's status word. The worker's `completed` is Completed, or PartiallyCompleted when the timeout came
    before every record ran, or Expired when it came before the job began; a running job is Validating while
    it reads its inputs."""
    noted = record.progress.get("status")
    if record.job.status == "completed" and noted in ("PartiallyCompleted", "Expired"):
        return str(noted)
    if record.job.status == "running" and noted == "Validating":
        return "Validating"
    return STATUS[record.job.status]


@dataclass
class InputFile:
    name: str  # its path below the input prefix: the output is <name>.out
    lines: list[str]
    results: list[str | None] = field(default_factory=list)

    def output(self) -> bytes:
        return "".join(line + "\n" for line in self.results if line is not None).encode()


def read_inputs(store: ObjectStore, source: Location) -> list[InputFile]:
    """Every JSONL file of the input: the object the URI names, or the `.jsonl` objects below its prefix."""
    found = store.list(source)
    named = len(found) == 1 and found[0].key == source.key
    files = []
    for where in found:
        if not named and not where.key.endswith(".jsonl"):
            continue
        name = where.key.rsplit("/", 1)[-1] if named else where.key[len(source.key.rstrip("/")) + 1:]
        text = store.read(where).decode("utf-8", errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        files.append(InputFile(name, lines, [None] * len(lines)))
    if not files:
        raise Invalid(f"{_INPUT_URI}: no .jsonl files were found at the input location")
    return files


@dataclass
class Tally:
    total: int
    processed: int = 0
    success: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    expired: bool = False

    def add(self, result: RecordResult) -> None:
        self.processed += 1
        self.success += result.error is None
        self.errors += result.error is not None
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens

    def counts(self) -> dict[str, Any]:
        """Bedrock's manifest.json.out; the same counts are the job's progress."""
        return {"totalRecordCount": self.total, "processedRecordCount": self.processed,
                "successRecordCount": self.success, "errorRecordCount": self.errors,
                "inputTokenCount": self.input_tokens, "outputTokenCount": self.output_tokens}


class Records:
    """One job's records, run `slots` at a time on the worker thread's own event loop."""

    def __init__(self, run: JobRun, runner: RecordRunner, ctx: CallContext, model_id: str, invocation_type: str,
                 tally: Tally, deadline: datetime, closing: threading.Event | None = None) -> None:
        self.job, self.runner, self.ctx, self.model_id = run, runner, ctx, model_id
        self.invocation_type, self.tally, self.deadline = invocation_type, tally, deadline
        self.closing = closing or threading.Event()

    async def run(self, files: list[InputFile], slots: int) -> None:
        pending = iter([(f, i) for f in files for i in range(len(f.lines))])

        async def lane() -> None:
            for f, i in pending:  # one shared iterator: each lane takes the next record when it is free
                if self.stopping():
                    return
                f.results[i] = await self.one(f.lines[i], _record_id(self.job.id, f.name, i))
                self.job.report(**self.tally.counts())

        await asyncio.gather(*(lane() for _ in range(max(1, slots))))

    def stopping(self) -> bool:
        if datetime.now(UTC) > self.deadline:
            self.tally.expired = True
        return self.tally.expired or self.closing.is_set() or self.job.should_stop()

    async def one(self, raw: str, generated_id: str) -> str:
        """One input line → its output line; whatever is wrong with the line becomes the line's error."""
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = None
        fields = parsed if isinstance(parsed, dict) else {}
        record_id = fields.get("recordId", generated_id)  # Bedrock adds a recordId where the input has none
        model_input = fields.get("modelInput") if isinstance(parsed, dict) else raw
        if not isinstance(parsed, dict):
            result = _bad("The record is not a JSON object; each line must be {\"recordId\": ..., \"modelInput\": {...}}")
        elif not isinstance(record_id, str) or not record_id:
            result = _bad("recordId must be a non-empty string")
        elif not isinstance(model_input, dict):
            result = _bad("modelInput is required and must be a JSON object: the model's request body")
        else:
            result = await invoke(self.runner, self.ctx, self.model_id, self.invocation_type, model_input,
                                  self.stopping)
        self.tally.add(result)
        line: dict[str, Any] = {"recordId": record_id, "modelInput": model_input}
        if result.error is None:
            line["modelOutput"] = result.output
        else:
            line["error"] = result.error
        return json.dumps(line, ensure_ascii=False)


class BatchInference:
    """Bedrock's two ways of running inference later: batch jobs over JSONL files, and single async invokes."""

    def __init__(self, settings: Settings, records: ModelJobs, inference: InferenceService) -> None:
        self.closing = threading.Event()
        self.invocation_jobs = BatchJobs(settings, records, inference, self.closing)
        self.async_invokes = AsyncInvokes(settings, records, inference, self.closing)

    def register(self, jobs: JobService, runner: RecordRunner, objects: Callable[[str], ObjectStore]) -> None:
        """Run both kinds in the job worker, through `runner`, reading and writing with the account's objects."""
        jobs.register(KIND, lambda run: self.invocation_jobs.run(run, runner, objects(run.account_id)))
        jobs.register(AsyncInvokes.KIND, lambda run: self.async_invokes.run(run, runner, objects(run.account_id)))

    def close(self) -> None:
        """The server is stopping: running jobs take no new record, and stay `running` for the next start."""
        self.closing.set()


def _bad(message: str) -> RecordResult:
    return RecordResult(error={"errorCode": 400, "errorMessage": message})


def _record_id(job_id: str, name: str, index: int) -> str:
    """11 upper-case alphanumerics, the same for the same line on every attempt of the job."""
    number = int.from_bytes(hashlib.sha256(f"{job_id}/{name}/{index}".encode()).digest()[:8], "big")
    return "".join(_RECORD_ID[(number >> (6 * k)) % 36] for k in range(11))


def _member(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise Invalid(f"{key} is required and must be an object")
    return value


def _known(config: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: config[k] for k in keys if config.get(k) is not None}
