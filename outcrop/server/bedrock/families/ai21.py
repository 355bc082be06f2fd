"""AI21 bodies: Jurassic-2 (`prompt` → `completions`) and Jamba (OpenAI-style `messages` → `choices`).

The Jamba body is also what local models (qwen.*, huggingface.*, custom) take through InvokeModel.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from outcrop.errors import Invalid
from outcrop.server.bedrock.families import metrics_field, number, string_list, text_field
from outcrop.server.bedrock.families.prompts import prompt_to_messages
from outcrop.types import (
    ChatRequest,
    ChatResponse,
    ContentBlock,
    Finished,
    InferenceConfig,
    Message,
    TextBlock,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)

_REASON = {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop", "tool_use": "tool_calls",
           "guardrail_intervened": "content_filter"}
_J2_REASON = {"end_turn": "endoftext", "max_tokens": "length", "stop_sequence": "stop", "tool_use": "endoftext",
              "guardrail_intervened": "endoftext"}


class Jurassic:
    def request(self, model_id: str, body: dict[str, Any]) -> ChatRequest:
        self.prompt = text_field(body, "prompt")
        system, messages = prompt_to_messages(self.prompt)
        config = InferenceConfig(max_tokens=number(body, "maxTokens", int), temperature=number(body, "temperature"),
                                 top_p=number(body, "topP"), stop=string_list(body, "stopSequences"))
        return ChatRequest(model_id, messages, system, config)

    def response(self, model_id: str, response: ChatResponse) -> dict[str, Any]:
        return {"id": secrets.randbelow(10**9), "prompt": {"text": self.prompt, "tokens": []},
                "completions": [{"data": {"text": response.text, "tokens": []},
                                 "finishReason": {"reason": _J2_REASON[response.stop_reason]}}]}

    def stream(self, model_id: str) -> _JambaStream:
        raise Invalid("Jurassic-2 models do not support InvokeModelWithResponseStream")


class Jamba:
    def request(self, model_id: str, body: dict[str, Any]) -> ChatRequest:
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise Invalid("Malformed input request: #: required key [messages] not found" if raw is None
                          else "Malformed input request: #/messages: expected a non-empty JSONArray")
        system: list[str] = []
        messages: list[Message] = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict):
                raise Invalid(f"Malformed input request: #/messages/{i}: expected type: JSONObject")
            role = m.get("role")
            if role == "system":
                system.append(_text(m.get("content")))
            elif role in ("user", "assistant"):
                messages.append(Message(role, _content(m)))
            elif role == "tool":
                messages.append(Message("user", [ToolResultBlock(str(m.get("tool_call_id")), [TextBlock(_text(m.get("content")))])]))
            else:
                raise Invalid(f"Malformed input request: #/messages/{i}/role: {role!r} is not a valid role")
        stop = body.get("stop") or []
        config = InferenceConfig(max_tokens=number(body, "max_tokens", int), temperature=number(body, "temperature"),
                                 top_p=number(body, "top_p"), stop=[stop] if isinstance(stop, str) else list(stop),
                                 seed=number(body, "seed", int))
        request = ChatRequest(model_id, messages, system, config)
        tools = body.get("tools") or []
        request.tools = [ToolSpec(t["function"]["name"], t["function"].get("description", ""),
                                  t["function"].get("parameters") or {"type": "object"})
                         for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
        choice = body.get("tool_choice")
        if choice == "required":
            request.tool_choice = ToolChoice("any")
        elif choice == "none":
            request.tool_choice = ToolChoice("none")
        elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
            request.tool_choice = ToolChoice("tool", choice["function"].get("name"))
        return request

    def response(self, model_id: str, response: ChatResponse) -> dict[str, Any]:
        u = response.usage
        message: dict[str, Any] = {"role": "assistant", "content": response.text or None}
        calls = [b for b in response.content if isinstance(b, ToolUseBlock)]
        if calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": json.dumps(c.input)}} for c in calls]
        return {"id": "chatcmpl-" + secrets.token_hex(12), "model": model_id,
                "choices": [{"index": 0, "message": message, "finish_reason": _REASON[response.stop_reason]}],
                "usage": {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                          "total_tokens": u.total_tokens}}

    def stream(self, model_id: str) -> _JambaStream:
        return _JambaStream()


class _JambaStream:
    def __init__(self) -> None:
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.calls = 0

    def start(self) -> list[dict[str, Any]]:
        return [{"id": self.id, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}]

    def text(self, text: str) -> list[dict[str, Any]]:
        return [{"id": self.id, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}]

    def tool(self, block: ToolUseBlock) -> list[dict[str, Any]]:
        call = {"index": self.calls, "id": block.id, "type": "function",
                "function": {"name": block.name, "arguments": json.dumps(block.input)}}
        self.calls += 1
        return [{"id": self.id, "choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]}]

    def finish(self, finished: Finished, metrics: dict[str, int]) -> list[dict[str, Any]]:
        u = finished.usage
        return [{"id": self.id, "choices": [{"index": 0, "delta": {}, "finish_reason": _REASON[finished.stop_reason]}],
                 "usage": {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
                           "total_tokens": u.total_tokens},
                 **metrics_field(u.input_tokens, u.output_tokens, metrics)}]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _content(m: dict[str, Any]) -> list[ContentBlock]:
    blocks: list[ContentBlock] = []
    text = _text(m.get("content"))
    if text:
        blocks.append(TextBlock(text))
    for call in m.get("tool_calls") or []:
        fn = call.get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except json.JSONDecodeError:
            args = {}
        blocks.append(ToolUseBlock(str(call.get("id")), str(fn.get("name")), args))
    return blocks or [TextBlock("")]

