"""Bedrock's customization datasets (JSONL) parsed and checked line by line, and the job's hyperparameters.

One record format per file, fixed by its first record:
  prompt/completion (FINE_TUNING)        {"prompt": "...", "completion": "..."}
  conversation (FINE_TUNING)             {"schemaVersion": "bedrock-conversation-2024", "system": [{"text": ...}],
                                          "messages": [{"role": "user", "content": [{"text": ...}]}, ...]}
  input (CONTINUED_PRE_TRAINING)         {"input": "..."}
Every error names the file and line, so a bad upload fails at CreateModelCustomizationJob, not hours later.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from outcrop.errors import Invalid

FINE_TUNING = "FINE_TUNING"
CONTINUED_PRE_TRAINING = "CONTINUED_PRE_TRAINING"
CUSTOMIZATION_TYPES = (FINE_TUNING, CONTINUED_PRE_TRAINING)
CONVERSATION_SCHEMA = "bedrock-conversation-2024"
PROMPT_COMPLETION, CONVERSATION, INPUT = "prompt/completion", CONVERSATION_SCHEMA, "input"
_FORMATS = {FINE_TUNING: (PROMPT_COMPLETION, CONVERSATION), CONTINUED_PRE_TRAINING: (INPUT,)}

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Limits:
    """Bounds on one dataset file. Defaults follow Bedrock's "Model requirements for training and validation
    datasets": at most 10,000 training records, 1 GB (training) / 100 MB (validation) files, and 4,096 tokens per
    record (input plus output, at batch size 1)."""

    min_records: int
    max_records: int
    max_bytes: int
    max_tokens: int = 4096

    @property
    def max_chars(self) -> int:
        """Bedrock's character quota per record (token quota x 6), checked before any tokenizer is loaded."""
        return self.max_tokens * 6


# Bedrock states no minimum for text models; 8 records is the least that makes two batches of the default size.
TRAINING = Limits(min_records=8, max_records=10_000, max_bytes=1_000_000_000)
VALIDATION = Limits(min_records=1, max_records=1_000, max_bytes=100_000_000)


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Example:
    """One training record, neutral of its wire format.

    FINE_TUNING: `messages` (an optional system turn, then user/assistant turns ending with assistant). Every
    assistant turn is a training target — each one demonstrates the wanted reply to the turns before it, and
    Bedrock's format has no way to mark a turn as context only. A prompt/completion record becomes one user and
    one assistant turn with no system turn, so Converse with the same prompt meets the chat template it was
    trained under. CONTINUED_PRE_TRAINING: `text`, trained on whole.
    """

    line: int
    messages: tuple[Message, ...] = ()
    text: str | None = None


