"""A guardrail version compiled, and applied to text: Bedrock's assessments, action, outputs and usage.

`compile_guardrail` turns a stored version (GetGuardrail's shapes) into ready checks: word lists as one regex,
customer regexes compiled, topic prototypes embedded. `apply` runs the policies that are on for the source
concurrently — each content check, PII, topics, grounding in its own worker — and merges their findings.
Blocking; callers run it in a worker thread.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from outcrop.core.guardrails.checks import semantic
from outcrop.core.guardrails.checks.base import LEVELS, ContentCheck, EntitySpan, PiiCheck

Source = Literal["INPUT", "OUTPUT"]
GROUNDING_SOURCE, QUERY, GUARD_CONTENT = "grounding_source", "query", "guard_content"
_BLOCKS_AT = {"HIGH": 1, "MEDIUM": 2, "LOW": 3}  # strength → lowest confidence (index in LEVELS) it blocks


@dataclass(frozen=True)
class TextUnit:
    """One text block handed to the guardrail, with ApplyGuardrail's qualifiers."""

    text: str
    qualifiers: frozenset[str] = frozenset()

    @property
    def guarded(self) -> bool:
        return GUARD_CONTENT in self.qualifiers or not self.qualifiers & {GROUNDING_SOURCE, QUERY}


@dataclass
class Detectors:
    """The checks a server holds, from the `register_guardrail_checks` plugins, and the embedding model."""

    content: list[ContentCheck]
    pii: PiiCheck | None
    embed: semantic.Embed
    profanity: Callable[[str], list[tuple[int, int]]]  # the managed PROFANITY list's (start, end) matches
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(4, thread_name_prefix="guardrail"))

    def check_for(self, category: str) -> ContentCheck | None:
        return next((c for c in self.content if category in c.categories), None)


@dataclass
class Compiled:
    document: dict[str, Any]
    topics: list[semantic.Topic]
    words: re.Pattern[str] | None
    managed: bool
    regexes: list[re.Pattern[str]]


@dataclass
class Outcome:
    action: Literal["NONE", "GUARDRAIL_INTERVENED"]
    action_reason: str
    outputs: list[str]
    assessment: dict[str, Any]
    usage: dict[str, int]
    coverage: dict[str, Any]
    blocked: bool = False
    masked: bool = False

    @property
    def intervened(self) -> bool:
        return self.action == "GUARDRAIL_INTERVENED"


def _word_pattern(words: Sequence[str]) -> re.Pattern[str] | None:
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def compile_guardrail(document: dict[str, Any], detectors: Detectors) -> Compiled:
    words = document.get("wordPolicy") or {}
    topics = (document.get("topicPolicy") or {}).get("topics") or []
    sensitive = document.get("sensitiveInformationPolicy") or {}
    return Compiled(
        document=document,
        topics=semantic.compile_topics(detectors.embed, topics) if topics else [],
        words=_word_pattern([w["text"] for w in words.get("words") or []]),
        managed=bool(words.get("managedWordLists")),
        regexes=[re.compile(r["pattern"]) for r in sensitive.get("regexes") or []],
    )


def _on(item: dict[str, Any], source: Source) -> tuple[bool, str]:
    """(enabled, action) of a policy item for this source."""
    side = "input" if source == "INPUT" else "output"
    return bool(item.get(f"{side}Enabled", True)), str(item.get(f"{side}Action") or item.get("action") or "BLOCK")


def _verdict(action: str, masking: bool = False) -> str:
    return {"BLOCK": "BLOCKED", "ANONYMIZE": "ANONYMIZED" if masking else "BLOCKED"}.get(action, "NONE")


