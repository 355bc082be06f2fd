"""Splitting parsed documents into chunks the way Bedrock's chunking strategies do.

Text is cut into units (words, or whole atomic sections); strategies pack units into windows. Chunks
never span two pages, so a chunk's page number is exact.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import groupby
from typing import TYPE_CHECKING, Any

from outcrop.core.knowledge.formats import KB_EXTRA, ParsedDocument, Section
from outcrop.errors import Invalid, ModelError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Chunk", "chunk_document", "count_tokens", "validate_chunking"]

Embed = Callable[[list[str]], "np.ndarray"]

_TOKEN = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")


@dataclass(frozen=True)
class Chunk:
    """A piece of a document to embed; `parent` is the enclosing parent chunk's text (HIERARCHICAL)."""

    text: str
    page: int | None = None
    parent: str | None = None


def count_tokens(text: str) -> int:
    """Words and punctuation marks in `text`.

    Bedrock counts the embedding model's own tokens; this approximates them without a tokenizer
    (subword tokenizers give somewhat more: ~1.3 per English word), so chunks stay model-neutral.
    """
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class _Unit:
    """The smallest thing a chunk is built from: a word, a piece of an over-long word, or an atomic section."""

    text: str
    tokens: int
    lead: str  # the whitespace before it in the document; dropped when the unit starts a chunk
    breaks_after: bool  # a sentence or section ends here: the preferred place to cut


@dataclass(frozen=True)
class _Page:
    page: int | None
    units: list[_Unit]


def chunk_document(doc: ParsedDocument, config: dict[str, Any], embed: Embed | None = None) -> list[Chunk]:
    """Chunk `doc` by an already validated `chunkingConfiguration`; SEMANTIC needs `embed`."""
    strategy = config["chunkingStrategy"]
    limit = _unit_limit(config)
    pages = [_Page(page, _units(list(sections), limit)) for page, sections in groupby(doc.sections, lambda s: s.page)]
    pages = [p for p in pages if p.units]
    return _STRATEGIES[strategy](pages, config, embed)


def _unit_limit(config: dict[str, Any]) -> int | None:
    """The largest unit a strategy can place; longer runs of word characters and punctuation are cut."""
    sub = config.get("fixedSizeChunkingConfiguration") or config.get("semanticChunkingConfiguration")
    if sub:
        return int(sub["maxTokens"])
    levels = config.get("hierarchicalChunkingConfiguration", {}).get("levelConfigurations")
    return int(levels[-1]["maxTokens"]) if levels else None


# -- configuration ------------------------------------------------------------------------------------

DEFAULT_CHUNKING: dict[str, Any] = {
    "chunkingStrategy": "FIXED_SIZE",
    "fixedSizeChunkingConfiguration": {"maxTokens": 300, "overlapPercentage": 20},
}
_PATH = "chunkingConfiguration"


def validate_chunking(config: dict[str, Any] | None) -> dict[str, Any]:
    """Check a Bedrock `chunkingConfiguration` against Bedrock's ranges; None means Bedrock's default."""
    if config is None:
        return {key: dict(value) if isinstance(value, dict) else value for key, value in DEFAULT_CHUNKING.items()}
    if not isinstance(config, dict):
        raise Invalid(f"{_PATH} must be an object")
    strategy = config.get("chunkingStrategy")
    if strategy not in _VALIDATORS:
        raise Invalid(f"{_PATH}.chunkingStrategy must be one of {', '.join(_VALIDATORS)}")
    key, check = _VALIDATORS[strategy]
    if key is None:
        return {"chunkingStrategy": strategy}
    sub = config.get(key)
    if not isinstance(sub, dict):
        raise Invalid(f"{_PATH}.{key} is required for {strategy}")
    return {"chunkingStrategy": strategy, key: check(sub, f"{_PATH}.{key}")}


def _fixed_size_config(sub: dict[str, Any], path: str) -> dict[str, Any]:
    return {
        "maxTokens": _integer(sub, path, "maxTokens", 1, None),
        "overlapPercentage": _integer(sub, path, "overlapPercentage", 1, 99),
    }


def _hierarchical_config(sub: dict[str, Any], path: str) -> dict[str, Any]:
    levels = sub.get("levelConfigurations")
    if not isinstance(levels, list) or len(levels) != 2 or not all(isinstance(x, dict) for x in levels):
        raise Invalid(f"{path}.levelConfigurations must hold exactly 2 levels (parent, child)")
    parent = _integer(levels[0], f"{path}.levelConfigurations[0]", "maxTokens", 1, 8192)
    child = _integer(levels[1], f"{path}.levelConfigurations[1]", "maxTokens", 1, 8192)
    if child >= parent:
        raise Invalid(f"{path}.levelConfigurations[1].maxTokens must be less than the parent level's maxTokens")
    return {
        "levelConfigurations": [{"maxTokens": parent}, {"maxTokens": child}],
        "overlapTokens": _integer(sub, path, "overlapTokens", 1, child),
    }


