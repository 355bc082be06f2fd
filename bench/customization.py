"""Fine-tuning, end to end through boto3 against a live server, in one run:

(a) the held-out task score before and after: SmolLM2-135M fine-tuned with LoRA on pycountry's ISO 3166-1
    table (name → alpha-3 code, 199 training countries; 50 held out, never trained on), scored on the held-out
    ones through Converse at temperature 0 — `exact` (the answer is the code and nothing else, what the prompt
    asks) and `contains` (the code appears in the answer as a word);
(b) the custom model's decode speed ÷ the base model's: the same raw-continuation prompts (/v1/completions, streamed),
    base model ID vs custom model ARN on the same engine (the LoRA applied per request), alternating; decode
    tokens/s from the first streamed token to the last (whole-request tokens/s reported beside it).

Run: python bench/customization.py [--steps 48] [--batch-size 4] [--reps 3] [--targets attention|all|q_proj,v_proj]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import CpuWatch, boto_client, emit, machine_notes, make_home, running_server  # noqa: E402

from tests.e2e.country_task import contains, exact, items, write_jsonl  # noqa: E402

BASE = "huggingface.smollm2-135m-instruct-v1:0"
# Raw text continuations (OpenAI /v1/completions, no chat template): both models write on for all the tokens,
# where a chat turn would let the country-code model stop after three letters.
STORY = ["Once upon a time, in a lighthouse by the sea,", "The recipe for bread begins with",
         "A bicycle works because", "The fox looked at the crow and"]


def ask(runtime: Any, model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    started = time.perf_counter()
    reply = runtime.converse(modelId=model, messages=[{"role": "user", "content": [{"text": prompt}]}],
                             inferenceConfig={"temperature": 0, "maxTokens": max_tokens})
    return {"text": reply["output"]["message"]["content"][0]["text"], "tokens": reply["usage"]["outputTokens"],
            "seconds": time.perf_counter() - started}


def timed_stream(client: Any, model: str, prompt: str) -> tuple[float | None, float]:
    """(decode tokens/s from the first streamed token to the last, whole-request tokens/s): the first excludes
    the prompt's prefill and the HTTP round trip, which weigh unevenly when one model stops earlier."""
    started = time.perf_counter()
    first = last = None
    tokens = 0
    for chunk in client.completions.create(model=model, prompt=prompt, max_tokens=128, temperature=0, stream=True,
                                           stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].text:
            last = time.perf_counter()
            first = first or last
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    overall = tokens / (time.perf_counter() - started)
    if first is None or last is None or tokens < 16 or last <= first:
        return None, overall
    return (tokens - 1) / (last - first), overall


def serving_engine(bedrock: Any, model: str) -> str | None:
    """GetCustomModel's `servingEngine`, from the raw JSON: boto3 drops members its service model lacks."""
    raw: list[bytes] = []

    def keep(http_response: Any, **_: Any) -> None:
        raw.append(http_response.content)

    bedrock.meta.events.register("after-call.bedrock.GetCustomModel", keep)
    bedrock.get_custom_model(modelIdentifier=model)
    bedrock.meta.events.unregister("after-call.bedrock.GetCustomModel", keep)
    return json.loads(raw[-1]).get("servingEngine") if raw else None


def score(runtime: Any, model: str, held: list[Any]) -> dict[str, float]:
    answers = [(ask(runtime, model, i.prompt, 12)["text"], i) for i in held]
    return {"exact": sum(exact(a, i) for a, i in answers) / len(held),
            "contains": sum(contains(a, i) for a, i in answers) / len(held)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--targets", default=None, help="loraTargetModules (the service's default when omitted)")
    parser.add_argument("--learning-rate", default="0.004")
    args = parser.parse_args()
    home = make_home()
    train, held = items()
    data = write_jsonl(home / "files" / "countries" / "train.jsonl", train)
    with CpuWatch() as watch, running_server(home) as server:
        runtime = boto_client(server.exports())
        bedrock = boto_client(server.exports(), "bedrock")
        before = score(runtime, BASE, held)
        started = time.perf_counter()
        hyper = {"batchSize": str(args.batch_size), "learningRate": args.learning_rate, "epochCount": "10",
                 "maxSteps": str(args.steps), **({"loraTargetModules": args.targets} if args.targets else {})}
        arn = bedrock.create_model_customization_job(
            jobName="countries", customModelName="countries", roleArn="arn:aws:iam::1:role/bench",
            baseModelIdentifier=BASE, hyperParameters=hyper,
            trainingDataConfig={"s3Uri": data.as_uri()},
            outputDataConfig={"s3Uri": (home / "files" / "out").as_uri() + "/"})["jobArn"]
        while (job := bedrock.get_model_customization_job(jobIdentifier=arn))["status"] == "InProgress":
            time.sleep(1)
        job_seconds = time.perf_counter() - started
        assert job["status"] == "Completed", job
        custom = job["outputModelArn"]
        after = score(runtime, custom, held)
        print({"before": before, "after": after, "job_seconds": job_seconds}, flush=True)
        speeds: dict[str, list[float]] = {"base": [], "custom": []}
        whole: dict[str, list[float]] = {"base": [], "custom": []}
        exports = server.exports()
        import openai

        client = openai.OpenAI(base_url=exports["OPENAI_BASE_URL"], api_key=exports["OPENAI_API_KEY"], max_retries=0)
        for _ in range(args.reps):
            for name, model in (("base", BASE), ("custom", custom)):
                for prompt in STORY:
                    decode, overall = timed_stream(client, model, prompt)
                    if decode:
                        speeds[name].append(decode)
                        whole[name].append(overall)
        engine = serving_engine(bedrock, custom)
    base_tps, custom_tps = statistics.median(speeds["base"]), statistics.median(speeds["custom"])
    result = {
        "task": "pycountry ISO 3166-1 alpha-3, 199 train / 50 held out", "base_model": BASE,
        "steps": args.steps, "batch_size": args.batch_size, "learning_rate": float(args.learning_rate),
        "lora_targets": args.targets or "default", "job_seconds": round(job_seconds, 1),
        "training_loss": job["trainingMetrics"]["trainingLoss"], "held_out_before": before,
        "held_out_after": after, "serving_engine": engine,
        "base_tokens_per_s": round(base_tps, 1), "custom_tokens_per_s": round(custom_tps, 1),
        "custom_over_base": round(custom_tps / base_tps, 3), "samples": {k: len(v) for k, v in speeds.items()},
        "whole_request_tokens_per_s": {k: round(statistics.median(v), 1) for k, v in whole.items()},
        "measure": "decode tokens/s, first to last streamed token, 128-token raw continuations, median",
        "cpu_contention": watch.summary(), "machine": machine_notes(),
    }
    emit(result, "customization")


if __name__ == "__main__":
    main()
