"""Neutral types the core speaks. Each wire format translates to and from these in pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["user", "assistant"]
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "guardrail_intervened"]


@dataclass
class TextBlock:
    text: str


@dataclass
class ImageBlock:
    format: str  # png | jpeg | gif | webp
    data: bytes


@dataclass
class ToolUseBlock:
    id: str
    name: str
    input: dict[str, Any]


@dataclass
class ToolResultBlock:
    tool_use_id: str
    content: list[TextBlock | ImageBlock]
    status: str | None = None  # "success" | "error"


ContentBlock = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock


@dataclass
class Message:
    role: Role
    content: list[ContentBlock]

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, TextBlock))


@dataclass
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass
class ToolChoice:
    mode: Literal["auto", "any", "tool", "none"] = "auto"
    name: str | None = None


@dataclass
class InferenceConfig:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter to generate with, on the request's base model."""

    key: str  # stable identity, e.g. the custom model's id and the adapter's digest
    path: str  # a file the engine can open (a GGUF LoRA for llama.cpp); read once, when first used


@dataclass
class ChatRequest:
    """One generation. `prompt` set means a raw text completion (no chat template)."""

    model_id: str
    messages: list[Message] = field(default_factory=list)
    system: list[str] = field(default_factory=list)
    config: InferenceConfig = field(default_factory=InferenceConfig)
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    json_schema: dict[str, Any] | None = None  # constrain the output to JSON (None = free text)
    json_mode: bool = False
    prompt: str | None = None
    adapter: Adapter | None = None  # a custom model's LoRA on top of the base model


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


# --- stream events -------------------------------------------------------------------------------


@dataclass
class TextDelta:
    text: str


@dataclass
class ToolCall:
    """A complete tool call, parsed from the model's output."""

    block: ToolUseBlock


@dataclass
class Finished:
    stop_reason: StopReason
    usage: Usage
    first_token_ms: float | None = None
    trace: dict[str, Any] | None = None  # a guardrail's trace, when one was applied with trace on


ChatEvent = TextDelta | ToolCall | Finished


@dataclass
class ChatResponse:
    content: list[ContentBlock]
    stop_reason: StopReason
    usage: Usage
    latency_ms: int = 0
    trace: dict[str, Any] | None = None  # a guardrail's trace, when one was applied with trace on

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, TextBlock))


@dataclass
class EmbeddingRequest:
    model_id: str
    texts: list[str]
    dimensions: int | None = None
    normalize: bool = True


@dataclass
class EmbeddingResult:
    vectors: list[list[float]]
    input_tokens: int


# --- models --------------------------------------------------------------------------------------


@dataclass
class ModelSpec:
    """A servable model: what the catalog lists and what an engine loads."""

    model_id: str  # Bedrock-style, e.g. "qwen.qwen2-5-coder-0-5b-instruct-v1:0"
    name: str
    provider: str
    engine: str  # registered engine name: "llamacpp", "sentence-transformers", "openai-compatible", ...
    kind: Literal["chat", "embedding"] = "chat"
    path: str | None = None  # local weights (GGUF file or HF folder)
    pack: str | None = None  # or a packaged default model (outcrop.modelpacks)
    base_url: str | None = None  # remote endpoint (openai-compatible)
    api_key: str | None = None
    remote_model: str | None = None  # the model name the remote endpoint expects
    input_modalities: tuple[str, ...] = ("TEXT",)
    output_modalities: tuple[str, ...] = ("TEXT",)
    supports_tools: bool = False
    streaming: bool = True
    customizations: tuple[str, ...] = ()
    dimensions: int | None = None  # embedding size
    context_length: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
