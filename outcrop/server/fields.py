"""Typed reads of decoded JSON with errors that name the offending field (shared by all wire formats)."""

from __future__ import annotations

from typing import Any, TypeVar

from outcrop.errors import Invalid

T = TypeVar("T")

_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def get(obj: dict[str, Any], key: str, kind: type[T] | tuple[type, ...], where: str, required: bool = False) -> Any:
    """obj[key] checked against `kind`; None when absent and not required."""
    if key not in obj or obj[key] is None:
        if required:
            raise Invalid(f"Malformed input request: {_path(where, key)} is required")
        return None
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(_NAMES.get(k, k.__name__) for k in kinds)
        raise Invalid(f"Malformed input request: {_path(where, key)} must be {expected}")
    return value


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def one_of(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> str:
    """The single union member present in `obj` (Bedrock unions have exactly one key)."""
    present = [k for k in obj if k in keys]
    if len(present) != 1:
        raise Invalid(f"Malformed input request: {where} must contain exactly one of {', '.join(keys)}")
    return present[0]
