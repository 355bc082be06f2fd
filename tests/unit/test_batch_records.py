"""A batch job's records, with a scripted runner: order, per-record errors, parallel lanes, throttling, stop."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outcrop.core.customization.batch import InputFile, Records, Tally, read_inputs, status_of
from outcrop.core.customization.invocation import RecordResult
from outcrop.core.customization.records import JobRecord
from outcrop.core.governance import LOCAL, CallContext
from outcrop.core.jobs import JobRun, JobService
from outcrop.core.objects import ObjectStore, parse_uri
from outcrop.errors import Invalid, Throttled
from outcrop.settings import Settings
from outcrop.storage.tables import Job, ModelJob
from tests.unit.conftest import JOBS_ACCOUNT as ACCOUNT


class Scripted:
    """Answers each body with its prompt upper-cased; rejects empty prompts; counts how many run at once."""

    def __init__(self, throttle_first: int = 0, delay: float = 0.01) -> None:
        self.running = self.most = 0
        self.throttles = throttle_first
        self.delay = delay

    async def __call__(self, ctx: CallContext, model_id: str, kind: str, body: dict[str, Any]) -> RecordResult:
        if self.throttles:
            self.throttles -= 1
            raise Throttled("slow down")
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(self.delay)
        self.running -= 1
        if not body.get("prompt"):
            return RecordResult(error={"errorCode": 400, "errorMessage": "prompt is required"})
        return RecordResult({"text": body["prompt"].upper()}, None, 2, 1)


def run_records(jobs: JobService, lines: list[str], runner: Scripted, slots: int = 4,
                stop_after: int | None = None) -> tuple[InputFile, Tally]:
    file = InputFile("in.jsonl", lines, [None] * len(lines))
    tally = Tally(len(lines))

    def handler(run: JobRun) -> None:
        records = Records(run, runner, LOCAL, "m", "InvokeModel", tally, datetime.now(UTC) + timedelta(hours=1))
        if stop_after is not None:
            original = records.one

            async def one(raw: str, generated: str) -> str:
                if tally.processed + 1 == stop_after:
                    jobs.stop(ACCOUNT, run.id, "batch")
                return await original(raw, generated)

            records.one = one  # type: ignore[method-assign]
        asyncio.run(records.run([file], slots))

    jobs.register("batch", handler)
    jobs.submit(ACCOUNT, "batch", "t")
    assert jobs.run_pending() == 1
    return file, tally


def test_records_keep_their_order_and_bad_ones_become_error_lines(jobs: JobService) -> None:
    lines = [json.dumps({"recordId": f"R{i}", "modelInput": {"prompt": f"p{i}"}}) for i in range(20)]
    lines[3] = "{not json"
    lines[5] = json.dumps({"recordId": "R5"})
    lines[7] = json.dumps({"recordId": "R7", "modelInput": {"prompt": ""}})
    lines[9] = json.dumps({"modelInput": {"prompt": "no id"}})
    runner = Scripted()
    file, tally = run_records(jobs, lines, runner)
    out = [json.loads(line) for line in file.results if line is not None]
    assert len(out) == 20 and [o["recordId"] for o in out][:3] == ["R0", "R1", "R2"]
    assert out[3]["modelInput"] == "{not json" and out[3]["error"]["errorCode"] == 400 and len(out[3]["recordId"]) == 11
    assert "modelInput" in out[5]["error"]["errorMessage"] and out[7]["error"]["errorMessage"] == "prompt is required"
    assert out[9]["modelOutput"] == {"text": "NO ID"} and len(out[9]["recordId"]) == 11
    assert out[19] == {"recordId": "R19", "modelInput": {"prompt": "p19"}, "modelOutput": {"text": "P19"}}
    assert tally.counts() == {"totalRecordCount": 20, "processedRecordCount": 20, "successRecordCount": 17,
                              "errorRecordCount": 3, "inputTokenCount": 34, "outputTokenCount": 17}
    assert runner.most == 4  # the engine's slots, all busy


def test_throttled_records_wait_and_a_stop_keeps_what_was_done(jobs: JobService) -> None:
    lines = [json.dumps({"recordId": f"R{i}", "modelInput": {"prompt": "x"}}) for i in range(40)]
    file, tally = run_records(jobs, lines, Scripted(throttle_first=3, delay=0.05), slots=2,
                              stop_after=10)
    assert 10 <= tally.processed < 40 and tally.errors == 0
    assert len([line for line in file.results if line is not None]) == tally.processed


def test_inputs_are_the_jsonl_files_below_a_prefix(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    root = tmp_path / "files" / "batch"
    (root / "nested").mkdir(parents=True)
    (root / "a.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n')
    (root / "nested" / "b.jsonl").write_text('{"x": 3}\n')
    (root / "readme.txt").write_text("ignored")
    store = ObjectStore(settings)
    files = read_inputs(store, parse_uri(settings, root.as_uri() + "/", "s3Uri"))
    assert [(f.name, len(f.lines)) for f in files] == [("a.jsonl", 2), ("nested/b.jsonl", 1)]
    single = read_inputs(store, parse_uri(settings, (root / "readme.txt").as_uri(), "s3Uri"))
    assert [f.name for f in single] == ["readme.txt"]  # a file named outright is read whatever its extension
    (tmp_path / "files" / "empty").mkdir()
    with pytest.raises(Invalid, match="no .jsonl files"):
        read_inputs(store, parse_uri(settings, (tmp_path / "files" / "empty").as_uri() + "/", "s3Uri"))


def test_a_timeout_mid_job_keeps_what_was_done(jobs: JobService) -> None:
    lines = [json.dumps({"recordId": f"R{i}", "modelInput": {"prompt": "x"}}) for i in range(40)]
    file = InputFile("in.jsonl", lines, [None] * len(lines))
    tally = Tally(len(lines))

    def handler(run: JobRun) -> None:
        deadline = datetime.now(UTC) + timedelta(seconds=0.3)
        asyncio.run(Records(run, Scripted(delay=0.05), LOCAL, "m", "InvokeModel", tally, deadline).run([file], 1))

    jobs.register("batch", handler)
    jobs.submit(ACCOUNT, "batch", "t")
    jobs.run_pending()
    assert tally.expired and 0 < tally.processed < 40
    assert len([line for line in file.results if line is not None]) == tally.processed


@pytest.mark.parametrize(("worker", "noted", "bedrock"), [
    ("queued", None, "Submitted"), ("running", "Validating", "Validating"), ("running", "InProgress", "InProgress"),
    ("completed", "InProgress", "Completed"), ("completed", "PartiallyCompleted", "PartiallyCompleted"),
    ("completed", "Expired", "Expired"), ("stopping", "InProgress", "Stopping"), ("stopped", None, "Stopped"),
    ("failed", "Validating", "Failed"),
])
def test_bedrock_statuses(worker: str, noted: str | None, bedrock: str) -> None:
    progress = json.dumps({"status": noted} if noted else {})
    record = JobRecord(ModelJob(id="j"), Job(id="j", status=worker, progress=progress), {})
    assert status_of(record) == bedrock
