"""InvokeModel / InvokeModelWithResponseStream in each model family's own body format."""

from __future__ import annotations

import json

import pytest

Q = "What is the capital of France? Answer in one sentence."


def invoke(runtime, model_id: str, body: dict) -> tuple[dict, dict]:
    reply = runtime.invoke_model(modelId=model_id, body=json.dumps(body))
    return json.loads(reply["body"].read()), reply["ResponseMetadata"]["HTTPHeaders"]


def stream_chunks(runtime, model_id: str, body: dict) -> list[dict]:
    reply = runtime.invoke_model_with_response_stream(modelId=model_id, body=json.dumps(body))
    return [json.loads(e["chunk"]["bytes"]) for e in reply["body"]]


def test_anthropic_messages(runtime):
    out, headers = invoke(runtime, "anthropic.claude-3-haiku-20240307-v1:0",
                          {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "temperature": 0,
                           "system": "Be brief.", "messages": [{"role": "user", "content": Q}]})
    assert out["type"] == "message" and out["role"] == "assistant" and out["id"].startswith("msg_bdrk_")
    assert "Paris" in out["content"][0]["text"] and out["stop_reason"] == "end_turn"
    assert out["usage"]["input_tokens"] > 0
    assert int(headers["x-amzn-bedrock-input-token-count"]) == out["usage"]["input_tokens"]
    assert int(headers["x-amzn-bedrock-output-token-count"]) == out["usage"]["output_tokens"]


def test_anthropic_messages_stream(runtime):
    chunks = stream_chunks(runtime, "anthropic.claude-3-haiku-20240307-v1:0",
                           {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "temperature": 0,
                            "messages": [{"role": "user", "content": [{"type": "text", "text": Q}]}]})
    types = [c["type"] for c in chunks]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    text = "".join(c["delta"]["text"] for c in chunks if c["type"] == "content_block_delta")
    assert "Paris" in text
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert metrics["outputTokenCount"] > 0 and metrics["inputTokenCount"] > 0


def test_anthropic_tools(runtime):
    out, _ = invoke(runtime, "anthropic.claude-3-5-sonnet-20240620-v1:0", {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 200, "temperature": 0,
        "tools": [{"name": "get_weather", "description": "Get the weather for a city",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "What's the weather in Madrid?"}]})
    call = next(b for b in out["content"] if b["type"] == "tool_use")
    assert call["name"] == "get_weather" and "madrid" in call["input"]["city"].lower()
    assert out["stop_reason"] == "tool_use"


def test_anthropic_legacy_completion(runtime):
    out, _ = invoke(runtime, "anthropic.claude-v2", {"prompt": f"\n\nHuman: {Q}\n\nAssistant:",
                                                     "max_tokens_to_sample": 50, "temperature": 0})
    assert "Paris" in out["completion"] and out["stop_reason"] == "stop_sequence"


def test_titan_text(runtime):
    out, _ = invoke(runtime, "amazon.titan-text-express-v1",
                    {"inputText": f"User: {Q}\nBot:", "textGenerationConfig": {"maxTokenCount": 50, "temperature": 0}})
    result = out["results"][0]
    assert "Paris" in result["outputText"] and result["completionReason"] == "FINISH"
    assert out["inputTextTokenCount"] > 0 and result["tokenCount"] > 0
    chunks = stream_chunks(runtime, "amazon.titan-text-express-v1", {"inputText": Q, "textGenerationConfig": {"maxTokenCount": 50, "temperature": 0}})
    assert "Paris" in "".join(c["outputText"] for c in chunks)
    assert chunks[-1]["completionReason"] == "FINISH" and "amazon-bedrock-invocationMetrics" in chunks[-1]


def test_titan_embeddings(runtime):
    v1, _ = invoke(runtime, "amazon.titan-embed-text-v1", {"inputText": "hello world"})
    assert len(v1["embedding"]) == 384 and v1["inputTextTokenCount"] > 0
    v2, _ = invoke(runtime, "amazon.titan-embed-text-v2:0",
                   {"inputText": "hello world", "dimensions": 256, "normalize": True, "embeddingTypes": ["float", "binary"]})
    assert len(v2["embedding"]) == 256 and set(v2["embeddingsByType"]) == {"float", "binary"}
    assert abs(sum(x * x for x in v2["embedding"]) - 1.0) < 1e-3
    with pytest.raises(runtime.exceptions.ValidationException, match="dimensions"):
        invoke(runtime, "amazon.titan-embed-text-v2:0", {"inputText": "x", "dimensions": 300})


