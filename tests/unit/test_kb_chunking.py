import re

import numpy as np
import pytest

from outcrop.core.knowledge.chunking import Chunk, chunk_document, count_tokens, validate_chunking
from outcrop.core.knowledge.parsing import ParsedDocument, Section, parse
from outcrop.errors import Invalid

PROSE = " ".join(f"Sentence {i} says the river runs past old stone walls." for i in range(40))


def raw_fixed(**sub: object) -> dict:
    return {"chunkingStrategy": "FIXED_SIZE", "fixedSizeChunkingConfiguration": sub}


def raw_hierarchical(parent: int, child: int, overlap: int, levels: list | None = None) -> dict:
    sub = {"levelConfigurations": levels or [{"maxTokens": parent}, {"maxTokens": child}], "overlapTokens": overlap}
    return {"chunkingStrategy": "HIERARCHICAL", "hierarchicalChunkingConfiguration": sub}


def raw_semantic(max_tokens: int, buffer: int, threshold: int) -> dict:
    sub = {"maxTokens": max_tokens, "bufferSize": buffer, "breakpointPercentileThreshold": threshold}
    return {"chunkingStrategy": "SEMANTIC", "semanticChunkingConfiguration": sub}


def fixed(max_tokens: int, overlap: int) -> dict:
    return validate_chunking(raw_fixed(maxTokens=max_tokens, overlapPercentage=overlap))


def hierarchical(parent: int, child: int, overlap: int) -> dict:
    return validate_chunking(raw_hierarchical(parent, child, overlap))


def semantic(max_tokens: int, buffer: int = 0, threshold: int = 90) -> dict:
    return validate_chunking(raw_semantic(max_tokens, buffer, threshold))


def document(*sections: Section) -> ParsedDocument:
    return ParsedDocument(list(sections), {})


def words(text: str) -> list[str]:
    return text.split()


# -- tokens and validation ----------------------------------------------------------------------------


def test_count_tokens_counts_words_and_punctuation():
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("e.g. don't") == 7
    assert count_tokens("   ") == 0


def test_default_is_bedrocks_fixed_size_300_20():
    assert validate_chunking(None) == {
        "chunkingStrategy": "FIXED_SIZE",
        "fixedSizeChunkingConfiguration": {"maxTokens": 300, "overlapPercentage": 20},
    }


def test_validation_normalizes_and_drops_other_strategies():
    config = {
        "chunkingStrategy": "NONE",
        "fixedSizeChunkingConfiguration": {"maxTokens": 0, "overlapPercentage": 0},
    }
    assert validate_chunking(config) == {"chunkingStrategy": "NONE"}


FIXED = "chunkingConfiguration.fixedSizeChunkingConfiguration"
HIER = "chunkingConfiguration.hierarchicalChunkingConfiguration"
SEM = "chunkingConfiguration.semanticChunkingConfiguration"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("FIXED_SIZE", "chunkingConfiguration must be an object"),
        (
            {"chunkingStrategy": "WHOLE"},
            "chunkingConfiguration.chunkingStrategy must be one of FIXED_SIZE, HIERARCHICAL",
        ),
        ({"chunkingStrategy": "FIXED_SIZE"}, f"{FIXED} is required for FIXED_SIZE"),
        (raw_fixed(maxTokens=0, overlapPercentage=20), f"{FIXED}.maxTokens must be at least 1"),
        (raw_fixed(maxTokens=10, overlapPercentage=0), f"{FIXED}.overlapPercentage must be between 1 and 99"),
        (raw_fixed(maxTokens="10", overlapPercentage=5), f"{FIXED}.maxTokens must be an integer"),
        (raw_fixed(maxTokens=True, overlapPercentage=5), f"{FIXED}.maxTokens must be an integer"),
        (raw_fixed(maxTokens=10), f"{FIXED}.overlapPercentage is required"),
        (raw_hierarchical(0, 0, 1, [{"maxTokens": 10}]), f"{HIER}.levelConfigurations must hold exactly 2 levels"),
        (raw_hierarchical(9000, 10, 1), f"{HIER}.levelConfigurations[0].maxTokens must be between 1 and 8192"),
        (raw_hierarchical(100, 100, 1), f"{HIER}.levelConfigurations[1].maxTokens must be less than the parent"),
        (raw_hierarchical(100, 20, 21), f"{HIER}.overlapTokens must be between 1 and 20"),
        (raw_hierarchical(100, 20, 0), f"{HIER}.overlapTokens must be between 1 and 20"),
        (raw_semantic(0, 0, 95), f"{SEM}.maxTokens must be at least 1"),
        (raw_semantic(100, 2, 95), f"{SEM}.bufferSize must be between 0 and 1"),
        (raw_semantic(100, 0, 40), f"{SEM}.breakpointPercentileThreshold must be between 50 and 99"),
    ],
)
def test_validation_messages_name_the_field(config, message):
    with pytest.raises(Invalid) as caught:
        validate_chunking(config)
    assert caught.value.message.startswith(message)


