"""Tool calls in model output, and the streaming filter that holds back tool-call JSON and stop sequences.

Small local models emit tool calls as JSON text — in `<tool_call>` tags (Qwen's template), in a
```json fence, or bare — so the core parses them, whatever the engine.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from outcrop.types import ToolSpec, ToolUseBlock

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCED = re.compile(r"```(?:json|tool_call|tool_code)?\s*(.*?)\s*```", re.S)
HOLD_MARKERS = ("<tool_call>", "```", "{")


def new_tool_use_id() -> str:
    return "tooluse_" + secrets.token_urlsafe(16).replace("-", "").replace("_", "")[:22]


def parse_tool_calls(text: str, tools: list[ToolSpec]) -> tuple[str, list[ToolUseBlock]]:
    """Split model output into (remaining text, tool calls); only calls of offered tools count."""
    names = {t.name for t in tools}
    for pattern in (_TAGGED, _FENCED):
        calls: list[ToolUseBlock] = []
        spans: list[tuple[int, int]] = []
        for match in pattern.finditer(text):
            found = _calls_in(match.group(1), names)
            if found:
                calls.extend(found)
                spans.append(match.span())
        if calls:
            return _cut(text, spans), calls
    start = text.find("{")
    if start != -1:
        found = _calls_in(text[start:], names)
        if found:
            return text[:start].strip(), found
    return text, []


def _calls_in(snippet: str, names: set[str]) -> list[ToolUseBlock]:
    snippet = snippet.strip()
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos = 0
    while pos < len(snippet):
        try:
            value, end = decoder.raw_decode(snippet, pos)
        except json.JSONDecodeError:
            break
        values.extend(value if isinstance(value, list) else [value])
        pos = end
        while pos < len(snippet) and snippet[pos] in " \n\r\t,":
            pos += 1
    calls = []
    for value in values:
        call = _as_call(value, names)
        if call is None:
            return []
        calls.append(call)
    return calls


def _as_call(value: Any, names: set[str]) -> ToolUseBlock | None:
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict):  # OpenAI-shaped {"type": "function", "function": {...}}
        value = value["function"]
    name = value.get("name") or value.get("tool") or value.get("tool_name")
    if name not in names:
        return None
    arguments: Any = next((value[k] for k in ("arguments", "parameters", "input", "args") if k in value), {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            arguments = {"value": arguments}
    if not isinstance(arguments, dict):
        arguments = {"value": arguments}
    return ToolUseBlock(id=new_tool_use_id(), name=name, input=arguments)


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    kept, last = [], 0
    for start, end in spans:
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    return "".join(kept).strip()


@dataclass
class OutputFilter:
    """Decides, token by token, which generated text may be streamed now.

    It holds back (a) anything from a possible tool-call start onwards while tools are offered, and
    (b) the tail that could be the beginning of a stop sequence. `stopped` turns true once a stop
    sequence is complete; the text before it is released and the rest dropped.
    """

    stop: list[str]
    hold_tools: bool
    released: str = ""
    pending: str = ""
    holding: bool = False
    stopped: bool = False
    _all: list[str] = field(default_factory=list)

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.pending += text
        for s in self.stop:
            at = self.pending.find(s)
            if at != -1:
                self.pending = self.pending[:at]
                self.stopped = True
        if self.hold_tools and not self.holding:
            marker = self._marker_at(self.pending)
            if marker is not None:
                out, self.pending = self.pending[:marker], self.pending[marker:]
                self.holding = True
                return self._release(out)
        if self.holding:
            return ""
        if self.stopped:
            out, self.pending = self.pending, ""
            return self._release(out)
        keep = self._unsafe_tail(self.pending)
        out, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return self._release(out)

    def flush(self) -> str:
        """Everything still pending: the held tool-call candidate, or a partial stop-sequence prefix."""
        out, self.pending = self.pending, ""
        return out

    def _release(self, text: str) -> str:
        self.released += text
        return text

    def _marker_at(self, text: str) -> int | None:
        positions: list[int] = []
        for marker in ("<tool_call>", "```"):
            at = text.find(marker)
            if at != -1:
                positions.append(at)
        stripped = (self.released + text).lstrip()
        if stripped.startswith(("{", "[")) and not self.released.strip():
            positions.append(len(text) - len(text.lstrip()))
        brace = text.find("\n{")
        if brace != -1:
            positions.append(brace + 1)
        return min(positions) if positions else None

    def _unsafe_tail(self, text: str) -> int:
        """Length of the suffix that might begin a stop sequence or a tool-call marker."""
        candidates = list(self.stop) + (["<tool_call>", "```", "\n{"] if self.hold_tools else [])
        keep = 0
        for s in candidates:
            for n in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        if self.hold_tools and not (self.released + text).strip():
            keep = len(text)  # nothing but whitespace so far: the answer might still open with "{"
        return keep
