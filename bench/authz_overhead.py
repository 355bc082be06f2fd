"""What authentication and authorization cost per request, in-process (no sockets, so no network noise).

The same ASGI app answers interleaved blocks of:
  health    GET /healthz                               no auth: the framework's own floor
  admin     GET /v1/models/{id}, the admin's API key   authentication; the admin skips policy evaluation
  policy    the same, a user under OutcropInvokeOnly   + policy evaluation (and bedrock:CallWithBearerToken)
  sigv4     GET /foundation-models/{id}, SigV4         SigV4 signature recomputed with botocore
Each figure is the minimum over rounds of the mean per request (µs), the order rotating each round;
differences are what each layer adds. Below ~30 µs the stack's own noise dominates the differences, so
one policy check (AccessService.require, a fresh CallContext each time) is also timed alone.

Run: python bench/authz_overhead.py [--rounds 7] [--block 500]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine_notes  # noqa: E402

MODEL = "qwen.qwen2-5-coder-0-5b-instruct-v1:0"


def sigv4_headers(url: str, akid: str, secret: str) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="GET", url=url)
    SigV4Auth(Credentials(akid, secret), "bedrock", "us-east-1").add_auth(request)
    return dict(request.headers.items())


async def run(rounds: int, block: int) -> dict[str, float]:
    from outcrop.core.governance import CallContext
    from outcrop.server.app import create_app
    from outcrop.server.deps import Services
    from outcrop.settings import Settings

    home = Path(tempfile.mkdtemp(prefix="outcrop-bench-authz-"))
    try:
        settings = Settings(home=home)
        svc = Services.build(settings)
        creds = svc.accounts.bootstrap()
        assert creds is not None
        admin = svc.identity.access_key_secret(creds.access_key_id)[0]
        ctx = CallContext(admin, "CreateUser")
        svc.accounts.create_principal(ctx, "user", "bench")
        svc.policies.attach(CallContext(admin, "AttachPolicy"), "user", "bench",
                            "arn:aws:iam::aws:policy/OutcropInvokeOnly")
        user_key = svc.accounts.create_api_key(CallContext(admin, "CreateServiceSpecificCredential"), "bench")
        app = create_app(settings, svc)
        base = "http://127.0.0.1"
        sigv4_url = f"{base}/foundation-models/{MODEL}"
        targets = {
            "health": ("/healthz", {}),
            "admin": (f"/v1/models/{MODEL}", {"Authorization": f"Bearer {creds.api_key}"}),
            "policy": (f"/v1/models/{MODEL}", {"Authorization": f"Bearer {user_key['ServiceApiKeyValue']}"}),
            "sigv4": (f"/foundation-models/{MODEL}", None),
        }
        best = {name: float("inf") for name in targets}
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            names = list(targets)
            for round_no in range(rounds + 1):  # the first round warms caches and is not counted
                # rotate the order each round: whatever runs right after another target pays for its garbage
                for name in names[round_no % len(names):] + names[:round_no % len(names)]:
                    path, headers = targets[name]
                    if headers is None:  # SigV4 signs a timestamp: sign once per block, as a client would per call
                        headers = sigv4_headers(sigv4_url, creds.access_key_id, creds.secret_access_key)
                    started = time.perf_counter()
                    for _ in range(block):
                        response = await client.get(path, headers=headers)
                    elapsed = (time.perf_counter() - started) / block * 1e6
                    assert response.status_code == 200, (name, response.text)
                    best[name] = min(best[name], elapsed) if round_no else best[name]
        best["policy_check"] = policy_check(svc, user_key["UserName"])
        return best
    finally:
        shutil.rmtree(home, ignore_errors=True)


def policy_check(svc, user_name: str) -> float:  # type: ignore[no-untyped-def]
    """One AccessService.require under OutcropInvokeOnly, timed alone (µs): below the stack's noise floor."""
    from outcrop.core.governance import CallContext
    from outcrop.core.identity import Caller
    from outcrop.storage.repositories import AccountScope

    creds = svc.identity.credentials()
    with svc.identity.sessions() as session:
        user = AccountScope(session, creds.account_id).principal("user", user_name)
    caller = Caller(creds.account_id, user.id, user.name, False, None, "api_key")
    resource = f"arn:aws:bedrock:us-east-1::foundation-model/{MODEL}"
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(10_000):
            svc.access.require(CallContext(caller, "RetrieveModel", source_ip="127.0.0.1"), resource)
        best = min(best, (time.perf_counter() - started) / 10_000 * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--block", type=int, default=500)
    args = ap.parse_args()
    best = asyncio.run(run(args.rounds, args.block))
    emit({"bench": "authz_overhead", "machine": machine_notes(), "us_per_request": {k: round(v, 1) for k, v in best.items()},
          "api_key_auth_us": round(best["admin"] - best["health"], 1),
          "policy_path_minus_admin_us": round(best["policy"] - best["admin"], 1),
          "policy_check_us": round(best["policy_check"], 2),
          "sigv4_auth_us": round(best["sigv4"] - best["health"], 1),
          "rounds": args.rounds, "block": args.block}, "authz_overhead")


if __name__ == "__main__":
    main()