# -- fixed size ---------------------------------------------------------------------------------------


def test_fixed_size_respects_the_bound_and_covers_everything_in_order():
    chunks = chunk_document(document(Section(PROSE)), fixed(50, 20))
    assert len(chunks) > 5
    assert all(count_tokens(c.text) <= 50 for c in chunks)
    assert chunks[0].text.startswith("Sentence 0 ") and chunks[-1].text.endswith(
        "Sentence 39 says the river runs past old stone walls."
    )
    source = words(PROSE)
    for chunk in chunks:  # every chunk is a run of whole source words: nothing split mid-word
        found = words(chunk.text)
        assert any(source[i : i + len(found)] == found for i in range(len(source)))


def test_fixed_size_overlap_is_present_and_bounded():
    chunks = chunk_document(document(Section(PROSE)), fixed(50, 20))
    for before, after in zip(chunks, chunks[1:], strict=False):
        shared = _shared_prefix_tokens(before.text, after.text)
        assert 1 <= shared <= 10  # 20% of 50


def _shared_prefix_tokens(before: str, after: str) -> int:
    """Tokens at the start of `after` that end `before`."""
    a, b = words(before), words(after)
    best = max((n for n in range(1, min(len(a), len(b)) + 1) if a[-n:] == b[:n]), default=0)
    return count_tokens(" ".join(b[:best]))


def test_fixed_size_prefers_to_end_at_a_sentence():
    chunks = chunk_document(document(Section(PROSE)), fixed(50, 10))
    assert all(c.text.endswith(".") for c in chunks)


def test_small_text_is_one_chunk_and_empty_text_none():
    assert chunk_document(document(Section("Just a line.")), fixed(300, 20)) == [Chunk("Just a line.")]
    assert chunk_document(document(Section("   ")), fixed(300, 20)) == []
    assert chunk_document(document(), fixed(300, 20)) == []


def test_a_word_longer_than_the_bound_is_cut_between_tokens():
    url = "https://example.com/" + "/".join(f"part{i}" for i in range(30))
    chunks = chunk_document(document(Section(f"See {url} now.")), fixed(10, 20))
    assert all(count_tokens(c.text) <= 10 for c in chunks)
    assert url in "".join(c.text.replace("See ", "").replace(" now.", "") for c in _without_overlap(chunks))


def _without_overlap(chunks: list[Chunk]) -> list[Chunk]:
    out = [chunks[0]]
    for before, after in zip(chunks, chunks[1:], strict=False):
        cut = next(n for n in range(len(after.text), -1, -1) if before.text.endswith(after.text[:n]))
        out.append(Chunk(after.text[cut:]))
    return out


def test_pages_are_never_mixed_and_same_page_sections_are_packed():
    doc = document(
        Section("Alpha one.", page=1),
        Section("Alpha two.", page=1),
        Section("Beta one.", page=2),
        Section("Gamma.", page=3),
    )
    chunks = chunk_document(doc, fixed(300, 20))
    assert [(c.page, c.text) for c in chunks] == [(1, "Alpha one.\n\nAlpha two."), (2, "Beta one."), (3, "Gamma.")]


def test_pdf_pages_survive_chunking():
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for page in range(3):
        pdf.add_page()
        pdf.multi_cell(0, 6, " ".join(f"Page {page + 1} line {i} about granite." for i in range(30)))
    chunks = chunk_document(parse("rocks.pdf", bytes(pdf.output())), fixed(40, 20))
    assert {c.page for c in chunks} == {1, 2, 3}
    for chunk in chunks:
        assert set(re.findall(r"Page (\d)", chunk.text)) <= {str(chunk.page)}


