"""Denied topics and contextual grounding on the real embedding model (MiniLM): the behaviour the calibration in
bench/guardrail_semantic.py relies on, pinned on a few hand-checked cases."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

from outcrop.core.guardrails.checks import semantic

pytest.importorskip("sentence_transformers")

INVESTMENT: dict[str, object] = {
    "name": "Investment advice",
    "definition": "Recommendations on where to invest money, which stocks, funds or other assets to buy or sell, "
                  "or a financial plan for a person.",
    "examples": ["Which stocks should I buy this year?", "Is now a good time to invest in gold?",
                 "How should I split my savings between bonds and shares?", "Should I put my bonus into crypto?"],
}
BARE = {**INVESTMENT, "examples": []}
SOURCE = ("The Eiffel Tower was completed in 1889 for the World's Fair in Paris. It is 330 metres tall and was the "
          "tallest man-made structure in the world until 1930. Gustave Eiffel's company designed and built it. "
          "Around seven million people visit it every year.")
QUERY = "When was the Eiffel Tower built and how tall is it?"


@pytest.fixture(scope="module")
def embed(tmp_path_factory: pytest.TempPathFactory) -> Callable[[list[str]], np.ndarray]:
    from sentence_transformers import SentenceTransformer

    from outcrop import modelpacks

    cache: Path = tmp_path_factory.mktemp("packs")  # MiniLM is a folder in a registry package: no cache is used
    model = SentenceTransformer(str(modelpacks.pack_path(modelpacks.MINILM_L6, cache)), device="cpu")
    return lambda texts: np.asarray(model.encode(texts, normalize_embeddings=True))


_compiled: dict[int, list[semantic.Topic]] = {}


def score(embed: semantic.Embed, topic: Mapping[str, object], text: str) -> float:
    if id(topic) not in _compiled:  # compiled once, as the engine does per guardrail version
        _compiled[id(topic)] = semantic.compile_topics(embed, [dict(topic)])
    return semantic.topic_scores(embed, _compiled[id(topic)], [text])[str(topic["name"])]


@pytest.mark.parametrize("text", ["Should I sell my Apple stock now?", "Which fund should I move my pension into?",
                                  "I just inherited $50,000. What should I invest it in?"])
def test_investment_questions_are_detected(embed: semantic.Embed, text: str) -> None:
    assert score(embed, INVESTMENT, text) >= semantic.TOPIC_THRESHOLD


@pytest.mark.parametrize("text", ["What's a good recipe for banana bread?", "How do I reset my router password?",
                                  "How do interest rates affect bond prices?"])
def test_other_questions_are_not(embed: semantic.Embed, text: str) -> None:
    assert score(embed, INVESTMENT, text) < semantic.TOPIC_THRESHOLD


def test_one_on_topic_sentence_in_a_long_text_is_found(embed: semantic.Embed) -> None:
    bakery = ("Our bakery opened in 1998 on Main Street. We sell sourdough, rye and seeded loaves. The first batch "
              "comes out of the oven at six every morning. Customers queue for the cinnamon rolls on Saturdays. ")
    assert score(embed, INVESTMENT, bakery * 3) < semantic.TOPIC_THRESHOLD
    asking = bakery + "By the way, which tech stocks should I buy with my savings right now? " + bakery
    assert score(embed, INVESTMENT, asking) >= semantic.TOPIC_THRESHOLD


def test_a_topic_without_examples_still_detects(embed: semantic.Embed) -> None:
    assert score(embed, BARE, "I just inherited $50,000. What should I invest it in?") >= semantic.TOPIC_THRESHOLD
    assert score(embed, BARE, "What's a good recipe for banana bread?") < semantic.TOPIC_THRESHOLD


def test_grounded_answer_scores_above_an_ungrounded_one(embed: semantic.Embed) -> None:
    grounded, relevant = semantic.grounding_scores(
        embed, "The Eiffel Tower was finished in 1889 and is 330 metres tall.", SOURCE, QUERY)
    invented, _ = semantic.grounding_scores(
        embed, "The Eiffel Tower was painted gold in 1925 by the city of Lyon to celebrate a football victory.",
        SOURCE, QUERY)
    assert grounded >= 0.7 > 0.5 > invented
    assert relevant >= 0.7


def test_an_invented_number_lowers_grounding(embed: semantic.Embed) -> None:
    right, _ = semantic.grounding_scores(embed, "The tower is 330 metres tall and opened in 1889.", SOURCE, QUERY)
    wrong, _ = semantic.grounding_scores(embed, "The tower is 410 metres tall and opened in 1889.", SOURCE, QUERY)
    assert right - wrong > 0.3
    assert wrong < 0.5


def test_an_answer_to_another_question_is_not_relevant(embed: semantic.Embed) -> None:
    _, relevant = semantic.grounding_scores(embed, "The Eiffel Tower was completed in 1889.", SOURCE, QUERY)
    _, off = semantic.grounding_scores(embed, "Around seven million people visit it every year.", SOURCE,
                                       "What is the best way to cook rice?")
    assert relevant > off
    assert off < 0.5
