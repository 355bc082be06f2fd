"""What a guardrail check is. Detectors register through `register_guardrail_checks` like engines do.

Every check returns a probability-like confidence; a `Calibration`, measured on labelled data the project did
not write (docs/benchmarks.md), turns it into Bedrock's NONE/LOW/MEDIUM/HIGH, so a filter strength is a
threshold: strength HIGH blocks findings of LOW confidence and above, MEDIUM blocks MEDIUM and HIGH, LOW blocks
only HIGH, NONE blocks nothing.

Checks are built once per server with the settings, load their models lazily on first use, and are called
from worker threads: `score` and `find` block and must be thread-safe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from outcrop.settings import Settings

Level = Literal["NONE", "LOW", "MEDIUM", "HIGH"]
LEVELS: tuple[Level, ...] = ("NONE", "LOW", "MEDIUM", "HIGH")
CONTENT_CATEGORIES = ("SEXUAL", "VIOLENCE", "HATE", "INSULTS", "MISCONDUCT", "PROMPT_ATTACK")


@dataclass(frozen=True)
class Calibration:
    """The confidences at which a finding reaches LOW, MEDIUM and HIGH (low <= medium <= high)."""

    low: float
    medium: float
    high: float

    def level(self, confidence: float) -> Level:
        if confidence >= self.high:
            return "HIGH"
        if confidence >= self.medium:
            return "MEDIUM"
        if confidence >= self.low:
            return "LOW"
        return "NONE"


class ContentCheck(ABC):
    """Scores texts for some of Bedrock's content-filter categories (CONTENT_CATEGORIES)."""

    name: ClassVar[str]
    categories: ClassVar[tuple[str, ...]]
    calibration: ClassVar[dict[str, Calibration]]  # per category

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        """For each text, category -> confidence in [0, 1] for every category in `categories`."""


@dataclass(frozen=True)
class EntitySpan:
    """One sensitive-information finding: a Bedrock PII entity type over text[start:end]."""

    type: str
    start: int
    end: int
    score: float


class PiiCheck(ABC):
    """Finds Bedrock's PII entity types in text."""

    name: ClassVar[str]
    entities: ClassVar[frozenset[str]]  # the Bedrock entity types this check can find

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def find(self, text: str, entities: Collection[str]) -> list[EntitySpan]:
        """Non-overlapping spans of the requested entity types, in text order."""
