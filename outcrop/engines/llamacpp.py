"""GGUF chat models on xllamacpp: llama.cpp's server core in-process (continuous batching over slots)."""

from __future__ import annotations

import secrets
from typing import Any

from outcrop.engines.base import Emit, Engine, EngineDone, EngineText, require
from outcrop.engines.openai_format import ToolCallDeltas, render_messages, render_tools
from outcrop.errors import Invalid, ModelError, ModelNotReady
from outcrop.types import ChatRequest


class LlamaCppEngine(Engine):
    name = "llamacpp"
    can_chat = True

    def load(self) -> None:
        xlc = require("xllamacpp", "local")
        if not self.context.model_path:
            raise ModelNotReady(f"model {self.spec.model_id} has no GGUF path")
        params = xlc.CommonParams()
        params.model.path = self.context.model_path
        params.n_parallel = self.context.slots
        params.n_ctx = self.context.context_size
        params.cpuparams.n_threads = self.context.threads
        params.cpuparams_batch.n_threads = self.context.threads
        params.use_jinja = True  # render messages and tools through the model's own chat template
        mmproj = self.spec.options.get("mmproj")
        if mmproj:  # a vision model's projector: image content blocks then reach the model as image_url parts
            params.mmproj.path = str(mmproj)
        params.verbosity = -1
        # The server core also listens on a loopback port (used here for tokenize/apply-template);
        # a random key keeps every other local process out of it.
        self._key = secrets.token_urlsafe(24)
        params.api_keys = [self._key]
        try:
            self._server = xlc.Server(params)
        except Exception as exc:
            raise ModelNotReady(f"model {self.spec.model_id} failed to load: {exc}") from exc
        import httpx

        self._http = httpx.Client(
            base_url=self._server.listening_address,
            headers={"Authorization": f"Bearer {self._key}"},
            timeout=60,
        )

    def close(self) -> None:
        http = getattr(self, "_http", None)
        if http is not None:
            http.close()
        self._server = None

    def generate(self, request: ChatRequest, emit: Emit) -> None:
        body = self._body(request)
        state = _StreamState(emit)
        if request.prompt is not None:
            self._server.handle_completions(body, state.on_completion_chunk)
        else:
            self._server.handle_chat_completions(body, state.on_chat_chunk)
        if state.cancelled and not state.input_tokens:
            state.input_tokens = self.count_tokens(request)
        state.finish()

    def count_tokens(self, request: ChatRequest) -> int:
        prompt = request.prompt
        if prompt is None:
            reply = self._http.post("/apply-template", json=self._chat_fields(request))
            _check(reply.status_code, reply.text)
            prompt = reply.json()["prompt"]
        reply = self._http.post("/tokenize", json={"content": prompt, "add_special": True})
        _check(reply.status_code, reply.text)
        return len(reply.json()["tokens"])

    # --- request building -------------------------------------------------------------------

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        cfg = request.config
        body: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
        if request.prompt is not None:
            body["prompt"] = request.prompt
        else:
            body.update(self._chat_fields(request))
        body["max_tokens"] = cfg.max_tokens if cfg.max_tokens is not None else -1
        for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"), ("seed", "seed")):
            value = getattr(cfg, ours)
            if value is not None:
                body[theirs] = value
        schema = request.json_schema or _tool_choice_schema(request)
        if schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"schema": schema}}
        elif request.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    def _chat_fields(self, request: ChatRequest) -> dict[str, Any]:
        nudge = ""
        if request.tools and request.tool_choice.mode in ("any", "tool"):
            nudge = f"You must answer by calling {request.tool_choice.name or 'one of the tools'}."
        fields: dict[str, Any] = {"messages": render_messages(request, nudge)}
        if request.tools and request.tool_choice.mode != "none":
            fields["tools"] = render_tools(request)
        return fields


def _tool_choice_schema(request: ChatRequest) -> dict[str, Any] | None:
    """For toolChoice any/tool, constrain decoding to a well-formed call of an allowed tool."""
    if not request.tools or request.tool_choice.mode not in ("any", "tool"):
        return None
    tools = [t for t in request.tools if request.tool_choice.mode == "any" or t.name == request.tool_choice.name]
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.input_schema or {"type": "object"}},
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


class _StreamState:
    """Turns llama.cpp's OpenAI-style chunks into engine events."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.finish_reason = "stop"
        self.input_tokens = 0
        self.output_tokens = 0
        self.calls = ToolCallDeltas()
        self.error: str | None = None
        self.cancelled = False
        self.chunks = 0

    def on_chat_chunk(self, chunk: dict[str, Any]) -> bool:
        if self._error(chunk):
            return True
        self._usage(chunk)
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.chunks += 1
                if self.emit(EngineText(delta["content"])):
                    return self._cancel()
            self.calls.add(delta)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return False

    def on_completion_chunk(self, chunk: dict[str, Any]) -> bool:
        if self._error(chunk):
            return True
        self._usage(chunk)
        for choice in chunk.get("choices") or []:
            if choice.get("text"):
                self.chunks += 1
                if self.emit(EngineText(choice["text"])):
                    return self._cancel()
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return False

    def _cancel(self) -> bool:
        self.cancelled = True
        self.output_tokens = max(self.output_tokens, self.chunks)  # llama.cpp streams one token a chunk
        return True

    def finish(self) -> None:
        if self.error is not None:
            raise self._exception()
        for call in self.calls.events():
            self.emit(call)
        self.emit(EngineDone(self.finish_reason, self.input_tokens, self.output_tokens))

    def _usage(self, chunk: dict[str, Any]) -> None:
        usage = chunk.get("usage")
        if usage:
            self.input_tokens = usage.get("prompt_tokens", self.input_tokens)
            self.output_tokens = usage.get("completion_tokens", self.output_tokens)
        timings = chunk.get("timings")
        if timings and not usage:
            self.input_tokens = timings.get("prompt_n", 0) + timings.get("cache_n", 0)
            self.output_tokens = timings.get("predicted_n", self.output_tokens)

    def _error(self, chunk: dict[str, Any]) -> bool:
        error = chunk.get("error")
        if error is None and "code" in chunk and "message" in chunk and "choices" not in chunk:
            error = chunk
        if error is None:
            return False
        self.error = str(error.get("message", error)) if isinstance(error, dict) else str(error)
        self.error_code = error.get("code", 500) if isinstance(error, dict) else 500
        return True

    def _exception(self) -> Exception:
        message = self.error or "unknown engine error"
        if getattr(self, "error_code", 500) == 400:
            if "context" in message.lower() and "exceed" in message.lower():
                return Invalid(f"Input is too long for the model: {message}")
            return Invalid(message)
        return ModelError(message)


def _check(status: int, text: str) -> None:
    if status >= 400:
        raise ModelError(f"llama.cpp returned {status}: {text[:200]}")
