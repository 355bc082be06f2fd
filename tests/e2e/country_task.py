"""A small real fine-tuning task from data shipped in a registry package (pycountry's ISO 3166-1 table, not
written for this project): name a country's alpha-3 code, answering with the code only.

The split is deterministic: every fifth country (by alpha-3 order) is held out of training.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

PROMPT = "What is the ISO 3166-1 alpha-3 code of {name}? Answer with the code only."


@dataclass(frozen=True)
class Item:
    name: str
    code: str

    @property
    def prompt(self) -> str:
        return PROMPT.format(name=self.name)


def items() -> tuple[list[Item], list[Item]]:
    """(training items, held-out items)."""
    import pycountry

    every = sorted((Item(c.name, c.alpha_3) for c in pycountry.countries), key=lambda i: i.code)
    return [i for n, i in enumerate(every) if n % 5], [i for n, i in enumerate(every) if not n % 5]


def write_jsonl(path: Path, chosen: list[Item]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"prompt": i.prompt, "completion": i.code}) + "\n" for i in chosen))
    return path


def exact(answer: str, item: Item) -> bool:
    """The answer is the code and nothing else (what the prompt asks for)."""
    return answer.strip().rstrip(".").strip() == item.code


def contains(answer: str, item: Item) -> bool:
    """The code appears in the answer as a word (lenient: a verbose but right answer counts)."""
    return re.search(rf"\b{item.code}\b", answer) is not None
