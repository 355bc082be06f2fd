"""Batch inference and async invoke through boto3: real records on the local model, file:// and s3:// locations."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.iam import operator

MODEL = "huggingface.smollm2-135m-instruct-v1:0"
ROLE = "arn:aws:iam::123456789012:role/batch"
ENDED = {"Completed", "Failed", "Stopped", "PartiallyCompleted", "Expired"}


def chat(prompt: str, max_tokens: int = 8) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}


def jsonl(records: list[Any]) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


def create(bedrock, name: str, source: str, target: str, **extra: Any) -> str:  # type: ignore[no-untyped-def]
    return bedrock.create_model_invocation_job(  # type: ignore[no-any-return]
        jobName=name, roleArn=ROLE, modelId=extra.pop("modelId", MODEL),
        inputDataConfig={"s3InputDataConfig": {"s3Uri": source}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": target}}, **extra)["jobArn"]


def wait(bedrock, arn: str, until: set[str] = ENDED, timeout: float = 900) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        job = bedrock.get_model_invocation_job(jobIdentifier=arn)
        if job["status"] in until or time.monotonic() > deadline:
            return job  # type: ignore[no-any-return]
        time.sleep(0.25)


def wait_async(runtime, arn: str, timeout: float = 300) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = runtime.get_async_invoke(invocationArn=arn)
        if got["status"] != "InProgress" or time.monotonic() > deadline:
            return got  # type: ignore[no-any-return]
        time.sleep(0.2)


def invoke(runtime, body: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return json.loads(runtime.invoke_model(modelId=MODEL, body=json.dumps(body))["body"].read())  # type: ignore[no-any-return]


def same_answer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal but for the per-response ID (random on every InvokeModel call too)."""
    return {k: v for k, v in a.items() if k != "id"} == {k: v for k, v in b.items() if k != "id"}


@pytest.fixture(scope="module")
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.mark.timeout(1800)  # ~1 min on an idle 2-core machine; far longer when the CPUs are shared
def test_batch_job_over_200_records_with_bad_ones(bedrock, runtime, file_root: Path, tag: str):
    folder = file_root / f"batch-{tag}"
    (folder / "in").mkdir(parents=True)
    good = [{"recordId": f"REC{i:08d}", "modelInput": chat(f"Name a colour. Number {i}.", 4)} for i in range(206)]
    bad = ["this line is not JSON", {"recordId": "NOINPUT0001"}, {"recordId": "REJECTED001", "modelInput": {"messages": []}},
           {"recordId": 7, "modelInput": chat("hello")}]
    unnamed = {"modelInput": chat("Name a fruit.")}  # Bedrock adds a recordId where the input has none
    records = [*good[:100], *bad, unnamed, *good[100:]]
    (folder / "in" / "records.jsonl").write_text(jsonl(records))
    (folder / "in" / "notes.txt").write_text("not an input: only .jsonl files are read below a prefix")
    arn = create(bedrock, f"big-{tag}", (folder / "in").as_uri() + "/", (folder / "out").as_uri() + "/")
    job_id = arn.rsplit("/", 1)[1]
    assert arn.startswith("arn:aws:bedrock:us-east-1:") and ":model-invocation-job/" in arn and len(job_id) == 12
    job = wait(bedrock, arn)
    assert job["status"] == "Completed", job
    assert (job["totalRecordCount"], job["processedRecordCount"], job["successRecordCount"],
            job["errorRecordCount"]) == (211, 211, 207, 4)
    assert job["jobName"] == f"big-{tag}" and job["modelId"] == MODEL and job["roleArn"] == ROLE
    assert job["endTime"] >= job["submitTime"] and job["modelInvocationType"] == "InvokeModel"

    out = folder / "out" / job_id
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json.out", "records.jsonl.out"]
    manifest = json.loads((out / "manifest.json.out").read_text())
    assert manifest["totalRecordCount"] == 211 and manifest["successRecordCount"] == 207
    assert manifest["errorRecordCount"] == 4 and manifest["inputTokenCount"] > 0 and manifest["outputTokenCount"] > 0
    lines = [json.loads(line) for line in (out / "records.jsonl.out").read_text().splitlines()]
    assert len(lines) == 211
    errors = {str(line["recordId"]): line["error"] for line in lines if "error" in line}
    assert len(errors) == 4 and {"NOINPUT0001", "REJECTED001", "7"} <= set(errors)
    assert {e["errorCode"] for e in errors.values()} == {400}
    assert lines[100]["modelInput"] == "this line is not JSON" and "error" in lines[100]
    assert "messages" in errors["REJECTED001"]["errorMessage"]
    unnamed_line = lines[104]
    assert unnamed_line["modelInput"] == unnamed["modelInput"] and "modelOutput" in unnamed_line
    assert len(unnamed_line["recordId"]) == 11 and unnamed_line["recordId"].isalnum()
    by_id = {line["recordId"]: line for line in lines}
    assert [line["recordId"] for line in lines if str(line["recordId"]).startswith("REC")] == [
        r["recordId"] for r in good]  # input order
    for record in good[::41]:  # at temperature 0, what InvokeModel answers for the same body
        line = by_id[record["recordId"]]
        assert line["modelInput"] == record["modelInput"]
        assert same_answer(line["modelOutput"], invoke(runtime, record["modelInput"])), line


