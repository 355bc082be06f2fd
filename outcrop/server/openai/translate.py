"""OpenAI chat/completions/embeddings wire format ⇄ neutral types (pure functions)."""

from __future__ import annotations

import base64
import binascii
import json
import struct
import time
from typing import Any

from outcrop.core.guardrails.runtime import GuardConfig
from outcrop.errors import Invalid
from outcrop.ids import hex_id
from outcrop.server.fields import get
from outcrop.types import (
    ChatRequest,
    ChatResponse,
    ContentBlock,
    EmbeddingRequest,
    EmbeddingResult,
    ImageBlock,
    InferenceConfig,
    Message,
    TextBlock,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
          "guardrail_intervened": "content_filter"}


def _config(body: dict[str, Any]) -> InferenceConfig:
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, (str, list)):
        raise Invalid("Invalid type for 'stop': expected a string or an array of strings.")
    max_tokens = get(body, "max_completion_tokens", int, "") or get(body, "max_tokens", int, "")
    if max_tokens is not None and max_tokens < 1:
        raise Invalid(f"Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got {max_tokens} instead.")
    n = get(body, "n", int, "")
    if n not in (None, 1):
        raise Invalid("Only n=1 is supported.")
    return InferenceConfig(max_tokens=max_tokens, temperature=get(body, "temperature", float, ""),
                           top_p=get(body, "top_p", float, ""), seed=get(body, "seed", int, ""),
                           stop=[stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str) and s])


