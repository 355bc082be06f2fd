"""Inference: resolve the model, load its engine once, generate, parse tool calls, apply stop sequences."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol
from urllib.parse import unquote

from outcrop import modelpacks
from outcrop.core.access import STREAM_ACTION, AccessService, model_arn
from outcrop.core.catalog import PRIVATE_ARN, SMOLLM2_ID, Catalog, Resolved, normalize_model_id
from outcrop.core.governance import Admission, CallContext, Invocation, OpenAdmission, Recorder, UsageRecorder
from outcrop.core.tools import OutputFilter, parse_tool_calls
from outcrop.engines.base import Engine, EngineContext, EngineDone, EngineEvent, EngineText, EngineToolCall
from outcrop.errors import Invalid, ModelError, ModelNotReady, NotFound, OutcropError
from outcrop.settings import Settings
from outcrop.types import (
    ChatEvent,
    ChatRequest,
    ChatResponse,
    ContentBlock,
    EmbeddingRequest,
    EmbeddingResult,
    Finished,
    ImageBlock,
    ModelSpec,
    StopReason,
    TextBlock,
    TextDelta,
    ToolCall,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)

log = logging.getLogger("outcrop.inference")


class ModelPool:
    """Loads each model once, lazily, and shares the engine between all requests."""

    def __init__(self, settings: Settings, engine_classes: dict[str, type[Engine]]) -> None:
        self.settings = settings
        self.engine_classes = engine_classes
        self.engines: dict[str, Engine] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.fallbacks: dict[str, str] = {}

    async def get(self, spec: ModelSpec, catalog: Catalog) -> Engine:
        engine = self.engines.get(spec.model_id)
        if engine is not None:
            return engine
        return await asyncio.to_thread(self.get_blocking, spec, catalog)

    def get_blocking(self, spec: ModelSpec, catalog: Catalog) -> Engine:
        """The engine, loaded once even when requests and background jobs ask for it at the same time."""
        engine = self.engines.get(spec.model_id)
        if engine is not None:
            return engine
        with self._guard:
            lock = self._locks.setdefault(spec.model_id, threading.Lock())
        with lock:
            if spec.model_id not in self.engines:
                self.engines[spec.model_id] = self.load(spec, catalog)
            return self.engines[spec.model_id]

    def load(self, spec: ModelSpec, catalog: Catalog) -> Engine:
        cls = self.engine_classes.get(spec.engine)
        if cls is None:
            raise ModelNotReady(f"model {spec.model_id} needs engine {spec.engine!r}, which is not installed")
        try:
            path = self.model_path(spec)
        except ModelNotReady:
            fallback = self._fallback(spec, catalog)
            if fallback is None:
                raise
            return self.load(fallback, catalog)
        context = EngineContext(
            model_path=path,
            threads=self.settings.effective_threads,
            slots=self.settings.slots,
            context_size=self.settings.context_size,
        )
        engine = cls(spec, context)
        started = time.perf_counter()
        engine.load()
        log.info("loaded %s (%s) in %.2fs", spec.model_id, spec.engine, time.perf_counter() - started)
        return engine

    def model_path(self, spec: ModelSpec) -> str | None:
        if spec.pack:
            return str(modelpacks.pack_path(modelpacks.PACKS[spec.pack], self.settings.model_cache))
        return spec.path

    def _fallback(self, spec: ModelSpec, catalog: Catalog) -> ModelSpec | None:
        # DESIGN.md §3: if the default chat pack is missing, serve SmolLM2 — loudly, never a fake.
        if spec.model_id != self.settings.default_chat_model or spec.model_id == SMOLLM2_ID:
            return None
        fallback = catalog.models.get(SMOLLM2_ID)
        if fallback is None:
            return None
        log.warning("!!! default chat model %s is unavailable; FALLING BACK to %s", spec.model_id, SMOLLM2_ID)
        self.fallbacks[spec.model_id] = SMOLLM2_ID
        return fallback

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
        self.engines.clear()


class PrivateModels(Protocol):
    """An account's own models: custom (a LoRA on a catalog base) and imported ones."""

    def resolve(self, account_id: str, model_id: str) -> Resolved: ...


