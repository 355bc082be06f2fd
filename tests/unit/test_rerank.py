"""Rerank's scorers: a real (tiny, randomly initialised) sentence-transformers CrossEncoder given by path — no
cross-encoder ships offline (DESIGN.md §3) — and, by default, cosine similarity under the embedding model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from outcrop.core.knowledge.retrieval import Reranker
from outcrop.settings import Settings

WORDS = ["pump", "pressure", "bananas", "yellow", "paris", "france", "the", "is", "what", "of", "maximum"]


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("cross-encoder")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    transformers.BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, num_labels=1,
                                     initializer_range=0.5)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    return folder


class NoEmbedder:
    def embed(self, *args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("a configured cross-encoder must be used instead of the embedding model")


def test_a_configured_cross_encoder_scores_the_pairs(cross_encoder: Path, tmp_path: Path) -> None:
    import torch
    import transformers

    reranker = Reranker(Settings(home=tmp_path, reranker_model_path=cross_encoder), NoEmbedder())  # type: ignore[arg-type]
    query, texts = "what is the maximum pressure", ["the pump pressure", "bananas is yellow", "paris of france"]
    scores = reranker.scores("amazon.rerank-v1:0", query, texts)
    tokenizer = transformers.AutoTokenizer.from_pretrained(cross_encoder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(cross_encoder).eval()
    with torch.no_grad():
        logits = model(**tokenizer([query] * 3, texts, padding=True, return_tensors="pt")).logits[:, 0].numpy()
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)), rtol=1e-4)
    assert len(set(np.round(scores, 4))) == 3  # distinct scores: the model really ran on each pair


class FakeEmbedder:
    """Two-dimensional unit vectors: the query points along x."""

    def spec(self, model: str) -> object:
        from outcrop.errors import Invalid

        if "rerank" in model:
            raise Invalid("not an embedding model")
        return object()

    def embed(self, model: str, texts: list[str], dimensions: int | None = None) -> np.ndarray:
        self.model = model
        angles = {"q": 0.0, "near": 0.1, "far": 1.4}
        return np.array([[np.cos(angles[t]), np.sin(angles[t])] for t in texts], dtype=np.float32)


def test_by_default_bedrock_rerank_models_score_with_the_default_embedder(tmp_path: Path) -> None:
    embedder = FakeEmbedder()
    reranker = Reranker(Settings(home=tmp_path), embedder)  # type: ignore[arg-type]
    scores = reranker.scores("cohere.rerank-v3-5:0", "q", ["far", "near"])
    assert embedder.model == Settings(home=tmp_path).default_embedding_model
    assert scores[1] > scores[0] and scores.min() >= 0 and scores.max() <= 1