def test_embeddings_are_semantic(runtime):
    def vec(text: str) -> list[float]:
        return invoke(runtime, "amazon.titan-embed-text-v2:0", {"inputText": text})[0]["embedding"]

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    cat, kitten, tax = vec("A cat sleeps on the sofa."), vec("A kitten naps on the couch."), vec("Quarterly tax filing deadlines")
    assert cos(cat, kitten) > cos(cat, tax) + 0.2


def test_cohere_command_and_embed(runtime):
    out, _ = invoke(runtime, "cohere.command-text-v14", {"prompt": Q, "max_tokens": 50, "temperature": 0})
    assert "Paris" in out["generations"][0]["text"]
    out, _ = invoke(runtime, "cohere.command-r-v1:0", {"message": Q, "max_tokens": 50, "temperature": 0,
                                                       "chat_history": [{"role": "USER", "message": "Hi"},
                                                                        {"role": "CHATBOT", "message": "Hello!"}]})
    assert "Paris" in out["text"] and out["finish_reason"] == "COMPLETE"
    out, _ = invoke(runtime, "cohere.embed-english-v3", {"texts": ["a", "b"], "input_type": "search_document"})
    assert out["response_type"] == "embeddings_floats" and len(out["embeddings"]) == 2
    out, _ = invoke(runtime, "cohere.embed-english-v3", {"texts": ["a"], "input_type": "search_query",
                                                         "embedding_types": ["float", "int8"]})
    assert set(out["embeddings"]) == {"float", "int8"}


def test_meta_llama(runtime):
    prompt = (f"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n{Q}<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n")
    out, _ = invoke(runtime, "meta.llama3-8b-instruct-v1:0", {"prompt": prompt, "max_gen_len": 50, "temperature": 0})
    assert "Paris" in out["generation"] and out["stop_reason"] == "stop" and out["prompt_token_count"] > 0
    chunks = stream_chunks(runtime, "meta.llama3-8b-instruct-v1:0", {"prompt": prompt, "max_gen_len": 50})
    assert "Paris" in "".join(c["generation"] for c in chunks) and chunks[-1]["stop_reason"] == "stop"


def test_mistral(runtime):
    out, _ = invoke(runtime, "mistral.mistral-7b-instruct-v0:2", {"prompt": f"<s>[INST] {Q} [/INST]", "max_tokens": 50,
                                                                  "temperature": 0})
    assert "Paris" in out["outputs"][0]["text"]
    out, _ = invoke(runtime, "mistral.mistral-large-2407-v1:0", {"messages": [{"role": "user", "content": Q}],
                                                                 "max_tokens": 50, "temperature": 0})
    assert "Paris" in out["choices"][0]["message"]["content"]


def test_ai21(runtime):
    out, _ = invoke(runtime, "ai21.j2-ultra-v1", {"prompt": Q, "maxTokens": 50, "temperature": 0})
    assert "Paris" in out["completions"][0]["data"]["text"]
    out, _ = invoke(runtime, "ai21.jamba-1-5-mini-v1:0", {"messages": [{"role": "user", "content": Q}],
                                                          "max_tokens": 50, "temperature": 0})
    assert "Paris" in out["choices"][0]["message"]["content"] and out["usage"]["total_tokens"] > 0


def test_malformed_bodies_name_the_field(runtime):
    with pytest.raises(runtime.exceptions.ValidationException, match="max_tokens"):
        invoke(runtime, "anthropic.claude-3-haiku-20240307-v1:0",
               {"anthropic_version": "bedrock-2023-05-31", "messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(runtime.exceptions.ValidationException, match="not valid JSON"):
        runtime.invoke_model(modelId="meta.llama3-8b-instruct-v1:0", body=b"{not json")
    with pytest.raises(runtime.exceptions.ValidationException, match="prompt"):
        invoke(runtime, "meta.llama3-8b-instruct-v1:0", {"max_gen_len": 5})
    with pytest.raises(runtime.exceptions.ValidationException, match="temperature"):
        invoke(runtime, "amazon.titan-text-express-v1", {"inputText": "x", "textGenerationConfig": {"temperature": "hot"}})
