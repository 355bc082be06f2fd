"""PII detection quality and latency of the guardrails' sensitive-information check (PresidioPii), on labelled
data the project did not write.

Data: presidio-evaluator 0.3.2 (MIT, the Presidio team's evaluation package on PyPI). Its PresidioSentenceFaker
fills the 209 sentence templates it ships (raw_data/templates.txt, written by the Presidio team) with Faker
values and the FakeNameGenerator.com person records it ships, and labels every filled-in value with its span.
Values have real formats: Luhn-valid card numbers, mod-97-valid IBANs, Faker SSNs, phone numbers in the
records' own countries' formats. Generated as its own `__main__` does (en_US, lower_case_ratio 0.05, seed 42),
less the HospitalProvider, which would query Wikidata over the network. Some templates write a newline as the
two characters backslash-n; those become newlines (and backslash-comma a comma), offsets adjusted.

    pip install --no-deps presidio-evaluator==0.3.2
    pip install "faker>=40" "pandas>=3"       # its generator's dependencies (spacy, tqdm, dotenv are here)
    .venv/bin/python bench/guardrail_pii.py [--samples 10000] [--show TYPE] [--spacy-model DIR --out FILE]

Labels become Bedrock types: PERSON -> NAME; STREET_ADDRESS, GPE (city, state, country), ZIP_CODE -> ADDRESS,
pieces that only punctuation separates joined into one address (Bedrock's ADDRESS includes city, state and
country); PHONE_NUMBER -> PHONE; EMAIL_ADDRESS -> EMAIL; CREDIT_CARD -> CREDIT_DEBIT_CARD_NUMBER; IBAN_CODE ->
INTERNATIONAL_BANK_ACCOUNT_NUMBER; US_SSN -> US_SOCIAL_SECURITY_NUMBER; IP_ADDRESS; DOMAIN_NAME -> URL; AGE;
US_DRIVER_LICENSE -> DRIVER_ID. ORGANIZATION, DATE_TIME, NRP and TITLE are not Bedrock PII types and are not
scored.

Matching (span overlap): a labelled value is found when a finding of the same type overlaps it by at least one
character; a finding of a labelled type is correct when it overlaps a labelled value of its type. A finding of a
type this data never labels (PIN, USERNAME, ...) is counted wrong when it overlaps a labelled value of another
type and is otherwise not scored. `char_recall` is the share of labelled characters covered by same-type findings.

Latency: find() with every entity type over ~200-word texts made by joining consecutive generated sentences,
after warm-up, on this machine; and with the types that need no NER (all but NAME and ADDRESS).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from outcrop.core.guardrails.checks.base import EntitySpan  # noqa: E402
from outcrop.core.guardrails.checks.pii import PresidioPii  # noqa: E402
from outcrop.settings import Settings  # noqa: E402

GOLD_TO_BEDROCK = {
    "PERSON": "NAME",
    "STREET_ADDRESS": "ADDRESS",
    "GPE": "ADDRESS",
    "ZIP_CODE": "ADDRESS",
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "CREDIT_CARD": "CREDIT_DEBIT_CARD_NUMBER",
    "IBAN_CODE": "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
    "US_SSN": "US_SOCIAL_SECURITY_NUMBER",
    "IP_ADDRESS": "IP_ADDRESS",
    "DOMAIN_NAME": "URL",
    "AGE": "AGE",
    "US_DRIVER_LICENSE": "DRIVER_ID",
}
GOALS = {
    "EMAIL": 0.95, "PHONE": 0.95, "CREDIT_DEBIT_CARD_NUMBER": 0.95, "US_SOCIAL_SECURITY_NUMBER": 0.95,
    "IP_ADDRESS": 0.95, "INTERNATIONAL_BANK_ACCOUNT_NUMBER": 0.95, "NAME": 0.8, "ADDRESS": 0.8,
}
GAP = re.compile(r"(?:[\s,;.\-–]|\\n){0,8}")
OUT = ROOT / "bench" / "results" / "guardrail_pii.json"


def load_samples(n: int, seed: int) -> list[tuple[str, list[tuple[str, int, int, bool]]]]:
    """(text, [(bedrock type, start, end, has a street-level piece)]) for n generated sentences."""
    from presidio_evaluator.data_generator import PresidioSentenceFaker, presidio_additional_entity_providers
    from presidio_evaluator.data_generator.faker_extensions import HospitalProvider

    providers = [p for p in presidio_additional_entity_providers if p is not HospitalProvider]
    faker = PresidioSentenceFaker("en_US", lower_case_ratio=0.05, entity_providers=providers, random_seed=seed)
    samples = []
    for s in faker.generate_new_fake_sentences(n):
        text, at = unescape(s.full_text)
        spans = [(GOLD_TO_BEDROCK[sp.entity_type], at[sp.start_position], at[sp.end_position], sp.entity_type)
                 for sp in s.spans if sp.entity_type in GOLD_TO_BEDROCK]
        samples.append((text, join_addresses(text, spans)))
    return samples


def unescape(text: str) -> tuple[str, list[int]]:
    """Some templates write a newline as the two characters \\n and a comma as \\, (the generator keeps them):
    turn them into what they stand for, and map old offsets to new ones."""
    out: list[str] = []
    at: list[int] = []
    i = 0
    while i < len(text):
        at.append(len(out))
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "n,":
            out.append("\n" if text[i + 1] == "n" else ",")
            at.append(len(out))
            i += 2
            continue
        out.append(text[i])
        i += 1
    at.append(len(out))
    return "".join(out), at


def join_addresses(text: str, spans: list[tuple[str, int, int, str]]) -> list[tuple[str, int, int, bool]]:
    out = [(t, s, e, False) for t, s, e, _ in spans if t != "ADDRESS"]
    group: list[tuple[str, int, int, str]] = []
    for piece in [*sorted((x for x in spans if x[0] == "ADDRESS"), key=lambda x: x[1]), None]:
        if piece and group and GAP.fullmatch(text[max(g[2] for g in group) : piece[1]]):
            group.append(piece)
            continue
        if group:
            street = any(g[3] == "STREET_ADDRESS" for g in group)
            out.append(("ADDRESS", group[0][1], max(g[2] for g in group), street))
        group = [piece] if piece else []
    return out


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(samples: list[Any], found: list[list[EntitySpan]], show: str | None) -> dict[str, Any]:
    labelled = set(GOLD_TO_BEDROCK.values())
    gold_n: Counter[str] = Counter()
    hit: Counter[str] = Counter()
    pred_n: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    covered: Counter[str] = Counter()
    street_n = street_hit = 0
    unlabelled: dict[str, Counter[str]] = defaultdict(Counter)
    for (text, gold), spans in zip(samples, found, strict=True):
        for t, s, e, street in gold:
            gold_n[t] += 1
            same = [(p.start, p.end) for p in spans if p.type == t]
            got = any(overlaps((s, e), p) for p in same)
            hit[t] += got
            if t == "ADDRESS" and street:
                street_n += 1
                street_hit += got
            chars[t] += e - s
            covered[t] += sum(1 for i in range(s, e) if any(a <= i < b for a, b in same))
            if show == t and not got:
                print(f"MISSED {t}: {text[s:e]!r} in {text!r}  found={[(p.type, text[p.start:p.end]) for p in spans]}")
        for p in spans:
            if p.type in labelled:
                pred_n[p.type] += 1
                ok = any(t == p.type and overlaps((s, e), (p.start, p.end)) for t, s, e, _ in gold)
                correct[p.type] += ok
                if show == p.type and not ok:
                    print(f"WRONG {p.type}: {text[p.start:p.end]!r} in {text!r}")
            else:
                clash = any(overlaps((s, e), (p.start, p.end)) for _, s, e, _ in gold)
                unlabelled[p.type]["wrong" if clash else "unscored"] += 1
    rows = {}
    for t in sorted(labelled, key=lambda t: -gold_n[t]):
        p = correct[t] / pred_n[t] if pred_n[t] else None
        r = hit[t] / gold_n[t] if gold_n[t] else None
        f1 = 2 * p * r / (p + r) if p and r else None
        rows[t] = {"labelled": gold_n[t], "found": pred_n[t], "precision": p, "recall": r, "f1": f1,
                   "char_recall": covered[t] / chars[t] if chars[t] else None, "goal_recall": GOALS.get(t)}
    rows["ADDRESS"]["street_level_recall"] = street_hit / street_n if street_n else None
    rows["ADDRESS"]["street_level_labelled"] = street_n
    return {"per_entity": rows, "unlabelled_types": {k: dict(v) for k, v in sorted(unlabelled.items())}}


def latency(check: PresidioPii, samples: list[Any], entities: frozenset[str], runs: int = 200) -> dict[str, float]:
    """Wall time of find() on ~200-word texts, and the process CPU time it used (steadier on a shared machine)."""
    texts, current = [], []
    for text, _ in samples:
        current.append(text)
        if sum(len(t.split()) for t in current) >= 200:
            texts.append(" ".join(current))
            current = []
        if len(texts) == 50:
            break
    for t in texts[:10]:
        check.find(t, entities)
    wall, cpu = [], []
    for i in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        check.find(texts[i % len(texts)], entities)
        wall.append((time.perf_counter() - w0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    wall.sort()
    return {"p50_ms": statistics.median(wall), "p90_ms": wall[int(0.9 * runs)], "p99_ms": wall[int(0.99 * runs) - 1],
            "cpu_p50_ms": statistics.median(cpu), "mean_words": statistics.mean(len(t.split()) for t in texts),
            "runs": runs, "load_average_1m": os.getloadavg()[0]}


def use_model(path: Path) -> None:
    from outcrop import modelpacks

    pack_path = modelpacks.pack_path
    modelpacks.pack_path = lambda pack, cache, progress=None: (  # type: ignore[assignment]
        path if pack in (modelpacks.SPACY_EN_MD, modelpacks.SPACY_EN_SM) else pack_path(pack, cache, progress))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--show", help="print the misses and wrong findings of one Bedrock type")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--spacy-model", type=Path, help="another spaCy model folder in place of the pack, to compare")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.spacy_model:
        use_model(args.spacy_model)

    t0 = time.perf_counter()
    samples = load_samples(args.samples, args.seed)
    print(f"generated {len(samples)} labelled sentences in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    check = PresidioPii(Settings())
    t0 = time.perf_counter()
    check.warm()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = [check.find(text, check.entities) for text, _ in samples]
    print(f"analyzed in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    result = score(samples, found, args.show)
    result["latency_all_types"] = latency(check, samples, check.entities)
    result["latency_without_ner"] = latency(check, samples, check.entities - {"NAME", "ADDRESS"})
    result["warm_s"] = warm_s
    result["spacy_model"] = str(args.spacy_model or "pack spacy-en-core-web-md (en_core_web_md 3.8.0)")
    result["data"] = {"package": "presidio-evaluator==0.3.2", "generator": "PresidioSentenceFaker",
                      "templates": "presidio_evaluator/data_generator/raw_data/templates.txt (209)",
                      "samples": args.samples, "seed": args.seed, "locale": "en_US", "lower_case_ratio": 0.05}
    result["matching"] = "span overlap, same Bedrock type (see bench/guardrail_pii.py docstring)"

    print(f"{'type':36} {'labelled':>8} {'found':>6} {'prec':>6} {'recall':>6} {'F1':>6} {'chars':>6} {'goal':>5}")
    for t, row in result["per_entity"].items():
        cells = [f"{row[k]:.3f}" if row[k] is not None else "  -  " for k in ("precision", "recall", "f1", "char_recall")]
        goal = f"{row['goal_recall']:.2f}" if row["goal_recall"] else ""
        print(f"{t:36} {row['labelled']:8} {row['found']:6} {cells[0]:>6} {cells[1]:>6} {cells[2]:>6} {cells[3]:>6} {goal:>5}")
    address = result["per_entity"]["ADDRESS"]
    print(f"ADDRESS with a street-level piece: recall {address['street_level_recall']:.3f} of {address['street_level_labelled']}")
    print("types this data does not label:", result["unlabelled_types"])
    for k in ("latency_all_types", "latency_without_ner"):
        lat = result[k]
        print(f"{k}: p50 {lat['p50_ms']:.1f} ms, p90 {lat['p90_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
              f"CPU p50 {lat['cpu_p50_ms']:.1f} ms ({lat['mean_words']:.0f} words, load {lat['load_average_1m']:.1f})")
    if not args.no_write:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
