"""Anthropic Claude bodies: the Messages API and legacy text completions (`prompt` + `max_tokens_to_sample`)."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from typing import Any

from outcrop.errors import Invalid
from outcrop.server.bedrock.families import TextOnlyStream, metrics_field, number, string_list, text_field
from outcrop.server.bedrock.families.prompts import prompt_to_messages
from outcrop.types import (
    ChatRequest,
    ChatResponse,
    ContentBlock,
    Finished,
    ImageBlock,
    InferenceConfig,
    Message,
    TextBlock,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)

_STOP = {"end_turn": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence", "tool_use": "tool_use",
         "guardrail_intervened": "guardrail_intervened"}
_LEGACY_STOP = {"end_turn": "stop_sequence", "stop_sequence": "stop_sequence", "max_tokens": "max_tokens",
                "tool_use": "stop_sequence", "guardrail_intervened": "stop_sequence"}


def _msg_id() -> str:
    return "msg_bdrk_" + secrets.token_hex(12)


class Anthropic:
    def request(self, model_id: str, body: dict[str, Any]) -> ChatRequest:
        config = InferenceConfig(temperature=number(body, "temperature"), top_p=number(body, "top_p"),
                                 top_k=number(body, "top_k", int), stop=string_list(body, "stop_sequences"))
        if "messages" not in body and "prompt" in body:
            self.legacy = True
            system, messages = prompt_to_messages(text_field(body, "prompt"))
            config.max_tokens = number(body, "max_tokens_to_sample", int)
            config.stop = [s for s in config.stop if s != "\n\nHuman:"]
            return ChatRequest(model_id, messages, system, config)
        self.legacy = False
        if body.get("anthropic_version") is None:
            raise Invalid("Malformed input request: #: required key [anthropic_version] not found")
        config.max_tokens = number(body, "max_tokens", int)
        if config.max_tokens is None:
            raise Invalid("Malformed input request: #: required key [max_tokens] not found")
        raw = body.get("messages")
        if not isinstance(raw, list):
            raise Invalid("Malformed input request: #: required key [messages] not found")
        messages = [_message(m, i) for i, m in enumerate(raw)]
        request = ChatRequest(model_id, messages, _system(body.get("system")), config)
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise Invalid("Malformed input request: #/tools: expected type: JSONArray")
        request.tools = [ToolSpec(t["name"], t.get("description", ""), t.get("input_schema") or {"type": "object"})
                         for t in tools if isinstance(t, dict) and "name" in t]
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            mode = {"auto": "auto", "any": "any", "tool": "tool", "none": "none"}.get(choice.get("type", "auto"), "auto")
            request.tool_choice = ToolChoice(mode, choice.get("name"))  # type: ignore[arg-type]
        return request

    def response(self, model_id: str, response: ChatResponse) -> dict[str, Any]:
        if getattr(self, "legacy", False):
            return {"type": "completion", "completion": " " + response.text.lstrip(),
                    "stop_reason": _LEGACY_STOP[response.stop_reason], "stop": None}
        content: list[dict[str, Any]] = []
        for block in response.content:
            if isinstance(block, TextBlock):
                content.append({"type": "text", "text": block.text})
            elif isinstance(block, ToolUseBlock):
                content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
        return {"id": _msg_id(), "type": "message", "role": "assistant", "model": model_id, "content": content,
                "stop_reason": _STOP[response.stop_reason], "stop_sequence": None,
                "usage": {"input_tokens": response.usage.input_tokens, "output_tokens": response.usage.output_tokens}}

    def stream(self, model_id: str) -> _MessagesStream | _LegacyStream:
        return _LegacyStream() if getattr(self, "legacy", False) else _MessagesStream(model_id)


class _MessagesStream:
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.index = 0
        self.text_open = False

    def start(self) -> list[dict[str, Any]]:
        return [{"type": "message_start", "message": {"id": _msg_id(), "type": "message", "role": "assistant",
                                                      "model": self.model_id, "content": [], "stop_reason": None,
                                                      "stop_sequence": None,
                                                      "usage": {"input_tokens": 0, "output_tokens": 0}}}]

    def text(self, text: str) -> list[dict[str, Any]]:
        out = []
        if not self.text_open:
            out.append({"type": "content_block_start", "index": self.index,
                        "content_block": {"type": "text", "text": ""}})
            self.text_open = True
        out.append({"type": "content_block_delta", "index": self.index, "delta": {"type": "text_delta", "text": text}})
        return out

    def tool(self, block: ToolUseBlock) -> list[dict[str, Any]]:
        out = self._close()
        out += [{"type": "content_block_start", "index": self.index,
                 "content_block": {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}},
                {"type": "content_block_delta", "index": self.index,
                 "delta": {"type": "input_json_delta", "partial_json": json.dumps(block.input)}},
                {"type": "content_block_stop", "index": self.index}]
        self.index += 1
        return out

    def finish(self, finished: Finished, metrics: dict[str, int]) -> list[dict[str, Any]]:
        usage = finished.usage
        return self._close() + [
            {"type": "message_delta", "delta": {"stop_reason": _STOP[finished.stop_reason], "stop_sequence": None},
             "usage": {"output_tokens": usage.output_tokens}},
            {"type": "message_stop", **metrics_field(usage.input_tokens, usage.output_tokens, metrics)},
        ]

    def _close(self) -> list[dict[str, Any]]:
        if not self.text_open:
            return []
        self.text_open = False
        self.index += 1
        return [{"type": "content_block_stop", "index": self.index - 1}]


class _LegacyStream(TextOnlyStream):

    def text(self, text: str) -> list[dict[str, Any]]:
        return [{"type": "completion", "completion": text, "stop_reason": None, "stop": None}]

    def finish(self, finished: Finished, metrics: dict[str, int]) -> list[dict[str, Any]]:
        usage = finished.usage
        return [{"type": "completion", "completion": "", "stop_reason": _LEGACY_STOP[finished.stop_reason],
                 "stop": None, **metrics_field(usage.input_tokens, usage.output_tokens, metrics)}]


def _system(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [b.get("text", "") for b in value if isinstance(b, dict) and b.get("type") == "text"]
    raise Invalid("Malformed input request: #/system: expected type: String or JSONArray")


def _message(raw: Any, i: int) -> Message:
    if not isinstance(raw, dict) or raw.get("role") not in ("user", "assistant"):
        raise Invalid(f"Malformed input request: #/messages/{i}: role must be user or assistant")
    content = raw.get("content")
    if isinstance(content, str):
        return Message(raw["role"], [TextBlock(content)])
    if not isinstance(content, list) or not content:
        raise Invalid(f"Malformed input request: #/messages/{i}/content: expected a string or a non-empty list")
    return Message(raw["role"], [_block(b, f"#/messages/{i}/content/{j}") for j, b in enumerate(content)])


def _block(raw: Any, where: str) -> ContentBlock:
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return TextBlock(str(raw.get("text", "")))
    if kind == "image":
        source = raw.get("source") or {}
        try:
            data = base64.b64decode(source.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"Malformed input request: {where}/source/data is not valid base64") from None
        return ImageBlock(str(source.get("media_type", "image/png")).split("/")[-1], data)
    if kind == "tool_use":
        return ToolUseBlock(str(raw.get("id")), str(raw.get("name")), raw.get("input") or {})
    if kind == "tool_result":
        content = raw.get("content")
        parts = [TextBlock(content)] if isinstance(content, str) else [
            TextBlock(str(c.get("text", ""))) for c in content or [] if isinstance(c, dict) and c.get("type") == "text"]
        return ToolResultBlock(str(raw.get("tool_use_id")), list(parts), "error" if raw.get("is_error") else None)
    raise Invalid(f"Malformed input request: {where}: unsupported content type {kind!r}")
