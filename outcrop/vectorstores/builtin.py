"""The built-in vector stores, registered through the same hook as third-party ones (imports stay lazy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from outcrop.markers import hookimpl


@hookimpl
def register_vector_stores(register: Callable[[Any], None]) -> None:
    from outcrop.vectorstores.embedded import EmbeddedStore

    register(EmbeddedStore())
