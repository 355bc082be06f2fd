"""Meta Llama 2 / 3 bodies: `prompt` in, `generation` out."""

from __future__ import annotations

from typing import Any

from outcrop.server.bedrock.families import TextOnlyStream, metrics_field, number, text_field
from outcrop.server.bedrock.families.prompts import prompt_to_messages
from outcrop.types import ChatRequest, ChatResponse, Finished, InferenceConfig

_REASON = {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop", "tool_use": "stop",
           "guardrail_intervened": "stop"}


class Llama:
    def request(self, model_id: str, body: dict[str, Any]) -> ChatRequest:
        system, messages = prompt_to_messages(text_field(body, "prompt"))
        config = InferenceConfig(max_tokens=number(body, "max_gen_len", int), temperature=number(body, "temperature"),
                                 top_p=number(body, "top_p"))
        return ChatRequest(model_id, messages, system, config)

    def response(self, model_id: str, response: ChatResponse) -> dict[str, Any]:
        return {"generation": response.text, "prompt_token_count": response.usage.input_tokens,
                "generation_token_count": response.usage.output_tokens, "stop_reason": _REASON[response.stop_reason]}

    def stream(self, model_id: str) -> _LlamaStream:
        return _LlamaStream()


class _LlamaStream(TextOnlyStream):
    def __init__(self) -> None:
        self.count = 0

    def text(self, text: str) -> list[dict[str, Any]]:
        self.count += 1
        return [{"generation": text, "prompt_token_count": None, "generation_token_count": self.count,
                 "stop_reason": None}]

    def finish(self, finished: Finished, metrics: dict[str, int]) -> list[dict[str, Any]]:
        u = finished.usage
        return [{"generation": "", "prompt_token_count": u.input_tokens, "generation_token_count": u.output_tokens,
                 "stop_reason": _REASON[finished.stop_reason], **metrics_field(u.input_tokens, u.output_tokens, metrics)}]
