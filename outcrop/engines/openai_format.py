"""The OpenAI-style chat format that llama.cpp's server core and remote OpenAI-compatible servers both take."""

from __future__ import annotations

import base64
import json
from typing import Any

from outcrop.engines.base import EngineToolCall
from outcrop.types import ChatRequest, ImageBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock


def render_messages(request: ChatRequest, extra_system: str = "") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system = "\n\n".join([*request.system, extra_system] if extra_system else request.system)
    if system:
        out.append({"role": "system", "content": system})
    for message in request.messages:
        out.extend(render_message(message))
    return out


def render_tools(request: ChatRequest) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}}
            for t in request.tools]


def render_message(message: Message) -> list[dict[str, Any]]:
    """One neutral message → OpenAI messages (tool results become `tool` messages, placed first)."""
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            uri = f"data:image/{block.format};base64,{base64.b64encode(block.data).decode()}"
            parts.append({"type": "image_url", "image_url": {"url": uri}})
        elif isinstance(block, ToolUseBlock):
            calls.append({"id": block.id, "type": "function",
                          "function": {"name": block.name, "arguments": json.dumps(block.input)}})
        elif isinstance(block, ToolResultBlock):
            text = "\n".join(b.text for b in block.content if isinstance(b, TextBlock))
            results.append({"role": "tool", "tool_call_id": block.tool_use_id,
                            "content": f"Error: {text}" if block.status == "error" else text})
    if not parts and not calls:
        return results
    entry: dict[str, Any] = {"role": message.role}
    entry["content"] = "".join(p["text"] for p in parts) if all(p["type"] == "text" for p in parts) else parts
    if calls:
        entry["tool_calls"] = calls
    return [*results, entry]


class ToolCallDeltas:
    """Assembles streamed `delta.tool_calls` fragments into complete calls."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}

    def add(self, delta: dict[str, Any]) -> None:
        for call in delta.get("tool_calls") or []:
            slot = self.calls.setdefault(call.get("index", 0), {"id": "", "name": "", "arguments": ""})
            fn = call.get("function") or {}
            slot["id"] = call.get("id") or slot["id"]
            slot["name"] += fn.get("name") or ""
            slot["arguments"] += fn.get("arguments") or ""

    def events(self) -> list[EngineToolCall]:
        out = []
        for n, call in sorted(self.calls.items()):
            try:
                arguments = json.loads(call["arguments"] or "{}")
            except json.JSONDecodeError:
                arguments = {"_raw": call["arguments"]}
            out.append(EngineToolCall(ToolUseBlock(id=call["id"] or f"call_{n}", name=call["name"], input=arguments)))
        return out
