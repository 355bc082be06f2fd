"""Text embeddings with sentence-transformers (HF folders such as the packaged all-MiniLM-L6-v2)."""

from __future__ import annotations

import os
import threading

from outcrop.engines.base import Engine, require
from outcrop.errors import Invalid, ModelNotReady
from outcrop.types import EmbeddingResult


class SentenceTransformersEngine(Engine):
    name = "sentence-transformers"
    can_embed = True

    def load(self) -> None:
        # Never reach a model hub at run time: weights come from a local folder only.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        st = require("sentence_transformers", "local")
        torch = require("torch", "local")
        if self.context.threads:
            torch.set_num_threads(self.context.threads)
        if not self.context.model_path:
            raise ModelNotReady(f"model {self.spec.model_id} has no path")
        try:
            self._model = st.SentenceTransformer(self.context.model_path, device="cpu", local_files_only=True)
        except Exception as exc:
            raise ModelNotReady(f"model {self.spec.model_id} failed to load: {exc}") from exc
        self._tokenizer = self._model.tokenizer
        self._lock = threading.Lock()  # torch CPU inference is already multi-threaded; serialize batches
        self.dimensions = int(self._model.get_sentence_embedding_dimension() or 0)

    def embed(self, texts: list[str], dimensions: int | None, normalize: bool) -> EmbeddingResult:
        if dimensions is not None and not 0 < dimensions <= self.dimensions:
            raise Invalid(f"dimensions must be between 1 and {self.dimensions} for {self.spec.model_id}")
        with self._lock:
            vectors = self._model.encode(
                texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=normalize and dimensions is None
            )
        if dimensions is not None:
            # Matryoshka-style truncation, then re-normalise so cosine scores stay meaningful.
            vectors = vectors[:, :dimensions]
            if normalize:
                import numpy as np

                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = vectors / np.maximum(norms, 1e-12)
        tokens = sum(len(ids) for ids in self._tokenizer(texts, add_special_tokens=True)["input_ids"])
        return EmbeddingResult(vectors=vectors.tolist(), input_tokens=tokens)

    def count_tokens(self, request: object) -> int:
        raise Invalid(f"CountTokens is not supported for embedding model {self.spec.model_id}")
