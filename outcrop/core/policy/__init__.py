"""IAM identity policies: validate and compile a JSON document once, then decide requests against it cheaply."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from outcrop.core.policy.conditions import (
    Condition,
    MalformedPolicy,
    Pattern,
    glob_regex,
    parse_conditions,
)

__all__ = ["MANAGED", "AccessRequest", "Decision", "MalformedPolicy", "Policy", "Statement", "evaluate"]

MAX_DOCUMENT_CHARS = 6144  # AWS managed-policy limit; IAM does not count white space
VERSIONS = ("2012-10-17", "2008-10-17")
_DOCUMENT_KEYS = {"Version", "Id", "Statement"}
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
_SID = re.compile(r"[A-Za-z0-9]*")
_ACTION = re.compile(r"\*|[a-z0-9-]+:[A-Za-z0-9*?_-]+")


class Decision(enum.Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit_deny"
    IMPLICIT_DENY = "implicit_deny"


@dataclass(frozen=True)
class AccessRequest:
    """One action on one resource, with the request context condition keys are read from."""

    action: str
    resource: str
    context: Mapping[str, object] = field(default_factory=dict)

    @cached_property
    def _keys(self) -> Mapping[str, object]:
        # Condition key names are case-insensitive in IAM: folded once per request, and only when a
        # condition (or a policy variable) asks — most statements have none.
        return {k.lower(): v for k, v in self.context.items()}

    def value(self, key: str) -> object:
        return self._keys.get(key.lower())



@dataclass(frozen=True)
class Statement:
    """One compiled statement; `applies` is true when action, resource and every condition match."""

    sid: str | None
    deny: bool
    actions: re.Pattern[str]  # all Action (or NotAction) entries as one case-insensitive regex
    not_action: bool
    resources: tuple[Pattern, ...]
    not_resource: bool
    conditions: tuple[Condition, ...]

    def applies(self, request: AccessRequest) -> bool:
        if (self.actions.fullmatch(request.action) is not None) == self.not_action:
            return False
        matched = False
        for pattern in self.resources:  # loops, not any()/all(): this is the hot path
            static = pattern.static  # no variables: no need to fold the context keys
            if static.fullmatch(request.resource) if static is not None else pattern.match(request.resource,
                                                                                            request._keys):
                matched = True
                break
        if matched == self.not_resource:
            return False
        return not self.conditions or all(c.holds(request._keys) for c in self.conditions)


# --- parsing ---

def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys while a reviewer reads the first: refuse the ambiguity.
    keys = [k for k, _ in pairs]
    if duplicates := [k for i, k in enumerate(keys) if k in keys[:i]]:
        raise MalformedPolicy(f"duplicate key {duplicates[0]!r}")
    return dict(pairs)


def _load(document: str | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(document, str | Mapping):
        raise MalformedPolicy("the document must be a JSON object")
    try:
        text = document if isinstance(document, str) else json.dumps(document, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise MalformedPolicy(f"the document is not JSON: {exc}") from None
    if (size := len("".join(text.split()))) > MAX_DOCUMENT_CHARS:
        raise MalformedPolicy(f"LimitExceeded: the document is {size} characters, over {MAX_DOCUMENT_CHARS}")
    try:
        loaded = json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise MalformedPolicy(f"the document is not valid JSON ({exc})") from None
    if not isinstance(loaded, dict):
        raise MalformedPolicy("the document must be a JSON object")
    return loaded


def _either(raw: dict[str, Any], name: str, negated: str) -> tuple[list[str], bool]:
    present = [k for k in (name, negated) if k in raw]
    if len(present) != 1:
        raise MalformedPolicy(f"each statement needs exactly one of {name} or {negated}")
    value = raw[present[0]]
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise MalformedPolicy(f"{present[0]} must be a string or a non-empty list of strings")
    return values, present[0] == negated


def _statement(raw: object, variables: bool) -> Statement:
    if not isinstance(raw, dict):
        raise MalformedPolicy("each statement must be a JSON object")
    if "Principal" in raw or "NotPrincipal" in raw:  # AWS's own wording for identity policies
        raise MalformedPolicy("Policy document should not specify a principal.")
    if unknown := sorted(raw.keys() - _STATEMENT_KEYS):
        raise MalformedPolicy(f"unknown statement field {unknown[0]!r}")
    sid = raw.get("Sid")
    if sid is not None and (not isinstance(sid, str) or not _SID.fullmatch(sid)):
        raise MalformedPolicy("Statement IDs (SID) must be alpha-numeric")
    if raw.get("Effect") not in ("Allow", "Deny"):
        raise MalformedPolicy("each statement needs an Effect of \"Allow\" or \"Deny\"")
    actions, not_action = _either(raw, "Action", "NotAction")
    if bad := [a for a in actions if not _ACTION.fullmatch(a)]:
        raise MalformedPolicy(f"Action {bad[0]!r} must be \"*\" or \"service:action\" with a lower-case service")
    resources, not_resource = _either(raw, "Resource", "NotResource")
    if bad := [r for r in resources if r != "*" and not r.startswith("arn:")]:
        raise MalformedPolicy(f"Resource {bad[0]} must be in ARN format or \"*\"")
    return Statement(
        sid=sid, deny=raw["Effect"] == "Deny",
        # Actions never take variables, and IAM matches them case-insensitively.
        actions=re.compile("|".join(glob_regex(a, 0, "glob")[0] for a in actions), re.I | re.S),
        not_action=not_action,
        resources=tuple(Pattern.build(r, variables) for r in resources), not_resource=not_resource,
        conditions=parse_conditions(raw.get("Condition", {}), variables),
    )


@dataclass(frozen=True, eq=False)
class Policy:
    """A validated, compiled identity policy; `document` is the JSON as given, for GetPolicyVersion."""

    document: dict[str, Any]
    version: str
    statements: tuple[Statement, ...]

    @classmethod
    def parse(cls, document: str | Mapping[str, Any]) -> Policy:
        doc = _load(document)
        if unknown := sorted(doc.keys() - _DOCUMENT_KEYS):
            raise MalformedPolicy(f"unknown field {unknown[0]!r}")
        version = doc.get("Version", "2008-10-17")  # AWS reads a missing Version as the 2008 grammar
        if version not in VERSIONS:
            raise MalformedPolicy(f"The policy failed legacy parsing: Version must be one of {', '.join(VERSIONS)}")
        if not isinstance(doc.get("Id", ""), str):
            raise MalformedPolicy("Id must be a string")
        raw = doc.get("Statement")
        raws = [raw] if isinstance(raw, dict) else raw
        if not isinstance(raws, list) or not raws:
            raise MalformedPolicy("Statement must be an object or a non-empty list of objects")
        statements = tuple(_statement(s, version == "2012-10-17") for s in raws)
        sids = [s.sid for s in statements if s.sid]
        if len(sids) != len(set(sids)):
            raise MalformedPolicy("Statement IDs (SID) in a single policy must be unique")
        return cls(doc, version, statements)


def evaluate(policies: Iterable[Policy], request: AccessRequest) -> Decision:
    """IAM's evaluation logic: an explicit Deny anywhere wins, then any Allow, else the implicit deny."""
    allowed = False
    for policy in policies:
        for statement in policy.statements:
            # Once allowed, only a Deny can change the answer, so further Allows are not evaluated.
            if (statement.deny or not allowed) and statement.applies(request):
                if statement.deny:
                    return Decision.EXPLICIT_DENY
                allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