def read_dataset(path: Path, customization_type: str, limits: Limits = TRAINING) -> list[Example]:
    """Parse a JSONL file, streaming it; raises Invalid naming the file and line of the first problem."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise Invalid(f"{path.name} is {size:,} bytes; the limit is {limits.max_bytes:,}")
    with path.open("rb") as f:
        return parse_lines(f, path.name, customization_type, limits)


def parse_dataset(data: bytes, source: str, customization_type: str, limits: Limits = TRAINING) -> list[Example]:
    """Parse JSONL held in memory; `source` names it in error messages."""
    if len(data) > limits.max_bytes:
        raise Invalid(f"{source} is {len(data):,} bytes; the limit is {limits.max_bytes:,}")
    return parse_lines(data.splitlines(), source, customization_type, limits)


def parse_lines(lines: Iterable[bytes], source: str, customization_type: str, limits: Limits = TRAINING) -> list[Example]:
    """Parse JSONL lines (bytes, so invalid UTF-8 is reported by line rather than failing the whole read)."""
    if customization_type not in _FORMATS:
        raise Invalid(f"customizationType must be one of {', '.join(CUSTOMIZATION_TYPES)}, got {customization_type!r}")
    examples: list[Example] = []
    fmt: tuple[str, int] | None = None  # (format, line that fixed it)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        record = _json(raw, source, number)
        if fmt is None:
            fmt = (_detect(record, source, number, customization_type), number)
        if len(examples) == limits.max_records:
            raise Invalid(f"{source} has more than {limits.max_records:,} records, the limit")
        example = _PARSERS[fmt[0]](record, _Where(source, number, fmt))
        chars = sum(len(m.content) for m in example.messages) + len(example.text or "")
        if chars > limits.max_chars:
            raise Invalid(f"{source} line {number} is {chars:,} characters long; the limit is {limits.max_chars:,} "
                          f"(6 per token of the {limits.max_tokens:,}-token limit)")
        examples.append(example)
    if len(examples) < limits.min_records:
        raise Invalid(f"{source} has {len(examples)} records; at least {limits.min_records} are needed")
    return examples


def check_token_lengths(lengths: Iterable[tuple[int, int]], max_tokens: int, source: str) -> None:
    """Refuse records longer than the model's limit, given (line, token count) pairs once a tokenizer has counted
    them (training.train does, before its first step)."""
    for line, n in lengths:
        if n > max_tokens:
            raise Invalid(f"{source} line {line} is {n:,} tokens long; the limit for this model is {max_tokens:,}")


@dataclass(frozen=True)
class _Where:
    source: str
    line: int
    fmt: tuple[str, int]

    def fail(self, problem: str) -> Invalid:
        return Invalid(f"{self.source} line {self.line}: {problem}")


def _json(raw: bytes, source: str, number: int) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Invalid(f"{source} line {number} is not valid UTF-8 (byte {e.start + 1})") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise Invalid(f"{source} line {number} is not valid JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(record, dict):
        raise Invalid(f"{source} line {number} is not a JSON object")
    return record


def _detect(record: dict[str, Any], source: str, number: int, customization_type: str) -> str:
    keys = set(record)
    if customization_type == CONTINUED_PRE_TRAINING:
        if "input" in keys:
            return INPUT
        expected = 'an {"input": ...} record'
    elif "messages" in keys:
        return CONVERSATION
    elif {"prompt", "completion"} & keys:
        return PROMPT_COMPLETION
    else:
        expected = f'a {{"prompt": ..., "completion": ...}} or a {CONVERSATION_SCHEMA} record'
    raise Invalid(f"{source} line {number}: {customization_type} expects {expected}, found keys {sorted(keys)}")


def _exact_keys(record: dict[str, Any], required: set[str], optional: set[str], where: _Where) -> None:
    keys = set(record)
    if not required <= keys or not keys <= required | optional:
        fmt, first = where.fmt
        raise where.fail(f"expected the {fmt} format like line {first}, found keys {sorted(keys)}")


def _string(value: Any, field: str, where: _Where, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise where.fail(f"{field} must be a string, found {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise where.fail(f"{field} is empty")
    return value


def _prompt_completion(record: dict[str, Any], where: _Where) -> Example:
    _exact_keys(record, {"prompt", "completion"}, set(), where)
    prompt = _string(record["prompt"], "prompt", where)
    completion = _string(record["completion"], "completion", where, allow_empty=False)
    return Example(where.line, (Message("user", prompt), Message("assistant", completion)))


def _input(record: dict[str, Any], where: _Where) -> Example:
    _exact_keys(record, {"input"}, set(), where)
    return Example(where.line, text=_string(record["input"], "input", where, allow_empty=False))


def _conversation(record: dict[str, Any], where: _Where) -> Example:
    _exact_keys(record, {"messages"}, {"schemaVersion", "system"}, where)
    # Bedrock's Nova guide: "schemaVersion can be any string value".
    if "schemaVersion" in record:
        _string(record["schemaVersion"], "schemaVersion", where)
    system = record.get("system", [])
    if not isinstance(system, list):
        raise where.fail(f"system must be a list of {{\"text\": ...}} blocks, found {type(system).__name__}")
    # System blocks join as Converse joins them when serving (engines.openai_format.render_messages).
    system_text = "\n\n".join(_text_block(b, f"system[{i}]", where) for i, b in enumerate(system))
    turns = record["messages"]
    if not isinstance(turns, list) or not turns:
        raise where.fail("messages must be a non-empty list")
    messages = [Message("system", system_text)] if system_text else []
    for i, turn in enumerate(turns):
        expected: Role = "user" if i % 2 == 0 else "assistant"
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            raise where.fail(f'messages[{i}] must be {{"role": ..., "content": [...]}}')
        if turn["role"] != expected:
            raise where.fail(f"messages[{i}] has role {turn['role']!r}; roles must alternate user, assistant, "
                             f"starting with user, so {expected!r} was expected")
        content = turn["content"]
        if not isinstance(content, list) or not content:
            raise where.fail(f"messages[{i}].content must be a non-empty list of {{\"text\": ...}} blocks")
        text = "".join(_text_block(b, f"messages[{i}].content[{j}]", where) for j, b in enumerate(content))
        if expected == "assistant" and not text.strip():
            raise where.fail(f"messages[{i}] (assistant) is empty")
        messages.append(Message(expected, text))
    if messages[-1].role != "assistant":
        raise where.fail("the last message must be the assistant's reply")
    return Example(where.line, tuple(messages))


def _text_block(block: Any, field: str, where: _Where) -> str:
    if not isinstance(block, dict) or set(block) != {"text"}:
        found = sorted(block) if isinstance(block, dict) else type(block).__name__
        raise where.fail(f'{field} must be a {{"text": ...}} block (only text is supported), found {found}')
    return _string(block["text"], f"{field}.text", where)


_PARSERS: dict[str, Callable[[dict[str, Any], _Where], Example]] = {
    PROMPT_COMPLETION: _prompt_completion, CONVERSATION: _conversation, INPUT: _input}


# --- hyperparameters ---------------------------------------------------------------------------------------------


# Which linear layers of each transformer block get a LoRA pair, by their Hugging Face names.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


@dataclass(frozen=True)
class HyperParameters:
    """Training settings. Bedrock's names and ranges (Titan Text / Llama) plus LoRA's own and a step cap.

    Defaults: learning rate 1e-4 (Bedrock's Llama 3.1 default; LoRA wants more than full fine-tuning's 1e-5),
    batch size 4 (CPU steps cost about the same at 1-4 short records, so 4 sees 4x the data per second), 2 epochs
    (Bedrock's Nova default), no warmup (LoRA's B starts at zero, so early updates are small anyway, and Bedrock's
    5-10 warmup steps would be most of a small run), rank 8 / alpha 16 / dropout 0.05 (peft's usual), on the
    attention projections only: served on llama.cpp, every adapted matrix adds two small matmuls per token, and
    on SmolLM2-135M the MLP's three cut decode speed to 0.81 of the base model's, against 0.94 for attention
    alone, which reached the same held-out score at twice the learning rate (docs/benchmarks.md, issue 7).
    """

    epoch_count: int = 2
    batch_size: int = 4
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LORA_TARGETS["attention"]
    max_steps: int | None = None


def parse_lora_targets(raw: Any) -> tuple[str, ...]:
    """`loraTargetModules`: "attention", "all", or a comma-separated list of the projection names."""
    text = str(raw).strip()
    if text in LORA_TARGETS:
        return LORA_TARGETS[text]
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in LORA_TARGETS["all"]]
    if not names or unknown:
        raise Invalid(f"hyperparameter loraTargetModules must be {', '.join(map(repr, LORA_TARGETS))} or a "
                      f"comma-separated list of {', '.join(LORA_TARGETS['all'])}, got {raw!r}")
    return names


# wire name -> (field, type, min, max). Bedrock's own ranges: Titan Text (epochCount 1-10, batchSize 1-64,
# learningRate 1e-7..1, learningRateWarmupSteps 0-250).
_HYPERPARAMETERS: dict[str, tuple[str, type, float, float]] = {
    "epochCount": ("epoch_count", int, 1, 10),
    "batchSize": ("batch_size", int, 1, 64),
    "learningRate": ("learning_rate", float, 1e-7, 1.0),
    "learningRateWarmupSteps": ("warmup_steps", int, 0, 250),
    "loraRank": ("lora_rank", int, 1, 256),
    "loraAlpha": ("lora_alpha", int, 1, 1024),
    "loraDropout": ("lora_dropout", float, 0.0, 0.5),
    "maxSteps": ("max_steps", int, 1, 1_000_000),
}


def parse_hyperparameters(customization_type: str, values: Mapping[str, str]) -> HyperParameters:
    """Bedrock's hyperParameters map (strings) checked against the ranges above; omitted ones take the defaults."""
    if customization_type not in CUSTOMIZATION_TYPES:
        raise Invalid(f"customizationType must be one of {', '.join(CUSTOMIZATION_TYPES)}, got {customization_type!r}")
    fields: dict[str, Any] = {}
    for name, raw in values.items():
        if name == "loraTargetModules":
            fields["lora_targets"] = parse_lora_targets(raw)
            continue
        if name not in _HYPERPARAMETERS:
            accepted = sorted([*_HYPERPARAMETERS, "loraTargetModules"])
            raise Invalid(f"unknown hyperparameter {name!r}; accepted: {', '.join(accepted)}")
        field, kind, low, high = _HYPERPARAMETERS[name]
        fields[field] = _number(name, raw, kind, low, high)
    return HyperParameters(**fields)


def _number(name: str, raw: Any, kind: type, low: float, high: float) -> int | float:
    described = (f"an integer from {int(low):,} to {int(high):,}" if kind is int
                 else f"a number from {low:g} to {high:g}")
    try:
        value: int | float = int(str(raw).strip()) if kind is int else float(str(raw).strip())
    except ValueError:
        raise Invalid(f"hyperparameter {name} must be {described}, got {raw!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise Invalid(f"hyperparameter {name} must be {described}, got {raw!r}")
    return value
