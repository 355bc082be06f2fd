"""IAM identity policies: validate and compile a JSON document once, then decide requests against it cheaply."""

from __future__ import annotations

import enum
import functools
import ipaddress
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from outcrop.errors import Invalid

MAX_DOCUMENT_CHARS = 6144  # AWS managed-policy limit; IAM does not count white space
VERSIONS = ("2012-10-17", "2008-10-17")
_DOCUMENT_KEYS = {"Version", "Id", "Statement"}
_STATEMENT_KEYS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition"}
_SID = re.compile(r"[A-Za-z0-9]*")
_ACTION = re.compile(r"\*|[a-z0-9-]+:[A-Za-z0-9*?_-]+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# ${key}, ${key, 'default'} and the escapes ${*} ${?} ${$} (IAM "Policy variables" reference).
_VARIABLE = re.compile(r"\$\{(?:([*?$])|\s*([\w:/.@+=-]+)\s*(?:,\s*'([^']*)'\s*)?)\}")
_MULTI = (list, tuple, set, frozenset)  # a multi-valued context key
_SET_PREFIXES = {"ForAnyValue:": "any", "ForAllValues:": "all"}


class MalformedPolicy(Invalid):
    """The policy document is not valid JSON or breaks the IAM policy grammar."""

    def __init__(self, problem: str) -> None:
        prefix = "MalformedPolicyDocument: "
        super().__init__(problem if problem.startswith(prefix) else prefix + problem)


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


# --- context values, coerced per operator family (None: not comparable, so no match) ---

def _as_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):  # AWS renders aws:CurrentTime as ISO 8601 in UTC
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value) if isinstance(value, str | int | float) else None


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        return float(value)
    return None


def _as_timestamp(value: object) -> float | None:
    """ISO 8601 text or epoch seconds (both allowed in policies and for aws:CurrentTime); naive means UTC."""
    if isinstance(value, str) and not _NUMBER.fullmatch(value):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return _as_number(value)


def _as_bool(value: object) -> bool | None:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value if isinstance(value, bool) else None


@functools.lru_cache(maxsize=4096)  # parsing an address costs more than the rest of a decision
def _parse_ip(text: str) -> tuple[int, int] | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return address.version, int(address)


def _as_ip(value: object) -> tuple[int, int] | None:
    return _parse_ip(value) if isinstance(value, str) else None


def _as_network(value: object) -> tuple[int, int, int] | None:
    try:  # a bare address is a /32 or /128; host bits ("10.0.0.5/8") are masked off rather than refused
        network = ipaddress.ip_network(value, strict=False) if isinstance(value, str) else None
    except ValueError:
        return None
    return None if network is None else (network.version, int(network.network_address), int(network.netmask))


# --- patterns: literal text, `*`/`?` wildcards and ${...} variables ---

@dataclass(frozen=True)
class _Var:
    key: str  # lower-cased
    default: str | None

    def resolve(self, keys: Mapping[str, object]) -> str | None:
        value = keys.get(self.key)
        text = None if isinstance(value, _MULTI) else _as_text(value)
        return self.default if text is None else text


def _glob(text: str, colons: int, mode: str) -> tuple[str, int]:
    """Regex for `text` and the `:` count so far; "arn" keeps wildcards inside one of the first five components."""
    if mode == "literal":
        return re.escape(text), colons
    out = []
    for ch in text:
        colons += ch == ":"
        confined = mode == "arn" and colons < 5
        if ch == "*":
            out.append("[^:]*" if confined else ".*")
        elif ch == "?":
            out.append("[^:]" if confined else ".")
        else:
            out.append(re.escape(ch))
    return "".join(out), colons