def test_batch_job_s3_input_and_output(server, bedrock, runtime, s3_server, tag: str):
    s3 = s3_server.client()
    bucket = f"batch-{tag}"
    s3.create_bucket(Bucket=bucket)
    first = [{"recordId": f"A{i}", "modelInput": chat(f"Count to {i}.")} for i in range(3)]
    second = [{"recordId": f"B{i}", "modelInput": chat(f"Spell {i}.")} for i in range(2)]
    s3.put_object(Bucket=bucket, Key="in/first.jsonl", Body=jsonl(first).encode())
    s3.put_object(Bucket=bucket, Key="in/more/second.jsonl", Body=jsonl(second).encode())
    arn = create(bedrock, f"s3-{tag}", f"s3://{bucket}/in/", f"s3://{bucket}/out/", tags=[{"key": "team", "value": "x"}])
    job = wait(bedrock, arn)
    assert job["status"] == "Completed" and job["successRecordCount"] == 5, job
    job_id = arn.rsplit("/", 1)[1]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"])
    assert keys == [f"out/{job_id}/first.jsonl.out", f"out/{job_id}/manifest.json.out",
                    f"out/{job_id}/more/second.jsonl.out"]
    body = s3.get_object(Bucket=bucket, Key=f"out/{job_id}/first.jsonl.out")["Body"].read().decode()
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["recordId"] for line in lines] == ["A0", "A1", "A2"]
    assert same_answer(lines[1]["modelOutput"], invoke(runtime, first[1]["modelInput"]))

    single = create(bedrock, f"s3-one-{tag}", f"s3://{bucket}/in/first.jsonl", f"s3://{bucket}/single")
    assert wait(bedrock, single)["successRecordCount"] == 3


def test_converse_type_batch_matches_converse(bedrock, runtime, file_root: Path, tag: str):
    folder = file_root / f"converse-{tag}"
    folder.mkdir()
    request = {"messages": [{"role": "user", "content": [{"text": "Name a planet."}]}],
               "inferenceConfig": {"maxTokens": 8, "temperature": 0}}
    (folder / "in.jsonl").write_text(jsonl([{"recordId": "C1", "modelInput": request}]))
    arn = create(bedrock, f"converse-{tag}", (folder / "in.jsonl").as_uri(), folder.as_uri(),
                 modelInvocationType="Converse")
    job = wait(bedrock, arn)
    assert job["status"] == "Completed" and job["modelInvocationType"] == "Converse", job
    line = json.loads((folder / arn.rsplit("/", 1)[1] / "in.jsonl.out").read_text())
    direct = runtime.converse(modelId=MODEL, **request)
    assert line["modelOutput"]["output"] == direct["output"] and line["modelOutput"]["usage"] == direct["usage"]