def apply(compiled: Compiled, detectors: Detectors, source: Source, units: Sequence[TextUnit],
          full: bool = False) -> Outcome:
    """Evaluate `units` against the guardrail; `full` (outputScope FULL, trace enabled_full) keeps non-detections."""
    started = time.perf_counter()
    doc = compiled.document
    guarded = [u.text for u in units if u.guarded]
    pending: dict[str, Future[Any]] = {}

    filters = [f for f in (doc.get("contentPolicy") or {}).get("filters") or []
               if _on(f, source)[0] and f["inputStrength" if source == "INPUT" else "outputStrength"] != "NONE"]
    for check in {id(c): c for f in filters if (c := detectors.check_for(f["type"])) is not None}.values():
        pending[f"content:{check.name}"] = detectors.pool.submit(_max_scores, check, guarded)
    topics = [t for t in (doc.get("topicPolicy") or {}).get("topics") or [] if _on(t, source)[0]]
    if topics and guarded:
        pending["topics"] = detectors.pool.submit(semantic.topic_scores, detectors.embed, compiled.topics, guarded)
    sensitive = doc.get("sensitiveInformationPolicy") or {}
    entities = [e for e in sensitive.get("piiEntities") or [] if _on(e, source)[0]]
    if entities and detectors.pii is not None:
        wanted = [e["type"] for e in entities]
        pii = detectors.pii
        pending["pii"] = detectors.pool.submit(lambda: [pii.find(text, wanted) for text in guarded])
    grounding = [f for f in (doc.get("contextualGroundingPolicy") or {}).get("filters") or [] if f.get("enabled", True)]
    sources = "\n".join(u.text for u in units if GROUNDING_SOURCE in u.qualifiers)
    queries = "\n".join(u.text for u in units if QUERY in u.qualifiers)
    if grounding and source == "OUTPUT" and sources and guarded:
        pending["grounding"] = detectors.pool.submit(semantic.grounding_scores, detectors.embed, "\n".join(guarded),
                                                     sources, queries)

    assessment: dict[str, Any] = {}
    verdicts: list[str] = []
    if filters:
        scores: dict[str, float] = {}
        for key, future in pending.items():
            if key.startswith("content:"):
                scores.update(future.result())
        rows = []
        for f in filters:
            owner = detectors.check_for(f["type"])
            confidence = owner.calibration[f["type"]].level(scores.get(f["type"], 0.0)) if owner else "NONE"
            strength = f["inputStrength" if source == "INPUT" else "outputStrength"]
            detected = LEVELS.index(confidence) >= _BLOCKS_AT[strength]
            verdict = _verdict(_on(f, source)[1]) if detected else "NONE"
            verdicts.append(verdict)
            if detected or full:
                rows.append({"type": f["type"], "confidence": confidence, "filterStrength": strength,
                             "action": verdict, "detected": detected})
        if rows:
            assessment["contentPolicy"] = {"filters": rows}
    if "topics" in pending:
        found = pending["topics"].result()
        rows = []
        for topic in topics:
            detected = found.get(topic["name"], 0.0) >= semantic.TOPIC_THRESHOLD
            verdict = _verdict(_on(topic, source)[1]) if detected else "NONE"
            verdicts.append(verdict)
            if detected or full:
                rows.append({"name": topic["name"], "type": "DENY", "action": verdict, "detected": detected})
        if rows:
            assessment["topicPolicy"] = {"topics": rows}

    words = _words(compiled, detectors, doc.get("wordPolicy") or {}, source, guarded, verdicts)
    if words:
        assessment["wordPolicy"] = words

    masks: list[list[tuple[int, int, str]]] = [[] for _ in guarded]
    pii_rows: list[dict[str, Any]] = []
    regex_rows: list[dict[str, Any]] = []
    if "pii" in pending:
        config = {e["type"]: _on(e, source)[1] for e in entities}
        spans: list[list[EntitySpan]] = pending["pii"].result()
        for i, found_spans in enumerate(spans):
            for span in found_spans:
                action = config.get(span.type, "NONE")
                verdict = _verdict(action, masking=True)
                verdicts.append(verdict)
                pii_rows.append({"match": guarded[i][span.start:span.end], "type": span.type, "action": verdict,
                                 "detected": True})
                if action == "ANONYMIZE":
                    masks[i].append((span.start, span.end, "{" + span.type + "}"))
    for regex, item in zip(compiled.regexes, sensitive.get("regexes") or [], strict=True):
        enabled, action = _on(item, source)
        if not enabled:
            continue
        for i, text in enumerate(guarded):
            for match in regex.finditer(text):
                if match.end() == match.start():
                    continue
                verdict = _verdict(action, masking=True)
                verdicts.append(verdict)
                regex_rows.append({"name": item["name"], "match": match.group(0), "regex": item["pattern"],
                                   "action": verdict, "detected": True})
                if action == "ANONYMIZE":
                    masks[i].append((match.start(), match.end(), "{" + item["name"] + "}"))
    if pii_rows or regex_rows:
        assessment["sensitiveInformationPolicy"] = {"piiEntities": pii_rows, "regexes": regex_rows}

    if "grounding" in pending:
        scores_by_type = dict(zip(("GROUNDING", "RELEVANCE"), pending["grounding"].result(), strict=True))
        rows = []
        for f in grounding:
            score = scores_by_type[f["type"]]
            detected = score < f["threshold"]
            verdict = _verdict(f.get("action", "BLOCK")) if detected else "NONE"
            verdicts.append(verdict)
            if detected or full:
                rows.append({"type": f["type"], "threshold": f["threshold"], "score": score, "action": verdict,
                             "detected": detected})
        if rows:
            assessment["contextualGroundingPolicy"] = {"filters": rows}

    blocked = "BLOCKED" in verdicts
    masked = not blocked and "ANONYMIZED" in verdicts
    if blocked:
        message = doc["blockedInputMessaging" if source == "INPUT" else "blockedOutputsMessaging"]
        outputs, reason = [message], "Guardrail blocked."
    elif masked:
        outputs, reason = [_mask(text, spans) for text, spans in zip(guarded, masks, strict=True)], "Guardrail masked."
    else:
        outputs, reason = [], "No action."
    usage = _usage(doc, source, guarded, bool(entities), bool(grounding and source == "OUTPUT" and sources))
    coverage = {"textCharacters": {"guarded": sum(len(t) for t in guarded), "total": sum(len(u.text) for u in units)}}
    assessment["invocationMetrics"] = {"guardrailProcessingLatency": int((time.perf_counter() - started) * 1000),
                                       "usage": usage, "guardrailCoverage": coverage}
    return Outcome("GUARDRAIL_INTERVENED" if blocked or masked else "NONE", reason, outputs, assessment, usage,
                   coverage, blocked, masked)


