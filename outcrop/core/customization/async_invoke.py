"""Async invoke (bedrock-runtime Start/Get/ListAsyncInvoke): one InvokeModel body run later as a job, its answer
written to `<s3Uri>/<invocation id>/output.json` — the folder per invocation ID that Bedrock's async models use.

The modelInput is kept sealed with the rest of the request (ModelJobs) until the job has run it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from outcrop.core.access import model_arn
from outcrop.core.customization.invocation import (
    InvocationService,
    RecordRunner,
    abandon_if,
    context_of,
    creator,
    invoke,
)
from outcrop.core.customization.records import JobRecord, filtered, iso, page
from outcrop.core.governance import CallContext
from outcrop.core.jobs import JobRun
from outcrop.core.objects import ObjectStore, parse_uri
from outcrop.core.tags import check_tags
from outcrop.errors import Invalid

STATUS = {"queued": "InProgress", "running": "InProgress", "stopping": "InProgress", "completed": "Completed",
          "failed": "Failed", "stopped": "Failed"}
_OUTPUT_URI = "outputDataConfig.s3OutputDataConfig.s3Uri"


class AsyncInvokes(InvocationService):
    KIND = "async"

    def start(self, ctx: CallContext, body: dict[str, Any]) -> dict[str, Any]:
        account, invocation_id, retried = self.records.opening(ctx, self.KIND, body.get("clientRequestToken"))
        if retried is not None:
            return {"invocationArn": self.records.arn(account, self.KIND, retried.row.id)}
        model_id = body.get("modelId")
        if not isinstance(model_id, str) or not 1 <= len(model_id) <= 256:
            raise Invalid("modelId is required (1-256 characters)")
        if not isinstance(body.get("modelInput"), dict):
            raise Invalid("modelInput is required and must be a JSON object: the model's request body")
        output = body.get("outputDataConfig")
        target = output.get("s3OutputDataConfig") if isinstance(output, dict) else None
        if not isinstance(target, dict):
            raise Invalid("outputDataConfig.s3OutputDataConfig is required")
        parse_uri(self.settings, target.get("s3Uri"), _OUTPUT_URI).child("output.json")  # not an upload
        self.inference.resolve_for(ctx, model_id)
        request = {"creator": creator(ctx), "modelInput": body["modelInput"], "outputDataConfig": {
            "s3OutputDataConfig": {k: target[k] for k in ("s3Uri", "kmsKeyId", "bucketOwner") if target.get(k)}}}
        record = self.records.create(ctx, self.KIND, invocation_id, invocation_id, model_id, request,
                                     tags=check_tags(body.get("tags")), client_token=body.get("clientRequestToken"))
        return {"invocationArn": self.records.arn(account, self.KIND, record.row.id)}

    def get(self, ctx: CallContext, invocation_arn: str) -> dict[str, Any]:
        return self.render(self.records.find(ctx, self.KIND, invocation_arn))

    def list(self, ctx: CallContext, query: dict[str, Any]) -> dict[str, Any]:
        chosen = filtered(self.records.list_jobs(ctx, self.KIND), query, STATUS, "submitTime")
        items, token = page(chosen, query.get("maxResults"), query.get("nextToken"))
        out: dict[str, Any] = {"asyncInvokeSummaries": [
            self.render(self.records.load(r.row.account_id, r.row.id)) for r in items]}
        if token is not None:
            out["nextToken"] = token
        return out

    def render(self, record: JobRecord) -> dict[str, Any]:
        row, job = record.row, record.job
        out: dict[str, Any] = {
            "invocationArn": self.records.arn(row.account_id, self.KIND, row.id),
            "modelArn": model_arn(self.settings.region, row.model_id), "status": STATUS[job.status],
            "submitTime": iso(row.created_at), "lastModifiedTime": iso(job.updated_at),
            "outputDataConfig": record.request["outputDataConfig"]}
        if row.client_token:
            out["clientRequestToken"] = row.client_token
        if job.failure:
            out["failureMessage"] = job.failure
        elif job.status == "stopped":
            out["failureMessage"] = "The invocation was stopped before it ran"
        ended = row.ended_at or (job.updated_at if job.status in ("completed", "failed", "stopped") else None)
        if ended is not None:
            out["endTime"] = iso(ended)
        return out

    def run(self, run: JobRun, runner: RecordRunner, store: ObjectStore) -> None:
        try:
            record = self.records.load(run.account_id, run.id)
            request = record.request
            ctx = context_of(self.records.sessions, self.settings.region, request["creator"], "InvokeModel")
            folder = parse_uri(self.settings, request["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"],
                               _OUTPUT_URI).child(run.id)
            result = asyncio.run(invoke(runner, ctx, record.row.model_id, "InvokeModel", request["modelInput"],
                                        run.should_stop))
            abandon_if(self.closing)
            if result.error is not None:  # the job fails with the error InvokeModel would have answered
                raise Invalid(f"{result.error['errorCode']}: {result.error['errorMessage']}")
            store.write(folder.child("output.json"), json.dumps(result.output).encode())
        finally:
            self.records.ended(run.account_id, run.id)
