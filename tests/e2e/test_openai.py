"""The OpenAI API under /v1 through the openai SDK."""

from __future__ import annotations

import base64
import json
import struct

import openai
import pytest

QWEN = "qwen.qwen2-5-coder-0-5b-instruct-v1:0"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Get the current weather for a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


def test_models(openai_client):
    ids = [m.id for m in openai_client.models.list()]
    assert QWEN in ids and "anthropic.claude-3-haiku-20240307-v1:0" in ids
    assert openai_client.models.retrieve(QWEN).owned_by == "Qwen"


def test_chat(openai_client):
    reply = openai_client.chat.completions.create(
        model=QWEN, messages=[{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "What is the capital of Japan?"}],
        max_tokens=30, temperature=0)
    assert "Tokyo" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop" and reply.usage.completion_tokens > 0


def test_chat_stream_with_usage(openai_client):
    chunks = list(openai_client.chat.completions.create(
        model=QWEN, messages=[{"role": "user", "content": "What is the capital of Spain?"}], max_tokens=30,
        temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Madrid" in text
    assert chunks[-1].usage.total_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_tool_call_round_trip(openai_client):
    messages = [{"role": "user", "content": "What's the weather in Paris?"}]
    reply = openai_client.chat.completions.create(model=QWEN, messages=messages, tools=[WEATHER], temperature=0,
                                                  max_tokens=200)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and "paris" in json.loads(call.function.arguments)["city"].lower()
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_c": 18})}]
    final = openai_client.chat.completions.create(model=QWEN, messages=messages, tools=[WEATHER], temperature=0,
                                                  max_tokens=100)
    assert "18" in final.choices[0].message.content


def test_tool_choice_required_stream(openai_client):
    chunks = list(openai_client.chat.completions.create(
        model=QWEN, messages=[{"role": "user", "content": "Tell me about Oslo"}], tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, temperature=0, max_tokens=100, stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    assert "oslo" in json.loads(calls[0].function.arguments)["city"].lower()


def test_response_format(openai_client):
    reply = openai_client.chat.completions.create(
        model=QWEN, messages=[{"role": "user", "content": "Give the capital of Italy as JSON with key capital."}],
        response_format={"type": "json_object"}, temperature=0, max_tokens=60)
    assert "capital" in json.loads(reply.choices[0].message.content)
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"]}
    reply = openai_client.chat.completions.create(
        model=QWEN, messages=[{"role": "user", "content": "Name the capital of France and its country."}],
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}},
        temperature=0, max_tokens=60)
    data = json.loads(reply.choices[0].message.content)
    assert set(data) == {"city", "country"} and "Paris" in data["city"]


def test_completions(openai_client):
    reply = openai_client.completions.create(model=QWEN, prompt="The capital of France is", max_tokens=5, temperature=0)
    assert "Paris" in reply.choices[0].text


def test_completions_stream_with_usage(openai_client):
    chunks = list(openai_client.completions.create(model=QWEN, prompt="The capital of France is", max_tokens=5,
                                                   temperature=0, stream=True, stream_options={"include_usage": True}))
    assert "Paris" in "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens == 5 and not chunks[-1].choices


def test_embeddings(openai_client):
    reply = openai_client.embeddings.create(model="amazon.titan-embed-text-v2:0", input=["hello", "world"])
    assert len(reply.data) == 2 and len(reply.data[0].embedding) == 384 and reply.usage.prompt_tokens > 0
    small = openai_client.embeddings.create(model="sentence-transformers.all-minilm-l6-v2-v1:0", input="hello",
                                            dimensions=128)
    assert len(small.data[0].embedding) == 128
    raw = openai_client.embeddings.with_raw_response.create(model="amazon.titan-embed-text-v2:0", input="hello",
                                                            encoding_format="base64")
    packed = json.loads(raw.text)["data"][0]["embedding"]
    assert len(struct.unpack(f"<{384}f", base64.b64decode(packed))) == 384


def test_errors(server, openai_client):
    bad = openai.OpenAI(base_url=f"{server.endpoint}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as exc:
        openai_client.chat.completions.create(model=QWEN, messages=[])
    assert exc.value.body["message"].startswith("Invalid 'messages'")
    with pytest.raises(openai.BadRequestError):
        openai_client.chat.completions.create(model=QWEN, messages=[{"role": "user", "content": "hi"}], max_tokens=-1)
    with pytest.raises(openai.BadRequestError):
        openai_client.embeddings.create(model=QWEN, input="hi")


def test_seed_makes_sampling_repeatable(openai_client):
    def sample() -> str:
        return openai_client.chat.completions.create(
            model=QWEN, messages=[{"role": "user", "content": "Invent a name for a cat."}], temperature=1.0,
            seed=1234, max_tokens=20).choices[0].message.content

    assert sample() == sample()
