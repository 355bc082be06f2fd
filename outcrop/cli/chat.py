"""`outcrop chat` (multi-turn, streamed, tool calls shown) and `outcrop embed`, in-process on the core."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import typer

from outcrop.cli.common import console, friendly_errors, load_settings


def _service():  # type: ignore[no-untyped-def]
    from outcrop.core.catalog import Catalog
    from outcrop.core.inference import InferenceService, ModelPool
    from outcrop.plugins import engine_classes, plugin_manager

    settings = load_settings()
    catalog = Catalog.load(settings)
    return settings, InferenceService(settings, catalog, ModelPool(settings, engine_classes(plugin_manager())))


def chat(
    model: str = typer.Option(None, "--model", "-m", help="model ID (default: the default chat model)"),
    system: str = typer.Option(None, help="system prompt"),
    tools_file: str = typer.Option(None, "--tools", help="JSON file: a list of {name, description, input_schema}"),
    max_tokens: int = typer.Option(512, help="answer length limit"),
    temperature: float = typer.Option(0.7),
) -> None:
    """Chat with a model in the terminal. Empty line or Ctrl-D ends."""
    from outcrop.core.governance import LOCAL
    from outcrop.types import ChatRequest, Finished, InferenceConfig, Message, TextBlock, TextDelta, ToolCall, ToolSpec

    settings, service = _service()
    tools = []
    if tools_file:
        tools = [ToolSpec(t["name"], t.get("description", ""), t.get("input_schema", {"type": "object"}))
                 for t in json.loads(Path(tools_file).read_text())]
    history: list[Message] = []

    async def turn(text: str) -> None:
        history.append(Message("user", [TextBlock(text)]))
        request = ChatRequest(model or settings.default_chat_model, list(history), [system] if system else [],
                              InferenceConfig(max_tokens=max_tokens, temperature=temperature), tools=tools)
        answer: list[str] = []
        async for event in service.chat_stream(LOCAL, request):
            if isinstance(event, TextDelta):
                answer.append(event.text)
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, ToolCall):
                console.print(f"\n[cyan]tool call[/cyan] {event.block.name}({json.dumps(event.block.input)})")
            elif isinstance(event, Finished):
                console.print(f"\n[dim]{event.stop_reason} · {event.usage.input_tokens} in / "
                              f"{event.usage.output_tokens} out[/dim]")
        history.append(Message("assistant", [TextBlock("".join(answer) or "(tool call)")]))

    async def loop() -> None:
        with console.status("loading model…"):
            await service.warm(model or settings.default_chat_model)
        while True:
            try:
                text = input("you> ").strip()
            except EOFError:
                break
            if not text:
                break
            await turn(text)

    with friendly_errors():
        asyncio.run(loop())


def embed(
    texts: list[str] = typer.Argument(..., help="texts to embed"),
    model: str = typer.Option(None, "--model", "-m"),
    dimensions: int = typer.Option(None, help="truncate to this many dimensions"),
) -> None:
    """Print embeddings as JSON lines."""
    from outcrop.core.governance import LOCAL
    from outcrop.types import EmbeddingRequest

    settings, service = _service()
    with friendly_errors():
        result = asyncio.run(service.embed(LOCAL, EmbeddingRequest(model or settings.default_embedding_model, texts,
                                                            dimensions)))
    for text, vector in zip(texts, result.vectors, strict=True):
        print(json.dumps({"text": text, "embedding": [round(x, 6) for x in vector]}))
