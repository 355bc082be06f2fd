"""The one governance hook every core operation passes (issue 4 builds audit, metrics and quotas on it).

A wire adapter describes each call as a CallContext; the core reports what happened as an Invocation
to the Recorder, whatever the surface (Bedrock, OpenAI, native, CLI).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    streaming: bool = False  # tokens went out as they came (ConverseStream, stream=true, ...)
    first_token_ms: float | None = None  # time to the first output token, for generating calls
    kind: str = "chat"  # chat | embedding | count_tokens
    request: Any = None  # the neutral request (ChatRequest / EmbeddingRequest), for invocation logging
    response: Any = None  # the neutral result (ChatResponse text / EmbeddingResult), when it succeeded
    resolved: Any = None  # the catalog.Resolved model, once known (private models resolve per account)


class Recorder(Protocol):
    """Told about every invocation once it ends, whatever the outcome (metrics, usage, invocation logs)."""

    def record(self, invocation: Invocation) -> None: ...


class Admission(Protocol):
    """Asked before an invocation runs (may raise Throttled), told when it ends (quotas)."""

    def admit(self, invocation: Invocation) -> None: ...

    def release(self, invocation: Invocation) -> None: ...


class Recorders:
    """Several recorders behind one: a failing recorder is logged, never fails the call it records."""

    def __init__(self, *recorders: Recorder) -> None:
        self.recorders = list(recorders)

    def record(self, invocation: Invocation) -> None:
        for recorder in self.recorders:
            try:
                recorder.record(invocation)
            except Exception:
                log.exception("recorder %s failed", type(recorder).__name__)


class Admissions:
    """Several admissions behind one, in order; released in reverse, and only those that admitted."""

    def __init__(self, *admissions: Admission) -> None:
        self.admissions = list(admissions)

    def admit(self, invocation: Invocation) -> None:
        admitted: list[Admission] = []
        try:
            for admission in self.admissions:
                admission.admit(invocation)
                admitted.append(admission)
        except BaseException:
            for admission in reversed(admitted):
                admission.release(invocation)
            raise

    def release(self, invocation: Invocation) -> None:
        for admission in reversed(self.admissions):
            admission.release(invocation)


class OpenAdmission:
    """No quotas: every invocation is admitted."""

    def admit(self, invocation: Invocation) -> None:
        return None

    def release(self, invocation: Invocation) -> None:
        return None


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