def chat_request(body: dict[str, Any]) -> ChatRequest:
    model = get(body, "model", str, "", required=True)
    raw = get(body, "messages", list, "", required=True)
    if not raw:
        raise Invalid("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.")
    system: list[str] = []
    messages: list[Message] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise Invalid(f"Invalid type for 'messages[{i}]': expected an object.")
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text(m.get("content"), f"messages[{i}].content"))
        elif role == "user":
            _append(messages, Message("user", _user_content(m.get("content"), f"messages[{i}].content")))
        elif role == "assistant":
            _append(messages, Message("assistant", _assistant_content(m, i)))
        elif role == "tool":
            result = ToolResultBlock(str(m.get("tool_call_id", "")), [TextBlock(_text(m.get("content"), f"messages[{i}].content"))])
            _append(messages, Message("user", [result]))
        else:
            raise Invalid(f"Invalid value: '{role}'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'.")
    request = ChatRequest(model_id=model, messages=messages, system=system, config=_config(body))
    request.tools, request.tool_choice = _tools(body)
    fmt = get(body, "response_format", dict, "")
    if fmt:
        kind = fmt.get("type")
        if kind == "json_object":
            request.json_mode = True
        elif kind == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise Invalid("Missing required parameter: 'response_format.json_schema.schema'.")
            request.json_schema = schema
        elif kind != "text":
            raise Invalid(f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object' and 'json_schema'.")
    return request


def _append(messages: list[Message], message: Message) -> None:
    """Consecutive same-role turns (e.g. several tool results) merge into one message."""
    if messages and messages[-1].role == message.role:
        messages[-1].content.extend(message.content)
    else:
        messages.append(message)


def _text(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise Invalid(f"Invalid type for '{where}': expected a string or an array of content parts.")


def _user_content(content: Any, where: str) -> list[ContentBlock]:
    if isinstance(content, str):
        return [TextBlock(content)]
    if not isinstance(content, list):
        raise Invalid(f"Invalid type for '{where}': expected a string or an array of content parts.")
    blocks: list[ContentBlock] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append(TextBlock(str(part.get("text", ""))))
        elif kind == "image_url":
            blocks.append(_image(str((part.get("image_url") or {}).get("url", "")), f"{where}[{j}].image_url.url"))
        else:
            raise Invalid(f"Invalid value for '{where}[{j}].type': {kind!r} is not supported.")
    return blocks


def _image(url: str, where: str) -> ImageBlock:
    if not url.startswith("data:image/") or ";base64," not in url:
        raise Invalid(f"Invalid '{where}': only data:image/...;base64 URLs are accepted (no network access).")
    head, data = url.split(";base64,", 1)
    try:
        return ImageBlock(head[len("data:image/"):], base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        raise Invalid(f"Invalid '{where}': the base64 data is malformed.") from None


def _assistant_content(m: dict[str, Any], i: int) -> list[ContentBlock]:
    blocks: list[ContentBlock] = []
    text = _text(m.get("content"), f"messages[{i}].content")
    if text:
        blocks.append(TextBlock(text))
    for call in m.get("tool_calls") or []:
        fn = call.get("function") or {}
        try:
            arguments = json.loads(fn.get("arguments") or "{}")
        except json.JSONDecodeError:
            raise Invalid(f"Invalid 'messages[{i}].tool_calls': arguments must be a JSON string.") from None
        blocks.append(ToolUseBlock(str(call.get("id")), str(fn.get("name")), arguments))
    return blocks or [TextBlock("")]


def _tools(body: dict[str, Any]) -> tuple[list[ToolSpec], ToolChoice]:
    tools: list[ToolSpec] = []
    for i, tool in enumerate(get(body, "tools", list, "") or []):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise Invalid(f"Missing required parameter: 'tools[{i}].function.name'.")
        tools.append(ToolSpec(fn["name"], fn.get("description") or "", fn.get("parameters") or {"type": "object"}))
    choice = body.get("tool_choice")
    if choice is None or choice == "auto":
        return tools, ToolChoice("auto")
    if choice == "none":
        return tools, ToolChoice("none")
    if choice == "required":
        return tools, ToolChoice("any")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return tools, ToolChoice("tool", choice["function"].get("name"))
    raise Invalid("Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a named function.")


def completion_request(body: dict[str, Any]) -> ChatRequest:
    model = get(body, "model", str, "", required=True)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise Invalid("Invalid 'prompt': expected a string (batched prompts are not supported).")
    return ChatRequest(model_id=model, prompt=prompt, config=_config(body))


def chat_response(model: str, response: ChatResponse, guarded: bool = False) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": response.text or None}
    calls = [b for b in response.content if isinstance(b, ToolUseBlock)]
    if calls:
        message["tool_calls"] = [tool_call_json(c) for c in calls]
    out = {"id": f"chatcmpl-{hex_id()}", "object": "chat.completion", "created": int(time.time()),
           "model": model, "choices": [{"index": 0, "message": message, "logprobs": None,
                                        "finish_reason": FINISH[response.stop_reason]}],
           "usage": usage_json(response.usage.input_tokens, response.usage.output_tokens)}
    if guarded:
        out["guardrail"] = guardrail_json(response.stop_reason, response.trace)
    return out


def guardrail_config(body: dict[str, Any]) -> GuardConfig | None:
    """The request's `guardrail_config` (a Bedrock guardrail; snake_case or Bedrock's camelCase keys)."""
    raw = body.get("guardrail_config", body.get("guardrailConfig"))
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise Invalid("Invalid 'guardrail_config': expected an object with guardrail_identifier and guardrail_version.")
    aliases = {"guardrail_identifier": "guardrailIdentifier", "guardrail_version": "guardrailVersion",
               "stream_processing_mode": "streamProcessingMode"}
    return GuardConfig.parse({aliases.get(k, k): v for k, v in raw.items()}, "guardrail_config")


def guardrail_json(stop_reason: str, trace: dict[str, Any] | None) -> dict[str, Any]:
    """What the guardrail did, beside OpenAI's `finish_reason: content_filter`."""
    out: dict[str, Any] = {"action": "INTERVENED" if stop_reason == "guardrail_intervened" else "NONE"}
    if trace is not None:
        out["trace"] = trace["guardrail"]
    return out


def tool_call_json(block: ToolUseBlock) -> dict[str, Any]:
    return {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": json.dumps(block.input)}}


def usage_json(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_response(model: str, response: ChatResponse) -> dict[str, Any]:
    return {"id": f"cmpl-{hex_id()}", "object": "text_completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "text": response.text, "logprobs": None,
                                         "finish_reason": FINISH[response.stop_reason]}],
            "usage": usage_json(response.usage.input_tokens, response.usage.output_tokens)}


def embedding_request(body: dict[str, Any]) -> tuple[EmbeddingRequest, str]:
    model = get(body, "model", str, "", required=True)
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise Invalid("Invalid 'input': expected a non-empty string or array of strings (token arrays are not supported).")
    if any(not t for t in texts):
        raise Invalid("Invalid 'input': strings must not be empty.")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise Invalid(f"Invalid value for 'encoding_format': '{encoding}'. Supported values are: 'float' and 'base64'.")
    return EmbeddingRequest(model, texts, get(body, "dimensions", int, ""), True), encoding


def embedding_response(model: str, result: EmbeddingResult, encoding: str) -> dict[str, Any]:
    data = []
    for i, vector in enumerate(result.vectors):
        value: Any = vector
        if encoding == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": value})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": result.input_tokens, "total_tokens": result.input_tokens}}
