"""The one governance hook every core operation passes (issue 4 builds audit, metrics and quotas on it).

A wire adapter describes each call as a CallContext; the core reports what happened as an Invocation
to the Recorder, whatever the surface (Bedrock, OpenAI, native, CLI).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from outcrop.core.identity import Caller
from outcrop.ids import request_id

log = logging.getLogger("outcrop.governance")


@dataclass(frozen=True)
class CallContext:
    caller: Caller | None  # None: a local operator (CLI) acting without the server
    operation: str  # the API operation: "Converse", "InvokeModel", "CreateChatCompletion", ...
    request_id: str = field(default_factory=request_id)
    source_ip: str | None = None
    user_agent: str | None = None
    secure: bool = False  # arrived over TLS (aws:SecureTransport)
    region: str = "us-east-1"


LOCAL = CallContext(caller=None, operation="Local")


@dataclass
class Invocation:
    context: CallContext
    model_id: str  # as requested
    served_by: str  # the local model that answered
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: int = 0
    error: str | None = None  # the domain error class name, when the call failed


class Recorder(Protocol):
    def record(self, invocation: Invocation) -> None: ...


class UsageRecorder:
    """Keeps per-account, per-model totals in memory and logs each invocation at debug level."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: {"invocations": 0, "input_tokens": 0, "output_tokens": 0, "errors": 0})

    def record(self, invocation: Invocation) -> None:
        account = invocation.context.caller.account_id if invocation.context.caller else "local"
        with self._lock:
            row = self.totals[(account, invocation.served_by)]
            row["invocations"] += 1
            row["input_tokens"] += invocation.input_tokens
            row["output_tokens"] += invocation.output_tokens
            row["errors"] += invocation.error is not None
        log.debug("%s %s %s→%s in=%d out=%d %dms %s", invocation.context.request_id, invocation.context.operation,
                  invocation.model_id, invocation.served_by, invocation.input_tokens, invocation.output_tokens,
                  invocation.latency_ms, invocation.error or "ok")
