"""Gateway overhead: a trivially fast OpenAI-compatible upstream, called directly vs through Outcrop (and LiteLLM).

1. Latency: sequential non-streaming POST /v1/chat/completions with a persistent httpx client, directly to the
   upstream vs through Outcrop (model bench.upstream-v1:0), interleaved in blocks. Added p50/p99 = the
   difference of the percentiles (targets: p50 <= 1 ms, p99 <= 5 ms).
2. Requests/s at 32 concurrent connections (wrk if installed, else an asyncio httpx load generator) through
   Outcrop vs through LiteLLM's proxy (its own venv, .bench-venv-litellm), same upstream, same run
   (target: Outcrop >= 3x LiteLLM).

Run: python bench/gateway_overhead.py [--requests 2000] [--block 100] [--concurrency 32] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, CpuWatch, emit, free_port, machine_notes, make_home, running_server  # noqa: E402

MODEL_ID = "bench.upstream-v1:0"
LITELLM_KEY = "sk-outcrop-bench-0123456789abcdef"
LITELLM_VENV = ROOT / ".bench-venv-litellm"
BODY = {"model": "MODEL", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}

# --- the upstream: a raw ASGI app (no framework), run by uvicorn in its own process --------------------------

_COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "fake",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}).encode()


def _sse() -> bytes:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "fake"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "Hello there!"}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}},
    ]
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


_STREAM = _sse()
_MODELS = json.dumps({"object": "list", "data": [{"id": "fake", "object": "model", "created": 0, "owned_by": "bench"}]}).encode()


async def upstream_app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"]
    if path.endswith("/chat/completions"):
        stream = b'"stream":true' in body.replace(b" ", b"")
        payload, ctype = (_STREAM, b"text/event-stream") if stream else (_COMPLETION, b"application/json")
    elif path.endswith("/models"):
        payload, ctype = _MODELS, b"application/json"
    else:
        payload, ctype = b'{"error":{"message":"not found"}}', b"application/json"
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def run_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(upstream_app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off")


# --- process helpers ------------------------------------------------------------------------------------------

class Proc:
    def __init__(self, args: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.log = (log or Path(tempfile.mktemp(suffix=".log"))).open("ab")
        self.path = log
        self.p = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=10)
        self.log.close()


def wait_http(url: str, timeout: float, proc: Proc | None = None, headers: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.p.poll() is not None:
            tail = proc.path.read_text()[-3000:] if proc.path else ""
            raise RuntimeError(f"process exited with {proc.p.returncode}: ...{tail[-800:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2, headers=headers).status_code < 500:
                return time.perf_counter() - t0
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def start_litellm(upstream_port: int, work: Path) -> tuple[Proc | None, int, str]:
    """(process, port, note). process is None when LiteLLM is unavailable; note says why."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if not exe.exists():
        return None, 0, f"LiteLLM not installed: {exe} missing (python3 -m venv {LITELLM_VENV} && " \
                        f"{LITELLM_VENV}/bin/pip install 'litellm[proxy]')"
    cfg = work / "litellm.yaml"
    cfg.write_text(
        "model_list:\n"
        "  - model_name: fake\n"
        "    litellm_params:\n"
        "      model: openai/fake\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: x\n"
        "litellm_settings:\n"
        "  telemetry: False\n"
        "  set_verbose: False\n"
        "  json_logs: False\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
        "  disable_spend_logs: True\n"
    )
    port = free_port()
    env = dict(os.environ)
    env.update({"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
                "DISABLE_SCHEMA_UPDATE": "True", "NO_PROXY": "*", "HTTP_PROXY": "", "HTTPS_PROXY": ""})
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{LITELLM_VENV / 'bin'}:{env.get('PATH', '')}"
    proc = Proc([str(exe), "--config", str(cfg), "--port", str(port), "--host", "127.0.0.1", "--num_workers", "1"],
                env=env, log=work / "litellm.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", 180, proc)
    except Exception as exc:  # noqa: BLE001
        proc.stop()
        return None, 0, f"LiteLLM failed to start: {exc}"
    return proc, port, "litellm started with --num_workers 1"


# --- measurements ---------------------------------------------------------------------------------------------

