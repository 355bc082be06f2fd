"""Shared helpers for the benchmark scripts: free ports, a temporary Outcrop home, start/stop the server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
# The model cache `make packs` fills (the default OUTCROP_HOME's models folder).
SEED_MODELS = Path(os.environ.get("BENCH_SEED_MODELS", Path.home() / ".outcrop" / "models"))
GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
CHAT_MODEL = "qwen.qwen2-5-coder-0-5b-instruct-v1:0"
EMBED_MODEL = "amazon.titan-embed-text-v2:0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_home(prefix: str = "outcrop-bench-") -> Path:
    """A temporary OUTCROP_HOME with the model files copied in (saves the first-start assembly)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    models = home / "models"
    if SEED_MODELS.is_dir():
        models.mkdir()
        if (SEED_MODELS / "hf").is_dir():  # base models converted for training (outcrop.core.customization)
            (models / "hf").symlink_to(SEED_MODELS / "hf")
        for f in SEED_MODELS.iterdir():
            if f.is_file():
                # hard-link when possible (same filesystem), else copy
                try:
                    os.link(f, models / f.name)
                except OSError:
                    shutil.copy2(f, models / f.name)
    return home


def gguf_path(home: Path | None = None) -> Path:
    if home is not None and (home / "models" / GGUF_NAME).exists():
        return home / "models" / GGUF_NAME
    return SEED_MODELS / GGUF_NAME


def parse_env(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("export "):
            for part in line[len("export "):].split():
                if "=" in part:
                    k, v = part.split("=", 1)
                    env[k] = v
    return env


class Server:
    """`outcrop serve` as a child process in its own process group."""

    def __init__(self, home: Path, port: int | None = None, prepare: bool = False, extra_env: dict[str, str] | None = None,
                 log_name: str = "server.log") -> None:
        self.home = home
        self.port = port or free_port()
        self.prepare = prepare
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / log_name
        self.launched_at = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"OUTCROP_HOME": str(self.home), "OUTCROP_PORT": str(self.port), "OUTCROP_LOG_LEVEL": "warning",
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        env.update(self.extra_env)
        return env

    def start(self) -> Server:
        args = [str(VENV_BIN / "outcrop"), "serve"]
        if not self.prepare:
            args.append("--no-prepare")
        self._log = self.log_path.open("ab")
        self.launched_at = time.perf_counter()
        self.proc = subprocess.Popen(args, env=self.env(), stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def wait_healthy(self, timeout: float = 120.0, interval: float = 0.01) -> float:
        """Seconds from launch until GET /healthz answered 200."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                r = httpx.get(self.base + "/healthz", timeout=1.0)
                if r.status_code == 200:
                    return time.perf_counter() - self.launched_at
            except httpx.HTTPError:
                pass
            time.sleep(interval)
        raise TimeoutError(f"server not healthy after {timeout}s; see {self.log_path}")

    def exports(self) -> dict[str, str]:
        out = subprocess.run([str(VENV_BIN / "outcrop"), "env"], env=self.env(), capture_output=True, text=True,
                             timeout=60, check=True)
        return parse_env(out.stdout)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        with contextlib.suppress(Exception):
            self._log.close()


@contextlib.contextmanager
def running_server(home: Path, **kw: object) -> Iterator[Server]:
    srv = Server(home, **kw)  # type: ignore[arg-type]
    try:
        srv.start()
        srv.wait_healthy()
        yield srv
    finally:
        srv.stop()


def boto_client(exports: dict[str, str], service: str = "bedrock-runtime", read_timeout: int = 600):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=exports["AWS_ENDPOINT_URL"],
        region_name=exports.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"],
        config=Config(read_timeout=read_timeout, retries={"max_attempts": 1}, max_pool_connections=32),
    )


def machine_notes() -> dict[str, object]:
    import platform

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    return {"cpu": cpu, "cpus": os.cpu_count(), "mem_gib": round(mem_kb / 1048576, 1), "python": platform.python_version(),
            "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def emit(result: dict[str, object], name: str) -> None:
    """Print the JSON result line and keep a copy in bench/results/<name>.json."""
    line = json.dumps(result, sort_keys=True)
    print(line, flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(line + "\n")


class CpuWatch:
    """Samples /proc every 0.5 s and splits CPU time into this benchmark's process tree vs everything else.

    The machine may be shared (other people's tests); `foreign_share` says how much of the CPUs went elsewhere.
    """

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        self.interval = interval
        self.mine = 0.0
        self.foreign = 0.0
        self.foreign_top: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._hz = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _snapshot() -> dict[int, tuple[int, int, str]]:
        snap = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                raw = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            name = raw[raw.index("(") + 1: raw.rindex(")")]
            fields = raw[raw.rindex(")") + 2:].split()
            snap[int(d)] = (int(fields[1]), int(fields[11]) + int(fields[12]), name)  # ppid, utime+stime, comm
        return snap

    def _run(self) -> None:
        me = os.getpid()
        prev = self._snapshot()
        self.t0 = time.perf_counter()
        while not self._stop.wait(self.interval):
            cur = self._snapshot()
            for pid, (_ppid, ticks, name) in cur.items():
                delta = (ticks - prev[pid][1]) if pid in prev else 0
                if delta <= 0:
                    continue
                p, seen = pid, 0
                while p not in (0, 1, me) and p in cur and seen < 64:
                    p, seen = cur[p][0], seen + 1
                secs = delta / self._hz
                if p == me:
                    self.mine += secs
                else:
                    self.foreign += secs
                    self.foreign_top[name] = self.foreign_top.get(name, 0.0) + secs
            prev = cur
        self.t1 = time.perf_counter()

    def __enter__(self) -> CpuWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def summary(self) -> dict[str, object]:
        if not self._stop.is_set():
            self.__exit__()
        wall = max(self.t1 - self.t0, 1e-9)
        top = sorted(self.foreign_top.items(), key=lambda kv: -kv[1])[:4]
        return {"wall_s": round(wall, 1), "bench_cpu_s": round(self.mine, 1), "foreign_cpu_s": round(self.foreign, 1),
                "foreign_share": round(self.foreign / (wall * (os.cpu_count() or 1)), 3),
                "foreign_top": {k: round(v, 1) for k, v in top}}
