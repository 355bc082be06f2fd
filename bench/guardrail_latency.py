"""Guardrail latency through a live server and boto3 (issue 6).

1. ApplyGuardrail p50/p99 for a 200-word text with every policy on (content filters incl. prompt attack, a
   denied topic, custom words + PROFANITY, PII entities + a regex, contextual grounding with a source and a
   query), after warm-up — and per policy alone, to show where the time goes.
2. Converse with the guardrail vs without, on the default chat model, same prompt, max 32 tokens,
   temperature 0, alternated call by call (these machines are shared and noisy): the overhead is the
   difference of medians, and the ratio of medians.

    .venv/bin/python bench/guardrail_latency.py [--calls 40] [--converse 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CHAT_MODEL, CpuWatch, boto_client, emit, machine_notes, make_home, running_server  # noqa: E402

TEXT_200 = (
    "Our quarterly planning meeting covered the migration of the billing service to the new cluster. The team "
    "agreed that the database upgrade should happen first, followed by a week of shadow traffic, and only then "
    "the switch of the public endpoints. Maria raised a concern about the nightly batch jobs, which still read "
    "from the old replica, and asked for a list of every consumer before the cut-over date. The support group "
    "wants a short note for customers explaining the maintenance window, written in plain language and sent "
    "at least five days in advance. We also reviewed the incident from last month: a configuration change was "
    "rolled out without a canary, and the error rate rose for forty minutes before anyone noticed. The action "
    "items are to require canaries for every configuration change, to add an alert on the error budget, and to "
    "rehearse the rollback procedure once a quarter. Finally, the group discussed hiring: two backend roles "
    "are open, interviews start next week, and everyone is asked to review the updated question bank. The next "
    "meeting is on Thursday at ten, in the large room on the third floor, and the notes will be shared in the "
    "usual channel before then so that people who could not attend can comment on the plan."
)
SOURCE = "The billing service moves to the new cluster after the database upgrade and a week of shadow traffic."
QUERY = "What is the plan for the billing service migration?"

POLICIES: dict[str, dict[str, Any]] = {
    "contentPolicyConfig": {"filtersConfig": [
        {"type": t, "inputStrength": "HIGH", "outputStrength": "NONE" if t == "PROMPT_ATTACK" else "HIGH"}
        for t in ("SEXUAL", "VIOLENCE", "HATE", "INSULTS", "MISCONDUCT", "PROMPT_ATTACK")]},
    "topicPolicyConfig": {"topicsConfig": [{"name": "Investment advice", "type": "DENY",
                                            "definition": "Recommendations about which stocks or funds to buy.",
                                            "examples": ["Which stocks should I buy?"]}]},
    "wordPolicyConfig": {"wordsConfig": [{"text": "project nightingale"}],
                         "managedWordListsConfig": [{"type": "PROFANITY"}]},
    "sensitiveInformationPolicyConfig": {
        "piiEntitiesConfig": [{"type": t, "action": "ANONYMIZE"} for t in (
            "NAME", "EMAIL", "PHONE", "ADDRESS", "CREDIT_DEBIT_CARD_NUMBER", "US_SOCIAL_SECURITY_NUMBER",
            "IP_ADDRESS", "INTERNATIONAL_BANK_ACCOUNT_NUMBER")],
        "regexesConfig": [{"name": "ticket", "pattern": r"TCK-\d{6}", "action": "ANONYMIZE"}]},
    "contextualGroundingPolicyConfig": {"filtersConfig": [{"type": "GROUNDING", "threshold": 0.1},
                                                          {"type": "RELEVANCE", "threshold": 0.1}]},
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def create(bedrock: Any, name: str, policies: dict[str, Any]) -> str:
    return str(bedrock.create_guardrail(name=name, blockedInputMessaging="blocked", blockedOutputsMessaging="blocked",
                                        **policies)["guardrailId"])


def timed_apply(runtime: Any, gid: str, calls: int, grounded: bool) -> list[float]:
    content = [{"text": {"text": TEXT_200, "qualifiers": ["guard_content"]}}]
    if grounded:
        content += [{"text": {"text": SOURCE, "qualifiers": ["grounding_source"]}},
                    {"text": {"text": QUERY, "qualifiers": ["query"]}}]
    source = "OUTPUT" if grounded else "INPUT"
    for _ in range(3):  # warm-up: models load, the version compiles
        runtime.apply_guardrail(guardrailIdentifier=gid, guardrailVersion="DRAFT", source=source, content=content)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        runtime.apply_guardrail(guardrailIdentifier=gid, guardrailVersion="DRAFT", source=source, content=content)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--converse", type=int, default=12)
    args = parser.parse_args()
    home = make_home()
    result: dict[str, Any] = {"machine": machine_notes(), "words": len(TEXT_200.split())}
    with running_server(home) as server:
        exports = server.exports()
        bedrock, runtime = boto_client(exports, "bedrock"), boto_client(exports)
        watch = CpuWatch().__enter__()
        every = create(bedrock, "bench-every", POLICIES)
        times = timed_apply(runtime, every, args.calls, grounded=True)
        result["apply_every_policy_ms"] = {"p50": round(statistics.median(times), 1),
                                           "p99": round(percentile(times, 0.99), 1), "calls": args.calls}
        alone = {}
        for key, config in POLICIES.items():
            gid = create(bedrock, f"bench-{key[:-12].lower()}", {key: config})
            one = timed_apply(runtime, gid, max(10, args.calls // 3), grounded=key.startswith("contextual"))
            alone[key.removesuffix("Config")] = round(statistics.median(one), 1)
        result["apply_one_policy_p50_ms"] = alone

        guard = {"guardrailIdentifier": every, "guardrailVersion": "DRAFT"}
        ask = {"modelId": CHAT_MODEL, "inferenceConfig": {"maxTokens": 32, "temperature": 0},
               "messages": [{"role": "user", "content": [{"text": "Give two tips for writing clear meeting notes."}]}]}
        for _ in range(2):
            runtime.converse(**ask)
            runtime.converse(**ask, guardrailConfig=guard)
        bare, guarded, tokens = [], [], []
        for _ in range(args.converse):
            started = time.perf_counter()
            out = runtime.converse(**ask)
            bare.append((time.perf_counter() - started) * 1000)
            tokens.append(out["usage"]["outputTokens"])
            started = time.perf_counter()
            runtime.converse(**ask, guardrailConfig=guard)
            guarded.append((time.perf_counter() - started) * 1000)
        result["converse_ms"] = {"without_p50": round(statistics.median(bare), 1),
                                 "with_p50": round(statistics.median(guarded), 1),
                                 "overhead_p50": round(statistics.median(guarded) - statistics.median(bare), 1),
                                 "ratio": round(statistics.median(guarded) / statistics.median(bare), 3),
                                 "output_tokens_p50": statistics.median(tokens), "calls_each": args.converse}
        result["cpu_contention"] = watch.summary()
    emit(result, "guardrail_latency")


if __name__ == "__main__":
    main()
