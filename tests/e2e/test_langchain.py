"""langchain-aws, unmodified, pointed at Outcrop with endpoint_url."""

from __future__ import annotations

import pytest

langchain_aws = pytest.importorskip("langchain_aws")


def kwargs(server) -> dict:
    return {"endpoint_url": server.endpoint, "region_name": "us-east-1",
            "aws_access_key_id": server.creds["access_key_id"],
            "aws_secret_access_key": server.creds["secret_access_key"]}


def test_chat_bedrock_converse(server):
    llm = langchain_aws.ChatBedrockConverse(model="anthropic.claude-3-haiku-20240307-v1:0", temperature=0,
                                            max_tokens=40, **kwargs(server))
    assert "Paris" in llm.invoke("What is the capital of France?").content
    streamed = "".join(str(chunk.content if isinstance(chunk.content, str) else
                           "".join(p.get("text", "") for p in chunk.content))
                       for chunk in llm.stream("What is the capital of Italy?"))
    assert "Rome" in streamed


def test_chat_bedrock_converse_tools(server):
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return "sunny"

    llm = langchain_aws.ChatBedrockConverse(model="anthropic.claude-3-haiku-20240307-v1:0", temperature=0,
                                            max_tokens=200, **kwargs(server)).bind_tools([get_weather])
    message = llm.invoke("What is the weather in Tokyo?")
    assert message.tool_calls and message.tool_calls[0]["name"] == "get_weather"
    assert "tokyo" in message.tool_calls[0]["args"]["city"].lower()


def test_chat_bedrock_invoke_model(server):
    llm = langchain_aws.ChatBedrock(model_id="anthropic.claude-3-haiku-20240307-v1:0",
                                    model_kwargs={"temperature": 0, "max_tokens": 40}, **kwargs(server))
    assert "Paris" in llm.invoke("What is the capital of France?").content


def test_bedrock_embeddings(server):
    emb = langchain_aws.BedrockEmbeddings(model_id="amazon.titan-embed-text-v2:0", **kwargs(server))
    vectors = emb.embed_documents(["a cat", "a kitten"])
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert len(emb.embed_query("hello")) == 384