# Account admins (root-like principals) are not subject to policies at all, so no managed policy
# grants iam:* — identity stays with them.
_MANAGED_DOCUMENTS: dict[str, dict[str, Any]] = {
    "AmazonBedrockFullAccess": {"Version": "2012-10-17", "Statement": [
        {"Sid": "BedrockAll", "Effect": "Allow", "Action": "bedrock:*", "Resource": "*"},
        {"Sid": "UseKeys", "Effect": "Allow", "Resource": "*",
         "Action": ["kms:DescribeKey", "kms:ListKeys", "kms:GenerateDataKey", "kms:Decrypt"]},
    ]},
    "AmazonBedrockReadOnly": {"Version": "2012-10-17", "Statement": [
        {"Sid": "BedrockRead", "Effect": "Allow", "Resource": "*",
         "Action": ["bedrock:Get*", "bedrock:List*", "bedrock:CallWithBearerToken"]},
    ]},
    "OutcropInvokeOnly": {"Version": "2012-10-17", "Statement": [
        {"Sid": "Invoke", "Effect": "Allow", "Resource": "*", "Action": [
            "bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream", "bedrock:CountTokens",
            "bedrock:ListFoundationModels", "bedrock:GetFoundationModel", "bedrock:CallWithBearerToken"]},
    ]},
}
MANAGED: dict[str, Policy] = {f"arn:aws:iam::aws:policy/{name}": Policy.parse(doc) for name, doc in _MANAGED_DOCUMENTS.items()}
