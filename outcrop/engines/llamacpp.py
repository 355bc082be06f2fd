"""GGUF chat models on xllamacpp: llama.cpp's server core in-process (continuous batching over slots).

LoRA adapters (custom models) share their base model's server: each is loaded once, and a request
selects its adapter at scale 1 (all others at 0) through llama.cpp's per-request `lora` field.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from outcrop.engines.base import Emit, Engine, EngineDone, EngineText, require
from outcrop.engines.openai_format import ToolCallDeltas, render_messages, render_tools
from outcrop.errors import Invalid, ModelError, ModelNotReady
from outcrop.types import Adapter, ChatRequest

MAX_ADAPTERS = 16  # loaded at once per base model; the least recently used one goes first


class LlamaCppEngine(Engine):
    name = "llamacpp"
    can_chat = True

    def load(self) -> None:
        self._xlc = require("xllamacpp", "local")
        if not self.context.model_path:
            raise ModelNotReady(f"model {self.spec.model_id} has no GGUF path")
        self._guard = _SwapGuard()
        self._adapters: OrderedDict[str, _PinnedFile] = OrderedDict()  # least recently used first
        self._adapter_ids: dict[str, int] = {}  # key -> llama.cpp adapter id in the running server
        self._server, self._http = self._launch([])

    def _launch(self, adapters: list[str]) -> tuple[Any, Any]:
        """Start a server core on the base model with these LoRA files loaded (none applied by default)."""
        xlc = self._xlc
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
        if adapters:
            params.lora_adapters = [_lora_info(xlc, path) for path in adapters]
            params.lora_init_without_apply = True
            # The RAM prompt cache keys saved KV by tokens only, not by the LoRA it was computed under, and
            # hands it to a request for another adapter: on this build 3 of 6 A-B-A request sequences were
            # answered from the wrong adapter's KV. Each slot still reuses its own prefix, LoRA-checked.
            params.cache_ram_mib = 0
        # The server core also listens on a loopback port (used here for tokenize/apply-template);
        # a random key keeps every other local process out of it.
        key = secrets.token_urlsafe(24)
        params.api_keys = [key]
        try:
            server = xlc.Server(params)
        except Exception as exc:
            what = f" with {len(adapters)} LoRA adapter(s)" if adapters else ""
            raise ModelNotReady(f"model {self.spec.model_id} failed to load{what}: {exc}") from exc
        import httpx

        http = httpx.Client(base_url=server.listening_address, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        return server, http

    def close(self) -> None:
        http = getattr(self, "_http", None)
        if http is not None:
            http.close()
        self._server = None
        for pinned in getattr(self, "_adapters", {}).values():
            pinned.close()

    def generate(self, request: ChatRequest, emit: Emit) -> None:
        with self._serving(request.adapter) as lora:
            body = self._body(request)
            if lora is not None:
                body["lora"] = lora
            state = _StreamState(emit)
            if request.prompt is not None:
                self._server.handle_completions(body, state.on_completion_chunk)
            else:
                self._server.handle_chat_completions(body, state.on_chat_chunk)
            if state.cancelled and not state.input_tokens:
                state.input_tokens = self._count_tokens(request)
        state.finish()

    def count_tokens(self, request: ChatRequest) -> int:
        with self._guard.reading():
            return self._count_tokens(request)

    def _count_tokens(self, request: ChatRequest) -> int:
        prompt = request.prompt
        if prompt is None:
            reply = self._http.post("/apply-template", json=self._chat_fields(request))
            _check(reply.status_code, reply.text)
            prompt = reply.json()["prompt"]
        reply = self._http.post("/tokenize", json={"content": prompt, "add_special": True})
        _check(reply.status_code, reply.text)
        return len(reply.json()["tokens"])

    # --- adapters ---------------------------------------------------------------------------

    def preload(self, adapter: Adapter) -> None:
        """Load `adapter` now (provisioned throughput), so that no request waits for the server core's restart."""
        with self._serving(adapter):
            pass

    @contextmanager
    def _serving(self, adapter: Adapter | None) -> Iterator[list[dict[str, Any]] | None]:
        """Hold the server for one generation, first loading `adapter` if it is new; yields the `lora` field."""
        while True:
            with self._guard.reading():
                if adapter is None or adapter.key in self._adapter_ids:
                    yield self._lora_field(adapter)
                    return
            self._add(adapter)  # then look again: another swap may have come in between

    def _lora_field(self, adapter: Adapter | None) -> list[dict[str, Any]] | None:
        if not self._adapter_ids:
            return None
        if adapter is not None:
            with self._guard.bookkeeping:
                self._adapters.move_to_end(adapter.key)
        # Always every adapter, explicitly: llama.cpp compares a request's list with the slot's last one
        # to know when cached KV is stale, and skips that check for a request with no (or an empty) list.
        wanted = adapter.key if adapter is not None else None
        return [{"id": i, "scale": 1.0 if key == wanted else 0.0} for key, i in self._adapter_ids.items()]

    def _add(self, adapter: Adapter) -> None:
        """Restart the server core with `adapter` added, once in-flight generations are done."""
        with self._guard.writing():
            if adapter.key in self._adapter_ids:
                return
            pinned = _PinnedFile(adapter, self.spec.model_id)
            kept = list(self._adapters.items())[-(MAX_ADAPTERS - 1):]
            loaded = OrderedDict([*kept, (adapter.key, pinned)])
            try:
                # The new core starts beside the idle old one, which keeps serving if this fails. The
                # weights are mmapped (shared pages); the overlap costs one KV cache for a moment.
                server, http = self._launch([p.path for p in loaded.values()])
            except ModelNotReady as exc:
                pinned.close()
                raise ModelNotReady(f"adapter {adapter.key} could not be loaded on {self.spec.model_id}: "
                                    f"{exc.message}") from exc
            self._http.close()
            self._server, self._http = server, http
            for key, old in self._adapters.items():
                if key not in loaded:
                    old.close()
            self._adapters = loaded
            self._adapter_ids = {key: i for i, key in enumerate(loaded)}

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


def _lora_info(xlc: Any, path: str) -> Any:
    info = xlc.CommonAdapterLoraInfo()
    info.path = path
    info.scale = 0.0  # what a request without a `lora` field gets: the base model alone
    return info


class _PinnedFile:
    """The engine's own in-memory copy of an adapter file: every restart re-reads all adapters, and the
    caller's file (a decrypted memfd, say) may be gone by then. Where memfd_create is missing, the
    caller's path is used as is and must outlive the adapter's use."""

    def __init__(self, adapter: Adapter, model_id: str) -> None:
        self._fd: int | None = None
        self.path = adapter.path
        if not hasattr(os, "memfd_create"):
            if not os.path.isfile(adapter.path):
                raise ModelNotReady(f"adapter {adapter.key} for {model_id}: no file at {adapter.path}")
            return
        try:
            with open(adapter.path, "rb") as source:
                data = source.read()
        except OSError as exc:
            raise ModelNotReady(f"adapter {adapter.key} for {model_id} cannot be read: {exc}") from exc
        self._fd = os.memfd_create("outcrop-lora", os.MFD_CLOEXEC)
        with open(self._fd, "wb", closefd=False) as copy:
            copy.write(data)
        self.path = f"/proc/self/fd/{self._fd}"  # llama.cpp opens it by name (checked on this build)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _SwapGuard:
    """Readers/writer guard: generations run together; a server swap waits for them and holds back new ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting = 0
        self.bookkeeping = threading.Lock()  # the LRU order, touched by concurrent readers

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
