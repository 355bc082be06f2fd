"""Converse wire format ⇄ neutral types (pure functions)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from typing import Any

from outcrop.errors import Invalid
from outcrop.server.fields import get, one_of
from outcrop.types import (
    ChatEvent,
    ChatRequest,
    ChatResponse,
    ContentBlock,
    Finished,
    ImageBlock,
    InferenceConfig,
    Message,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)

_BLOCKS = ("text", "image", "document", "toolUse", "toolResult", "guardContent", "cachePoint", "reasoningContent",
           "video", "audio", "citationsContent", "searchResult")
_IMAGE_FORMATS = {"png", "jpeg", "gif", "webp"}
_TEXT_DOCUMENTS = {"txt", "md", "html", "csv"}


def converse_request(model_id: str, body: dict[str, Any]) -> ChatRequest:
    messages = [_message(m, f"messages[{i}]") for i, m in enumerate(get(body, "messages", list, "", required=True))]
    system = [_system(s, f"system[{i}]") for i, s in enumerate(get(body, "system", list, "") or [])]
    request = ChatRequest(model_id=model_id, messages=messages, system=[s for s in system if s])
    request.config = _inference_config(get(body, "inferenceConfig", dict, "") or {})
    extra = get(body, "additionalModelRequestFields", dict, "") or {}
    if isinstance(extra.get("top_k"), int):
        request.config.top_k = extra["top_k"]
    if isinstance(extra.get("seed"), int):
        request.config.seed = extra["seed"]
    tool_config = get(body, "toolConfig", dict, "")
    if tool_config is not None:
        request.tools, request.tool_choice = _tool_config(tool_config)
    return request


def _inference_config(cfg: dict[str, Any]) -> InferenceConfig:
    where = "inferenceConfig"
    stops = get(cfg, "stopSequences", list, where) or []
    if not all(isinstance(s, str) and s for s in stops):
        raise Invalid("Malformed input request: inferenceConfig.stopSequences must be non-empty strings")
    return InferenceConfig(
        max_tokens=get(cfg, "maxTokens", int, where),
        temperature=get(cfg, "temperature", float, where),
        top_p=get(cfg, "topP", float, where),
        stop=stops,
    )


def _system(block: Any, where: str) -> str:
    if not isinstance(block, dict):
        raise Invalid(f"Malformed input request: {where} must be an object")
    kind = one_of(block, ("text", "guardContent", "cachePoint"), where)
    if kind == "text":
        return str(get(block, "text", str, where))
    if kind == "guardContent":
        return str(((block["guardContent"] or {}).get("text") or {}).get("text", ""))
    return ""


def _message(raw: Any, where: str) -> Message:
    if not isinstance(raw, dict):
        raise Invalid(f"Malformed input request: {where} must be an object")
    role = get(raw, "role", str, where, required=True)
    if role not in ("user", "assistant"):
        raise Invalid(f"Malformed input request: {where}.role must be user or assistant, not {role!r}")
    content = get(raw, "content", list, where, required=True)
    blocks = [b for i, c in enumerate(content) if (b := _block(c, f"{where}.content[{i}]")) is not None]
    if not blocks:
        raise Invalid(f"Malformed input request: {where}.content must not be empty")
    return Message(role, blocks)


def _block(raw: Any, where: str) -> ContentBlock | None:
    if not isinstance(raw, dict):
        raise Invalid(f"Malformed input request: {where} must be an object")
    kind = one_of(raw, _BLOCKS, where)
    value = raw[kind]
    if kind == "text":
        return TextBlock(get(raw, "text", str, where))
    if kind == "image":
        return _image(value, f"{where}.image")
    if kind == "document":
        return _document(value, f"{where}.document")
    if kind == "toolUse":
        w = f"{where}.toolUse"
        return ToolUseBlock(get(value, "toolUseId", str, w, True), get(value, "name", str, w, True),
                            get(value, "input", (dict, list, str, int, float, bool), w, True))
    if kind == "toolResult":
        return _tool_result(value, f"{where}.toolResult")
    if kind == "guardContent":
        return TextBlock(str(((value or {}).get("text") or {}).get("text", "")))
    if kind in ("cachePoint", "reasoningContent"):
        return None
    raise Invalid(f"Malformed input request: {where}: {kind} content is not supported by this model")


def _image(value: Any, where: str) -> ImageBlock:
    fmt = get(value, "format", str, where, required=True)
    if fmt not in _IMAGE_FORMATS:
        raise Invalid(f"Malformed input request: {where}.format must be one of png, jpeg, gif, webp")
    source = get(value, "source", dict, where, required=True)
    if "bytes" not in source:
        raise Invalid(f"Malformed input request: {where}.source must contain bytes (s3Location is not supported)")
    return ImageBlock(fmt, _b64(source["bytes"], f"{where}.source.bytes"))


def _document(value: Any, where: str) -> TextBlock:
    fmt = get(value, "format", str, where) or "txt"
    name = get(value, "name", str, where, required=True)
    source = get(value, "source", dict, where, required=True)
    if "text" in source:
        text = str(source["text"])
    elif "bytes" in source and fmt in _TEXT_DOCUMENTS:
        text = _b64(source["bytes"], f"{where}.source.bytes").decode("utf-8", errors="replace")
    else:
        raise Invalid(f"Malformed input request: {where}: {fmt} documents are not supported yet; send txt, md, html or csv")
    return TextBlock(f"<document name=\"{name}\">\n{text}\n</document>")


def _tool_result(value: Any, where: str) -> ToolResultBlock:
    tool_use_id = get(value, "toolUseId", str, where, required=True)
    parts: list[TextBlock | ImageBlock] = []
    for i, item in enumerate(get(value, "content", list, where, required=True)):
        w = f"{where}.content[{i}]"
        kind = one_of(item, ("text", "json", "image", "document", "video", "searchResult"), w)
        if kind == "text":
            parts.append(TextBlock(get(item, "text", str, w)))
        elif kind == "json":
            parts.append(TextBlock(json.dumps(item["json"])))
        elif kind == "image":
            parts.append(_image(item["image"], f"{w}.image"))
        elif kind == "document":
            parts.append(_document(item["document"], f"{w}.document"))
        else:
            raise Invalid(f"Malformed input request: {w}: {kind} tool results are not supported")
    status = get(value, "status", str, where)
    return ToolResultBlock(tool_use_id, parts, status)


def _tool_config(cfg: dict[str, Any]) -> tuple[list[ToolSpec], ToolChoice]:
    tools: list[ToolSpec] = []
    for i, entry in enumerate(get(cfg, "tools", list, "toolConfig", required=True)):
        where = f"toolConfig.tools[{i}]"
        if not isinstance(entry, dict):
            raise Invalid(f"Malformed input request: {where} must be an object")
        if "cachePoint" in entry:
            continue
        spec = get(entry, "toolSpec", dict, where, required=True)
        schema = get(get(spec, "inputSchema", dict, f"{where}.toolSpec", True), "json", dict,
                     f"{where}.toolSpec.inputSchema", True)
        tools.append(ToolSpec(get(spec, "name", str, f"{where}.toolSpec", True),
                              get(spec, "description", str, f"{where}.toolSpec") or "", schema))
    if not tools:
        raise Invalid("Malformed input request: toolConfig.tools must contain at least one toolSpec")
    choice = ToolChoice()
    raw = get(cfg, "toolChoice", dict, "toolConfig")
    if raw:
        kind = one_of(raw, ("auto", "any", "tool"), "toolConfig.toolChoice")
        name = get(raw["tool"], "name", str, "toolConfig.toolChoice.tool", True) if kind == "tool" else None
        choice = ToolChoice(kind, name)  # type: ignore[arg-type]
    return tools, choice


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise Invalid(f"Malformed input request: {where} must be base64-encoded")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"Malformed input request: {where} is not valid base64") from None


# --- responses ------------------------------------------------------------------------------------


def content_json(blocks: list[ContentBlock]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, TextBlock):
            out.append({"text": block.text})
        elif isinstance(block, ToolUseBlock):
            out.append({"toolUse": {"toolUseId": block.id, "name": block.name, "input": block.input}})
    return out


def converse_response(response: ChatResponse) -> dict[str, Any]:
    usage = response.usage
    out: dict[str, Any] = {
        "output": {"message": {"role": "assistant", "content": content_json(response.content)}},
        "stopReason": response.stop_reason,
        "usage": {"inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens,
                  "totalTokens": usage.total_tokens},
        "metrics": {"latencyMs": response.latency_ms},
    }
    if response.trace is not None:
        out["trace"] = response.trace
    return out


class ConverseStreamEncoder:
    """Neutral chat events → ConverseStream (event type, payload) pairs, in Bedrock's order."""

    def __init__(self) -> None:
        self.index = 0
        self.text_open = False

    def start(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield "messageStart", {"role": "assistant"}

    def encode(self, event: ChatEvent, latency_ms: int) -> Iterator[tuple[str, dict[str, Any]]]:
        if isinstance(event, TextDelta):
            self.text_open = True
            yield "contentBlockDelta", {"contentBlockIndex": self.index, "delta": {"text": event.text}}
        elif isinstance(event, ToolCall):
            yield from self._close_text()
            block = event.block
            yield "contentBlockStart", {"contentBlockIndex": self.index,
                                        "start": {"toolUse": {"toolUseId": block.id, "name": block.name}}}
            yield "contentBlockDelta", {"contentBlockIndex": self.index,
                                        "delta": {"toolUse": {"input": json.dumps(block.input)}}}
            yield "contentBlockStop", {"contentBlockIndex": self.index}
            self.index += 1
        elif isinstance(event, Finished):
            yield from self._close_text()
            yield "messageStop", {"stopReason": event.stop_reason}
            usage = event.usage
            metadata: dict[str, Any] = {"usage": {"inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens,
                                                  "totalTokens": usage.total_tokens},
                                        "metrics": {"latencyMs": latency_ms}}
            if event.trace is not None:
                metadata["trace"] = event.trace
            yield "metadata", metadata

    def _close_text(self) -> Iterator[tuple[str, dict[str, Any]]]:
        if self.text_open:
            yield "contentBlockStop", {"contentBlockIndex": self.index}
            self.text_open = False
            self.index += 1
