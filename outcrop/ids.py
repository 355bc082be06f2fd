"""Identifiers that only need to be unique, not secret (request IDs, response IDs).

uuid.uuid4() reads the OS entropy source on every call, a system call on the request path; these come
from Python's PRNG instead. Keys and other secrets use `secrets`, never this module.
"""

from __future__ import annotations

import random
import uuid

_random = random.Random()


def request_id() -> str:
    """A version-4-shaped UUID string."""
    return str(uuid.UUID(int=_random.getrandbits(128), version=4))


def hex_id() -> str:
    """32 hex characters, e.g. for `chatcmpl-…` response IDs."""
    return f"{_random.getrandbits(128):032x}"
