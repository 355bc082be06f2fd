"""Embeddings throughput, cold start and memory.

(a) InvokeModel amazon.titan-embed-text-v2:0 (boto3, one text per call, sequential) texts/s, divided by raw
    sentence-transformers encode() of the same sentences one at a time in a separate process (same threads).
    Both stay loaded; they alternate in blocks of 50 sentences (ABBA), each idle while the other runs.
(b) Cold start: launch `outcrop serve --no-prepare` (models already assembled in the home) until GET /healthz
    answers 200; first start of a fresh home and restarts of an existing one.
(c) RSS (VmRSS) of the server after the default chat model and the embedding model are loaded.

Run: python bench/embeddings.py [--sentences 300] [--passes 2] [--block 50] [--restarts 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    CHAT_MODEL,
    EMBED_MODEL,
    CpuWatch,
    Server,
    boto_client,
    emit,
    machine_notes,
    make_home,
    rss_kib,
    running_server,
)

THREADS = os.cpu_count() or 1
SUBJECTS = ["The lighthouse keeper", "A quiet librarian", "The night train", "Our neighbour's dog", "The river",
            "A tired engineer", "The old bakery", "An orange kite", "The mountain road", "A small robot"]
VERBS = ["watched", "remembered", "carried", "ignored", "painted", "followed", "repaired", "described", "found",
         "waited for"]
OBJECTS = ["the storm rolling in from the west", "a letter that never arrived", "the last bus of the evening",
           "an argument about the best way to cook rice", "the sound of rain on a tin roof",
           "three crates of apples"]


def sentences(n: int) -> list[str]:
    out = []
    for i in range(n):
        s, v, o = SUBJECTS[i % 10], VERBS[(i // 10) % 10], OBJECTS[(i // 3) % 6]
        out.append(f"{s} {v} {o} (note {i}).")
    return out


def minilm_path() -> str:
    from outcrop.modelpacks import MINILM_L6, pack_path

    return str(pack_path(MINILM_L6, Path("/tmp")))


def reference_worker(n: int) -> None:
    """Persistent reference process: loads the model, then runs blocks of sentences on request (stdin)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(THREADS)
    model = SentenceTransformer(minilm_path(), device="cpu", local_files_only=True)
    texts = sentences(n)
    for t in texts[:20]:  # warm-up
        model.encode([t], batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    print("READY", flush=True)
    for line in sys.stdin:
        lo, hi = map(int, line.split())
        t0 = time.perf_counter()
        for t in texts[lo:hi]:
            model.encode([t], batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
        print(f"DONE {time.perf_counter() - t0}", flush=True)


class Reference:
    def __init__(self, n: int) -> None:
        self.p = subprocess.Popen([sys.executable, __file__, "--reference-worker", "--sentences", str(n)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"reference worker failed: {line!r}")

    def block(self, lo: int, hi: int) -> float:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(f"{lo} {hi}\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line.startswith("DONE "):
            raise RuntimeError(f"reference worker failed: {line!r}")
        return float(line.split()[1])

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=10)


def invoke(client, text: str) -> list[float]:  # type: ignore[no-untyped-def]
    r = client.invoke_model(modelId=EMBED_MODEL, body=json.dumps({"inputText": text}), contentType="application/json",
                            accept="application/json")
    return json.loads(r["body"].read())["embedding"]


def measure(home: Path, n: int, passes: int, block: int) -> dict:
    """Reference and server alternate in blocks (ABBA order); each pauses while the other runs."""
    ref = Reference(n)
    srv = Server(home, extra_env={"OUTCROP_THREADS": str(THREADS)})
    try:
        srv.start()
        cold_first = srv.wait_healthy()
        exports = srv.exports()
        client = boto_client(exports)
        control = boto_client(exports, service="bedrock")
        texts = sentences(n)
        t_load = time.perf_counter()
        dim = len(invoke(client, texts[0]))  # loads the embedding model
        load_s = time.perf_counter() - t_load
        for t in texts[:20]:
            invoke(client, t)
        ref_s = srv_s = 0.0
        count = 0
        k = 0
        for _ in range(passes):
            for lo in range(0, n, block):
                hi = min(lo + block, n)
                order = ("ref", "srv") if k % 2 == 0 else ("srv", "ref")
                k += 1
                for side in order:
                    time.sleep(0.3)  # let the other side's worker threads go idle
                    if side == "ref":
                        ref_s += ref.block(lo, hi)
                    else:
                        t0 = time.perf_counter()
                        for t in texts[lo:hi]:
                            invoke(client, t)
                        srv_s += time.perf_counter() - t0
                count += hi - lo
        # the floor of one boto3 + SigV4 round trip with no model work (GetFoundationModel)
        for _ in range(20):
            control.get_foundation_model(modelIdentifier=EMBED_MODEL)
        t0 = time.perf_counter()
        for _ in range(200):
            control.get_foundation_model(modelIdentifier=EMBED_MODEL)
        floor_ms = (time.perf_counter() - t0) / 200 * 1e3
        ref.stop()
        out = {"n": count, "ref_s": ref_s, "srv_s": srv_s, "dimensions": dim, "cold_start_s": cold_first,
               "embed_model_load_s": load_s, "boto3_sigv4_floor_ms": floor_ms}
        assert srv.proc is not None
        out["rss_embed_only_mib"] = rss_kib(srv.proc.pid) / 1024
        t1 = time.perf_counter()
        r = client.converse(modelId=CHAT_MODEL, messages=[{"role": "user", "content": [{"text": "Say hi"}]}],
                            inferenceConfig={"maxTokens": 16, "temperature": 0})
        out["chat_first_call_s"] = time.perf_counter() - t1
        out["chat_output_tokens"] = r["usage"]["outputTokens"]
        invoke(client, "one more after the chat model is loaded")
        time.sleep(0.5)
        out["rss_chat_and_embed_mib"] = rss_kib(srv.proc.pid) / 1024
        for line in Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM"):
                out["rss_peak_mib"] = int(line.split()[1]) / 1024
        return out
    finally:
        ref.stop()
        srv.stop()


def cold_starts(home: Path, restarts: int) -> list[float]:
    times = []
    for _ in range(restarts):
        with running_server(home) as srv:
            times.append(srv.wait_healthy())
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=300)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--block", type=int, default=50)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--reference-worker", action="store_true")
    args = ap.parse_args()
    if args.reference_worker:
        reference_worker(args.sentences)
        return

    home = make_home()
    watch = CpuWatch().__enter__()
    try:
        m = measure(home, args.sentences, args.passes, args.block)
        restarts = cold_starts(home, args.restarts)
        ref = m["n"] / m["ref_s"]
        via = m["n"] / m["srv_s"]
        result = {
            "bench": "embeddings",
            "machine": machine_notes(),
            "threads": THREADS,
            "sentences": args.sentences, "passes": args.passes, "block": args.block,
            "reference_per_s": round(ref, 2),
            "server_invoke_per_s": round(via, 2),
            "reference_ms_per_call": round(1e3 * m["ref_s"] / m["n"], 3),
            "server_ms_per_call": round(1e3 * m["srv_s"] / m["n"], 3),
            "boto3_sigv4_floor_ms": round(m["boto3_sigv4_floor_ms"], 3),
            "ratio": round(via / ref, 3),
            "ratio_target": 0.95,
            "dimensions": m["dimensions"],
            "cold_start_first_start_s": round(m["cold_start_s"], 3),
            "cold_start_restart_s": [round(x, 3) for x in restarts],
            "cold_start_restart_median_s": round(statistics.median(restarts), 3),
            "cold_start_max_s": round(max([m["cold_start_s"], *restarts]), 3),
            "cold_start_target_s": 2.0,
            "embed_model_first_call_s": round(m["embed_model_load_s"], 3),
            "chat_model_first_call_s": round(m["chat_first_call_s"], 3),
            "rss_embed_only_mib": round(m["rss_embed_only_mib"], 1),
            "rss_chat_and_embed_mib": round(m["rss_chat_and_embed_mib"], 1),
            "rss_peak_mib": round(m["rss_peak_mib"], 1),
        }
        result["cpu_contention"] = watch.summary()
        emit(result, "embeddings")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
