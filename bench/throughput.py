"""Chat throughput: Converse through Outcrop vs xllamacpp called directly, and 4 concurrent ConverseStreams.

(a) Converse (boto3 bedrock-runtime, maxTokens=128, temperature 0) output tokens/s, divided by the same
    GGUF on xllamacpp in-process (same threads/slots/ctx, same prompt, same max tokens). The two never run
    at the same time: each side runs in its own process, alternating A B A B, and the other is stopped.
(b) 4 concurrent ConverseStream calls: aggregate output tokens/s vs one stream alone, and per-stream min/max.

Run: python bench/throughput.py [--rounds 2] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    CHAT_MODEL,
    CpuWatch,
    boto_client,
    emit,
    gguf_path,
    machine_notes,
    make_home,
    running_server,
)

PROMPT = "Write a long story about a lighthouse keeper"
MAX_TOKENS = 128
SLOTS = 4
CTX = 8192
THREADS = os.cpu_count() or 1


# --- the direct reference: run in a child process so it can be fully freed before the server starts -----------

def direct_worker(gguf: str, reps: int) -> None:
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = gguf
    p.n_parallel = SLOTS
    p.n_ctx = CTX
    p.cpuparams.n_threads = THREADS
    p.cpuparams_batch.n_threads = THREADS
    p.use_jinja = True
    p.verbosity = -1
    server = xlc.Server(p)
    body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS, "temperature": 0}
    server.handle_chat_completions(dict(body))  # warm-up
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        r = server.handle_chat_completions(dict(body))
        wall = time.perf_counter() - t0
        toks = r["usage"]["completion_tokens"]
        samples.append({"wall_s": wall, "output_tokens": toks, "tps": toks / wall,
                        "engine_predicted_tps": (r.get("timings") or {}).get("predicted_per_second")})
    print("RESULT " + json.dumps(samples), flush=True)


def run_direct(reps: int) -> list[dict]:
    out = subprocess.run([sys.executable, __file__, "--direct-worker", "--reps", str(reps)], capture_output=True,
                         text=True, timeout=600)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"direct worker failed ({out.returncode}): {out.stderr[-2000:]}")


# --- through the server ---------------------------------------------------------------------------------------

def converse_once(client) -> dict:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    r = client.converse(modelId=CHAT_MODEL, messages=[{"role": "user", "content": [{"text": PROMPT}]}],
                        inferenceConfig={"maxTokens": MAX_TOKENS, "temperature": 0})
    wall = time.perf_counter() - t0
    toks = r["usage"]["outputTokens"]
    return {"wall_s": wall, "output_tokens": toks, "tps": toks / wall}


def stream_once(client, prompt: str, start_barrier: threading.Barrier | None = None) -> dict:  # type: ignore[no-untyped-def]
    if start_barrier is not None:
        start_barrier.wait(timeout=60)
    t0 = time.perf_counter()
    r = client.converse_stream(modelId=CHAT_MODEL, messages=[{"role": "user", "content": [{"text": prompt}]}],
                               inferenceConfig={"maxTokens": MAX_TOKENS, "temperature": 0})
    toks, first = 0, None
    for event in r["stream"]:
        if "contentBlockDelta" in event and first is None:
            first = time.perf_counter() - t0
        if "metadata" in event:
            toks = event["metadata"]["usage"]["outputTokens"]
    end = time.perf_counter()
    return {"t0": t0, "end": end, "wall_s": end - t0, "ttft_s": first, "output_tokens": toks, "tps": toks / (end - t0)}


def run_server(home: Path, reps: int, concurrency: bool) -> dict:
    with running_server(home, extra_env={"OUTCROP_THREADS": str(THREADS), "OUTCROP_SLOTS": str(SLOTS),
                                         "OUTCROP_CONTEXT_SIZE": str(CTX)}) as srv:
        client = boto_client(srv.exports())
        converse_once(client)  # loads the model + warm-up
        result: dict = {"converse": [converse_once(client) for _ in range(reps)]}
        if concurrency:
            prompts = [f"{PROMPT} named {n}" for n in ("Ada", "Bram", "Cora", "Dov")]
            stream_once(client, prompts[0])  # warm-up for the streaming path
            result["single_stream"] = [stream_once(client, prompts[0]) for _ in range(2)]
            rounds = []
            for _ in range(2):
                barrier = threading.Barrier(4)
                outs: list[dict] = [{} for _ in range(4)]

                def work(i: int, barrier: threading.Barrier = barrier, outs: list[dict] = outs) -> None:
                    outs[i] = stream_once(client, prompts[i], barrier)

                threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(timeout=600)
                start = min(o["t0"] for o in outs)
                end = max(o["end"] for o in outs)
                total = sum(o["output_tokens"] for o in outs)
                rounds.append({"wall_s": end - start, "output_tokens": total, "aggregate_tps": total / (end - start),
                               "per_stream_tps": [o["tps"] for o in outs],
                               "per_stream_ttft_s": [o["ttft_s"] for o in outs]})
            result["concurrent4"] = rounds
        return result


def agg_tps(samples: list[dict]) -> float:
    return sum(s["output_tokens"] for s in samples) / sum(s["wall_s"] for s in samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--direct-worker", action="store_true")
    args = ap.parse_args()
    if args.direct_worker:
        direct_worker(str(gguf_path()), args.reps)
        return

    home = make_home()
    try:
        run_all(args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_all(args: argparse.Namespace, home: Path) -> None:
    watch = CpuWatch().__enter__()
    direct: list[dict] = []
    server: list[dict] = []
    conc: dict = {}
    for rnd in range(args.rounds):  # A B A B, never at the same time
        direct += run_direct(args.reps)
        last = rnd == args.rounds - 1
        r = run_server(home, args.reps, concurrency=last)
        server += r["converse"]
        if last:
            conc = r
        print(f"round {rnd + 1}: direct {agg_tps(direct):.2f} tok/s, server {agg_tps(server):.2f} tok/s",
              file=sys.stderr, flush=True)

    d, s = agg_tps(direct), agg_tps(server)
    single = agg_tps(conc["single_stream"])
    c4 = conc["concurrent4"]
    c4_agg = statistics.mean(r["aggregate_tps"] for r in c4)
    per = [x for r in c4 for x in r["per_stream_tps"]]
    result = {
        "bench": "throughput",
        "machine": machine_notes(),
        "threads": THREADS, "slots": SLOTS, "ctx": CTX, "max_tokens": MAX_TOKENS, "prompt": PROMPT,
        "direct_tps": round(d, 2),
        "direct_tps_samples": [round(x["tps"], 2) for x in direct],
        "direct_engine_predicted_tps": [round(x["engine_predicted_tps"] or 0, 2) for x in direct],
        "server_converse_tps": round(s, 2),
        "server_converse_tps_samples": [round(x["tps"], 2) for x in server],
        "output_tokens": sorted({x["output_tokens"] for x in direct + server}),
        "converse_ratio": round(s / d, 3),
        "converse_ratio_target": 0.95,
        "single_stream_tps": round(single, 2),
        "concurrent4_aggregate_tps": round(c4_agg, 2),
        "concurrent4_rounds": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()
                                if k not in ("per_stream_tps", "per_stream_ttft_s")} for r in c4],
        "concurrent4_per_stream_tps_min": round(min(per), 2),
        "concurrent4_per_stream_tps_max": round(max(per), 2),
        "concurrent4_ttft_s_max": round(max(t for r in c4 for t in r["per_stream_ttft_s"] if t is not None), 3),
        "concurrent4_ratio_vs_single": round(c4_agg / single, 3),
        "concurrent4_ratio_target": 1.0,
    }
    result["cpu_contention"] = watch.summary()
    emit(result, "throughput")


if __name__ == "__main__":
    main()
