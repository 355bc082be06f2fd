"""Policy matching: context values coerced per operator, wildcard patterns with ${...} variables, and
the IAM condition operators — compiled once per document, evaluated per request."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from outcrop.errors import Invalid

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# ${key}, ${key, 'default'} and the escapes ${*} ${?} ${$} (IAM "Policy variables" reference).
VARIABLE = re.compile(r"\$\{(?:([*?$])|\s*([\w:/.@+=-]+)\s*(?:,\s*'([^']*)'\s*)?)\}")
_MULTI = (list, tuple, set, frozenset)  # a multi-valued context key
_SET_PREFIXES = {"ForAnyValue:": "any", "ForAllValues:": "all"}


class MalformedPolicy(Invalid):
    """The policy document is not valid JSON or breaks the IAM policy grammar."""

    def __init__(self, problem: str) -> None:
        prefix = "MalformedPolicyDocument: "
        super().__init__(problem if problem.startswith(prefix) else prefix + problem)


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


def glob_regex(text: str, colons: int, mode: str) -> tuple[str, int]:
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
class Pattern:
    """One policy string as a regex; `static` is compiled up front when it holds no variables (the usual case)."""

    parts: tuple[str | _Var, ...]  # regex fragments and variables
    flags: int
    static: re.Pattern[str] | None

    @classmethod
    def build(cls, text: str, variables: bool, mode: str = "glob", ignore_case: bool = False) -> Pattern:
        parts: list[str | _Var] = []
        pos = colons = 0
        # Version 2008-10-17 predates variables: there `${aws:username}` is literal text, as in AWS.
        for m in VARIABLE.finditer(text) if variables else ():
            fragment, colons = glob_regex(text[pos:m.start()], colons, mode)
            parts += [fragment, re.escape(m[1]) if m[1] else _Var(m[2].lower(), m[3])]
            pos = m.end()
        parts.append(glob_regex(text[pos:], colons, mode)[0])
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

def _strings(mode: str, ignore_case: bool = False) -> Callable[[object, bool], Pattern]:
    def compile_value(raw: object, variables: bool) -> Pattern:
        text = _as_text(raw) or ""
        if mode == "arn" and len(VARIABLE.sub("", text).split(":")) < 6:
            raise MalformedPolicy(f"ARN condition value {text!r} must be an ARN with six components")
        return Pattern.build(text, variables, mode, ignore_case)
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
    def like(value: str, pattern: Pattern, keys: Mapping[str, object]) -> bool:
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
        "Null": _Operator(boolean, _as_bool, same),  # evaluated apart, see Condition.holds
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
class Condition:
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


def parse_conditions(block: object, variables: bool) -> tuple[Condition, ...]:
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
            out.append(Condition(key.lower(), op, compiled, qualifier, if_exists))
    return tuple(out)


