"""A knowledge base's embedding model, called as the knowledge base's service role would call it on AWS.

Ingestion and the query side of Retrieve embed through here, not through the caller's InvokeModel: on Bedrock
the knowledge base's role invokes the embedding model, and the caller needs only bedrock:Retrieve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from outcrop.core.catalog import normalize_model_id
from outcrop.core.inference import InferenceService
from outcrop.errors import Invalid, NotFound
from outcrop.types import ModelSpec


class Embedder:
    def __init__(self, inference: InferenceService) -> None:
        self.inference = inference

    def spec(self, model_arn: str) -> ModelSpec:
        try:
            spec = self.inference.resolve(normalize_model_id(model_arn)).spec
        except NotFound as exc:
            raise Invalid(f"The embedding model {model_arn} is not in this server's catalog") from exc
        if spec.kind != "embedding":
            raise Invalid(f"{model_arn} is not an embedding model; a knowledge base needs one "
                          "(e.g. amazon.titan-embed-text-v2:0, served by the default embedder)")
        return spec

    def _engine(self, model_arn: str) -> Any:
        return self.inference.pool.get_blocking(self.spec(model_arn), self.inference.catalog)

    def dimension(self, model_arn: str) -> int:
        return int(self._engine(model_arn).dimensions)

    def embed(self, model_arn: str, texts: list[str], dimensions: int | None = None) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text (blocking: call from a worker thread)."""
        if not texts:
            return np.zeros((0, dimensions or self.dimension(model_arn)), dtype=np.float32)
        result = self._engine(model_arn).embed(texts, dimensions, True)
        return np.asarray(result.vectors, dtype=np.float32)
