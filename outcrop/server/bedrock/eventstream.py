"""The application/vnd.amazon.eventstream frame encoder (botocore's decoder is the reference)."""

from __future__ import annotations

import json
import struct
from binascii import crc32
from typing import Any

_STRING = 7


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack("!B", len(n)) + n + struct.pack("!BH", _STRING, len(v)) + v


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    encoded = b"".join(_header(k, v) for k, v in headers.items())
    prelude = struct.pack("!II", 16 + len(encoded) + len(payload), len(encoded))
    prelude += struct.pack("!I", crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded + payload
    return message + struct.pack("!I", crc32(message) & 0xFFFFFFFF)


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, json.dumps(payload, separators=(",", ":")).encode())


def exception(exception_type: str, payload: dict[str, Any]) -> bytes:
    """A modeled exception; `exception_type` is the lowerCamel member name (e.g. `modelStreamErrorException`)."""
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return frame(headers, json.dumps(payload).encode())
