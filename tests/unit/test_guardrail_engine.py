"""The guardrail pipeline's logic on scripted checks (test doubles): strengths as thresholds, actions, masking,
words, regexes, usage, output scope, config validation, and the stream modes. The real detectors are tested in
test_guardrail_pii.py / test_guardrail_content.py and end to end in tests/e2e/test_guardrails.py."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import numpy as np
import pytest

from outcrop.core.guardrails import config
from outcrop.core.guardrails.checks.base import Calibration, ContentCheck, EntitySpan, PiiCheck
from outcrop.core.guardrails.engine import Detectors, TextUnit, _mask, apply, compile_guardrail
from outcrop.core.guardrails.runtime import GuardConfig, Guarded, GuardedStream
from outcrop.errors import Invalid
from outcrop.settings import Settings
from outcrop.types import ChatEvent, ChatRequest, Finished, Message, TextBlock, TextDelta, Usage


class ScriptedContent(ContentCheck):
    """INSULTS scores 0.3 per occurrence of 'idiot'; PROMPT_ATTACK is 0.95 on 'ignore previous'."""

    name = "scripted"
    categories = ("INSULTS", "PROMPT_ATTACK")
    calibration = {"INSULTS": Calibration(0.25, 0.55, 0.85), "PROMPT_ATTACK": Calibration(0.3, 0.6, 0.9)}

    def score(self, texts: Sequence[str]) -> list[dict[str, float]]:
        return [{"INSULTS": min(1.0, 0.3 * t.lower().count("idiot")),
                 "PROMPT_ATTACK": 0.95 if "ignore previous" in t.lower() else 0.0} for t in texts]


class ScriptedPii(PiiCheck):
    name = "scripted-pii"
    entities = frozenset({"EMAIL"})

    def find(self, text: str, entities: Collection[str]) -> list[EntitySpan]:
        return [EntitySpan("EMAIL", m.start(), m.end(), 1.0) for m in re.finditer(r"\S+@\S+\.\w+", text)]


def embed(texts: list[str]) -> np.ndarray:
    rows = np.zeros((len(texts), 64), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            rows[i, zlib.crc32(word.encode()) % 64] += 1
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def detectors() -> Detectors:
    settings = Settings()
    return Detectors([ScriptedContent(settings)], ScriptedPii(settings), embed, lambda text: [(m.start(), m.end()) for m in re.finditer(r"\bdarn\b", text, re.I)])


def guardrail(**policies: Any) -> dict[str, Any]:
    return config.normalize({"name": "g", "blockedInputMessaging": "IN-BLOCKED", "blockedOutputsMessaging": "OUT-BLOCKED",
                             **policies})


def run(document: dict[str, Any], text: str, source: str = "INPUT", full: bool = False, units: Any = None) -> Any:
    d = detectors()
    return apply(compile_guardrail(document, d), d, source, units or [TextUnit(text)], full)  # type: ignore[arg-type]


def insults(strength: str) -> dict[str, Any]:
    return guardrail(contentPolicyConfig={"filtersConfig": [
        {"type": "INSULTS", "inputStrength": strength, "outputStrength": strength}]})


@pytest.mark.parametrize("strength, count, blocked", [
    ("HIGH", 1, True), ("MEDIUM", 1, False), ("MEDIUM", 2, True), ("LOW", 2, False), ("LOW", 3, True),
    ("NONE", 3, False)])
def test_strength_is_a_confidence_threshold(strength: str, count: int, blocked: bool) -> None:
    outcome = run(insults(strength), "you " + " idiot" * count)
    assert outcome.blocked is blocked
    if blocked:
        assert outcome.outputs == ["IN-BLOCKED"] and outcome.action == "GUARDRAIL_INTERVENED"
        row = outcome.assessment["contentPolicy"]["filters"][0]
        assert row["filterStrength"] == strength and row["action"] == "BLOCKED" and row["detected"]


def test_detect_only_action_reports_without_blocking() -> None:
    document = guardrail(contentPolicyConfig={"filtersConfig": [
        {"type": "INSULTS", "inputStrength": "HIGH", "outputStrength": "HIGH", "inputAction": "NONE"}]})
    outcome = run(document, "idiot idiot idiot")
    assert not outcome.intervened
    assert outcome.assessment["contentPolicy"]["filters"][0] == {
        "type": "INSULTS", "confidence": "HIGH", "filterStrength": "HIGH", "action": "NONE", "detected": True}


def test_output_disabled_policy_is_skipped() -> None:
    document = guardrail(contentPolicyConfig={"filtersConfig": [
        {"type": "INSULTS", "inputStrength": "HIGH", "outputStrength": "HIGH", "outputEnabled": False}]})
    assert run(document, "idiot idiot idiot", "INPUT").blocked
    assert not run(document, "idiot idiot idiot", "OUTPUT").blocked


def test_masking_and_regexes_and_overlaps() -> None:
    document = guardrail(sensitiveInformationPolicyConfig={
        "piiEntitiesConfig": [{"type": "EMAIL", "action": "ANONYMIZE"}],
        "regexesConfig": [{"name": "order", "pattern": r"ORD-\d+", "action": "ANONYMIZE"},
                          {"name": "domain", "pattern": r"example\.com", "action": "NONE"}]})
    outcome = run(document, "Mail ann@example.com about ORD-42 please")
    assert outcome.masked and outcome.outputs == ["Mail {EMAIL} about {order} please"]
    regexes = outcome.assessment["sensitiveInformationPolicy"]["regexes"]
    assert {r["name"]: r["action"] for r in regexes} == {"order": "ANONYMIZED", "domain": "NONE"}
    assert _mask("abcdef", [(1, 4, "X"), (2, 3, "Y"), (4, 6, "Z")]) == "aXZ"


def test_block_wins_over_mask() -> None:
    document = guardrail(
        sensitiveInformationPolicyConfig={"piiEntitiesConfig": [{"type": "EMAIL", "action": "ANONYMIZE"}]},
        wordPolicyConfig={"wordsConfig": [{"text": "top secret"}], "managedWordListsConfig": [{"type": "PROFANITY"}]})
    outcome = run(document, "TOP SECRET: darn, write to a@b.com")
    assert outcome.blocked and outcome.outputs == ["IN-BLOCKED"]
    words = outcome.assessment["wordPolicy"]
    assert words["customWords"] == [{"match": "TOP SECRET", "action": "BLOCKED", "detected": True}]
    assert words["managedWordLists"] == [{"match": "darn", "type": "PROFANITY", "action": "BLOCKED", "detected": True}]
    assert "secretive" not in str(run(document, "a secretive plan").assessment)  # whole words only


def test_topics_and_full_scope() -> None:
    document = guardrail(topicPolicyConfig={"topicsConfig": [{
        "name": "Cooking", "type": "DENY", "definition": "recipes for baking bread and cakes",
        "examples": ["how do I bake sourdough bread"]}]})
    assert run(document, "how do I bake sourdough bread at home").blocked
    quiet = run(document, "the train leaves at noon", full=True)
    assert quiet.assessment["topicPolicy"]["topics"] == [
        {"name": "Cooking", "type": "DENY", "action": "NONE", "detected": False}]
    assert "topicPolicy" not in run(document, "the train leaves at noon").assessment


def test_grounding_needs_sources_and_only_checks_output() -> None:
    document = guardrail(contextualGroundingPolicyConfig={"filtersConfig": [{"type": "GROUNDING", "threshold": 0.6}]})
    units = [TextUnit("The bridge opened in 1932 and is 503 metres long.", frozenset({"grounding_source"})),
             TextUnit("When did the bridge open?", frozenset({"query"})),
             TextUnit("The bridge opened in 1977.", frozenset({"guard_content"}))]
    outcome = run(document, "", "OUTPUT", units=units)
    assert outcome.blocked and outcome.outputs == ["OUT-BLOCKED"]
    assert outcome.usage["contextualGroundingPolicyUnits"] == 1
    assert outcome.coverage["textCharacters"]["guarded"] == len(units[2].text)
    assert not run(document, "", "INPUT", units=units).blocked


def test_usage_units_follow_length() -> None:
    outcome = run(insults("HIGH"), "x" * 2500)
    assert outcome.usage["contentPolicyUnits"] == 3 and outcome.usage["topicPolicyUnits"] == 0


@pytest.mark.parametrize("body, message", [
    ({}, "at least one policy"),
    ({"contentPolicyConfig": {"filtersConfig": [{"type": "PROMPT_ATTACK", "inputStrength": "HIGH",
                                                 "outputStrength": "LOW"}]}}, "input only"),
    ({"contentPolicyConfig": {"filtersConfig": [{"type": "GORE", "inputStrength": "HIGH", "outputStrength": "LOW"}]}},
     "enum"),
    ({"sensitiveInformationPolicyConfig": {"piiEntitiesConfig": [{"type": "EMAIL", "action": "HIDE"}]}}, "enum"),
    ({"topicPolicyConfig": {"topicsConfig": [{"name": "t", "definition": "d", "type": "DENY",
                                              "examples": ["e"] * 6}]}}, "at most 5"),
    ({"wordPolicyConfig": {"wordsConfig": [{"text": "a"}, {"text": "A"}]}}, "twice"),
    ({"automatedReasoningPolicyConfig": {"policies": []}}, "not supported"),
])
def test_config_validation(body: dict[str, Any], message: str) -> None:
    with pytest.raises(Invalid, match=message):
        config.normalize({"name": "g", "blockedInputMessaging": "a", "blockedOutputsMessaging": "b", **body})


def test_guard_config_parse() -> None:
    assert GuardConfig.parse(None) is None
    parsed = GuardConfig.parse({"guardrailIdentifier": "abc", "guardrailVersion": "1", "trace": "enabled_full",
                                "streamProcessingMode": "async"})
    assert parsed == GuardConfig("abc", "1", "enabled_full", "async")
    with pytest.raises(Invalid):
        GuardConfig.parse({"guardrailIdentifier": "abc"})


# -- streams ---------------------------------------------------------------------------------------------


class ScriptedGuardrails:
    """Guardrails.apply over the scripted checks, and a model that streams a fixed text."""

    def __init__(self, document: dict[str, Any], text: str) -> None:
        self.d = detectors()
        self.compiled = compile_guardrail(document, self.d)
        self.inference = self
        self.text = text
        self.closed = False

    async def apply(self, ctx: Any, identifier: str, version: str, source: str, units: Any, full: bool = False) -> Any:
        return "gid", version, apply(self.compiled, self.d, source, units, full)  # type: ignore[arg-type]

    def chat_stream(self, ctx: Any, chat: ChatRequest) -> AsyncIterator[ChatEvent]:
        async def events() -> AsyncIterator[ChatEvent]:
            try:
                for word in self.text.split(" "):
                    yield TextDelta(word + " ")
                yield Finished("end_turn", Usage(3, 30))
            finally:
                self.closed = True
        return events()


def stream(document: dict[str, Any], prompt: str, answer: str, mode: str) -> tuple[list[ChatEvent], ScriptedGuardrails]:
    g = ScriptedGuardrails(document, answer)
    chat = ChatRequest("m", [Message("user", [TextBlock(prompt)])])
    guarded = GuardedStream(g, None, chat, GuardConfig("gid", "1", "enabled", mode),  # type: ignore[arg-type]
                            Guarded.of_messages(chat.messages))

    async def collect() -> list[ChatEvent]:
        return [e async for e in guarded.events()]

    return asyncio.run(collect()), g


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stream_blocked_input_never_calls_the_model(mode: str) -> None:
    events, g = stream(insults("HIGH"), "idiot idiot", "fine words", mode)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["IN-BLOCKED"]
    assert isinstance(events[-1], Finished) and events[-1].stop_reason == "guardrail_intervened"
    assert not g.closed  # the model stream was never started


def test_stream_sync_holds_text_until_checked() -> None:
    clean = "word " * 200
    events, _ = stream(insults("HIGH"), "hi", clean + "idiot " * 3 + "tail", "sync")
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "idiot" not in text and text.endswith("OUT-BLOCKED")
    assert events[-1].stop_reason == "guardrail_intervened"  # type: ignore[union-attr]
    assert events[-1].trace["guardrail"]["outputAssessments"]["gid"]  # type: ignore[union-attr,index]


def test_stream_sync_masks() -> None:
    document = guardrail(sensitiveInformationPolicyConfig={"piiEntitiesConfig": [{"type": "EMAIL", "action": "ANONYMIZE"}]})
    events, _ = stream(document, "hi", "write to ann@example.com today", "sync")
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "ann@example.com" not in text and "{EMAIL}" in text


def test_stream_async_releases_text_then_stops() -> None:
    events, g = stream(insults("HIGH"), "hi", "word " * 150 + "idiot " * 3 + "word " * 300, "async")
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "idiot" in text  # async mode does not hold text back
    assert events[-1].stop_reason == "guardrail_intervened" and g.closed  # type: ignore[union-attr]