def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def latency(targets: dict[str, tuple[str, dict[str, str], str]], n: int, block: int, budget_s: float) -> dict:
    """Sequential requests, interleaved in blocks of `block` per target, n per target at most."""
    clients = {name: httpx.Client(base_url=base, headers=hdr, timeout=30) for name, (base, hdr, _) in targets.items()}
    bodies = {name: json.dumps({**BODY, "model": model}).encode() for name, (_, _, model) in targets.items()}
    samples: dict[str, list[float]] = {name: [] for name in targets}
    try:
        for name, c in clients.items():  # warm-up
            for _ in range(50):
                r = c.post("/chat/completions", content=bodies[name], headers={"content-type": "application/json"})
                r.raise_for_status()
                assert r.json()["choices"][0]["message"]["content"] == "Hello there!", r.text
        deadline = time.perf_counter() + budget_s
        done = 0
        while done < n and time.perf_counter() < deadline:
            for name, c in clients.items():
                out = samples[name]
                for _ in range(block):
                    t0 = time.perf_counter()
                    r = c.post("/chat/completions", content=bodies[name], headers={"content-type": "application/json"})
                    out.append(time.perf_counter() - t0)
                    if r.status_code != 200:
                        raise RuntimeError(f"{name}: {r.status_code} {r.text[:300]}")
            done += block
    finally:
        for c in clients.values():
            c.close()
    return {name: {"n": len(xs), "p50_ms": percentile(xs, 0.5) * 1e3, "p90_ms": percentile(xs, 0.9) * 1e3,
                   "p99_ms": percentile(xs, 0.99) * 1e3, "mean_ms": statistics.mean(xs) * 1e3}
            for name, xs in samples.items()}


def wrk_rps(base: str, headers: dict[str, str], model: str, conc: int, duration: int, work: Path) -> dict:
    script = work / f"post-{abs(hash(base))}.lua"
    hdr_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    script.write_text('wrk.method = "POST"\n' + f"wrk.body = '{json.dumps({**BODY, 'model': model})}'\n"
                      + 'wrk.headers["Content-Type"] = "application/json"\n' + hdr_lines
                      + "done = function(summary, latency, requests)\n"
                        "  io.write(string.format('JSON {\"requests\":%d,\"duration_us\":%d,\"non2xx\":%d,"
                        "\"errors\":%d,\"p50_us\":%d,\"p99_us\":%d}\\n', summary.requests, summary.duration,"
                        " summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write"
                        " + summary.errors.timeout, latency:percentile(50), latency:percentile(99)))\n"
                        "end\n")
    out = subprocess.run(["wrk", "-t1", f"-c{conc}", f"-d{duration}s", "--timeout", "10s", "-s", str(script),
                          f"{base}/chat/completions"], capture_output=True, text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("JSON "):
            d = json.loads(line[5:])
            return {"tool": "wrk -t1", "requests": d["requests"], "rps": d["requests"] / (d["duration_us"] / 1e6),
                    "non2xx": d["non2xx"], "errors": d["errors"], "p50_ms": d["p50_us"] / 1e3, "p99_ms": d["p99_us"] / 1e3}
    raise RuntimeError(f"wrk failed: {out.stdout[-1000:]} {out.stderr[-1000:]}")


async def _httpx_rps(base: str, headers: dict[str, str], model: str, conc: int, duration: float) -> dict:
    body = json.dumps({**BODY, "model": model}).encode()
    hdr = {**headers, "content-type": "application/json"}
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    ok = bad = 0
    lat: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=hdr, limits=limits, timeout=30) as c:
        end = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal ok, bad
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    r = await c.post("/chat/completions", content=body)
                    ok, bad = (ok + 1, bad) if r.status_code == 200 else (ok, bad + 1)
                except httpx.HTTPError:
                    bad += 1
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - t0
    return {"tool": "httpx.AsyncClient", "requests": ok, "rps": ok / wall, "non2xx": bad, "errors": 0,
            "p50_ms": percentile(lat, 0.5) * 1e3, "p99_ms": percentile(lat, 0.99) * 1e3}


def rps(base: str, headers: dict[str, str], model: str, conc: int, duration: int, work: Path) -> dict:
    # warm-up
    with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
        for _ in range(20):
            c.post("/chat/completions", json={**BODY, "model": model}).raise_for_status()
    if shutil.which("wrk"):
        return wrk_rps(base, headers, model, conc, duration, work)
    return asyncio.run(_httpx_rps(base, headers, model, conc, duration))


