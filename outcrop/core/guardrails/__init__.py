"""Guardrails: Bedrock's policies (content, prompt attacks, topics, words, PII, grounding) on every path."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from outcrop.core.access import AccessService
from outcrop.core.guardrails.checks.base import ContentCheck, PiiCheck
from outcrop.core.guardrails.engine import Detectors
from outcrop.core.guardrails.runtime import Guardrails
from outcrop.core.guardrails.service import GuardrailService
from outcrop.core.inference import InferenceService
from outcrop.core.kms import KeyService
from outcrop.core.knowledge.embedder import Embedder
from outcrop.settings import Settings


def embed_grouped(embedder: Embedder, model: str, texts: list[str]) -> np.ndarray:
    """Embed texts of like length together. A batch is padded to its longest text, so one 250-word answer in a
    batch of sentences made every sentence cost 250 words (grounding: 650 ms → see docs/benchmarks.md)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    groups: list[list[int]] = []
    for i in order:
        if groups and len(texts[i]) <= 2 * max(len(texts[groups[-1][0]]), 40):
            groups[-1].append(i)
        else:
            groups.append([i])
    rows: list[np.ndarray | None] = [None] * len(texts)
    for group in groups:
        for i, vector in zip(group, embedder.embed(model, [texts[i] for i in group]), strict=True):
            rows[i] = vector
    return np.stack(rows) if rows else embedder.embed(model, [])  # type: ignore[arg-type]


def build(settings: Settings, sessions: sessionmaker[Session], access: AccessService, keys: KeyService,
          inference: InferenceService, checks: dict[str, type[Any]]) -> Guardrails:
    """The guardrail service over the registered checks: the first PII check, every content check."""
    from outcrop.core.guardrails.checks.lexicon import find_profanity

    embedder = Embedder(inference)
    content = [cls(settings) for cls in checks.values() if issubclass(cls, ContentCheck)]
    pii = next((cls(settings) for cls in checks.values() if issubclass(cls, PiiCheck)), None)
    detectors = Detectors(content, pii, lambda texts: embed_grouped(embedder, settings.default_embedding_model, texts),
                          lambda text: [(hit.start, hit.end) for hit in find_profanity(text)])
    service = GuardrailService(settings, sessions, access, keys, compile=lambda document: document)
    return Guardrails(service, detectors, inference)
