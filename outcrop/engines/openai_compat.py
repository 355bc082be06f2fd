"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, TGI) as a model, over pooled connections."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from outcrop.engines.base import Engine, EngineDone, EngineEvent, EngineText
from outcrop.engines.openai_format import ToolCallDeltas, render_messages, render_tools
from outcrop.errors import Invalid, ModelError, ModelNotReady, ModelTimeout, NotFound, Throttled, Unavailable
from outcrop.types import ChatRequest, EmbeddingResult


@contextlib.contextmanager
def upstream_errors(model_id: str) -> Iterator[None]:
    """The one place where the upstream's transport and HTTP errors become domain errors."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ModelTimeout(f"upstream for {model_id} timed out") from exc
    except httpx.TransportError as exc:
        raise Unavailable(f"upstream for {model_id} is unreachable: {exc}") from exc


def _raise_for_status(model_id: str, status: int, text: str) -> None:
    if status < 400:
        return
    detail = text[:500]
    if status == 429:
        raise Throttled(f"upstream for {model_id} is rate limiting: {detail}")
    if status == 404:
        raise NotFound(f"upstream for {model_id} does not know the model: {detail}")
    if status in (400, 413, 422):
        raise Invalid(f"upstream rejected the request: {detail}")
    if status in (502, 503, 504):
        raise ModelNotReady(f"upstream for {model_id} is not ready ({status}): {detail}")
    raise ModelError(f"upstream for {model_id} failed ({status}): {detail}", original_status=status)


class OpenAICompatibleEngine(Engine):
    name = "openai-compatible"
    can_chat = True
    can_embed = True

    def load(self) -> None:
        if not self.spec.base_url:
            raise ModelNotReady(f"model {self.spec.model_id} has no base_url")
        headers = {"Authorization": f"Bearer {self.spec.api_key}"} if self.spec.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.spec.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(float(self.spec.options.get("timeout", 600)), connect=10.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )
        self._remote = self.spec.remote_model or self.spec.model_id

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            with contextlib.suppress(RuntimeError):
                import asyncio

                asyncio.get_event_loop().create_task(client.aclose())

    async def stream(self, request: ChatRequest, cancel: threading.Event | None = None) -> AsyncIterator[EngineEvent]:
        body = self._body(request)
        path = "/completions" if request.prompt is not None else "/chat/completions"
        finish, usage = "stop", {"prompt_tokens": 0, "completion_tokens": 0}
        calls = ToolCallDeltas()
        with upstream_errors(self.spec.model_id):
            async with self._client.stream("POST", path, json=body) as reply:
                if reply.status_code >= 400:
                    _raise_for_status(self.spec.model_id, reply.status_code, (await reply.aread()).decode(errors="replace"))
                async for line in reply.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or choice.get("text")
                        if text:
                            yield EngineText(text)
                        calls.add(choice.get("delta") or {})
                        finish = choice.get("finish_reason") or finish
                    if cancel is not None and cancel.is_set():
                        break
        for call in calls.events():
            yield call
        yield EngineDone(finish, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))

    async def aembed(self, texts: list[str], dimensions: int | None, normalize: bool) -> EmbeddingResult:
        body: dict[str, Any] = {"model": self._remote, "input": texts}
        if dimensions is not None:
            body["dimensions"] = dimensions
        with upstream_errors(self.spec.model_id):
            reply = await self._client.post("/embeddings", json=body)
        _raise_for_status(self.spec.model_id, reply.status_code, reply.text)
        data = reply.json()
        vectors = [item["embedding"] for item in sorted(data["data"], key=lambda d: d.get("index", 0))]
        return EmbeddingResult(vectors=vectors, input_tokens=(data.get("usage") or {}).get("prompt_tokens", 0))

    async def acount_tokens(self, request: ChatRequest) -> int:
        # OpenAI-compatible servers have no common tokenize route: ask for zero new tokens and read usage.
        body = self._body(request) | {"stream": False, "max_tokens": 1}
        body.pop("stream_options", None)
        path = "/completions" if request.prompt is not None else "/chat/completions"
        with upstream_errors(self.spec.model_id):
            reply = await self._client.post(path, json=body)
        _raise_for_status(self.spec.model_id, reply.status_code, reply.text)
        return int((reply.json().get("usage") or {}).get("prompt_tokens", 0))

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        cfg = request.config
        body: dict[str, Any] = {"model": self._remote, "stream": True, "stream_options": {"include_usage": True}}
        if request.prompt is not None:
            body["prompt"] = request.prompt
        else:
            body["messages"] = render_messages(request)
            if request.tools:
                body["tools"] = render_tools(request)
                mode = request.tool_choice.mode
                body["tool_choice"] = (
                    {"type": "function", "function": {"name": request.tool_choice.name}}
                    if mode == "tool"
                    else {"any": "required"}.get(mode, mode)
                )
        for field in ("max_tokens", "temperature", "top_p", "seed"):
            value = getattr(cfg, field)
            if value is not None:
                body[field] = value
        if request.json_schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": request.json_schema}}
        elif request.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body