def _max_scores(check: ContentCheck, texts: Sequence[str]) -> dict[str, float]:
    best: dict[str, float] = {}
    for scores in check.score(list(texts)) if texts else []:
        for category, value in scores.items():
            best[category] = max(best.get(category, 0.0), value)
    return best


def _words(compiled: Compiled, detectors: Detectors, policy: dict[str, Any], source: Source, texts: Sequence[str],
           verdicts: list[str]) -> dict[str, Any] | None:
    custom, managed = [], []
    if compiled.words is not None:
        config = {w["text"].lower(): w for w in policy.get("words") or []}
        for text in texts:
            for match in compiled.words.finditer(text):
                enabled, action = _on(config.get(match.group(0).lower(), {}), source)
                if enabled:
                    verdicts.append(_verdict(action))
                    custom.append({"match": match.group(0), "action": _verdict(action), "detected": True})
    lists = policy.get("managedWordLists") or []
    if compiled.managed and lists and _on(lists[0], source)[0]:
        action = _on(lists[0], source)[1]
        for text in texts:
            for start, end in detectors.profanity(text):
                verdicts.append(_verdict(action))
                managed.append({"match": text[start:end], "type": "PROFANITY", "action": _verdict(action),
                                "detected": True})
    return {"customWords": custom, "managedWordLists": managed} if custom or managed else None


def _mask(text: str, spans: list[tuple[int, int, str]]) -> str:
    """Replace spans by their labels, left to right; of overlapping spans the earlier (then longer) one wins."""
    out, at = [], 0
    for start, stop, label in sorted(spans, key=lambda s: (s[0], -s[1])):
        if start < at:
            continue
        out += [text[at:start], label]
        at = stop
    out.append(text[at:])
    return "".join(out)


def _usage(doc: dict[str, Any], source: Source, texts: Sequence[str], pii: bool, grounded: bool) -> dict[str, int]:
    units = sum(max(1, math.ceil(len(t) / 1000)) for t in texts if t)
    sensitive = "sensitiveInformationPolicy" in doc
    return {
        "topicPolicyUnits": units if "topicPolicy" in doc else 0,
        "contentPolicyUnits": units if "contentPolicy" in doc else 0,
        "wordPolicyUnits": units if "wordPolicy" in doc else 0,
        "sensitiveInformationPolicyUnits": units if sensitive and pii else 0,
        "sensitiveInformationPolicyFreeUnits": units if sensitive and not pii else 0,
        "contextualGroundingPolicyUnits": units if grounded else 0,
    }
