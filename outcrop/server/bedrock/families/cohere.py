"""Cohere bodies: Command (generate), Command R / R+ (chat) and Embed v3."""

from __future__ import annotations

from typing import Any

from outcrop.errors import Invalid
from outcrop.ids import request_id
from outcrop.server.bedrock.families import TextOnlyStream, metrics_field, number, string_list, text_field
from outcrop.server.bedrock.families.prompts import prompt_to_messages
from outcrop.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResult,
    Finished,
    InferenceConfig,
    Message,
    TextBlock,
)

_REASON = {"end_turn": "COMPLETE", "max_tokens": "MAX_TOKENS", "stop_sequence": "COMPLETE", "tool_use": "COMPLETE",
           "guardrail_intervened": "ERROR_TOXIC"}


def _config(body: dict[str, Any]) -> InferenceConfig:
    return InferenceConfig(max_tokens=number(body, "max_tokens", int), temperature=number(body, "temperature"),
                           top_p=number(body, "p"), top_k=number(body, "k", int),
                           stop=string_list(body, "stop_sequences"), seed=number(body, "seed", int))


class CohereCommand:
    def request(self, model_id: str, body: dict[str, Any]) -> ChatRequest:
        system, messages = prompt_to_messages(text_field(body, "prompt"))
        self.prompt = body["prompt"]
        return ChatRequest(model_id, messages, system, _config(body))

    def response(self, model_id: str, response: ChatResponse) -> dict[str, Any]:
        return {"id": request_id(), "prompt": self.prompt,
                "generations": [{"id": request_id(), "text": response.text,
                                 "finish_reason": _REASON[response.stop_reason]}]}

    def stream(self, model_id: str) -> _CommandStream:
        return _CommandStream()


class _CommandStream(TextOnlyStream):

    def text(self, text: str) -> list[dict[str, Any]]:
        return [{"text": text, "is_finished": False}]

    def finish(self, finished: Finished, metrics: dict[str, int]) -> list[dict[str, Any]]:
        u = finished.usage
        return [{"is_finished": True, "finish_reason": _REASON[finished.stop_reason],
                 **metrics_field(u.input_tokens, u.output_tokens, metrics)}]


class CohereCommandR:
    def request(self, model_id: str, body: dict[str, Any]) -> ChatRequest:
        message = text_field(body, "message")
        history = body.get("chat_history") or []
        if not isinstance(history, list):
            raise Invalid("Malformed input request: #/chat_history: expected type: JSONArray")
        messages = [Message("assistant" if h.get("role") == "CHATBOT" else "user", [TextBlock(str(h.get("message", "")))])
                    for h in history if isinstance(h, dict)]
        messages.append(Message("user", [TextBlock(message)]))
        system = [body["preamble"]] if isinstance(body.get("preamble"), str) else []
        self.history = history + [{"role": "USER", "message": message}]
        return ChatRequest(model_id, messages, system, _config(body))

    def response(self, model_id: str, response: ChatResponse) -> dict[str, Any]:
        return {"response_id": request_id(), "text": response.text, "generation_id": request_id(),
                "chat_history": self.history + [{"role": "CHATBOT", "message": response.text}],
                "finish_reason": _REASON[response.stop_reason]}

    def stream(self, model_id: str) -> _CommandRStream:
        return _CommandRStream()


class _CommandRStream(TextOnlyStream):
    def start(self) -> list[dict[str, Any]]:
        return [{"is_finished": False, "event_type": "stream-start", "generation_id": request_id()}]

    def text(self, text: str) -> list[dict[str, Any]]:
        return [{"is_finished": False, "event_type": "text-generation", "text": text}]

    def finish(self, finished: Finished, metrics: dict[str, int]) -> list[dict[str, Any]]:
        u = finished.usage
        return [{"is_finished": True, "event_type": "stream-end", "finish_reason": _REASON[finished.stop_reason],
                 **metrics_field(u.input_tokens, u.output_tokens, metrics)}]


class CohereEmbed:
    embeds = True
    _TYPES = {"float", "int8", "uint8", "binary", "ubinary"}

    def request(self, model_id: str, body: dict[str, Any]) -> EmbeddingRequest:
        texts = body.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise Invalid("Malformed input request: #/texts: expected a non-empty list of strings")
        if len(texts) > 96:
            raise Invalid("Malformed input request: #/texts: expected maxItems: 96, actual: " + str(len(texts)))
        types = body.get("embedding_types")
        if types is not None and (not isinstance(types, list) or not set(types) <= self._TYPES):
            raise Invalid("Malformed input request: #/embedding_types: allowed values are float, int8, uint8, binary, ubinary")
        return EmbeddingRequest(model_id, texts, None, True)

    def response(self, body: dict[str, Any], request: EmbeddingRequest, result: EmbeddingResult) -> dict[str, Any]:
        out: dict[str, Any] = {"id": request_id(), "texts": request.texts}
        types = body.get("embedding_types")
        if not types:
            out.update(response_type="embeddings_floats", embeddings=result.vectors)
            return out
        out.update(response_type="embeddings_by_type",
                   embeddings={t: [_quantize(v, t) for v in result.vectors] for t in types})
        return out


def _quantize(vector: list[float], kind: str) -> list[Any]:
    if kind == "float":
        return vector
    if kind in ("int8", "uint8"):
        scale = max(abs(x) for x in vector) or 1.0
        q = [round(x / scale * 127) for x in vector]
        return q if kind == "int8" else [x + 128 for x in q]
    bits = [1 if x > 0 else 0 for x in vector]
    packed = [int("".join(map(str, bits[i:i + 8])).ljust(8, "0"), 2) for i in range(0, len(bits), 8)]
    return packed if kind == "ubinary" else [b - 128 for b in packed]
