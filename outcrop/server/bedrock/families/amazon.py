"""Amazon Titan bodies: Titan Text and Titan Text Embeddings G1 / V2."""

from __future__ import annotations

from typing import Any

from outcrop.errors import Invalid
from outcrop.server.bedrock.families import TextOnlyStream, metrics_field, number, string_list, text_field
from outcrop.server.bedrock.families.prompts import prompt_to_messages
from outcrop.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResult,
    Finished,
    InferenceConfig,
)

_REASON = {"end_turn": "FINISH", "max_tokens": "LENGTH", "stop_sequence": "STOP_CRITERIA_MET", "tool_use": "FINISH",
           "guardrail_intervened": "CONTENT_FILTERED"}


class TitanText:
    def request(self, model_id: str, body: dict[str, Any]) -> ChatRequest:
        system, messages = prompt_to_messages(text_field(body, "inputText"))
        cfg = body.get("textGenerationConfig") or {}
        if not isinstance(cfg, dict):
            raise Invalid("Malformed input request: #/textGenerationConfig: expected type: JSONObject")
        config = InferenceConfig(max_tokens=number(cfg, "maxTokenCount", int), temperature=number(cfg, "temperature"),
                                 top_p=number(cfg, "topP"), stop=string_list(cfg, "stopSequences"))
        return ChatRequest(model_id, messages, system, config)

    def response(self, model_id: str, response: ChatResponse) -> dict[str, Any]:
        return {"inputTextTokenCount": response.usage.input_tokens,
                "results": [{"tokenCount": response.usage.output_tokens, "outputText": response.text,
                             "completionReason": _REASON[response.stop_reason]}]}

    def stream(self, model_id: str) -> _TitanStream:
        return _TitanStream()


class _TitanStream(TextOnlyStream):
    def __init__(self) -> None:
        self.count = 0

    def text(self, text: str) -> list[dict[str, Any]]:
        self.count += 1
        return [{"outputText": text, "index": 0, "totalOutputTextTokenCount": None, "completionReason": None,
                 "inputTextTokenCount": None}]

    def finish(self, finished: Finished, metrics: dict[str, int]) -> list[dict[str, Any]]:
        usage = finished.usage
        return [{"outputText": "", "index": 0, "totalOutputTextTokenCount": usage.output_tokens,
                 "completionReason": _REASON[finished.stop_reason], "inputTextTokenCount": usage.input_tokens,
                 **metrics_field(usage.input_tokens, usage.output_tokens, metrics)}]


class TitanEmbed:
    embeds = True
    """G1 takes only inputText; V2 adds dimensions (256/512/1024), normalize and embeddingTypes."""

    def __init__(self, v2: bool) -> None:
        self.v2 = v2

    def request(self, model_id: str, body: dict[str, Any]) -> EmbeddingRequest:
        text = text_field(body, "inputText")
        if not text:
            raise Invalid("Malformed input request: #/inputText: expected minLength: 1, actual: 0")
        dimensions = number(body, "dimensions", int) if self.v2 else None
        if dimensions is not None and dimensions not in (256, 512, 1024):
            raise Invalid(f"Malformed input request: #/dimensions: {dimensions} is not a valid enum value (256, 512, 1024)")
        normalize = body.get("normalize", True) if self.v2 else False
        if not isinstance(normalize, bool):
            raise Invalid("Malformed input request: #/normalize: expected type: Boolean")
        types = body.get("embeddingTypes", ["float"])
        if not isinstance(types, list) or not set(types) <= {"float", "binary"} or not types:
            raise Invalid("Malformed input request: #/embeddingTypes: allowed values are float and binary")
        return EmbeddingRequest(model_id, [text], dimensions, normalize)

    def response(self, body: dict[str, Any], request: EmbeddingRequest, result: EmbeddingResult) -> dict[str, Any]:
        vector = result.vectors[0]
        out: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": result.input_tokens}
        if self.v2:
            by_type: dict[str, Any] = {}
            for kind in body.get("embeddingTypes", ["float"]):
                by_type[kind] = vector if kind == "float" else [1 if x > 0 else 0 for x in vector]
            out["embeddingsByType"] = by_type
        return out
