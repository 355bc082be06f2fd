"""The built-in engines, registered through the same hook as third-party ones (imports stay lazy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from outcrop.markers import hookimpl


@hookimpl
def register_engines(register: Callable[[type[Any]], None]) -> None:
    from outcrop.engines.embeddings import SentenceTransformersEngine
    from outcrop.engines.llamacpp import LlamaCppEngine
    from outcrop.engines.openai_compat import OpenAICompatibleEngine
    from outcrop.engines.transformers import TransformersEngine

    for cls in (LlamaCppEngine, SentenceTransformersEngine, OpenAICompatibleEngine, TransformersEngine):
        register(cls)
