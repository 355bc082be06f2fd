"""InvokeModel body formats, one module per model family; chosen by the requested ID's provider prefix."""

from __future__ import annotations

from typing import Any, Protocol

from outcrop.errors import Invalid
from outcrop.types import ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResult, Finished, ToolUseBlock


class ChatStream(Protocol):
    """Renders one streamed answer as the family's native chunks (each becomes one `chunk` event)."""

    def start(self) -> list[dict[str, Any]]: ...
    def text(self, text: str) -> list[dict[str, Any]]: ...
    def tool(self, block: ToolUseBlock) -> list[dict[str, Any]]: ...
    def finish(self, finished: Finished, metrics: dict[str, int]) -> list[dict[str, Any]]: ...


class TextOnlyStream:
    """Base for families whose stream has no opening chunk and no tool-call chunks (prompt-style bodies)."""

    def start(self) -> list[dict[str, Any]]:
        return []

    def tool(self, block: ToolUseBlock) -> list[dict[str, Any]]:
        return []


class ChatFamily(Protocol):
    def request(self, model_id: str, body: dict[str, Any]) -> ChatRequest: ...
    def response(self, model_id: str, response: ChatResponse) -> dict[str, Any]: ...
    def stream(self, model_id: str) -> ChatStream: ...


class EmbeddingFamily(Protocol):
    def request(self, model_id: str, body: dict[str, Any]) -> EmbeddingRequest: ...
    def response(self, body: dict[str, Any], request: EmbeddingRequest, result: EmbeddingResult) -> dict[str, Any]: ...


def metrics_field(input_tokens: int, output_tokens: int, metrics: dict[str, int]) -> dict[str, Any]:
    return {"amazon-bedrock-invocationMetrics": {"inputTokenCount": input_tokens, "outputTokenCount": output_tokens,
                                                 "invocationLatency": metrics.get("latency", 0),
                                                 "firstByteLatency": metrics.get("first_byte", 0)}}


def family_for(requested_id: str, kind: str) -> ChatFamily | EmbeddingFamily:
    """The body format for a requested model ID. Local models speak the OpenAI-like Jamba/Mistral chat body."""
    from outcrop.server.bedrock.families import ai21, amazon, anthropic, cohere, meta, mistral

    if kind == "embedding":
        if requested_id.startswith("cohere."):
            return cohere.CohereEmbed()
        return amazon.TitanEmbed(v2=not requested_id.startswith("amazon.titan-embed-text-v1"))
    prefix = requested_id.split(".", 1)[0]
    if prefix == "anthropic":
        return anthropic.Anthropic()
    if requested_id.startswith("amazon.titan-text") or prefix == "amazon":
        return amazon.TitanText()
    if prefix == "cohere":
        return cohere.CohereCommandR() if "command-r" in requested_id else cohere.CohereCommand()
    if prefix == "meta":
        return meta.Llama()
    if prefix == "mistral":
        return mistral.Mistral()
    if requested_id.startswith("ai21.j2"):
        return ai21.Jurassic()  # type: ignore[return-value]
    return ai21.Jamba()  # ai21.jamba* and every local model: the OpenAI-style messages body


def number(body: dict[str, Any], key: str, kind: type = float) -> Any:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise Invalid(f"Malformed input request: #/{key}: expected type: {'Integer' if kind is int else 'Number'}")
    return kind(value)


def text_field(body: dict[str, Any], key: str, required: bool = True) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise Invalid(f"Malformed input request: #: required key [{key}] not found" if value is None
                      else f"Malformed input request: #/{key}: expected type: String")
    return value


def string_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"Malformed input request: #/{key}: expected a list of strings")
    return [v for v in value if v]
