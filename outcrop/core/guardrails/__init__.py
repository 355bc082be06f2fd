"""Guardrails: Bedrock's policies (content, prompt attacks, topics, words, PII, grounding) on every path."""

from __future__ import annotations

from typing import Any

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


def build(settings: Settings, sessions: sessionmaker[Session], access: AccessService, keys: KeyService,
          inference: InferenceService, checks: dict[str, type[Any]]) -> Guardrails:
    """The guardrail service over the registered checks: the first PII check, every content check."""
    from outcrop.core.guardrails.checks.lexicon import find_profanity

    embedder = Embedder(inference)
    content = [cls(settings) for cls in checks.values() if issubclass(cls, ContentCheck)]
    pii = next((cls(settings) for cls in checks.values() if issubclass(cls, PiiCheck)), None)
    detectors = Detectors(content, pii, lambda texts: embedder.embed(settings.default_embedding_model, texts),
                          lambda text: [(hit.start, hit.end) for hit in find_profanity(text)])
    service = GuardrailService(settings, sessions, access, keys, compile=lambda document: document)
    return Guardrails(service, detectors, inference)
