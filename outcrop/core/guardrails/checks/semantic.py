"""Denied topics and contextual grounding, on the embedding model (no NLI model is available offline).

Denied topics: each topic becomes prototypes (its definition, "name: definition", each example), embedded once
when the guardrail version is compiled. A text is split into windows of up to two sentences; the topic's
score is the best cosine between any window and any prototype, and a score at or above `TOPIC_THRESHOLD`
is a detection. The threshold was measured on MiniLM (docs/benchmarks.md, "Guardrails").

Contextual grounding: Bedrock scores GROUNDING (is the answer supported by the source?) and RELEVANCE (does it
answer the query?) from 0 to 1 and blocks below the configured threshold. Here each answer sentence is
supported by its best source window — a blend of embedding similarity and the share of its content words
(numbers above all) found in the source, since an invented figure is the commonest ungrounded claim — and
GROUNDING is the mean of the sentence supports pulled towards the weakest one. RELEVANCE is the rescaled
cosine between the query and the answer, lifted by the share of the query's content words the answer uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Embed = Callable[[list[str]], np.ndarray]  # texts → L2-normalised rows

TOPIC_THRESHOLD = 0.5
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


@dataclass
class Topic:
    name: str
    prototypes: np.ndarray  # rows: definition, "name: definition", examples


def compile_topics(embed: Embed, topics: Sequence[dict[str, object]]) -> list[Topic]:
    texts: list[str] = []
    spans: list[tuple[int, int]] = []
    for topic in topics:
        start = len(texts)
        texts += [str(topic["definition"]), f"{topic['name']}: {topic['definition']}",
                  *(str(e) for e in topic.get("examples") or [])]  # type: ignore[attr-defined]
        spans.append((start, len(texts)))
    vectors = embed(texts) if texts else np.zeros((0, 1), dtype=np.float32)
    return [Topic(str(t["name"]), vectors[a:b]) for t, (a, b) in zip(topics, spans, strict=True)]


def topic_scores(embed: Embed, topics: list[Topic], texts: Sequence[str]) -> dict[str, float]:
    """Topic name → best cosine between any window of any text and any of the topic's prototypes."""
    pieces = [w for text in texts for w in windows(text)]
    if not pieces or not topics:
        return {t.name: 0.0 for t in topics}
    vectors = embed(pieces)
    return {t.name: float(np.max(vectors @ t.prototypes.T)) for t in topics}


def _rescale(cosine: float, low: float, high: float) -> float:
    return float(min(1.0, max(0.0, (cosine - low) / (high - low))))


def grounding_scores(embed: Embed, answer: str, source: str, query: str) -> tuple[float, float]:
    """(GROUNDING, RELEVANCE) in [0, 1] for an answer against its source and the query."""
    claims = sentences(answer) or [answer]
    evidence = windows(source) or [source]
    vectors = embed([*claims, *evidence, query, answer])
    claim_v, evidence_v = vectors[: len(claims)], vectors[len(claims): len(claims) + len(evidence)]
    query_v, answer_v = vectors[-2], vectors[-1]
    source_words = content_words(source)
    supports, weights = [], []
    similarity = claim_v @ evidence_v.T
    for i, claim in enumerate(claims):
        words = content_words(claim)
        lexical = len(words & source_words) / len(words) if words else 1.0
        support = 0.5 * _rescale(float(similarity[i].max()), 0.25, 0.85) + 0.5 * lexical
        numbers = {w for w in words if w[0].isdigit()}
        if numbers - source_words:
            support *= 0.4
        supports.append(support)
        weights.append(max(1, len(words)))
    mean = float(np.average(supports, weights=weights))
    grounding = 0.6 * mean + 0.4 * min(supports)
    asked = content_words(query)
    covered = len(asked & content_words(answer)) / len(asked) if asked else 0.0
    relevance = min(1.0, _rescale(float(query_v @ answer_v), 0.1, 0.7) + 0.25 * covered)
    return round(grounding, 4), round(relevance, 4)
