"""Test doubles that register through the plugin hooks like real backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from outcrop.engines.base import Emit, Engine, EngineDone, EngineText
from outcrop.errors import ModelError
from outcrop.plugins import hookimpl
from outcrop.types import ChatRequest


class ScriptedEngine(Engine):
    """Answers with `options.words`, one per token; `options.fail_after` words in, it fails like a crashed model."""

    name = "scripted"
    can_chat = True

    def generate(self, request: ChatRequest, emit: Emit) -> None:
        words = list(self.spec.options.get("words", ["scripted", " answer"]))
        fail_after = self.spec.options.get("fail_after")
        for n, word in enumerate(words):
            if fail_after is not None and n == fail_after:
                raise ModelError("the scripted model crashed mid-answer")
            if emit(EngineText(word)):
                break
        emit(EngineDone("stop", 3, len(words)))

    def count_tokens(self, request: ChatRequest) -> int:
        return 3


class ScriptedPlugin:
    @hookimpl
    def register_engines(self, register: Callable[[type[Any]], None]) -> None:
        register(ScriptedEngine)