def invoke_only_api_key(base: str, exports: dict[str, str]) -> str:
    """Create a user with the OutcropInvokeOnly managed policy through the native API; return its API key."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = Credentials(exports["AWS_ACCESS_KEY_ID"], exports["AWS_SECRET_ACCESS_KEY"])

    def call(path: str, body: dict[str, str]) -> dict:  # type: ignore[type-arg]
        data = json.dumps(body).encode()
        request = AWSRequest(method="POST", url=base + path, data=data, headers={"Content-Type": "application/json"})
        SigV4Auth(creds, "bedrock", exports.get("AWS_DEFAULT_REGION", "us-east-1")).add_auth(request)
        response = httpx.post(base + path, content=data, headers=dict(request.headers.items()))
        response.raise_for_status()
        return response.json() if response.content else {}

    call("/outcrop/v1/users", {"UserName": "bench"})
    call("/outcrop/v1/users/bench/policies", {"PolicyArn": "arn:aws:iam::aws:policy/OutcropInvokeOnly"})
    return str(call("/outcrop/v1/api-keys", {"UserName": "bench"})["ServiceSpecificCredential"]["ServiceApiKeyValue"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--block", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rps-rounds", type=int, default=2)
    ap.add_argument("--no-litellm", action="store_true")
    args = ap.parse_args()
    if args.upstream:
        run_upstream(args.upstream)
        return

    home = make_home()
    watch = CpuWatch().__enter__()
    work = Path(tempfile.mkdtemp(prefix="outcrop-bench-gw-"))
    up_port = free_port()
    upstream = Proc([sys.executable, __file__, "--upstream", str(up_port)], log=work / "upstream.log")
    litellm = None
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models", 30, upstream)
        (home / "models.toml").write_text(
            "[[models]]\n"
            f'id = "{MODEL_ID}"\n'
            'engine = "openai-compatible"\n'
            f'base_url = "http://127.0.0.1:{up_port}/v1"\n'
            'remote_model = "fake"\n'
        )
        litellm_note = "skipped (--no-litellm)"
        lport = 0
        if not args.no_litellm:
            litellm, lport, litellm_note = start_litellm(up_port, work)
            print(f"litellm: {litellm_note}", file=sys.stderr, flush=True)
        with running_server(home) as srv:
            exports = srv.exports()
            auth = {"Authorization": f"Bearer {exports['OPENAI_API_KEY']}"}
            policy_user = {"Authorization": f"Bearer {invoke_only_api_key(srv.base, exports)}"}
            targets = {"direct": (f"http://127.0.0.1:{up_port}/v1", {}, "fake"),
                       "outcrop": (f"{srv.base}/v1", auth, MODEL_ID),
                       # a user under OutcropInvokeOnly: the policy evaluation the admin's key skips
                       "outcrop_policy_user": (f"{srv.base}/v1", policy_user, MODEL_ID)}
            if litellm is not None:
                targets["litellm"] = (f"http://127.0.0.1:{lport}/v1", {"Authorization": f"Bearer {LITELLM_KEY}"}, "fake")
            lat = latency(targets, args.requests, args.block, budget_s=240)
            print(f"latency: {json.dumps(lat)}", file=sys.stderr, flush=True)
            rates: dict[str, list[dict]] = {name: [] for name in targets}
            for _ in range(args.rps_rounds):  # alternate the gateways
                for name, (base, hdr, model) in targets.items():
                    rates[name].append(rps(base, hdr, model, args.concurrency, args.duration, work))
                    print(f"rps {name}: {rates[name][-1]}", file=sys.stderr, flush=True)
        best = {name: statistics.mean(r["rps"] for r in rs) for name, rs in rates.items()}
        result = {
            "bench": "gateway_overhead",
            "machine": machine_notes(),
            "latency": {k: {kk: round(vv, 3) if isinstance(vv, float) else vv for kk, vv in v.items()} for k, v in lat.items()},
            "added_p50_ms": round(lat["outcrop"]["p50_ms"] - lat["direct"]["p50_ms"], 3),
            "policy_user_added_p50_ms": round(lat["outcrop_policy_user"]["p50_ms"] - lat["direct"]["p50_ms"], 3),
            "added_p99_ms": round(lat["outcrop"]["p99_ms"] - lat["direct"]["p99_ms"], 3),
            "added_p50_target_ms": 1.0, "added_p99_target_ms": 5.0,
            "concurrency": args.concurrency, "duration_s": args.duration,
            "rps_runs": {k: [{kk: round(vv, 2) if isinstance(vv, float) else vv for kk, vv in r.items()} for r in v]
                         for k, v in rates.items()},
            "rps_mean": {k: round(v, 1) for k, v in best.items()},
            "litellm": litellm_note,
            "outcrop_vs_litellm_rps": round(best["outcrop"] / best["litellm"], 2) if "litellm" in best else None,
            "outcrop_vs_litellm_target": 3.0,
        }
        if "litellm" in lat:
            result["litellm_added_p50_ms"] = round(lat["litellm"]["p50_ms"] - lat["direct"]["p50_ms"], 3)
            result["litellm_added_p99_ms"] = round(lat["litellm"]["p99_ms"] - lat["direct"]["p99_ms"], 3)
        result["cpu_contention"] = watch.summary()
        emit(result, "gateway_overhead")
    finally:
        if litellm is not None:
            litellm.stop()
        upstream.stop()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
