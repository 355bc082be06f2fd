"""What a model backend implements. Engines register through the `register_engines` plugin hook."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from outcrop.errors import ModelError, OutcropError
from outcrop.types import ChatRequest, EmbeddingResult, ModelSpec, ToolUseBlock


@dataclass
class EngineText:
    text: str


@dataclass
class EngineToolCall:
    """A tool call the engine itself parsed (most local models only emit text, parsed by the core)."""

    block: ToolUseBlock


@dataclass
class EngineDone:
    finish_reason: str  # "stop" | "length" | "tool_calls"
    input_tokens: int
    output_tokens: int


EngineEvent = EngineText | EngineToolCall | EngineDone
Emit = Callable[[EngineEvent], bool]  # returns True to ask the engine to stop generating


@dataclass
class EngineContext:
    """What an engine may need besides its spec: resolved paths and tuning from Settings."""

    model_path: str | None
    threads: int
    slots: int
    context_size: int


class Engine:
    """A loaded model. Subclasses set the capability flags and implement what they can do."""

    name: ClassVar[str]
    can_chat: ClassVar[bool] = False
    can_embed: ClassVar[bool] = False

    def __init__(self, spec: ModelSpec, context: EngineContext) -> None:
        self.spec = spec
        self.context = context

    def load(self) -> None:
        """Blocking: load weights. Called once, from a worker thread."""

    def close(self) -> None:
        """Release the model."""

    def generate(self, request: ChatRequest, emit: Emit) -> None:
        """Blocking generation; calls `emit` per event and ends with EngineDone."""
        raise ModelError(f"model {self.spec.model_id} cannot generate text")

    async def stream(self, request: ChatRequest, cancel: threading.Event | None = None) -> AsyncIterator[EngineEvent]:
        """Async view of `generate`: runs it in a worker thread and relays its events.

        Setting `cancel` (or breaking out of the iteration) asks the engine to stop at its next token;
        it still ends with EngineDone, so usage is known.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[EngineEvent | BaseException | None] = asyncio.Queue()
        cancelled = cancel or threading.Event()

        def emit(event: EngineEvent) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, event)
            return cancelled.is_set()

        def run() -> None:
            try:
                self.generate(request, emit)
            except BaseException as exc:  # relayed to the consumer, who re-raises it
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = loop.run_in_executor(None, run)
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()
            await asyncio.shield(worker)

    async def collect(self, request: ChatRequest, cancel: threading.Event) -> list[EngineEvent]:
        """The whole answer's events. Thread-based engines generate without waking the event loop per
        token, and stop early on the request's stop sequences."""
        if type(self).generate is Engine.generate:  # an async-native engine
            return [event async for event in self.stream(request, cancel)]
        stops = request.config.stop
        longest = max((len(s) for s in stops), default=0)

        def run() -> list[EngineEvent]:
            events: list[EngineEvent] = []
            text = ""

            def emit(event: EngineEvent) -> bool:
                nonlocal text
                events.append(event)
                if stops and isinstance(event, EngineText):
                    text = (text + event.text)[-(longest + len(event.text)):]
                    if any(s in text for s in stops):
                        cancel.set()
                return cancel.is_set()

            self.generate(request, emit)
            return events

        return await asyncio.to_thread(run)

    def embed(self, texts: list[str], dimensions: int | None, normalize: bool) -> EmbeddingResult:
        raise ModelError(f"model {self.spec.model_id} cannot embed text")

    async def aembed(self, texts: list[str], dimensions: int | None, normalize: bool) -> EmbeddingResult:
        return await asyncio.to_thread(self.embed, texts, dimensions, normalize)

    def count_tokens(self, request: ChatRequest) -> int:
        raise ModelError(f"model {self.spec.model_id} cannot count tokens")

    async def acount_tokens(self, request: ChatRequest) -> int:
        return await asyncio.to_thread(self.count_tokens, request)


EngineFactory = type[Engine]


def require(module: str, extra: str) -> Any:
    """Import an optional heavy dependency, or fail naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise OutcropError(f"{module} is not installed; install it with: pip install 'outcrop[{extra}]'") from exc
