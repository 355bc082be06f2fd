"""Bedrock's guardrail policy configs: validated, with Bedrock's defaults filled in, in GetGuardrail's shapes.

CreateGuardrail and UpdateGuardrail send `*PolicyConfig` members (`filtersConfig`, `topicsConfig`, …);
GetGuardrail answers `*Policy` members (`filters`, `topics`, …) with every default spelled out. `normalize`
turns the first into the second once, so the stored version is exactly what GetGuardrail returns and what
the runtime compiles.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from outcrop.errors import Invalid

CONTENT_TYPES = ("SEXUAL", "VIOLENCE", "HATE", "INSULTS", "MISCONDUCT", "PROMPT_ATTACK")
STRENGTHS = ("NONE", "LOW", "MEDIUM", "HIGH")
PII_TYPES = (
    "ADDRESS", "AGE", "AWS_ACCESS_KEY", "AWS_SECRET_KEY", "CA_HEALTH_NUMBER", "CA_SOCIAL_INSURANCE_NUMBER",
    "CREDIT_DEBIT_CARD_CVV", "CREDIT_DEBIT_CARD_EXPIRY", "CREDIT_DEBIT_CARD_NUMBER", "DRIVER_ID", "EMAIL",
    "INTERNATIONAL_BANK_ACCOUNT_NUMBER", "IP_ADDRESS", "LICENSE_PLATE", "MAC_ADDRESS", "NAME", "PASSWORD", "PHONE",
    "PIN", "SWIFT_CODE", "UK_NATIONAL_HEALTH_SERVICE_NUMBER", "UK_NATIONAL_INSURANCE_NUMBER",
    "UK_UNIQUE_TAXPAYER_REFERENCE_NUMBER", "URL", "USERNAME", "US_BANK_ACCOUNT_NUMBER", "US_BANK_ROUTING_NUMBER",
    "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER", "US_PASSPORT_NUMBER", "US_SOCIAL_SECURITY_NUMBER",
    "VEHICLE_IDENTIFICATION_NUMBER",
)
POLICIES = ("topicPolicy", "contentPolicy", "wordPolicy", "sensitiveInformationPolicy", "contextualGroundingPolicy")
_BLOCK_NONE = ("BLOCK", "NONE")
_PII_ACTIONS = ("BLOCK", "ANONYMIZE", "NONE")
_NAME = re.compile(r"[0-9a-zA-Z_-]{1,50}")
_TOPIC_NAME = re.compile(r"[0-9a-zA-Z_ !?.-]{1,100}")
MAX_TOPICS, MAX_EXAMPLES, MAX_WORDS, MAX_REGEXES = 30, 5, 10_000, 10


def _fail(message: str) -> Invalid:
    return Invalid(f"1 validation error detected: {message}")


def _text(value: Any, where: str, low: int, high: int) -> str:
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise _fail(f"{where} must be a string of {low} to {high} characters")
    return value


def _enum(value: Any, where: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if value not in allowed:
        raise _fail(f"Value {value!r} at '{where}' failed to satisfy constraint: "
                    f"Member must satisfy enum value set: [{', '.join(allowed)}]")
    return str(value)


def _flag(value: Any, where: str) -> bool:
    if value is None:
        return True
    if not isinstance(value, bool):
        raise _fail(f"{where} must be a boolean")
    return value


def _items(config: Any, key: str, where: str, limit: int, required: bool = True) -> list[dict[str, Any]]:
    if not isinstance(config, dict):
        raise _fail(f"{where} must be an object")
    items = config.get(key)
    if items is None and not required:
        return []
    if not isinstance(items, list) or (required and not items) or len(items) > limit:
        raise _fail(f"{where}.{key} must be a list of 1 to {limit} items")
    if not all(isinstance(i, dict) for i in items):
        raise _fail(f"{where}.{key} must hold objects")
    return items


def _directions(item: dict[str, Any], where: str, actions: tuple[str, ...], default: str) -> dict[str, Any]:
    return {
        "inputAction": _enum(item.get("inputAction"), f"{where}.inputAction", actions, default),
        "outputAction": _enum(item.get("outputAction"), f"{where}.outputAction", actions, default),
        "inputEnabled": _flag(item.get("inputEnabled"), f"{where}.inputEnabled"),
        "outputEnabled": _flag(item.get("outputEnabled"), f"{where}.outputEnabled"),
    }


def _unique(items: list[dict[str, Any]], key: Callable[[dict[str, Any]], str], where: str) -> None:
    seen = [key(i) for i in items]
    if len(seen) != len(set(seen)):
        raise _fail(f"{where} must not name the same item twice")


def topic_policy(config: Any) -> dict[str, Any]:
    where = "topicPolicyConfig"
    topics = []
    for i, item in enumerate(_items(config, "topicsConfig", where, MAX_TOPICS)):
        w = f"{where}.topicsConfig.{i + 1}"
        name = _text(item.get("name"), f"{w}.name", 1, 100)
        if not _TOPIC_NAME.fullmatch(name):
            raise _fail(f"{w}.name may hold letters, digits, spaces and -_!?. only")
        examples = item.get("examples") or []
        if not isinstance(examples, list) or len(examples) > MAX_EXAMPLES:
            raise _fail(f"{w}.examples must be a list of at most {MAX_EXAMPLES} examples")
        topics.append({
            "name": name, "definition": _text(item.get("definition"), f"{w}.definition", 1, 200),
            "examples": [_text(e, f"{w}.examples", 1, 100) for e in examples],
            "type": _enum(item.get("type"), f"{w}.type", ("DENY",)),
            **_directions(item, w, _BLOCK_NONE, "BLOCK"),
        })
    _unique(topics, lambda t: t["name"].lower(), f"{where}.topicsConfig")
    return {"topics": topics}


def content_policy(config: Any) -> dict[str, Any]:
    where = "contentPolicyConfig"
    filters = []
    for i, item in enumerate(_items(config, "filtersConfig", where, len(CONTENT_TYPES))):
        w = f"{where}.filtersConfig.{i + 1}"
        kind = _enum(item.get("type"), f"{w}.type", CONTENT_TYPES)
        inbound = _enum(item.get("inputStrength"), f"{w}.inputStrength", STRENGTHS)
        outbound = _enum(item.get("outputStrength"), f"{w}.outputStrength", STRENGTHS)
        if kind == "PROMPT_ATTACK" and outbound != "NONE":
            raise _fail("PROMPT_ATTACK applies to input only: its outputStrength must be NONE")
        for key in ("inputModalities", "outputModalities"):
            modalities = item.get(key) or ["TEXT"]
            if not isinstance(modalities, list) or not set(modalities) <= {"TEXT", "IMAGE"}:
                raise _fail(f"{w}.{key} must list TEXT and/or IMAGE")
        filters.append({"type": kind, "inputStrength": inbound, "outputStrength": outbound,
                        "inputModalities": item.get("inputModalities") or ["TEXT"],
                        "outputModalities": item.get("outputModalities") or ["TEXT"],
                        **_directions(item, w, _BLOCK_NONE, "BLOCK")})
    _unique(filters, lambda f: f["type"], f"{where}.filtersConfig")
    return {"filters": filters}


def word_policy(config: Any) -> dict[str, Any]:
    where = "wordPolicyConfig"
    words = [{"text": _text(item.get("text"), f"{where}.wordsConfig.{i + 1}.text", 1, 100),
              **_directions(item, f"{where}.wordsConfig.{i + 1}", _BLOCK_NONE, "BLOCK")}
             for i, item in enumerate(_items(config, "wordsConfig", where, MAX_WORDS, required=False))]
    managed = [{"type": _enum(item.get("type"), f"{where}.managedWordListsConfig.{i + 1}.type", ("PROFANITY",)),
                **_directions(item, f"{where}.managedWordListsConfig.{i + 1}", _BLOCK_NONE, "BLOCK")}
               for i, item in enumerate(_items(config, "managedWordListsConfig", where, 1, required=False))]
    if not words and not managed:
        raise _fail(f"{where} must configure wordsConfig or managedWordListsConfig")
    _unique(words, lambda w: w["text"].lower(), f"{where}.wordsConfig")
    return {"words": words, "managedWordLists": managed}


def sensitive_policy(config: Any) -> dict[str, Any]:
    where = "sensitiveInformationPolicyConfig"
    entities = []
    for i, item in enumerate(_items(config, "piiEntitiesConfig", where, len(PII_TYPES), required=False)):
        w = f"{where}.piiEntitiesConfig.{i + 1}"
        action = _enum(item.get("action"), f"{w}.action", _PII_ACTIONS)
        entities.append({"type": _enum(item.get("type"), f"{w}.type", PII_TYPES), "action": action,
                         **_directions(item, w, _PII_ACTIONS, action)})
    regexes = []
    for i, item in enumerate(_items(config, "regexesConfig", where, MAX_REGEXES, required=False)):
        w = f"{where}.regexesConfig.{i + 1}"
        pattern = _text(item.get("pattern"), f"{w}.pattern", 1, 500)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _fail(f"{w}.pattern is not a valid regular expression: {exc}") from None
        action = _enum(item.get("action"), f"{w}.action", _PII_ACTIONS)
        regex = {"name": _text(item.get("name"), f"{w}.name", 1, 100), "pattern": pattern, "action": action,
                 **_directions(item, w, _PII_ACTIONS, action)}
        if item.get("description") is not None:
            regex["description"] = _text(item["description"], f"{w}.description", 1, 1000)
        regexes.append(regex)
    if not entities and not regexes:
        raise _fail(f"{where} must configure piiEntitiesConfig or regexesConfig")
    _unique(entities, lambda e: e["type"], f"{where}.piiEntitiesConfig")
    _unique(regexes, lambda r: r["name"], f"{where}.regexesConfig")
    return {"piiEntities": entities, "regexes": regexes}


def grounding_policy(config: Any) -> dict[str, Any]:
    where = "contextualGroundingPolicyConfig"
    filters = []
    for i, item in enumerate(_items(config, "filtersConfig", where, 2)):
        w = f"{where}.filtersConfig.{i + 1}"
        threshold = item.get("threshold")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold < 1:
            raise _fail(f"{w}.threshold must be a number from 0 to 0.99")
        filters.append({"type": _enum(item.get("type"), f"{w}.type", ("GROUNDING", "RELEVANCE")),
                        "threshold": float(threshold),
                        "action": _enum(item.get("action"), f"{w}.action", _BLOCK_NONE, "BLOCK"),
                        "enabled": _flag(item.get("enabled"), f"{w}.enabled")})
    _unique(filters, lambda f: f["type"], f"{where}.filtersConfig")
    return {"filters": filters}


_POLICIES: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "topicPolicyConfig": ("topicPolicy", topic_policy),
    "contentPolicyConfig": ("contentPolicy", content_policy),
    "wordPolicyConfig": ("wordPolicy", word_policy),
    "sensitiveInformationPolicyConfig": ("sensitiveInformationPolicy", sensitive_policy),
    "contextualGroundingPolicyConfig": ("contextualGroundingPolicy", grounding_policy),
}


def name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise _fail("name must be 1 to 50 letters, digits, '_' or '-'")
    return value


def normalize(body: dict[str, Any]) -> dict[str, Any]:
    """A Create/UpdateGuardrail body → the version's stored document (GetGuardrail's policy members)."""
    for key in ("automatedReasoningPolicyConfig", "crossRegionConfig"):
        if body.get(key) is not None:
            raise Invalid(f"{key} is not supported by Outcrop: automated reasoning and cross-region inference "
                          "profiles are AWS-hosted features")
    document: dict[str, Any] = {
        "name": name(body.get("name")),
        "blockedInputMessaging": _text(body.get("blockedInputMessaging"), "blockedInputMessaging", 1, 500),
        "blockedOutputsMessaging": _text(body.get("blockedOutputsMessaging"), "blockedOutputsMessaging", 1, 500),
    }
    if body.get("description") is not None:
        document["description"] = _text(body["description"], "description", 1, 200)
    for key, (member, build) in _POLICIES.items():
        if body.get(key) is not None:
            document[member] = build(body[key])
    if not any(member in document for member in POLICIES):
        raise Invalid("A guardrail needs at least one policy: configure a content, denied topic, word, "
                      "sensitive information or contextual grounding policy")
    return document
