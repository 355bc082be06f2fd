"""Converse and ConverseStream through boto3 on the real default model."""

from __future__ import annotations

import pytest

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
WEATHER_TOOL = {"toolSpec": {"name": "get_weather", "description": "Get the current weather for a city",
                             "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                                                      "required": ["city"]}}}}


def user(text: str) -> dict:
    return {"role": "user", "content": [{"text": text}]}


def test_factual_answer(runtime):
    reply = runtime.converse(modelId=CLAUDE, messages=[user("What is the capital of France? Answer in one sentence.")],
                             inferenceConfig={"maxTokens": 40, "temperature": 0})
    assert "Paris" in reply["output"]["message"]["content"][0]["text"]
    assert reply["stopReason"] == "end_turn"
    usage = reply["usage"]
    assert usage["inputTokens"] > 5 and usage["outputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert reply["metrics"]["latencyMs"] > 0


@pytest.mark.parametrize("model_id", [
    "us.anthropic.claude-3-haiku-20240307-v1:0",
    "arn:aws:bedrock:us-east-1::foundation-model/meta.llama3-8b-instruct-v1:0",
    "arn:aws:bedrock:us-west-2:123456789012:inference-profile/eu.mistral.mistral-7b-instruct-v0:2",
    "qwen.qwen2-5-coder-0-5b-instruct-v1:0",
])
def test_model_id_forms(runtime, model_id):
    reply = runtime.converse(modelId=model_id, messages=[user("What is 2 + 2? Reply with the number only.")],
                             inferenceConfig={"maxTokens": 10, "temperature": 0})
    assert "4" in reply["output"]["message"]["content"][0]["text"]


def test_system_prompt_and_multi_turn(runtime):
    messages = [user("My name is Zephyrine. Remember it."),
                {"role": "assistant", "content": [{"text": "Nice to meet you, Zephyrine!"}]},
                user("What is my name?")]
    reply = runtime.converse(modelId=CLAUDE, messages=messages, system=[{"text": "You are a concise assistant."}],
                             inferenceConfig={"maxTokens": 30, "temperature": 0})
    assert "Zephyrine" in reply["output"]["message"]["content"][0]["text"]


def test_stop_sequence_and_max_tokens(runtime):
    reply = runtime.converse(modelId=CLAUDE, messages=[user("Count from 1 to 20, separated by commas.")],
                             inferenceConfig={"maxTokens": 100, "temperature": 0, "stopSequences": ["7"]})
    text = reply["output"]["message"]["content"][0]["text"]
    assert reply["stopReason"] == "stop_sequence"
    assert "6" in text and "7" not in text
    reply = runtime.converse(modelId=CLAUDE, messages=[user("Write a long essay about the sea.")],
                             inferenceConfig={"maxTokens": 5})
    assert reply["stopReason"] == "max_tokens"
    assert reply["usage"]["outputTokens"] == 5


def test_stream_event_order(runtime):
    stream = runtime.converse_stream(modelId=CLAUDE, messages=[user("What is the capital of Italy?")],
                                     inferenceConfig={"maxTokens": 40, "temperature": 0})["stream"]
    events = list(stream)
    names = [next(iter(e)) for e in events]
    assert names[0] == "messageStart" and names[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert set(names[1:-3]) == {"contentBlockDelta"}
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert "Rome" in text
    assert events[-1]["metadata"]["usage"]["outputTokens"] > 0


def test_tool_use_round_trip(runtime):
    tools = {"tools": [WEATHER_TOOL]}
    messages = [user("What is the weather in Tokyo right now?")]
    reply = runtime.converse(modelId=CLAUDE, messages=messages, toolConfig=tools,
                             inferenceConfig={"maxTokens": 200, "temperature": 0})
    assert reply["stopReason"] == "tool_use"
    call = next(b["toolUse"] for b in reply["output"]["message"]["content"] if "toolUse" in b)
    assert call["name"] == "get_weather" and "tokyo" in call["input"]["city"].lower()
    messages += [reply["output"]["message"],
                 {"role": "user", "content": [{"toolResult": {"toolUseId": call["toolUseId"],
                                                              "content": [{"json": {"temperature_c": 31, "sky": "sunny"}}]}}]}]
    final = runtime.converse(modelId=CLAUDE, messages=messages, toolConfig=tools,
                             inferenceConfig={"maxTokens": 200, "temperature": 0})
    assert final["stopReason"] == "end_turn"
    assert "31" in final["output"]["message"]["content"][0]["text"]


def test_tool_choice_forces_named_tool(runtime):
    reply = runtime.converse(
        modelId=CLAUDE, messages=[user("I am travelling to Lisbon next week.")],
        toolConfig={"tools": [WEATHER_TOOL], "toolChoice": {"tool": {"name": "get_weather"}}},
        inferenceConfig={"maxTokens": 100, "temperature": 0})
    call = next(b["toolUse"] for b in reply["output"]["message"]["content"] if "toolUse" in b)
    assert call["name"] == "get_weather" and "lisbo" in call["input"]["city"].lower()


def test_tool_use_stream(runtime):
    events = list(runtime.converse_stream(
        modelId=CLAUDE, messages=[user("What's the weather like in Paris?")], toolConfig={"tools": [WEATHER_TOOL]},
        inferenceConfig={"maxTokens": 200, "temperature": 0})["stream"])
    start = next(e["contentBlockStart"] for e in events if "contentBlockStart" in e)
    assert start["start"]["toolUse"]["name"] == "get_weather"
    index = start["contentBlockIndex"]
    raw = "".join(e["contentBlockDelta"]["delta"]["toolUse"]["input"] for e in events
                  if "contentBlockDelta" in e and e["contentBlockDelta"]["contentBlockIndex"] == index)
    assert "paris" in raw.lower()
    assert next(e["messageStop"] for e in events if "messageStop" in e)["stopReason"] == "tool_use"


def test_tools_on_a_model_without_tool_use(runtime):
    with pytest.raises(runtime.exceptions.ValidationException, match="doesn't support tool use"):
        runtime.converse(modelId="huggingface.smollm2-135m-instruct-v1:0", messages=[user("hi")],
                         toolConfig={"tools": [WEATHER_TOOL]})


def test_image_to_text_only_model(runtime):
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
    with pytest.raises(runtime.exceptions.ValidationException, match="image"):
        runtime.converse(modelId=CLAUDE, messages=[{"role": "user", "content": [
            {"image": {"format": "png", "source": {"bytes": png}}}, {"text": "What is this?"}]}])


def test_count_tokens(runtime):
    short = runtime.count_tokens(modelId=CLAUDE, input={"converse": {"messages": [user("hello")]}})["inputTokens"]
    longer = runtime.count_tokens(modelId=CLAUDE, input={"converse": {"messages": [
        user("hello, this is a considerably longer message with many more tokens in it")]}})["inputTokens"]
    assert 0 < short < longer


def test_prompt_longer_than_the_context_is_a_validation_error(runtime):
    long_text = "The quick brown fox jumps over the lazy dog. " * 1200  # ~12k tokens, over one slot's context
    with pytest.raises(runtime.exceptions.ValidationException, match="too long"):
        runtime.converse(modelId=CLAUDE, messages=[user(long_text)], inferenceConfig={"maxTokens": 10})
    with pytest.raises(runtime.exceptions.ValidationException, match="too long"):
        runtime.converse_stream(modelId=CLAUDE, messages=[user(long_text)], inferenceConfig={"maxTokens": 10})
