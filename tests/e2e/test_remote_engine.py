"""The OpenAI-compatible remote engine: a second Outcrop serves a model whose upstream is the first one."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import free_port, start_server, stop_server


@pytest.fixture(scope="module")
def gateway(server, tmp_path_factory):
    home = tmp_path_factory.mktemp("gateway-home")
    (home / "models.toml").write_text(
        '[[models]]\nid = "remote.qwen-v1:0"\nengine = "openai-compatible"\n'
        f'base_url = "{server.endpoint}/v1"\napi_key = "{server.creds["api_key"]}"\n'
        'remote_model = "qwen.qwen2-5-coder-0-5b-instruct-v1:0"\nsupports_tools = true\n\n'
        '[[models]]\nid = "remote.broken-v1:0"\nengine = "openai-compatible"\n'
        'base_url = "http://127.0.0.1:9/v1"\n')
    live = start_server(home, free_port())
    yield live
    stop_server(live)


def test_converse_through_remote_upstream(gateway):
    rt = gateway.client("bedrock-runtime")
    reply = rt.converse(modelId="remote.qwen-v1:0",
                        messages=[{"role": "user", "content": [{"text": "What is the capital of France?"}]}],
                        inferenceConfig={"maxTokens": 30, "temperature": 0})
    assert "Paris" in reply["output"]["message"]["content"][0]["text"]
    assert reply["usage"]["inputTokens"] > 0
    events = list(rt.converse_stream(modelId="remote.qwen-v1:0",
                                     messages=[{"role": "user", "content": [{"text": "Capital of Italy?"}]}],
                                     inferenceConfig={"maxTokens": 30, "temperature": 0})["stream"])
    assert "Rome" in "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in events if "contentBlockDelta" in e)


def test_unreachable_upstream_is_a_clean_error(gateway):
    rt = gateway.client("bedrock-runtime")
    with pytest.raises(rt.exceptions.ServiceUnavailableException, match="unreachable"):
        rt.converse(modelId="remote.broken-v1:0", messages=[{"role": "user", "content": [{"text": "hi"}]}])


def test_tool_calls_and_stop_sequences_through_remote_upstream(gateway):
    rt = gateway.client("bedrock-runtime")
    tool = {"toolSpec": {"name": "get_weather", "description": "Get the current weather for a city",
                         "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}},
                                                  "required": ["city"]}}}}
    reply = rt.converse(modelId="remote.qwen-v1:0", toolConfig={"tools": [tool]},
                        messages=[{"role": "user", "content": [{"text": "What is the weather in Paris?"}]}],
                        inferenceConfig={"maxTokens": 200, "temperature": 0})
    assert reply["stopReason"] == "tool_use"
    call = next(b["toolUse"] for b in reply["output"]["message"]["content"] if "toolUse" in b)
    assert call["name"] == "get_weather" and "paris" in call["input"]["city"].lower()
    reply = rt.converse(modelId="remote.qwen-v1:0",
                        messages=[{"role": "user", "content": [{"text": "Count from 1 to 20, separated by commas."}]}],
                        inferenceConfig={"maxTokens": 100, "temperature": 0, "stopSequences": ["7"]})
    assert reply["stopReason"] == "stop_sequence" and "7" not in reply["output"]["message"]["content"][0]["text"]
