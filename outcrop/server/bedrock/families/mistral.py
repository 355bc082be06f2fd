"""Mistral bodies: `prompt` → `outputs` (7B, Mixtral, Large 1), or chat `messages` → `choices` (Large 2)."""

from __future__ import annotations

from typing import Any

from outcrop.server.bedrock.families import TextOnlyStream, ai21, metrics_field, number, string_list, text_field
from outcrop.server.bedrock.families.prompts import prompt_to_messages
from outcrop.types import ChatRequest, ChatResponse, Finished, InferenceConfig

_REASON = {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop", "tool_use": "tool_calls",
           "guardrail_intervened": "stop"}


class Mistral:
    def request(self, model_id: str, body: dict[str, Any]) -> ChatRequest:
        if "messages" in body:
            self.chat: ai21.Jamba | None = ai21.Jamba()
            return self.chat.request(model_id, body)
        self.chat = None
        system, messages = prompt_to_messages(text_field(body, "prompt"))
        config = InferenceConfig(max_tokens=number(body, "max_tokens", int), temperature=number(body, "temperature"),
                                 top_p=number(body, "top_p"), top_k=number(body, "top_k", int),
                                 stop=string_list(body, "stop"))
        return ChatRequest(model_id, messages, system, config)

    def response(self, model_id: str, response: ChatResponse) -> dict[str, Any]:
        if self.chat is not None:
            return self.chat.response(model_id, response)
        return {"outputs": [{"text": response.text, "stop_reason": _REASON[response.stop_reason]}]}

    def stream(self, model_id: str) -> Any:
        return self.chat.stream(model_id) if self.chat is not None else _MistralStream()


class _MistralStream(TextOnlyStream):

    def text(self, text: str) -> list[dict[str, Any]]:
        return [{"outputs": [{"text": text, "stop_reason": None}]}]

    def finish(self, finished: Finished, metrics: dict[str, int]) -> list[dict[str, Any]]:
        u = finished.usage
        return [{"outputs": [{"text": "", "stop_reason": _REASON[finished.stop_reason]}],
                 **metrics_field(u.input_tokens, u.output_tokens, metrics)}]
