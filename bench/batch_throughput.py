"""Batch inference throughput: N records as one CreateModelInvocationJob vs the same kind of N records as
sequential boto3 InvokeModel calls, in one run against one server (default chat model, temperature 0).

The batch runs its records `slots` at a time through the engine's parallel sequences; sequential calls use one
sequence at a time and pay a round trip each. Goal: batch records/min ÷ sequential records/min ≥ 1.3.

Each side gets its own prompts of the same shape (so neither profits from the other's prompt cache); the order
alternates over the rounds (B S, S B, ...).

Run: python bench/batch_throughput.py [--records 64] [--max-tokens 32] [--rounds 2] [--model ID]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CHAT_MODEL, CpuWatch, boto_client, emit, machine_notes, make_home, running_server  # noqa: E402

SLOTS = 4
TOPICS = ("rivers", "owls", "bridges", "tea", "comets", "glaciers", "violins", "deserts")


def body(side: str, rnd: int, i: int, max_tokens: int) -> dict:
    topic = TOPICS[i % len(TOPICS)]
    prompt = f"Write three sentences about {topic}. ({side}{rnd}-{i})"
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}


def sequential(runtime, model: str, bodies: list[dict]) -> dict:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    tokens = 0
    for b in bodies:
        reply = runtime.invoke_model(modelId=model, body=json.dumps(b))
        tokens += int(reply["ResponseMetadata"]["HTTPHeaders"]["x-amzn-bedrock-output-token-count"])
        reply["body"].read()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "records": len(bodies), "output_tokens": tokens, "records_per_min": len(bodies) / wall * 60}


def batch(bedrock, model: str, bodies: list[dict], folder: Path, name: str) -> dict:  # type: ignore[no-untyped-def]
    (folder / "in").mkdir(parents=True)
    (folder / "in" / "records.jsonl").write_text(
        "".join(json.dumps({"recordId": f"R{i:010d}", "modelInput": b}) + "\n" for i, b in enumerate(bodies)))
    t0 = time.perf_counter()
    arn = bedrock.create_model_invocation_job(
        jobName=name, roleArn="arn:aws:iam::123456789012:role/bench", modelId=model,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": (folder / "in" / "records.jsonl").as_uri()}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": (folder / "out").as_uri()}})["jobArn"]
    while (job := bedrock.get_model_invocation_job(jobIdentifier=arn))["status"] not in (
            "Completed", "Failed", "Stopped", "Expired"):
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    if job["status"] != "Completed" or job["successRecordCount"] != len(bodies):
        raise RuntimeError(f"the batch job did not complete every record: {job}")
    manifest = json.loads((folder / "out" / arn.rsplit("/", 1)[1] / "manifest.json.out").read_text())
    return {"wall_s": wall, "records": len(bodies), "output_tokens": manifest["outputTokenCount"],
            "records_per_min": len(bodies) / wall * 60}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default=CHAT_MODEL)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still stops the server (finally below)
    home = make_home()
    data = home / "files" / "bench"  # <home>/files is always an allowlisted file:// root
    try:
        with CpuWatch() as watch, running_server(home, extra_env={"OUTCROP_SLOTS": str(SLOTS)}) as srv:
            exports = srv.exports()
            runtime, bedrock = boto_client(exports), boto_client(exports, "bedrock")
            sequential(runtime, args.model, [body("warm", 0, i, args.max_tokens) for i in range(2)])  # load + warm
            seq: list[dict] = []
            bat: list[dict] = []
            for rnd in range(args.rounds):
                sides = ("batch", "seq") if rnd % 2 == 0 else ("seq", "batch")
                for side in sides:
                    bodies = [body(side, rnd, i, args.max_tokens) for i in range(args.records)]
                    if side == "seq":
                        seq.append(sequential(runtime, args.model, bodies))
                    else:
                        bat.append(batch(bedrock, args.model, bodies, data / f"r{rnd}", f"bench-{rnd}"))
                print(f"round {rnd + 1}: sequential {seq[-1]['records_per_min']:.1f}/min, "
                      f"batch {bat[-1]['records_per_min']:.1f}/min", file=sys.stderr, flush=True)
        cpu = watch.summary()
    finally:
        shutil.rmtree(home, ignore_errors=True)

    def rate(samples: list[dict]) -> float:
        return sum(s["records"] for s in samples) / sum(s["wall_s"] for s in samples) * 60

    emit({"bench": "batch_throughput", "machine": machine_notes(), "model": args.model, "slots": SLOTS,
          "records": args.records, "max_tokens": args.max_tokens, "rounds": args.rounds,
          "sequential_records_per_min": round(rate(seq), 1), "batch_records_per_min": round(rate(bat), 1),
          "ratio": round(rate(bat) / rate(seq), 3), "ratio_target": 1.3,
          "sequential": [{k: round(v, 2) for k, v in s.items()} for s in seq],
          "batch": [{k: round(v, 2) for k, v in s.items()} for s in bat], "cpu": cpu}, "batch_throughput")


if __name__ == "__main__":
    main()