class InferenceService:
    def __init__(self, settings: Settings, catalog: Catalog, pool: ModelPool, recorder: Recorder | None = None,
                 access: AccessService | None = None, admission: Admission | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.pool = pool
        self.recorder: Recorder = recorder or UsageRecorder()
        self.admission: Admission = admission or OpenAdmission()
        self.access = access or AccessService(lambda account, principal: [])
        self.private: PrivateModels | None = None  # custom and imported models (outcrop.core.customization)

    def resolve(self, model_id: str, account_id: str | None = None) -> Resolved:
        """The model that answers an ID: the catalog's, or (for an account) one of its private models —
        named by ARN, or by name when the catalog has no such model."""
        if self.private is not None and account_id is not None:
            if PRIVATE_ARN.match(unquote(model_id)):
                return self.private.resolve(account_id, unquote(model_id))
            try:
                return self.catalog.resolve(model_id)
            except NotFound:
                return self.private.resolve(account_id, model_id)
        return self.catalog.resolve(model_id)

    def resolve_for(self, ctx: CallContext, model_id: str) -> Resolved:
        return self.resolve(model_id, ctx.caller.account_id if ctx.caller else None)

    def foundation_models(self, ctx: CallContext) -> list[tuple[str, str, str, ModelSpec]]:
        """The catalog listing, for a caller allowed to list it."""
        self.access.require(ctx)
        return self.catalog.foundation_models()

    def foundation_model(self, ctx: CallContext, model_id: str) -> Resolved:
        self.access.require(ctx, model_arn(self.settings.region, normalize_model_id(model_id)))
        return self.resolve(model_id)

    async def chat(self, ctx: CallContext, request: ChatRequest) -> ChatResponse:
        started = time.perf_counter()
        text: list[str] = []
        calls: list[ToolUseBlock] = []
        finished: Finished | None = None
        async for event in self._recorded_stream(ctx, request, live=False):
            if isinstance(event, TextDelta):
                text.append(event.text)
            elif isinstance(event, ToolCall):
                calls.append(event.block)
            else:
                finished = event
        assert finished is not None
        content: list[ContentBlock] = []
        if "".join(text) or not calls:
            content.append(TextBlock("".join(text)))
        content.extend(calls)
        latency = int((time.perf_counter() - started) * 1000)
        return ChatResponse(content, finished.stop_reason, finished.usage, latency)

    def chat_stream(self, ctx: CallContext, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        """Generate token by token, reporting the invocation to the governance hook once it ends (or fails)."""
        return self._recorded_stream(ctx, request, live=True)

    async def _recorded_stream(self, ctx: CallContext, request: ChatRequest, live: bool) -> AsyncIterator[ChatEvent]:
        with self._recorded(ctx, request.model_id, STREAM_ACTION if live else None, request, live) as record:
            text: list[str] = []
            async for event in self._generate(request, record, live):
                if isinstance(event, TextDelta):
                    text.append(event.text)
                elif isinstance(event, Finished):
                    record.input_tokens, record.output_tokens = event.usage.input_tokens, event.usage.output_tokens
                    record.first_token_ms = event.first_token_ms
                    record.response = "".join(text)
                yield event

    async def _generate(self, request: ChatRequest, record: Invocation, live: bool) -> AsyncIterator[ChatEvent]:
        resolved = record.resolved or self.resolve_for(record.context, request.model_id)
        record.served_by = resolved.spec.model_id
        spec = resolved.spec
        if resolved.adapter is not None:
            request.adapter = resolved.adapter
        self._validate_chat(request, spec)
        engine = await self.pool.get(spec, self.catalog)
        if request.config.max_tokens is None:
            request.config.max_tokens = self.settings.max_output_tokens
        started = time.perf_counter()
        first_token: float | None = None
        out = OutputFilter(stop=list(request.config.stop), hold_tools=bool(request.tools))
        engine_calls: list[ToolUseBlock] = []
        done: EngineDone | None = None
        cancel = threading.Event()
        # A whole answer (live=False) is collected in the engine's own thread: no event-loop wake-up per
        # token, which on a machine whose cores all run the model costs measurable throughput.
        stream = engine.stream(request, cancel) if live else _replay(await engine.collect(request, cancel))
        try:
            async for event in stream:
                if isinstance(event, EngineText):
                    if first_token is None:
                        first_token = time.perf_counter()
                    released = out.feed(event.text)
                    if released:
                        yield TextDelta(released)
                    if out.stopped:
                        cancel.set()  # keep draining: the engine still reports usage
                elif isinstance(event, EngineToolCall):
                    engine_calls.append(event.block)
                else:
                    done = event
        except OutcropError:
            raise
        except Exception as exc:  # an engine bug must not surface as a bare 500
            raise ModelError(f"model {spec.model_id} failed: {exc}") from exc
        finally:
            await _aclose(stream)
        held = out.flush()
        calls = list(engine_calls)
        if held and request.tools and not out.stopped:
            held, parsed = parse_tool_calls(held, request.tools)
            calls.extend(parsed)
            if parsed and out.released.strip() and held:
                held = "\n" + held
        if held and not (out.stopped and not out.holding):
            yield TextDelta(held)
        for block in calls:
            yield ToolCall(block)
        usage = Usage(done.input_tokens, done.output_tokens) if done else Usage()
        ttft = (first_token - started) * 1000 if first_token else None
        yield Finished(_stop_reason(out.stopped, calls, done), usage, ttft)

    def _validate_chat(self, request: ChatRequest, spec: ModelSpec) -> None:
        if spec.kind != "chat":
            raise Invalid(f"Model {request.model_id} is an embedding model; it cannot generate text.")
        if request.tools and not spec.supports_tools:
            raise Invalid(f"This model doesn't support tool use: {request.model_id}.")
        if request.tool_choice.mode == "tool" and request.tool_choice.name not in {t.name for t in request.tools}:
            raise Invalid(f"toolChoice names tool {request.tool_choice.name!r}, which is not in toolConfig.tools")
        if "IMAGE" not in spec.input_modalities and _has_images(request):
            raise Invalid(f"This model doesn't support image input: {request.model_id}. Use a vision model.")
        if request.prompt is None and not request.messages:
            raise Invalid("messages must contain at least one message")
        if request.messages and request.messages[0].role != "user":
            raise Invalid("A conversation must start with a user message. Try again with a conversation that starts with a user message.")
        for message in request.messages:
            if not message.content:
                raise Invalid("A message's content must not be empty")
        if request.config.max_tokens is not None and request.config.max_tokens < 1:
            raise Invalid("maxTokens must be at least 1")
        t = request.config.temperature
        if t is not None and not 0 <= t <= 2:
            raise Invalid("temperature must be between 0 and 2")
        p = request.config.top_p
        if p is not None and not 0 <= p <= 1:
            raise Invalid("topP must be between 0 and 1")

    async def embed(self, ctx: CallContext, request: EmbeddingRequest) -> EmbeddingResult:
        with self._recorded(ctx, request.model_id, request=request, kind="embedding") as record:
            resolved = record.resolved or self.resolve_for(ctx, request.model_id)
            record.served_by = resolved.spec.model_id
            if resolved.spec.kind != "embedding":
                raise Invalid(f"Model {request.model_id} is not an embedding model.")
            if not request.texts:
                raise Invalid("at least one input text is required")
            engine = await self.pool.get(resolved.spec, self.catalog)
            result = await engine.aembed(request.texts, request.dimensions, request.normalize)
            record.input_tokens = result.input_tokens
            record.response = result
            return result

    async def count_tokens(self, ctx: CallContext, request: ChatRequest) -> int:
        with self._recorded(ctx, request.model_id, request=request, kind="count_tokens") as record:
            resolved = record.resolved or self.resolve_for(ctx, request.model_id)
            record.served_by = resolved.spec.model_id
            if resolved.spec.kind != "chat":
                raise Invalid(f"CountTokens is not supported for {request.model_id}")
            engine = await self.pool.get(resolved.spec, self.catalog)
            return await engine.acount_tokens(request)

    @contextlib.contextmanager
    def _recorded(self, ctx: CallContext, model_id: str, action: str | None = None, request: Any = None,
                  streaming: bool = False, kind: str = "chat") -> Iterator[Invocation]:
        """Authorize the call on the model as requested, admit it (quotas), then time it and report it,
        whatever the outcome."""
        record = Invocation(ctx, model_id, model_id, streaming=streaming, kind=kind, request=request)
        started = time.perf_counter()
        admitted = False
        try:
            arn = model_arn(self.settings.region, model_id)
            if self.private is not None and ctx.caller is not None and not model_id.startswith(
                    "arn:aws:bedrock:" + self.settings.region + "::foundation-model/"):
                record.resolved = self.resolve_for(ctx, model_id)
                arn = record.resolved.arn or arn
            self.access.require(ctx, arn, action)
            self.admission.admit(record)
            admitted = True
            yield record
        except BaseException as exc:
            record.error = type(exc).__name__
            raise
        finally:
            record.latency_ms = int((time.perf_counter() - started) * 1000)
            if admitted:
                self.admission.release(record)
            self.recorder.record(record)

    async def warm(self, model_id: str) -> None:
        resolved = self.resolve(model_id)
        await self.pool.get(resolved.spec, self.catalog)

    def loaded(self) -> dict[str, Any]:
        return {model_id: engine.spec.engine for model_id, engine in self.pool.engines.items()}


def _stop_reason(stopped: bool, calls: list[ToolUseBlock], done: EngineDone | None) -> StopReason:
    if calls:
        return "tool_use"
    if stopped:
        return "stop_sequence"
    if done is not None and done.finish_reason == "length":
        return "max_tokens"
    return "end_turn"


def _has_images(request: ChatRequest) -> bool:
    for message in request.messages:
        for block in message.content:
            if isinstance(block, ImageBlock):
                return True
            if isinstance(block, ToolResultBlock) and any(isinstance(b, ImageBlock) for b in block.content):
                return True
    return False


async def _replay(events: list[EngineEvent]) -> AsyncIterator[EngineEvent]:
    for event in events:
        yield event


async def _aclose(stream: Any) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