@dataclass(frozen=True)
class _Pattern:
    """One policy string as a regex; `static` is compiled up front when it holds no variables (the usual case)."""

    parts: tuple[str | _Var, ...]  # regex fragments and variables
    flags: int
    static: re.Pattern[str] | None

    @classmethod
    def build(cls, text: str, variables: bool, mode: str = "glob", ignore_case: bool = False) -> _Pattern:
        parts: list[str | _Var] = []
        pos = colons = 0
        # Version 2008-10-17 predates variables: there `${aws:username}` is literal text, as in AWS.
        for m in _VARIABLE.finditer(text) if variables else ():
            fragment, colons = _glob(text[pos:m.start()], colons, mode)
            parts += [fragment, re.escape(m[1]) if m[1] else _Var(m[2].lower(), m[3])]
            pos = m.end()
        parts.append(_glob(text[pos:], colons, mode)[0])
        flags = re.S | (re.I if ignore_case else 0)
        static = None if any(isinstance(p, _Var) for p in parts) else re.compile("".join(map(str, parts)), flags)
        return cls(tuple(parts), flags, static)

    def match(self, value: str, keys: Mapping[str, object]) -> bool:
        regex = self.static
        if regex is None:
            out = []
            for part in self.parts:
                resolved = part.resolve(keys) if isinstance(part, _Var) else part
                if resolved is None:  # an unresolvable variable makes this entry match nothing
                    return False
                # Substituted values are literal: a `*` in a user name must not become a wildcard.
                out.append(re.escape(resolved) if isinstance(part, _Var) else resolved)
            regex = re.compile("".join(out), self.flags)  # re's own cache spares repeat compiles
        return regex.fullmatch(value) is not None


# --- condition operators ---

def _strings(mode: str, ignore_case: bool = False) -> Callable[[object, bool], _Pattern]:
    def compile_value(raw: object, variables: bool) -> _Pattern:
        text = _as_text(raw) or ""
        if mode == "arn" and len(_VARIABLE.sub("", text).split(":")) < 6:
            raise MalformedPolicy(f"ARN condition value {text!r} must be an ARN with six components")
        return _Pattern.build(text, variables, mode, ignore_case)
    return compile_value


def _parsed(parse: Callable[[object], Any], what: str) -> Callable[[object, bool], Any]:
    def compile_value(raw: object, variables: bool) -> Any:
        if (value := parse(raw)) is None:
            raise MalformedPolicy(f"condition value {raw!r} is not a valid {what}")
        return value
    return compile_value


@dataclass(frozen=True)
class _Operator:
    compile: Callable[[object, bool], Any]  # (policy value, variables enabled) -> compiled value
    coerce: Callable[[object], Any]  # context value -> comparable, or None when it is not
    test: Callable[[Any, Any, Mapping[str, object]], bool]  # (context value, compiled value, keys)
    negated: bool = False  # AWS: a negated operator on a missing key evaluates true


def _operators() -> dict[str, _Operator]:
    def like(value: str, pattern: _Pattern, keys: Mapping[str, object]) -> bool:
        return pattern.match(value, keys)

    def same(value: object, bound: object, _keys: object) -> bool:
        return value == bound

    def within(ip: tuple[int, int], net: tuple[int, int, int], _keys: object) -> bool:
        return ip[0] == net[0] and ip[1] & net[2] == net[1]  # an IPv4 address is never in an IPv6 block

    text, boolean = _as_text, _parsed(_as_bool, "boolean")
    ops = {
        "StringEquals": _Operator(_strings("literal"), text, like),
        "StringEqualsIgnoreCase": _Operator(_strings("literal", ignore_case=True), text, like),
        "StringLike": _Operator(_strings("glob"), text, like),
        # AWS documents ArnEquals and ArnLike as the same component-wise wildcard match.
        "ArnEquals": _Operator(_strings("arn"), text, like),
        "ArnLike": _Operator(_strings("arn"), text, like),
        "Bool": _Operator(boolean, _as_bool, same),
        "IpAddress": _Operator(_parsed(_as_network, "CIDR or IP address"), _as_ip, within),
        "Null": _Operator(boolean, _as_bool, same),  # evaluated apart, see _Condition.holds
    }
    comparisons: dict[str, Callable[[Any, Any, object], bool]] = {
        "Equals": same, "LessThan": lambda v, b, _: v < b, "LessThanEquals": lambda v, b, _: v <= b,
        "GreaterThan": lambda v, b, _: v > b, "GreaterThanEquals": lambda v, b, _: v >= b}
    for family, coerce in (("Numeric", _as_number), ("Date", _as_timestamp)):
        for suffix, test in comparisons.items():
            ops[family + suffix] = _Operator(_parsed(coerce, family.lower()), coerce, test)
    negations = {"StringEquals": "StringNotEquals", "StringEqualsIgnoreCase": "StringNotEqualsIgnoreCase",
                 "StringLike": "StringNotLike", "NumericEquals": "NumericNotEquals", "DateEquals": "DateNotEquals",
                 "IpAddress": "NotIpAddress", "ArnEquals": "ArnNotEquals", "ArnLike": "ArnNotLike"}
    for positive, negative in negations.items():
        ops[negative] = replace(ops[positive], negated=True)
    return ops


