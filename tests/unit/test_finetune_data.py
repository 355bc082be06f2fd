"""Bedrock customization datasets and hyperparameters: the three record formats, and every refusal names its line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from outcrop.core.customization.datasets import (
    CONTINUED_PRE_TRAINING,
    FINE_TUNING,
    TRAINING,
    VALIDATION,
    HyperParameters,
    Limits,
    Message,
    check_token_lengths,
    parse_dataset,
    parse_hyperparameters,
    read_dataset,
)
from outcrop.errors import Invalid

FEW = Limits(min_records=1, max_records=10, max_bytes=10_000, max_tokens=100)


def pc(i: int) -> dict[str, Any]:
    return {"prompt": f"What is {i} + {i}?", "completion": str(2 * i)}


def conv(user: str = "Hi", reply: str = "Hello", system: str | None = "Be brief.") -> dict[str, Any]:
    record: dict[str, Any] = {"schemaVersion": "bedrock-conversation-2024",
                              "messages": [{"role": "user", "content": [{"text": user}]},
                                           {"role": "assistant", "content": [{"text": reply}]}]}
    if system is not None:
        record["system"] = [{"text": system}]
    return record


def jsonl(*records: Any) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)


def refused(data: bytes, kind: str = FINE_TUNING, limits: Limits = FEW) -> str:
    with pytest.raises(Invalid) as info:
        parse_dataset(data, "train.jsonl", kind, limits)
    return info.value.message


# --- the three formats -----------------------------------------------------------------------------------------


def test_prompt_completion_becomes_one_user_and_one_assistant_turn() -> None:
    examples = parse_dataset(jsonl(pc(1), pc(2)), "train.jsonl", FINE_TUNING, FEW)
    assert [e.line for e in examples] == [1, 2]
    assert examples[0].messages == (Message("user", "What is 1 + 1?"), Message("assistant", "2"))
    assert examples[0].text is None


def test_conversation_keeps_system_and_every_turn() -> None:
    record = conv()
    record["messages"] += [{"role": "user", "content": [{"text": "And "}, {"text": "again?"}]},
                           {"role": "assistant", "content": [{"text": "Yes."}]}]
    record["system"].append({"text": "Use English."})
    [example] = parse_dataset(jsonl(record), "train.jsonl", FINE_TUNING, FEW)
    assert [m.role for m in example.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert example.messages[0].content == "Be brief.\n\nUse English."  # joined as Converse joins system blocks
    assert example.messages[3].content == "And again?"


def test_conversation_without_system_or_schema_version() -> None:
    record = conv(system=None)
    del record["schemaVersion"]
    [example] = parse_dataset(jsonl(record), "train.jsonl", FINE_TUNING, FEW)
    assert [m.role for m in example.messages] == ["user", "assistant"]


def test_continued_pre_training_is_raw_text() -> None:
    examples = parse_dataset(jsonl({"input": "Granite cools slowly."}, {"input": "Basalt is volcanic."}),
                             "train.jsonl", CONTINUED_PRE_TRAINING, FEW)
    assert [e.text for e in examples] == ["Granite cools slowly.", "Basalt is volcanic."]
    assert examples[0].messages == ()


def test_blank_lines_are_skipped_and_lines_still_counted() -> None:
    examples = parse_dataset(b"\n" + jsonl(pc(1)) + b"   \n\r\n" + jsonl(pc(2)), "train.jsonl", FINE_TUNING, FEW)
    assert [e.line for e in examples] == [2, 5]


def test_read_dataset_streams_a_file(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(jsonl(*[pc(i) for i in range(8)]))
    assert len(read_dataset(path, FINE_TUNING)) == 8


# --- refusals name the file and line ---------------------------------------------------------------------------


def test_a_line_in_another_format_than_the_first() -> None:
    message = refused(jsonl(pc(1), pc(2), conv()))
    assert message.startswith("train.jsonl line 3: expected the prompt/completion format like line 1, found keys [")


def test_a_prompt_completion_line_in_a_conversation_file() -> None:
    assert "line 2: expected the bedrock-conversation-2024 format like line 1" in refused(jsonl(conv(), pc(1)))


def test_extra_keys_are_refused() -> None:
    assert "line 1: expected the prompt/completion format" in refused(jsonl({**pc(1), "weight": 1}))


def test_first_record_in_no_known_format() -> None:
    message = refused(jsonl({"question": "?", "answer": "!"}))
    assert message == ('train.jsonl line 1: FINE_TUNING expects a {"prompt": ..., "completion": ...} or a '
                       "bedrock-conversation-2024 record, found keys ['answer', 'question']")


def test_continued_pre_training_refuses_prompt_completion() -> None:
    assert 'line 1: CONTINUED_PRE_TRAINING expects an {"input": ...} record' in refused(jsonl(pc(1)),
                                                                                        CONTINUED_PRE_TRAINING)


def test_not_json() -> None:
    assert refused(jsonl(pc(1), b'{"prompt": "x",')).startswith("train.jsonl line 2 is not valid JSON: ")


def test_not_an_object() -> None:
    assert refused(jsonl(pc(1), [1, 2])) == "train.jsonl line 2 is not a JSON object"


def test_not_utf8() -> None:
    assert refused(jsonl(pc(1), b'{"prompt": "caf\xe9", "completion": "x"}')).startswith(
        "train.jsonl line 2 is not valid UTF-8")


@pytest.mark.parametrize(("record", "problem"), [
    ({"prompt": 3, "completion": "x"}, "prompt must be a string, found int"),
    ({"prompt": "x", "completion": None}, "completion must be a string, found NoneType"),
    ({"prompt": "x", "completion": "  "}, "completion is empty"),
])
def test_bad_prompt_completion_fields(record: dict[str, Any], problem: str) -> None:
    assert refused(jsonl(pc(1), record)) == f"train.jsonl line 2: {problem}"


def test_empty_input() -> None:
    assert refused(jsonl({"input": ""}), CONTINUED_PRE_TRAINING) == "train.jsonl line 1: input is empty"


def _turns(*roles: str) -> dict[str, Any]:
    return {"messages": [{"role": r, "content": [{"text": "x"}]} for r in roles]}


@pytest.mark.parametrize(("record", "problem"), [
    (_turns("assistant", "user"), "messages[0] has role 'assistant'; roles must alternate user, assistant, "
                                  "starting with user, so 'user' was expected"),
    (_turns("user", "user"), "messages[1] has role 'user'"),
    (_turns("user", "assistant", "user"), "the last message must be the assistant's reply"),
    ({"messages": []}, "messages must be a non-empty list"),
    ({"messages": [{"role": "user", "text": "x"}]}, 'messages[0] must be {"role": ..., "content": [...]}'),
    ({"messages": [{"role": "user", "content": []}]}, "messages[0].content must be a non-empty list"),
    ({"messages": [{"role": "user", "content": [{"image": {}}]}]},
     "messages[0].content[0] must be a {\"text\": ...} block (only text is supported), found ['image']"),
    ({"messages": [{"role": "user", "content": [{"text": 5}]}]}, "messages[0].content[0].text must be a string"),
    ({**conv(), "system": "Be brief."}, "system must be a list of {\"text\": ...} blocks, found str"),
    ({**conv(), "schemaVersion": 2024}, "schemaVersion must be a string, found int"),
    (conv(reply=""), "messages[1] (assistant) is empty"),
])
def test_bad_conversations(record: dict[str, Any], problem: str) -> None:
    assert refused(jsonl(conv(), record)).startswith(f"train.jsonl line 2: {problem}")


# --- sizes -----------------------------------------------------------------------------------------------------


def test_too_few_records() -> None:
    assert refused(jsonl(*[pc(i) for i in range(7)]), limits=TRAINING) == (
        "train.jsonl has 7 records; at least 8 are needed")


def test_too_many_records() -> None:
    assert refused(jsonl(*[pc(i) for i in range(11)])) == "train.jsonl has more than 10 records, the limit"


def test_file_too_large(tmp_path: Path) -> None:
    path = tmp_path / "validation.jsonl"
    path.write_bytes(b" " * 11_000)
    with pytest.raises(Invalid, match=r"validation.jsonl is 11,000 bytes; the limit is 10,000"):
        read_dataset(path, FINE_TUNING, FEW)
    assert "is 11,000 bytes" in refused(b" " * 11_000)


def test_record_over_the_character_quota() -> None:
    message = refused(jsonl(pc(1), {"prompt": "x" * 600, "completion": "y"}))
    assert message == ("train.jsonl line 2 is 601 characters long; the limit is 600 "
                       "(6 per token of the 100-token limit)")


def test_record_over_the_token_limit() -> None:
    check_token_lengths([(1, 4096), (3, 4095)], 4096, "train.jsonl")
    with pytest.raises(Invalid) as info:
        check_token_lengths([(1, 10), (7, 5000)], 4096, "train.jsonl")
    assert info.value.message == "train.jsonl line 7 is 5,000 tokens long; the limit for this model is 4,096"


def test_bedrock_limits() -> None:
    assert (TRAINING.min_records, TRAINING.max_records, TRAINING.max_tokens, TRAINING.max_chars) == (8, 10_000, 4096,
                                                                                                     24_576)
    assert VALIDATION.max_bytes < TRAINING.max_bytes


def test_unknown_customization_type() -> None:
    assert refused(jsonl(pc(1)), "DISTILLATION").startswith("customizationType must be one of")


# --- hyperparameters -------------------------------------------------------------------------------------------


def test_hyperparameter_defaults() -> None:
    assert parse_hyperparameters(FINE_TUNING, {}) == HyperParameters()
    assert HyperParameters().max_steps is None


def test_hyperparameters_parse_bedrock_strings() -> None:
    hp = parse_hyperparameters(CONTINUED_PRE_TRAINING, {
        "epochCount": "3", "batchSize": "8", "learningRate": "0.00002", "learningRateWarmupSteps": "5",
        "loraRank": "16", "loraAlpha": "32", "loraDropout": "0", "maxSteps": "20"})
    assert hp == HyperParameters(epoch_count=3, batch_size=8, learning_rate=2e-5, warmup_steps=5, lora_rank=16,
                                 lora_alpha=32, lora_dropout=0.0, max_steps=20)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("epochCount", "0", "hyperparameter epochCount must be an integer from 1 to 10, got '0'"),
    ("epochCount", "11", "hyperparameter epochCount must be an integer from 1 to 10, got '11'"),
    ("epochCount", "2.5", "hyperparameter epochCount must be an integer from 1 to 10, got '2.5'"),
    ("batchSize", "65", "hyperparameter batchSize must be an integer from 1 to 64, got '65'"),
    ("learningRate", "2", "hyperparameter learningRate must be a number from 1e-07 to 1, got '2'"),
    ("learningRate", "nan", "hyperparameter learningRate must be a number from 1e-07 to 1, got 'nan'"),
    ("learningRate", "fast", "hyperparameter learningRate must be a number from 1e-07 to 1, got 'fast'"),
    ("learningRateWarmupSteps", "-1", "hyperparameter learningRateWarmupSteps must be an integer from 0 to 250"),
    ("loraRank", "0", "hyperparameter loraRank must be an integer from 1 to 256"),
    ("loraDropout", "0.9", "hyperparameter loraDropout must be a number from 0 to 0.5"),
    ("maxSteps", "0", "hyperparameter maxSteps must be an integer from 1 to 1,000,000"),
])
def test_hyperparameters_out_of_range(name: str, value: str, message: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_hyperparameters(FINE_TUNING, {name: value})
    assert info.value.message.startswith(message)


def test_unknown_hyperparameter_names_the_accepted_ones() -> None:
    with pytest.raises(Invalid) as info:
        parse_hyperparameters(FINE_TUNING, {"epochs": "2"})
    assert info.value.message == ("unknown hyperparameter 'epochs'; accepted: batchSize, epochCount, learningRate, "
                                  "learningRateWarmupSteps, loraAlpha, loraDropout, loraRank, loraTargetModules, "
                                  "maxSteps")


@pytest.mark.parametrize(("raw", "expected"), [
    ("attention", ("q_proj", "k_proj", "v_proj", "o_proj")),
    ("all", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    (" q_proj, v_proj ,q_proj", ("q_proj", "v_proj")),
])
def test_lora_target_modules(raw: str, expected: tuple[str, ...]) -> None:
    assert parse_hyperparameters(FINE_TUNING, {"loraTargetModules": raw}).lora_targets == expected


@pytest.mark.parametrize("raw", ["", "mlp", "q_proj,lm_head", " , "])
def test_bad_lora_target_modules(raw: str) -> None:
    with pytest.raises(Invalid, match=r"loraTargetModules must be 'attention', 'all' or a comma-separated list of "
                                      r"q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, got"):
        parse_hyperparameters(FINE_TUNING, {"loraTargetModules": raw})


def test_hyperparameters_for_an_unknown_customization_type() -> None:
    with pytest.raises(Invalid, match="customizationType must be one of FINE_TUNING, CONTINUED_PRE_TRAINING"):
        parse_hyperparameters("DISTILLATION", {})
