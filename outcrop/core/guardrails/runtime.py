"""Guardrails applied: ApplyGuardrail, and a guardrail around a model call or a model stream.

One pipeline for every surface: Converse, ConverseStream, InvokeModel (and its stream), the OpenAI routes and
RetrieveAndGenerate all call `guard_chat` / `GuardedStream`, which check the input before the model runs and
the output before it leaves, and build Bedrock's guardrail trace.

Streams: in `sync` mode text is held back and released a chunk at a time after the chunk passed (masked if
the guardrail anonymises); in `async` mode text is released at once, chunks are checked in the background,
and the stream stops with `guardrail_intervened` when a check fails — the stream itself never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from outcrop.core.governance import CallContext
from outcrop.core.guardrails.engine import Detectors, Outcome, Source, TextUnit, apply, compile_guardrail
from outcrop.core.guardrails.service import GuardrailService
from outcrop.core.inference import InferenceService
from outcrop.errors import Invalid
from outcrop.types import ChatEvent, ChatRequest, ChatResponse, Finished, Message, TextBlock, TextDelta, Usage

Trace = Literal["enabled", "disabled", "enabled_full"]
STREAM_CHUNK = 400  # characters checked at a time in a stream (cut at the last sentence or word end)
_CUT = re.compile(r"[.!?\n]\s|\s")


@dataclass(frozen=True)
class GuardConfig:
    """guardrailConfig of a call: which guardrail, whether to trace, and how to treat a stream."""

    identifier: str
    version: str
    trace: Trace = "disabled"
    stream_mode: Literal["sync", "async"] = "sync"

    @classmethod
    def parse(cls, raw: Any, where: str = "guardrailConfig") -> GuardConfig | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise Invalid(f"{where} must be an object")
        identifier = raw.get("guardrailIdentifier", raw.get("guardrailId"))
        version = raw.get("guardrailVersion")
        if not isinstance(identifier, str) or not identifier or not isinstance(version, str) or not version:
            raise Invalid(f"{where} needs guardrailIdentifier and guardrailVersion")
        trace = str(raw.get("trace") or "disabled").lower()
        mode = raw.get("streamProcessingMode") or "sync"
        if trace not in ("enabled", "disabled", "enabled_full") or mode not in ("sync", "async"):
            raise Invalid(f"{where}.trace must be enabled, disabled or enabled_full; "
                          "streamProcessingMode sync or async")
        return cls(identifier, version, trace, mode)  # type: ignore[arg-type]


@dataclass
class Guarded:
    """The guarded input of a model call: the units checked, and the text blocks masking rewrites."""

    units: list[TextUnit]
    blocks: list[TextBlock | None] = field(default_factory=list)  # parallel to the guarded units

    @classmethod
    def of_messages(cls, messages: Sequence[Message], extra: Sequence[TextUnit] = ()) -> Guarded:
        """Every text block of the conversation, unless `extra` (guardContent) selects what to guard."""
        if any(u.guarded for u in extra):
            return cls(list(extra), [None] * len(extra))
        blocks = [b for m in messages for b in m.content if isinstance(b, TextBlock) and b.text]
        return cls([TextUnit(b.text) for b in blocks] + list(extra), [*blocks, *([None] * len(extra))])

    @property
    def grounding(self) -> list[TextUnit]:
        return [u for u in self.units if not u.guarded]


class Guardrails:
    def __init__(self, service: GuardrailService, detectors: Detectors, inference: InferenceService) -> None:
        self.service = service
        self.detectors = detectors
        self.inference = inference
        service._compile = lambda document: compile_guardrail(document, detectors)

    async def apply(self, ctx: CallContext, identifier: str, version: str, source: Source,
                    units: Sequence[TextUnit], full: bool = False) -> tuple[str, str, Outcome]:
        compiled = await asyncio.to_thread(self.service.compiled, ctx, identifier, version)
        guardrail_id, version, state = compiled
        outcome = await asyncio.to_thread(apply, state, self.detectors, source, units, full)
        outcome.assessment["appliedGuardrailDetails"] = {
            "guardrailId": guardrail_id, "guardrailVersion": version,
            "guardrailArn": self.service.arn(ctx.caller.account_id if ctx.caller else "000000000000", guardrail_id),
            "guardrailOrigin": ["REQUEST"], "guardrailOwnership": "SELF"}
        return guardrail_id, version, outcome

    async def guard_chat(self, ctx: CallContext, chat: ChatRequest, guard: GuardConfig,
                         guarded: Guarded) -> ChatResponse:
        trace = _Trace(guard)
        gid, _, checked = await self.apply(ctx, guard.identifier, guard.version, "INPUT", guarded.units, trace.full)
        trace.input(gid, checked)
        if checked.blocked:
            return ChatResponse([TextBlock(checked.outputs[0])], "guardrail_intervened", Usage(), 0, trace.render())
        if checked.masked:
            _rewrite(guarded, checked)
        response = await self.inference.chat(ctx, chat)
        answer = response.text
        if not answer:
            response.trace = trace.render()
            return response
        units = [TextUnit(answer), *guarded.grounding]
        _, _, out = await self.apply(ctx, guard.identifier, guard.version, "OUTPUT", units, trace.full)
        trace.output(gid, out, answer)
        if out.intervened:
            response.content = [TextBlock(out.outputs[0])] + [b for b in response.content
                                                              if not isinstance(b, TextBlock)]
            response.stop_reason = "guardrail_intervened"
        response.trace = trace.render()
        return response

    def guard_stream(self, ctx: CallContext, chat: ChatRequest, guard: GuardConfig,
                     guarded: Guarded) -> AsyncIterator[ChatEvent]:
        return GuardedStream(self, ctx, chat, guard, guarded).events()


class _Trace:
    def __init__(self, guard: GuardConfig) -> None:
        self.guard = guard
        self.full = guard.trace == "enabled_full"
        self.assessments: dict[str, Any] = {}
        self.outputs: dict[str, list[dict[str, Any]]] = {}
        self.model_output: list[str] = []
        self.reason = "No action."

    def input(self, gid: str, outcome: Outcome) -> None:
        self.assessments[gid] = outcome.assessment
        if outcome.intervened:
            self.reason = outcome.action_reason

    def output(self, gid: str, outcome: Outcome, original: str) -> None:
        self.outputs.setdefault(gid, []).append(outcome.assessment)
        if outcome.intervened:
            self.model_output.append(original)
            self.reason = outcome.action_reason

    def render(self) -> dict[str, Any] | None:
        if self.guard.trace == "disabled":
            return None
        guardrail: dict[str, Any] = {"inputAssessment": self.assessments, "actionReason": self.reason}
        if self.outputs:
            guardrail["outputAssessments"] = self.outputs
        if self.model_output:
            guardrail["modelOutput"] = self.model_output
        return {"guardrail": guardrail}


def _rewrite(guarded: Guarded, outcome: Outcome) -> None:
    """Put the masked texts back into the request, so anonymised input never reaches the model."""
    targets = [b for u, b in zip(guarded.units, guarded.blocks, strict=True) if u.guarded]
    for block, text in zip(targets, outcome.outputs, strict=True):
        if block is not None:
            block.text = text


class GuardedStream:
    def __init__(self, guardrails: Guardrails, ctx: CallContext, chat: ChatRequest, guard: GuardConfig,
                 guarded: Guarded) -> None:
        self.g = guardrails
        self.ctx = ctx
        self.chat = chat
        self.guard = guard
        self.guarded = guarded
        self.trace = _Trace(guard)
        self.gid = ""

    async def _check(self, text: str) -> Outcome:
        units = [TextUnit(text), *self.guarded.grounding]
        _, _, outcome = await self.g.apply(self.ctx, self.guard.identifier, self.guard.version, "OUTPUT", units,
                                           self.trace.full)
        self.trace.output(self.gid, outcome, text)
        return outcome

    async def events(self) -> AsyncIterator[ChatEvent]:
        self.gid, _, checked = await self.g.apply(self.ctx, self.guard.identifier, self.guard.version, "INPUT",
                                                  self.guarded.units, self.trace.full)
        self.trace.input(self.gid, checked)
        if checked.blocked:
            yield TextDelta(checked.outputs[0])
            yield Finished("guardrail_intervened", Usage(), trace=self.trace.render())
            return
        if checked.masked:
            _rewrite(self.guarded, checked)
        stream = self.g.inference.chat_stream(self.ctx, self.chat)
        try:
            if self.guard.stream_mode == "sync":
                async for event in self._sync(stream):
                    yield event
            else:
                async for event in self._async(stream):
                    yield event
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    async def _sync(self, stream: AsyncIterator[ChatEvent]) -> AsyncIterator[ChatEvent]:
        held = ""
        async for event in stream:
            if isinstance(event, TextDelta):
                held += event.text
                if len(held) < STREAM_CHUNK:
                    continue
                cut = _cut(held)
                ready, held = held[:cut], held[cut:]
                outcome = await self._check(ready)
                if outcome.blocked:
                    yield TextDelta(outcome.outputs[0])
                    yield Finished("guardrail_intervened", Usage(), trace=self.trace.render())
                    return
                yield TextDelta(outcome.outputs[0] if outcome.masked else ready)
            elif isinstance(event, Finished):
                stop = event.stop_reason
                if held:
                    outcome = await self._check(held)
                    yield TextDelta(outcome.outputs[0] if outcome.intervened else held)
                    stop = "guardrail_intervened" if outcome.intervened else stop
                event.stop_reason, event.trace = stop, self.trace.render()
                yield event
            else:
                yield event

    async def _async(self, stream: AsyncIterator[ChatEvent]) -> AsyncIterator[ChatEvent]:
        held = ""
        checks: list[asyncio.Task[Outcome]] = []
        try:
            async for event in stream:
                if any(t.done() and t.result().blocked for t in checks):
                    yield Finished("guardrail_intervened", Usage(), trace=self.trace.render())
                    return
                if isinstance(event, TextDelta):
                    yield event  # released at once; the check runs beside the stream
                    held += event.text
                    if len(held) >= STREAM_CHUNK:
                        cut = _cut(held)
                        checks.append(asyncio.create_task(self._check(held[:cut])))
                        held = held[cut:]
                elif isinstance(event, Finished):
                    if held:
                        checks.append(asyncio.create_task(self._check(held)))
                    outcomes = await asyncio.gather(*checks)
                    if any(o.blocked for o in outcomes):
                        event.stop_reason = "guardrail_intervened"
                    event.trace = self.trace.render()
                    yield event
                else:
                    yield event
        finally:
            for task in checks:
                task.cancel()


def _cut(text: str) -> int:
    """Where to split held text: after the last sentence end, else the last space, else everywhere."""
    ends = [m.end() for m in _CUT.finditer(text)]
    return ends[-1] if ends else len(text)