_OPERATORS = _operators()
_NULL = _OPERATORS["Null"]


@dataclass(frozen=True)
class _Condition:
    key: str  # lower-cased: condition keys are case-insensitive
    op: _Operator
    values: tuple[Any, ...]  # several values for one key are OR'ed
    qualifier: str | None  # "any" (ForAnyValue:), "all" (ForAllValues:) or None
    if_exists: bool

    def holds(self, keys: Mapping[str, object]) -> bool:
        raw = keys.get(self.key)
        if raw is not None and self.qualifier is None and not isinstance(raw, _MULTI) and self.op is not _NULL:
            return self._hit(raw, keys) != self.op.negated  # the common case: one value, plain operator
        present: Collection[object] = raw if isinstance(raw, _MULTI) else () if raw is None else (raw,)
        if self.op is _NULL:  # `"Null": {"key": "true"}` asks for the key to be absent
            return (not present) in self.values
        if not present:
            # IAM condition reference: an absent key fails a condition, except under IfExists, a negated
            # operator (StringNotEquals...) or ForAllValues (vacuously true); ForAnyValue is false.
            return self.if_exists or self.qualifier == "all" or (self.qualifier is None and self.op.negated)
        negated = self.op.negated
        if self.qualifier == "all":  # set operators negate per value, then quantify
            return all(self._hit(v, keys) != negated for v in present)
        if self.qualifier == "any":
            return any(self._hit(v, keys) != negated for v in present)
        return any(self._hit(v, keys) for v in present) != negated  # several values, plain operator

    def _hit(self, raw: object, keys: Mapping[str, object]) -> bool:
        value = self.op.coerce(raw)
        if value is not None:
            test = self.op.test
            for bound in self.values:
                if test(value, bound, keys):
                    return True
        return False


@dataclass(frozen=True)
class Statement:
    """One compiled statement; `applies` is true when action, resource and every condition match."""

    sid: str | None
    deny: bool
    actions: re.Pattern[str]  # all Action (or NotAction) entries as one case-insensitive regex
    not_action: bool
    resources: tuple[_Pattern, ...]
    not_resource: bool
    conditions: tuple[_Condition, ...]

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


def _operator(name: str) -> tuple[_Operator, str | None, bool]:
    base, qualifier = name, None
    for prefix, kind in _SET_PREFIXES.items():
        if base.startswith(prefix):
            base, qualifier = base[len(prefix):], kind
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    op = _OPERATORS.get(base)
    # AWS does not allow IfExists or a set prefix on Null: Null already speaks about absence.
    if op is None or (base == "Null" and (if_exists or qualifier)):
        raise MalformedPolicy(f"unknown condition operator {name!r}")
    return op, qualifier, if_exists


def _conditions(block: object, variables: bool) -> tuple[_Condition, ...]:
    if not isinstance(block, dict):
        raise MalformedPolicy("Condition must be an object of operators")
    out = []
    for name, pairs in block.items():
        op, qualifier, if_exists = _operator(name)
        if not isinstance(pairs, dict) or not pairs:
            raise MalformedPolicy(f"condition operator {name} must map condition keys to values")
        for key, raw in pairs.items():
            values = raw if isinstance(raw, list) else [raw]
            if not key or not values or not all(isinstance(v, str | bool | int | float) for v in values):
                raise MalformedPolicy(f"condition {name} {key!r} needs a value or a non-empty list of values")
            compiled = tuple(op.compile(v, variables) for v in values)
            out.append(_Condition(key.lower(), op, compiled, qualifier, if_exists))
    return tuple(out)


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
        actions=re.compile("|".join(_glob(a, 0, "glob")[0] for a in actions), re.I | re.S),
        not_action=not_action,
        resources=tuple(_Pattern.build(r, variables) for r in resources), not_resource=not_resource,
        conditions=_conditions(raw.get("Condition", {}), variables),
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