def test_csv_rows_are_never_split():
    rows = "\n".join(f"r{i},{'word ' * (i % 7 + 1)}" for i in range(30))
    doc = parse("table.csv", f"id,text\n{rows}\nbig,{'long ' * 80}\n".encode())
    whole = {s.text for s in doc.sections}
    chunks = chunk_document(doc, fixed(40, 20))
    for chunk in chunks:
        assert set(chunk.text.split("\n")) <= whole
        assert count_tokens(chunk.text) <= 40 or chunk.text.startswith("id: big")
    assert {line for c in chunks for line in c.text.split("\n")} == whole
    assert [c.text for c in chunks if "id: big" in c.text] == [f"id: big, text: {'long ' * 79}long"]


# -- hierarchical -------------------------------------------------------------------------------------


def test_hierarchical_children_sit_inside_their_parents():
    chunks = chunk_document(document(Section(PROSE, page=4)), hierarchical(120, 30, 5))
    parents = list(dict.fromkeys(c.parent for c in chunks))
    assert len(parents) > 2
    for chunk in chunks:
        assert chunk.parent is not None and chunk.text in chunk.parent
        assert count_tokens(chunk.text) <= 30 and count_tokens(chunk.parent) <= 120
        assert chunk.page == 4
    for parent in parents:  # each parent's children cover it
        children = [c.text for c in chunks if c.parent == parent]
        assert words(parent)[:3] == words(children[0])[:3] and words(parent)[-3:] == words(children[-1])[-3:]


# -- semantic -----------------------------------------------------------------------------------------

ROCKS = ["Granite cools slowly from magma.", "Basalt is dark volcanic rock.", "Magma rises through the crust."]
MUSIC = ["The violin leads the orchestra.", "A cello hums under the melody.", "The orchestra tunes to the oboe."]
ROCK_WORDS = {"granite", "magma", "basalt", "volcanic", "rock", "crust"}
MUSIC_WORDS = {"violin", "orchestra", "cello", "melody", "oboe"}


class TopicEmbedder:
    """Test double: a sentence's vector says how much it talks about rocks versus music."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(texts)
        rows = []
        for text in texts:
            tokens = re.findall(r"\w+", text.lower())
            rows.append([sum(t in ROCK_WORDS for t in tokens), sum(t in MUSIC_WORDS for t in tokens), 0.01])
        vectors = np.array(rows, dtype=float)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("buffer", [0, 1])
def test_semantic_breaks_where_the_topic_changes(buffer):
    embed = TopicEmbedder()
    text = " ".join(ROCKS + MUSIC + ROCKS)
    chunks = chunk_document(document(Section(text)), semantic(300, buffer, 60), embed)
    assert [c.text for c in chunks] == [" ".join(ROCKS), " ".join(MUSIC), " ".join(ROCKS)]
    assert len(embed.calls) == 1 and len(embed.calls[0]) == 9


def test_semantic_keeps_one_topic_together_and_enforces_max_tokens():
    text = " ".join(ROCKS * 6)
    chunks = chunk_document(document(Section(text)), semantic(20, 0, 95), TopicEmbedder())
    assert all(count_tokens(c.text) <= 20 for c in chunks)
    assert " ".join(c.text for c in chunks) == text  # no overlap in semantic chunks


def test_semantic_needs_an_embedder():
    with pytest.raises(Invalid, match="embedding model"):
        chunk_document(document(Section("One. Two.")), semantic(100))


# -- none ---------------------------------------------------------------------------------------------


def test_none_keeps_each_page_whole():
    doc = document(Section("One.", page=1), Section("Two.", page=1), Section("Three.", page=2))
    chunks = chunk_document(doc, validate_chunking({"chunkingStrategy": "NONE"}))
    assert chunks == [Chunk("One.\n\nTwo.", 1), Chunk("Three.", 2)]
    assert chunk_document(document(Section(PROSE)), {"chunkingStrategy": "NONE"}) == [Chunk(PROSE)]