def _semantic_config(sub: dict[str, Any], path: str) -> dict[str, Any]:
    return {
        "maxTokens": _integer(sub, path, "maxTokens", 1, None),
        "bufferSize": _integer(sub, path, "bufferSize", 0, 1),
        "breakpointPercentileThreshold": _integer(sub, path, "breakpointPercentileThreshold", 50, 99),
    }


def _integer(sub: dict[str, Any], path: str, name: str, low: int, high: int | None) -> int:
    value = sub.get(name)
    if value is None:
        raise Invalid(f"{path}.{name} is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"{path}.{name} must be an integer")
    if high is None and value < low:
        raise Invalid(f"{path}.{name} must be at least {low}")
    if high is not None and not low <= value <= high:
        raise Invalid(f"{path}.{name} must be between {low} and {high}")
    return value


_VALIDATORS: dict[str, tuple[str | None, Callable[[dict[str, Any], str], dict[str, Any]]]] = {
    "FIXED_SIZE": ("fixedSizeChunkingConfiguration", _fixed_size_config),
    "HIERARCHICAL": ("hierarchicalChunkingConfiguration", _hierarchical_config),
    "SEMANTIC": ("semanticChunkingConfiguration", _semantic_config),
    "NONE": (None, lambda sub, path: sub),
}


# -- units --------------------------------------------------------------------------------------------


def _units(sections: list[Section], limit: int | None) -> list[_Unit]:
    units: list[_Unit] = []
    for section in sections:
        lead = "\n" if section.atomic else "\n\n"
        if section.atomic:
            text = section.text.strip()
            found = [_Unit(text, count_tokens(text), lead, True)] if text else []
        else:
            found = _words(section.text, limit)
        if found:
            found[0] = replace(found[0], lead=lead)
            found[-1] = replace(found[-1], breaks_after=True)
            units.extend(found)
    return units


def _words(text: str, limit: int | None) -> list[_Unit]:
    matches = list(re.finditer(r"\S+", text))
    units: list[_Unit] = []
    for i, match in enumerate(matches):
        lead = text[matches[i - 1].end() : match.start()] if i else ""
        follow = text[match.end() : matches[i + 1].start()] if i + 1 < len(matches) else ""
        ends = bool(_SENTENCE_END.search(match.group())) or "\n\n" in follow.replace("\r", "")
        units.extend(_split_word(match.group(), lead, ends, limit))
    return units


def _split_word(word: str, lead: str, ends: bool, limit: int | None) -> list[_Unit]:
    """Usually one unit; a word of more tokens than fit in a chunk is cut between tokens, never inside one."""
    count = count_tokens(word)
    if limit is None or count <= limit:
        return [_Unit(word, count, lead, ends)]
    starts = [token.start() for token in _TOKEN.finditer(word)]
    cuts = starts[::limit] + [len(word)]
    pieces = [word[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    return [
        _Unit(piece, count_tokens(piece), lead if i == 0 else "", ends and i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    ]


def _join(units: list[_Unit]) -> str:
    return units[0].text + "".join(unit.lead + unit.text for unit in units[1:]) if units else ""


# -- windows ------------------------------------------------------------------------------------------


def _windows(units: list[_Unit], max_tokens: int, overlap: int) -> list[list[_Unit]]:
    """Pack units into windows of at most `max_tokens`, each repeating up to `overlap` tokens of the last.

    A unit bigger than `max_tokens` (an atomic row) is a window of its own. Every window adds units
    the previous one did not have, so the loop ends.
    """
    windows: list[list[_Unit]] = []
    start = covered = 0
    while covered < len(units):
        end = _window_end(units, start, covered, max_tokens)
        windows.append(units[start:end])
        covered = end
        start = _overlap_start(units, start, end, overlap, max_tokens)
    return windows


def _window_end(units: list[_Unit], start: int, covered: int, max_tokens: int) -> int:
    end, total = start, 0
    while end < len(units) and (end == start or total + units[end].tokens <= max_tokens):
        total += units[end].tokens
        end += 1
    if end == len(units):
        return end
    # Prefer ending at a sentence or section end, if that keeps the window at least half full.
    filled = total
    for cut in range(end, covered, -1):
        if units[cut - 1].breaks_after and filled * 2 >= max_tokens:
            return cut
        filled -= units[cut - 1].tokens
    return end


def _overlap_start(units: list[_Unit], start: int, end: int, overlap: int, max_tokens: int) -> int:
    if end >= len(units):
        return end
    begin, total = end, 0
    while begin - 1 > start and total + units[begin - 1].tokens <= overlap:
        begin -= 1
        total += units[begin].tokens
    # Carry only as much as still leaves room for the next new unit.
    while begin < end and total + units[end].tokens > max_tokens:
        total -= units[begin].tokens
        begin += 1
    return begin


# -- strategies ---------------------------------------------------------------------------------------


def _fixed_size(pages: list[_Page], config: dict[str, Any], embed: Embed | None) -> list[Chunk]:
    sub = config["fixedSizeChunkingConfiguration"]
    overlap = sub["maxTokens"] * sub["overlapPercentage"] // 100
    return [
        Chunk(_join(window), page.page) for page in pages for window in _windows(page.units, sub["maxTokens"], overlap)
    ]


def _hierarchical(pages: list[_Page], config: dict[str, Any], embed: Embed | None) -> list[Chunk]:
    """Parent windows, each cut into child windows; the children are the chunks, each naming its parent."""
    sub = config["hierarchicalChunkingConfiguration"]
    parent_max, child_max = (level["maxTokens"] for level in sub["levelConfigurations"])
    chunks: list[Chunk] = []
    for page in pages:
        for parent in _windows(page.units, parent_max, sub["overlapTokens"]):
            parent_text = _join(parent)
            for child in _windows(parent, child_max, sub["overlapTokens"]):
                chunks.append(Chunk(_join(child), page.page, parent=parent_text))
    return chunks


def _semantic(pages: list[_Page], config: dict[str, Any], embed: Embed | None) -> list[Chunk]:
    """Break between sentences whose meaning drifts most, then cut what is still over maxTokens."""
    if embed is None:
        raise Invalid("SEMANTIC chunking needs an embedding model")
    sub = config["semanticChunkingConfiguration"]
    sentences = [_sentences(page.units) for page in pages]
    breaks = _semantic_breaks(sentences, sub["bufferSize"], sub["breakpointPercentileThreshold"], embed)
    chunks: list[Chunk] = []
    for page, page_sentences, page_breaks in zip(pages, sentences, breaks, strict=True):
        for group in _split_after(page_sentences, page_breaks):
            units = [unit for sentence in group for unit in sentence]
            chunks.extend(Chunk(_join(w), page.page) for w in _windows(units, sub["maxTokens"], 0))
    return chunks


def _sentences(units: list[_Unit]) -> list[list[_Unit]]:
    sentences: list[list[_Unit]] = [[]]
    for unit in units:
        sentences[-1].append(unit)
        if unit.breaks_after:
            sentences.append([])
    return [s for s in sentences if s]


def _split_after(items: list[Any], breaks: set[int]) -> list[list[Any]]:
    groups: list[list[Any]] = [[]]
    for i, item in enumerate(items):
        groups[-1].append(item)
        if i in breaks:
            groups.append([])
    return [g for g in groups if g]


def _semantic_breaks(pages: list[list[list[_Unit]]], buffer: int, percentile: int, embed: Embed) -> list[set[int]]:
    """Per page, the sentence indexes after which to break: one embedding call for the whole document."""
    try:
        import numpy as np
    except ImportError as exc:
        raise Invalid(f"SEMANTIC chunking needs numpy: {KB_EXTRA}") from exc
    texts = [[_join(s) for s in page] for page in pages]
    windows = [" ".join(page[max(0, i - buffer) : i + buffer + 1]) for page in texts for i in range(len(page))]
    if not windows:
        return [set() for _ in pages]
    vectors = np.asarray(embed(windows), dtype=float)
    if vectors.ndim != 2 or len(vectors) != len(windows):
        raise ModelError(f"the embedding model returned {len(vectors)} vectors for {len(windows)} texts")
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    distances: list[np.ndarray] = []
    offset = 0
    for page in texts:
        block = vectors[offset : offset + len(page)]
        distances.append(1.0 - np.sum(block[:-1] * block[1:], axis=1))
        offset += len(page)
    every = np.concatenate(distances)
    threshold = float(np.percentile(every, percentile)) if every.size else 0.0
    return [{int(i) for i in np.flatnonzero(d > threshold)} for d in distances]


def _none(pages: list[_Page], config: dict[str, Any], embed: Embed | None) -> list[Chunk]:
    """Bedrock's NONE keeps each file whole; here each page is whole, so page numbers stay exact."""
    return [Chunk(_join(page.units), page.page) for page in pages]


_STRATEGIES: dict[str, Callable[[list[_Page], dict[str, Any], Embed | None], list[Chunk]]] = {
    "FIXED_SIZE": _fixed_size,
    "HIERARCHICAL": _hierarchical,
    "SEMANTIC": _semantic,
    "NONE": _none,
}
