"""Model customization through boto3, on the real tiny model: a LoRA fine-tune on a real task (pycountry's ISO
codes), the custom model invoked by ARN through Converse and the OpenAI SDK, the held-out score before and
after, Stop, a killed server, model import, and provisioned throughput."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from outcrop.settings import Settings
from tests.e2e.conftest import LiveServer, free_port, start_server, stop_server
from tests.e2e.country_task import Item, exact, items, write_jsonl

BASE = "huggingface.smollm2-135m-instruct-v1:0"
ROLE = "arn:aws:iam::123456789012:role/customization"
HELD_OUT = 30  # held-out countries scored before and after
pytestmark = pytest.mark.timeout(1500)  # the first test waits for the fine-tune (minutes on a shared CPU)


def wait(bedrock: Any, job_arn: str, until: tuple[str, ...] = ("Completed", "Failed", "Stopped"),
         timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = bedrock.get_model_customization_job(jobIdentifier=job_arn)
        if job["status"] in until:
            return job  # type: ignore[no-any-return]
        time.sleep(0.5)
    raise AssertionError(f"job {job_arn} did not reach {until}: {job}")


def ask(runtime: Any, model: str, item: Item) -> str:
    reply = runtime.converse(modelId=model, messages=[{"role": "user", "content": [{"text": item.prompt}]}],
                             inferenceConfig={"temperature": 0, "maxTokens": 12})
    return str(reply["output"]["message"]["content"][0]["text"])


def score(runtime: Any, model: str, chosen: list[Item]) -> float:
    return sum(exact(ask(runtime, model, i), i) for i in chosen) / len(chosen)


@pytest.fixture(scope="module")
def task(file_root: Path) -> dict[str, Any]:
    train, held = items()
    folder = file_root / "countries"
    return {"train": write_jsonl(folder / "train.jsonl", train), "validation":
            write_jsonl(folder / "validation.jsonl", held[HELD_OUT:]), "held": held[:HELD_OUT],
            "output": file_root / "customization-output"}


@pytest.fixture(scope="module")
def tuned(bedrock: Any, runtime: Any, task: dict[str, Any]) -> dict[str, Any]:
    before = score(runtime, BASE, task["held"])
    arn = bedrock.create_model_customization_job(
        jobName="countries-1", customModelName="countries", roleArn=ROLE, baseModelIdentifier=BASE,
        customizationType="FINE_TUNING", hyperParameters={"epochCount": "2", "batchSize": "4",
                                                          "learningRate": "0.004", "maxSteps": "48"},
        trainingDataConfig={"s3Uri": task["train"].as_uri()},
        validationDataConfig={"validators": [{"s3Uri": task["validation"].as_uri()}]},
        outputDataConfig={"s3Uri": task["output"].as_uri() + "/"},
        jobTags=[{"key": "team", "value": "geo"}])["jobArn"]
    seen = {bedrock.get_model_customization_job(jobIdentifier=arn)["status"]}
    job = wait(bedrock, arn)
    seen.add(job["status"])
    return {"arn": arn, "job": job, "before": before, "seen": seen}


def test_fine_tuning_completes_with_metrics_and_files(tuned: dict[str, Any], task: dict[str, Any]) -> None:
    job = tuned["job"]
    assert job["status"] == "Completed", job.get("failureMessage")
    assert "InProgress" in tuned["seen"]
    assert job["trainingMetrics"]["trainingLoss"] > 0
    assert job["validationMetrics"][0]["validationLoss"] > 0
    assert job["statusDetails"]["trainingDetails"]["status"] == "Completed"
    assert job["hyperParameters"]["maxSteps"] == "48" and job["outputModelName"] == "countries"
    folder = task["output"] / f"model-customization-job-{job['jobArn'].rsplit('/', 1)[-1]}"
    lines = (folder / "training_artifacts" / "step_wise_training_metrics.csv").read_text().splitlines()
    assert lines[0].startswith("step_number,epoch_number,training_loss") and len(lines) == 49
    first, last = float(lines[1].split(",")[2]), float(lines[-1].split(",")[2])
    assert last < first  # it learned
    assert (folder / "validation_artifacts" / "post_fine_tuning_validation" / "validation_metrics.csv").exists()


def test_custom_model_is_listed_and_served_by_llamacpp(bedrock: Any, tuned: dict[str, Any]) -> None:
    model = bedrock.get_custom_model(modelIdentifier=tuned["job"]["outputModelArn"])
    assert model["modelStatus"] == "Active" and model["modelName"] == "countries"
    assert model["baseModelArn"].endswith(BASE) and model["customizationType"] == "FINE_TUNING"
    assert model["trainingMetrics"]["trainingLoss"] == tuned["job"]["trainingMetrics"]["trainingLoss"]
    assert bedrock.get_custom_model(modelIdentifier="countries")["modelArn"] == model["modelArn"]
    listed = bedrock.list_custom_models(nameContains="countr")["modelSummaries"]
    assert [m["modelArn"] for m in listed] == [model["modelArn"]]
    jobs = bedrock.list_model_customization_jobs(statusEquals="Completed", nameContains="countries-1")
    assert [j["jobArn"] for j in jobs["modelCustomizationJobSummaries"]] == [tuned["arn"]]
    assert bedrock.list_tags_for_resource(resourceARN=tuned["arn"])["tags"] == [{"key": "team", "value": "geo"}]
    bedrock.tag_resource(resourceARN=model["modelArn"], tags=[{"key": "stage", "value": "eval"}])
    assert bedrock.list_tags_for_resource(resourceARN=model["modelArn"])["tags"] == [{"key": "stage", "value": "eval"}]


def test_the_custom_model_answers_better_on_held_out_countries(runtime: Any, tuned: dict[str, Any],
                                                               task: dict[str, Any]) -> None:
    after = score(runtime, tuned["job"]["outputModelArn"], task["held"])
    assert after >= tuned["before"] + 0.15, (tuned["before"], after)
    # the base model is untouched by the adapter loaded beside it
    assert score(runtime, BASE, task["held"][:5]) <= tuned["before"] + 0.2


def test_custom_model_by_arn_through_converse_stream_and_openai(runtime: Any, openai_client: Any,
                                                                 tuned: dict[str, Any], task: dict[str, Any]) -> None:
    arn, item = tuned["job"]["outputModelArn"], task["held"][0]
    whole = ask(runtime, arn, item)
    stream = runtime.converse_stream(modelId=arn, messages=[{"role": "user", "content": [{"text": item.prompt}]}],
                                     inferenceConfig={"temperature": 0, "maxTokens": 12})
    streamed = "".join(e["contentBlockDelta"]["delta"]["text"] for e in stream["stream"] if "contentBlockDelta" in e)
    assert streamed == whole
    reply = openai_client.chat.completions.create(model=arn, messages=[{"role": "user", "content": item.prompt}],
                                                  temperature=0, max_tokens=12)
    assert reply.choices[0].message.content == whole
    body = json.loads(runtime.invoke_model(modelId=arn, body=json.dumps({
        "messages": [{"role": "user", "content": item.prompt}], "temperature": 0, "max_tokens": 12}))["body"].read())
    assert body["choices"][0]["message"]["content"] == whole


def test_bad_training_data_fails_fast_naming_the_line(bedrock: Any, file_root: Path) -> None:
    bad = file_root / "bad" / "train.jsonl"
    bad.parent.mkdir(exist_ok=True)
    good = json.dumps({"prompt": "a", "completion": "b"})
    bad.write_text("\n".join([good] * 9 + ['{"prompt": "a", "completion": '] + [good]) + "\n")
    with pytest.raises(ClientError) as error:
        bedrock.create_model_customization_job(
            jobName="bad-data", customModelName="bad", roleArn=ROLE, baseModelIdentifier=BASE,
            trainingDataConfig={"s3Uri": bad.as_uri()}, outputDataConfig={"s3Uri": (file_root / "out").as_uri()})
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "line 10" in error.value.response["Error"]["Message"]
    for change, expected in (({"baseModelIdentifier": "amazon.titan-embed-text-v2:0"}, "does not support"),
                             ({"hyperParameters": {"epochs": "2"}}, "epochs"),
                             ({"trainingDataConfig": {"s3Uri": "file:///etc/passwd"}}, "outside")):
        args = {"jobName": "bad-args", "customModelName": "bad", "roleArn": ROLE, "baseModelIdentifier": BASE,
                "trainingDataConfig": {"s3Uri": bad.as_uri()},
                "outputDataConfig": {"s3Uri": (file_root / "out").as_uri()},
                **change}
        with pytest.raises(ClientError) as error:
            bedrock.create_model_customization_job(**args)
        assert expected in error.value.response["Error"]["Message"], error.value.response
    assert not [j for j in bedrock.list_model_customization_jobs()["modelCustomizationJobSummaries"]
                if j["jobName"].startswith("bad")]


def test_stop_a_running_job(bedrock: Any, task: dict[str, Any], tuned: dict[str, Any]) -> None:
    arn = bedrock.create_model_customization_job(
        jobName="countries-stop", customModelName="countries-stopped", roleArn=ROLE, baseModelIdentifier=BASE,
        hyperParameters={"epochCount": "10", "batchSize": "2"}, trainingDataConfig={"s3Uri": task["train"].as_uri()},
        outputDataConfig={"s3Uri": task["output"].as_uri()})["jobArn"]
    wait(bedrock, arn, until=("InProgress",), timeout=60)
    with pytest.raises(ClientError) as error:  # one name per job
        bedrock.create_model_customization_job(
            jobName="countries-stop", customModelName="other", roleArn=ROLE, baseModelIdentifier=BASE,
            trainingDataConfig={"s3Uri": task["train"].as_uri()}, outputDataConfig={"s3Uri": task["output"].as_uri()})
    assert error.value.response["Error"]["Code"] in ("ConflictException", "ValidationException")
    bedrock.stop_model_customization_job(jobIdentifier=arn)
    assert bedrock.get_model_customization_job(jobIdentifier=arn)["status"] in ("Stopping", "Stopped")
    job = wait(bedrock, arn, timeout=120)
    assert job["status"] == "Stopped" and "outputModelArn" not in job
    with pytest.raises(ClientError) as error:
        bedrock.stop_model_customization_job(jobIdentifier=arn)
    assert error.value.response["Error"]["Code"] == "ConflictException"
    assert not bedrock.list_custom_models(nameContains="countries-stopped", modelStatus="Active")["modelSummaries"]


def test_provisioned_throughput_serves_the_custom_model(bedrock: Any, runtime: Any, tuned: dict[str, Any],
                                                        task: dict[str, Any]) -> None:
    model_arn = tuned["job"]["outputModelArn"]
    pid = bedrock.create_provisioned_model_throughput(modelUnits=1, provisionedModelName="countries-pt",
                                                      modelId=model_arn)["provisionedModelArn"]
    deadline = time.monotonic() + 120
    while (status := bedrock.get_provisioned_model_throughput(provisionedModelId=pid)["status"]) == "Creating":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert status == "InService"
    item = task["held"][1]
    assert ask(runtime, pid, item) == ask(runtime, model_arn, item)
    listed = bedrock.list_provisioned_model_throughputs(modelArnEquals=model_arn)["provisionedModelSummaries"]
    assert [p["provisionedModelArn"] for p in listed] == [pid]
    with pytest.raises(ClientError) as error:
        bedrock.delete_custom_model(modelIdentifier=model_arn)
    assert error.value.response["Error"]["Code"] == "ConflictException"
    bedrock.delete_provisioned_model_throughput(provisionedModelId=pid)
    with pytest.raises(ClientError) as error:
        bedrock.get_provisioned_model_throughput(provisionedModelId=pid)
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_import_a_gguf_model_and_invoke_it(bedrock: Any, runtime: Any, file_root: Path) -> None:
    source = Settings().model_cache / "smollm2-135m-instruct-q4_1.gguf"
    folder = file_root / "import-gguf"
    folder.mkdir()
    shutil.copyfile(source.resolve(), folder / "smol.gguf")
    arn = bedrock.create_model_import_job(jobName="import-smol", importedModelName="my-smol", roleArn=ROLE,
                                          modelDataSource={"s3DataSource": {"s3Uri": folder.as_uri()}})["jobArn"]
    deadline = time.monotonic() + 120
    while (job := bedrock.get_model_import_job(jobIdentifier=arn))["status"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert job["status"] == "Completed", job.get("failureMessage")
    model = bedrock.get_imported_model(modelIdentifier=job["importedModelArn"])
    assert model["modelArchitecture"] == "llama" and model["instructSupported"] is True
    item = Item("France", "FRA")
    assert ask(runtime, model["modelArn"], item) == ask(runtime, BASE, item)  # the same weights, the same answer
    assert [m["modelName"] for m in bedrock.list_imported_models()["modelSummaries"]] == ["my-smol"]
    bedrock.delete_imported_model(modelIdentifier=model["modelArn"])
    with pytest.raises(ClientError) as error:
        ask(runtime, model["modelArn"], item)
    assert error.value.response["Error"]["Code"] in ("ResourceNotFoundException", "ValidationException")
    with pytest.raises(ClientError) as error:
        bedrock.create_model_import_job(jobName="import-nothing", importedModelName="x", roleArn=ROLE,
                                        modelDataSource={"s3DataSource": {"s3Uri": file_root.as_uri() + "/bad"}})
    assert error.value.response["Error"]["Code"] == "ValidationException"


def test_a_killed_server_finishes_its_fine_tuning_job(tmp_path: Path, task: dict[str, Any]) -> None:
    home = tmp_path / "home"
    data = home / "files" / "train.jsonl"
    data.parent.mkdir(parents=True)
    shutil.copyfile(task["train"], data)
    env = {"OUTCROP_JOB_LEASE_S": "3", "OUTCROP_FINE_TUNING_CHECKPOINT_S": "0"}  # a checkpoint after every step
    server: LiveServer = start_server(home, free_port(), env)
    bedrock = server.client("bedrock")
    arn = bedrock.create_model_customization_job(
        jobName="survivor", customModelName="survivor", roleArn=ROLE, baseModelIdentifier=BASE,
        hyperParameters={"batchSize": "2", "maxSteps": "4"}, trainingDataConfig={"s3Uri": data.as_uri()},
        outputDataConfig={"s3Uri": (home / "files" / "out").as_uri()})["jobArn"]
    deadline = time.monotonic() + 300
    while not list((home / "blobs").rglob("model-*-checkpoint")):  # killed once it has something to resume from
        job = bedrock.get_model_customization_job(jobIdentifier=arn)
        assert time.monotonic() < deadline and job["status"] == "InProgress", job
        time.sleep(0.2)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    server = start_server(home, free_port(), env)
    try:
        bedrock = server.client("bedrock")
        job = wait(bedrock, arn, timeout=900)
        assert job["status"] == "Completed", job.get("failureMessage")
        model = bedrock.get_custom_model(modelIdentifier=job["outputModelArn"])
        assert model["modelStatus"] == "Active"
        folder = home / "files" / "out" / f"model-customization-job-{arn.rsplit('/', 1)[-1]}"
        steps = (folder / "training_artifacts" / "step_wise_training_metrics.csv").read_text().splitlines()[1:]
        assert [line.split(",")[0] for line in steps] == ["0", "1", "2", "3"]  # the resumed run's steps are all there
        assert not list((home / "blobs").rglob("model-*-checkpoint"))  # and its checkpoint is gone
        reply = server.client("bedrock-runtime").converse(
            modelId=model["modelArn"], messages=[{"role": "user", "content": [{"text": Item("Peru", "PER").prompt}]}],
            inferenceConfig={"temperature": 0, "maxTokens": 8})
        assert reply["output"]["message"]["content"][0]["text"].strip()
    finally:
        stop_server(server)