def test_validation_conflicts_listing_and_stop(bedrock, file_root: Path, tag: str):
    folder = file_root / f"stop-{tag}"
    folder.mkdir()
    (folder / "slow.jsonl").write_text(jsonl([{"recordId": f"S{i}", "modelInput": chat("Tell a long story.", 64)}
                                              for i in range(200)]))
    source, target = (folder / "slow.jsonl").as_uri(), (folder / "out").as_uri()
    token = uuid.uuid4().hex
    arn = create(bedrock, f"stop-{tag}", source, target, clientRequestToken=token)
    assert create(bedrock, f"other-{tag}", source, target, clientRequestToken=token) == arn  # idempotent
    with pytest.raises(ClientError) as taken:
        create(bedrock, f"stop-{tag}", source, target)
    assert taken.value.response["Error"]["Code"] == "ConflictException"
    for bad_source in ("ftp://host/in.jsonl", "s3://", "file://host/x.jsonl"):
        with pytest.raises(ClientError) as invalid:
            create(bedrock, f"bad-{tag}", bad_source, target)
        assert invalid.value.response["Error"]["Code"] == "ValidationException", bad_source
    with pytest.raises(ClientError) as invalid:
        create(bedrock, f"bad-{tag}", source, target, timeoutDurationInHours=200)
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as unknown:
        create(bedrock, f"bad-{tag}", source, target, modelId="nobody.no-such-model-v1:0")
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"

    running = wait(bedrock, arn, until={"InProgress"} | ENDED)
    assert running["status"] == "InProgress", running
    bedrock.stop_model_invocation_job(jobIdentifier=f"stop-{tag}")  # by name
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] in ("Stopping", "Stopped")
    stopped = wait(bedrock, arn)
    assert stopped["status"] == "Stopped" and stopped["totalRecordCount"] == 200, stopped
    assert stopped["processedRecordCount"] < 200
    out = folder / "out" / arn.rsplit("/", 1)[1]
    manifest = json.loads((out / "manifest.json.out").read_text())
    assert manifest["processedRecordCount"] == stopped["processedRecordCount"]
    assert len((out / "slow.jsonl.out").read_text().splitlines()) == stopped["processedRecordCount"]
    with pytest.raises(ClientError) as ended:
        bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert ended.value.response["Error"]["Code"] == "ConflictException"
    with pytest.raises(ClientError) as missing:
        bedrock.get_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"

    mine = bedrock.list_model_invocation_jobs(nameContains=tag)["invocationJobSummaries"]
    assert {j["jobName"] for j in mine} >= {f"stop-{tag}", f"big-{tag}"}
    assert [j["submitTime"] for j in mine] == sorted((j["submitTime"] for j in mine), reverse=True)
    stopped_only = bedrock.list_model_invocation_jobs(nameContains=tag, statusEquals="Stopped")
    assert [j["jobArn"] for j in stopped_only["invocationJobSummaries"]] == [arn]
    pages, token_ = [], None
    while True:
        page = bedrock.list_model_invocation_jobs(nameContains=tag, maxResults=1, sortOrder="Ascending",
                                                  **({"nextToken": token_} if token_ else {}))
        pages += page["invocationJobSummaries"]
        token_ = page.get("nextToken")
        if not token_:
            break
    assert [j["jobArn"] for j in pages] == [j["jobArn"] for j in reversed(mine)]
    assert all(set(j) >= {"inputDataConfig", "outputDataConfig", "status", "totalRecordCount"} for j in pages)


def test_records_run_as_their_creator(server, file_root: Path, tag: str):
    """IAM applies to every record: a principal allowed to create jobs but not to invoke the model gets 403 lines."""
    admin = operator(server)
    policy = admin.ok("POST", "/outcrop/v1/policies", {"PolicyName": f"batch-only-{tag}", "PolicyDocument": {
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["bedrock:*ModelInvocationJob*", "bedrock:*AsyncInvoke*"], "Resource": "*"},
            {"Effect": "Deny", "Action": "bedrock:InvokeModel", "Resource": "*"}]}})["Policy"]["Arn"]
    user = admin.new_user(f"batcher-{tag}", policy)
    folder = file_root / f"iam-{tag}"
    folder.mkdir()
    (folder / "in.jsonl").write_text(jsonl([{"recordId": "X1", "modelInput": chat("hi")}]))
    bedrock = user.client("bedrock")
    job = wait(bedrock, create(bedrock, f"iam-{tag}", (folder / "in.jsonl").as_uri(), folder.as_uri()))
    assert job["status"] == "Completed" and job["errorRecordCount"] == 1, job
    line = json.loads((folder / job["jobArn"].rsplit("/", 1)[1] / "in.jsonl.out").read_text())
    assert line["error"]["errorCode"] == 403 and "bedrock:InvokeModel" in line["error"]["errorMessage"]
    runtime = user.client("bedrock-runtime")
    arn = runtime.start_async_invoke(modelId=MODEL, modelInput=chat("hi"), outputDataConfig={
        "s3OutputDataConfig": {"s3Uri": folder.as_uri() + "/async"}})["invocationArn"]
    failed = wait_async(runtime, arn)
    assert failed["status"] == "Failed" and "bedrock:InvokeModel" in failed["failureMessage"]


