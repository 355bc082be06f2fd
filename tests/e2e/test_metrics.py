"""GET /metrics and /outcrop/v1/usage after a known workload through boto3 and the openai SDK."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.iam import new_account, operator

CHAT = "qwen.qwen2-5-coder-0-5b-instruct-v1:0"  # the default chat model, by its catalog ID
EMBED = "sentence-transformers.all-minilm-l6-v2-v1:0"
ZERO = {"Invocations": 0, "InputTokens": 0, "OutputTokens": 0, "Errors": 0}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server) -> Samples:  # type: ignore[no-untyped-def]
    response = httpx.get(f"{server.endpoint}/metrics", timeout=30)  # unauthenticated, like /healthz
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert server.creds["account_id"] not in response.text  # no account labels
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def usage_by_model(server) -> dict[str, dict[str, int]]:  # type: ignore[no-untyped-def]
    rows = operator(server).ok("GET", "/outcrop/v1/usage?GroupBy=model")["Usage"]
    return {row["ModelId"]: row for row in rows}


def test_metrics_and_usage_follow_a_known_workload(server, runtime, openai_client):
    before, usage_before = scrape(server), usage_by_model(server)
    replies = [runtime.converse(modelId=CHAT, messages=[{"role": "user", "content": [{"text": f"Count to {n}."}]}],
                                inferenceConfig={"maxTokens": 5, "temperature": 0}) for n in range(3)]
    embeddings = [openai_client.embeddings.create(model=EMBED, input=["hello", "world"]) for _ in range(2)]
    after, usage_after = scrape(server), usage_by_model(server)

    chat_in = sum(r["usage"]["inputTokens"] for r in replies)
    chat_out = sum(r["usage"]["outputTokens"] for r in replies)
    embed_in = sum(e.usage.prompt_tokens for e in embeddings)
    chat = {"ModelId": CHAT, "Operation": "Converse"}
    embed = {"ModelId": EMBED, "Operation": "CreateEmbedding"}

    def delta(name: str, labels: dict[str, str]) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("Invocations_total", chat) == 3
    assert delta("InputTokenCount_total", chat) == chat_in
    assert 0 < delta("OutputTokenCount_total", chat) == chat_out <= 15
    assert delta("InvocationLatency_count", chat) == 3
    assert delta("Invocations_total", embed) == 2
    assert delta("InputTokenCount_total", embed) == embed_in > 0
    assert delta("InvocationClientErrors_total", chat) == delta("InvocationServerErrors_total", chat) == 0
    assert sample(after, "InvocationsInFlight", ModelId=CHAT) == 0
    assert sample(after, "LoadedModels") >= 2

    for model, invocations, tokens_in, tokens_out in ((CHAT, 3, chat_in, chat_out), (EMBED, 2, embed_in, 0)):
        now, was = usage_after[model], usage_before.get(model, ZERO)
        assert now["Invocations"] - was["Invocations"] == invocations
        assert now["InputTokens"] - was["InputTokens"] == tokens_in
        assert now["OutputTokens"] - was["OutputTokens"] == tokens_out
        assert now["Errors"] == was["Errors"]


def test_usage_is_per_account(server):
    tenant = new_account(server, "usage-tenant")
    assert tenant.ok("GET", "/outcrop/v1/usage")["Usage"] == []
    denied = tenant.call("GET", f"/outcrop/v1/usage?AccountId={server.creds['account_id']}")
    assert denied.status_code == 403, denied.text
    bad = tenant.call("GET", "/outcrop/v1/usage?Since=yesterday")
    assert bad.status_code == 400, bad.text
