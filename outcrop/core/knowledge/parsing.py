"""Turning uploaded files into text for ingestion: dispatch by file suffix, and Bedrock metadata sidecars.

A sidecar is Bedrock's `<file>.metadata.json` next to `<file>`; its attributes become filterable
metadata on every chunk of that file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import Any

from outcrop.core.knowledge import formats
from outcrop.core.knowledge.formats import ParsedDocument, Section, decode_text
from outcrop.errors import Invalid

__all__ = [
    "PARSERS",
    "ParsedDocument",
    "Section",
    "inline_metadata",
    "is_sidecar",
    "parse",
    "parse_sidecar",
    "sidecar_for",
]

PARSERS: dict[str, Callable[[bytes], ParsedDocument]] = {
    ".txt": formats.parse_text,
    ".md": formats.parse_text,
    ".markdown": formats.parse_text,
    ".html": formats.parse_html,
    ".htm": formats.parse_html,
    ".pdf": formats.parse_pdf,
    ".docx": formats.parse_docx,
    ".csv": formats.parse_csv,
    ".json": formats.parse_json,
    ".jsonl": formats.parse_jsonl,
}

SIDECAR_SUFFIX = ".metadata.json"

# Bedrock's typed attribute form: {"type": "NUMBER", "numberValue": 2021}.
_TYPED_FIELDS = {
    "STRING": "stringValue",
    "NUMBER": "numberValue",
    "BOOLEAN": "booleanValue",
    "STRING_LIST": "stringListValue",
}


def parse(name: str, data: bytes) -> ParsedDocument:
    """Parse `data` by the suffix of `name` (case-insensitive); unknown or broken files raise Invalid."""
    suffix = PurePosixPath(name).suffix.lower()
    parser = PARSERS.get(suffix)
    if parser is None:
        raise Invalid(f"unsupported file type {suffix or '(no suffix)'}", name=name)
    with _library_errors(suffix.lstrip(".").upper()):
        return parser(data)


@contextmanager
def _library_errors(kind: str) -> Iterator[None]:
    """The one place parser-library failures become Invalid.

    Broad on purpose: the input is untrusted, and pypdf and python-docx raise almost anything
    (KeyError, ValueError, zipfile.BadZipFile, RecursionError…) on damaged files.
    """
    try:
        yield
    except Invalid:
        raise
    except Exception as exc:
        raise Invalid(f"unparseable {kind}: {exc or type(exc).__name__}") from exc


def is_sidecar(name: str) -> bool:
    """Whether `name` is a Bedrock metadata file (`<file>.metadata.json`, case as Bedrock spells it)."""
    base = name[: -len(SIDECAR_SUFFIX)]
    return name.endswith(SIDECAR_SUFFIX) and bool(base) and not base.endswith("/")


def sidecar_for(name: str) -> str:
    """The metadata file Bedrock looks for next to `name`."""
    return name + SIDECAR_SUFFIX


def parse_sidecar(data: bytes) -> dict[str, Any]:
    """A sidecar's `metadataAttributes` as a flat dict; plain and typed values are both accepted."""
    document = _load_json(data)
    attributes = document.get("metadataAttributes") if isinstance(document, dict) else None
    if not isinstance(attributes, dict):
        raise Invalid("metadata file must be a JSON object with a metadataAttributes object")
    return {key: _attribute_value(key, value) for key, value in attributes.items()}


def inline_metadata(attributes: list[dict[str, Any]]) -> dict[str, Any]:
    """Bedrock's `inlineAttributes` list ([{"key": ..., "value": {"type": ...}}]) as a flat dict."""
    if not isinstance(attributes, list):
        raise Invalid("inlineAttributes must be a list")
    flat: dict[str, Any] = {}
    for item in attributes:
        key = item.get("key") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key:
            raise Invalid("each inline metadata attribute needs a string key")
        if key in flat:
            raise Invalid(f"metadata attribute {key!r} is given twice")
        flat[key] = _typed_value(key, item.get("value"))
    return flat


def _load_json(data: bytes) -> Any:
    try:
        return json.loads(decode_text(data), parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise Invalid(f"metadata file is not valid JSON: {exc}") from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _attribute_value(key: str, value: Any) -> Any:
    # The typed form wraps the value: {"value": {...}, "includeForEmbedding": true}.
    if isinstance(value, dict):
        return _typed_value(key, value.get("value"))
    return _plain_value(key, value)


def _typed_value(key: str, typed: Any) -> Any:
    kind = typed.get("type") if isinstance(typed, dict) else None
    field = _TYPED_FIELDS.get(kind) if isinstance(kind, str) else None
    if field is None:
        raise Invalid(f"metadata attribute {key!r} needs a type of {', '.join(_TYPED_FIELDS)}")
    if field not in typed:
        raise Invalid(f"metadata attribute {key!r} of type {kind} needs {field}")
    value = _plain_value(key, typed[field])
    if _kind_of(value) != kind:
        raise Invalid(f"metadata attribute {key!r}: {field} does not hold a {kind}")
    return value


def _plain_value(key: str, value: Any) -> Any:
    if _kind_of(value) is None:
        raise Invalid(f"metadata attribute {key!r} must be a string, number, boolean or list of strings")
    return value


def _kind_of(value: Any) -> str | None:
    """The Bedrock attribute type of a JSON value, or None when Bedrock has no such type."""
    if isinstance(value, bool):  # before numbers: bool is an int in Python
        return "BOOLEAN"
    if isinstance(value, int | float):
        return "NUMBER" if math.isfinite(value) else None
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "STRING_LIST"
    return None
