"""Profile Outcrop's gateway path with py-spy (from the LiteLLM bench venv) while sequential requests run.

Run: python bench/profile_gateway.py [--seconds 15]   (needs py-spy: .bench-venv-litellm/bin/pip install py-spy)
Prints the functions with the most inclusive samples in the server process (collapsed stacks kept in bench/results/).
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, free_port, make_home, running_server  # noqa: E402
from gateway_overhead import BODY, MODEL_ID, Proc, wait_http  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=15)
    args = ap.parse_args()
    pyspy = shutil.which("py-spy") or str(ROOT / ".bench-venv-litellm" / "bin" / "py-spy")
    home, work = make_home(), Path(tempfile.mkdtemp(prefix="outcrop-bench-prof-"))
    up_port = free_port()
    upstream = Proc([sys.executable, str(ROOT / "bench" / "gateway_overhead.py"), "--upstream", str(up_port)],
                    log=work / "upstream.log")
    try:
        wait_http(f"http://127.0.0.1:{up_port}/v1/models", 30, upstream)
        (home / "models.toml").write_text(f'[[models]]\nid = "{MODEL_ID}"\nengine = "openai-compatible"\n'
                                          f'base_url = "http://127.0.0.1:{up_port}/v1"\nremote_model = "fake"\n')
        with running_server(home) as srv:
            key = srv.exports()["OPENAI_API_KEY"]
            body = json.dumps({**BODY, "model": MODEL_ID}).encode()
            stop = threading.Event()
            count = [0]

            def load() -> None:
                with httpx.Client(base_url=srv.base + "/v1", headers={"Authorization": f"Bearer {key}",
                                                                     "content-type": "application/json"}) as c:
                    while not stop.is_set():
                        c.post("/chat/completions", content=body).raise_for_status()
                        count[0] += 1

            t = threading.Thread(target=load, daemon=True)
            t.start()
            time.sleep(2)
            assert srv.proc is not None
            out = ROOT / "bench" / "results" / "profile_gateway.collapsed.txt"
            out.parent.mkdir(exist_ok=True)
            subprocess.run([pyspy, "record", "-p", str(srv.proc.pid), "-d", str(args.seconds), "-r", "200", "-f", "raw",
                            "-o", str(out), "--nonblocking"], check=True, capture_output=True, timeout=args.seconds + 60)
            stop.set()
            t.join(timeout=10)
        incl: collections.Counter[str] = collections.Counter()
        selfc: collections.Counter[str] = collections.Counter()
        total = 0
        for line in out.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            frames = stack.split(";")
            if any("idle" in f or "select" in f for f in frames[-1:]) or "epoll" in frames[-1] or "_run_once" in frames[-1]:
                pass
            total += int(n)
            for f in set(frames):
                incl[f] += int(n)
            selfc[frames[-1]] += int(n)
        print(f"requests during profile: {count[0]}, samples: {total}")
        print("--- top inclusive ---")
        for f, n in incl.most_common(45):
            print(f"{100 * n / total:5.1f}%  {f}")
        print("--- top self ---")
        for f, n in selfc.most_common(20):
            print(f"{100 * n / total:5.1f}%  {f}")
    finally:
        upstream.stop()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