def test_async_invoke_end_to_end(runtime, s3_server, file_root: Path, tag: str):
    body = chat("Name an animal.")
    folder = file_root / f"async-{tag}"
    started = runtime.start_async_invoke(modelId=MODEL, modelInput=body, tags=[{"key": "k", "value": "v"}],
                                         outputDataConfig={"s3OutputDataConfig": {"s3Uri": folder.as_uri()}})
    arn = started["invocationArn"]
    invocation_id = arn.rsplit("/", 1)[1]
    assert arn.startswith("arn:aws:bedrock:us-east-1:") and ":async-invoke/" in arn and len(invocation_id) == 12
    got = wait_async(runtime, arn)
    assert got["status"] == "Completed", got
    assert got["modelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{MODEL}"
    assert got["outputDataConfig"] == {"s3OutputDataConfig": {"s3Uri": folder.as_uri()}}
    assert got["endTime"] >= got["submitTime"] and got["clientRequestToken"]
    output = json.loads((folder / invocation_id / "output.json").read_text())
    assert same_answer(output, invoke(runtime, body))

    s3 = s3_server.client()
    bucket = f"async-{tag}"
    s3.create_bucket(Bucket=bucket)
    on_s3 = runtime.start_async_invoke(modelId=MODEL, modelInput=body, outputDataConfig={
        "s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/answers"}})["invocationArn"]
    assert wait_async(runtime, on_s3)["status"] == "Completed"
    stored = s3.get_object(Bucket=bucket, Key=f"answers/{on_s3.rsplit('/', 1)[1]}/output.json")["Body"].read()
    assert same_answer(json.loads(stored), output)

    rejected = runtime.start_async_invoke(modelId=MODEL, modelInput={"messages": []}, outputDataConfig={
        "s3OutputDataConfig": {"s3Uri": folder.as_uri()}})["invocationArn"]
    failed = wait_async(runtime, rejected)
    assert failed["status"] == "Failed" and "messages" in failed["failureMessage"]
    with pytest.raises(ClientError) as invalid:
        runtime.start_async_invoke(modelId=MODEL, modelInput=body, outputDataConfig={
            "s3OutputDataConfig": {"s3Uri": "ftp://nowhere/x"}})
    assert invalid.value.response["Error"]["Code"] == "ValidationException"

    completed = runtime.list_async_invokes(statusEquals="Completed", maxResults=1000)["asyncInvokeSummaries"]
    assert {arn, on_s3} <= {s["invocationArn"] for s in completed}
    assert rejected in {s["invocationArn"] for s in runtime.list_async_invokes(statusEquals="Failed")[
        "asyncInvokeSummaries"]}
    first = runtime.list_async_invokes(maxResults=1, sortOrder="Ascending")
    assert len(first["asyncInvokeSummaries"]) == 1 and first["nextToken"]
    assert runtime.list_async_invokes(maxResults=1, nextToken=first["nextToken"], sortOrder="Ascending")[
        "asyncInvokeSummaries"][0]["invocationArn"] != first["asyncInvokeSummaries"][0]["invocationArn"]


def test_job_calls_are_audited_without_content(server, bedrock, file_root: Path, tag: str):
    folder = file_root / f"in-{tag}-files"
    folder.mkdir()
    (folder / "in.jsonl").write_text(jsonl([{"recordId": "Q1", "modelInput": chat("secret question")}]))
    arn = create(bedrock, f"audit-{tag}", (folder / "in.jsonl").as_uri(), folder.as_uri())
    wait(bedrock, arn)
    events = operator(server).ok("GET", "/outcrop/v1/audit/events?MaxResults=50&EventName=CreateModelInvocationJob")
    event = next(json.loads(e["CloudTrailEvent"]) if "CloudTrailEvent" in e else e for e in events["Events"]
                 if arn in json.dumps(e))
    assert event["responseElements"] == {"jobArn": arn}
    assert event["requestParameters"]["jobName"] == f"audit-{tag}"
    assert "secret question" not in json.dumps(event) and folder.name not in json.dumps(event)


def test_tags_on_job_arns(bedrock, file_root: Path, tag: str):
    folder = file_root / f"tags-{tag}"
    folder.mkdir()
    (folder / "in.jsonl").write_text(jsonl([{"recordId": "T1", "modelInput": chat("Say hi.", 4)}]))
    arn = create(bedrock, f"tags-{tag}", (folder / "in.jsonl").as_uri(), (folder / "out").as_uri(),
                 tags=[{"key": "team", "value": "ml"}])
    assert bedrock.list_tags_for_resource(resourceARN=arn)["tags"] == [{"key": "team", "value": "ml"}]
    bedrock.tag_resource(resourceARN=arn, tags=[{"key": "cost", "value": "42"}, {"key": "team", "value": "ops"}])
    bedrock.untag_resource(resourceARN=arn, tagKeys=["cost", "never-set"])
    assert bedrock.list_tags_for_resource(resourceARN=arn)["tags"] == [{"key": "team", "value": "ops"}]
    wait(bedrock, arn)
    missing = arn.rsplit("/", 1)[0] + "/abcdefabcdef"
    for bad, code in ((missing, "ResourceNotFoundException"), (arn.replace(":model-invocation-job/", ":knowledge-base/"),
                                                                "ValidationException"), ("not-an-arn-but-long-enough", "ValidationException")):
        with pytest.raises(ClientError) as error:
            bedrock.list_tags_for_resource(resourceARN=bad)
        assert error.value.response["Error"]["Code"] == code, bad
    with pytest.raises(ClientError) as error:
        bedrock.tag_resource(resourceARN=arn, tags=[{"key": "k" * 129, "value": "x"}])
    assert error.value.response["Error"]["Code"] == "ValidationException"
