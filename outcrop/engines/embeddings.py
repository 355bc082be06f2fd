"""Text embeddings with sentence-transformers (HF folders such as the packaged all-MiniLM-L6-v2)."""

from __future__ import annotations

import os
import threading
from typing import Any

from outcrop.engines.base import Engine, require
from outcrop.engines.openmp import on_own_thread
from outcrop.errors import Invalid, ModelNotReady
from outcrop.types import EmbeddingResult

_BATCH = 32
_FEW = 4  # up to this many texts: one thread (see _use_threads)


class SentenceTransformersEngine(Engine):
    name = "sentence-transformers"
    can_embed = True

    def load(self) -> None:
        # Never reach a model hub at run time: weights come from a local folder only.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        st = require("sentence_transformers", "local")
        self._torch = require("torch", "local")
        self._threads = self.context.threads or self._torch.get_num_threads()
        self._current_threads = 0
        if not self.context.model_path:
            raise ModelNotReady(f"model {self.spec.model_id} has no path")
        try:
            path = self.context.model_path  # loaded on a thread of its own, like batches (engines.openmp)
            self._model = on_own_thread(lambda: st.SentenceTransformer(path, device="cpu", local_files_only=True))
        except Exception as exc:
            raise ModelNotReady(f"model {self.spec.model_id} failed to load: {exc}") from exc
        self._model.eval()
        # sentence-transformers 5 renamed tokenize() to preprocess(); accept both.
        self._preprocess = getattr(self._model, "preprocess", None) or self._model.tokenize
        self._lock = threading.Lock()  # torch CPU inference is already multi-threaded; serialize batches
        self.dimensions = int(self._model[-1].get_sentence_embedding_dimension() if hasattr(
            self._model[-1], "get_sentence_embedding_dimension") else len(self._forward(["x"])[0][0]))

    def embed(self, texts: list[str], dimensions: int | None, normalize: bool) -> EmbeddingResult:
        if dimensions is not None and not 0 < dimensions <= self.dimensions:
            raise Invalid(f"dimensions must be between 1 and {self.dimensions} for {self.spec.model_id}")
        threads = 1 if len(texts) <= _FEW else self._threads
        with self._lock:
            if threads == 1:
                return self._embed(texts, dimensions, normalize, threads)
            return on_own_thread(lambda: self._embed(texts, dimensions, normalize, threads))

    def _embed(self, texts: list[str], dimensions: int | None, normalize: bool, threads: int) -> EmbeddingResult:
        self._use_threads(threads)
        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), _BATCH):
            batch, count = self._forward(texts[start:start + _BATCH], dimensions, normalize)
            vectors.extend(batch)
            tokens += count
        return EmbeddingResult(vectors=vectors, input_tokens=tokens)

    def _use_threads(self, threads: int) -> None:
        """One thread for a query or a few, every core for a batch (on a thread of its own: engines.openmp).
        torch's OpenMP workers spin-wait for each other: with a core busy elsewhere (llama.cpp generating,
        another process), a one-sentence embedding on 2 threads took ~500 ms instead of ~16 ms on 1
        (docs/benchmarks.md, issue 5)."""
        if threads != self._current_threads:
            self._torch.set_num_threads(threads)
            self._current_threads = threads

    def _forward(self, texts: list[str], dimensions: int | None = None, normalize: bool = True) -> tuple[Any, int]:
        """Tokenize once (the token count comes from the same pass) and run the model's modules directly:
        for one short text, SentenceTransformer.encode's sorting and bookkeeping cost more than the model."""
        torch = self._torch
        features = self._preprocess(texts)
        count = int(features["attention_mask"].sum())
        with torch.inference_mode():
            vectors = self._model(features)["sentence_embedding"]
            if dimensions is not None:
                vectors = vectors[:, :dimensions]  # Matryoshka-style truncation, re-normalised below
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.tolist(), count

    def count_tokens(self, request: object) -> int:
        raise Invalid(f"CountTokens is not supported for embedding model {self.spec.model_id}")
