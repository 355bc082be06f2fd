"""Prometheus metrics under Bedrock's CloudWatch names (AWS/Bedrock runtime metrics), one registry per app.

Counters are exposed with prometheus_client's `_total` suffix: `Invocations` is scraped as `Invocations_total`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from outcrop import errors
from outcrop.core.governance import Invocation

if TYPE_CHECKING:
    from outcrop.core.catalog import Catalog

UNRESOLVED = "unresolved"  # the ModelId label of calls whose model ID named nothing in the catalog
LATENCY_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000, 30000, 60000, 120000)
FIRST_TOKEN_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
TOKENS_PER_SECOND = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)
_CLIENT = (errors.Invalid, errors.NotFound, errors.AccessDenied, errors.Conflict, errors.AuthenticationFailed)
_THROTTLE = (errors.Throttled, errors.ModelNotReady)  # Bedrock answers both with HTTP 429
# The caller hung up (a stream closed early, a cancelled request): not the server's fault.
_DISCONNECTS = {"CancelledError", "GeneratorExit", "KeyboardInterrupt"}
_KINDS: dict[str, str] = {}  # error class name → kind, filled on first sight


class ModelLabels:
    """A model ID, as requested or as served, → its catalog ID, or UNRESOLVED: a label set bounded by the catalog.

    A failed call may carry the caller's string (resolution never ran); that string is unbounded and
    must never become a label or a usage row."""

    def __init__(self, resolve: Callable[[str], str], cache_size: int = 1024) -> None:
        self._resolve = resolve  # raises an OutcropError for an ID the catalog does not serve
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size  # the keys are caller strings: cap them

    @classmethod
    def of(cls, catalog: Catalog) -> ModelLabels:
        return cls(lambda model_id: catalog.resolve(model_id).spec.model_id)

    def __call__(self, model_id: str) -> str:
        label = self._cache.get(model_id)
        if label is None:
            try:
                label = self._resolve(model_id)
            except errors.OutcropError:
                label = UNRESOLVED
            if len(self._cache) < self._cache_size:
                self._cache[model_id] = label
        return label


def error_kind(name: str | None) -> str | None:
    """The class of failure an Invocation.error names (client, server or throttle); None for a success."""
    if name is None:
        return None
    kind = _KINDS.get(name)
    if kind is None:
        found = _error_classes().get(name)
        if found is not None and issubclass(found, _THROTTLE):
            kind = "throttle"
        elif (found is not None and issubclass(found, _CLIENT)) or name in _DISCONNECTS:
            kind = "client"
        else:
            kind = "server"  # ModelError, ModelTimeout, Unavailable and any unexpected exception
        _KINDS[name] = kind  # class names are bounded by the code, not by callers
    return kind


def _error_classes() -> dict[str, type[errors.OutcropError]]:
    found: dict[str, type[errors.OutcropError]] = {}
    pending: list[type[errors.OutcropError]] = [errors.OutcropError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.__name__, cls)
        pending.extend(cls.__subclasses__())
    return found


class _Series:
    """One (ModelId, Operation) pair's children, looked up once and reused by every later call."""

    def __init__(self, metrics: Metrics, model: str, operation: str) -> None:
        labels = {"ModelId": model, "Operation": operation}
        self.invocations = metrics.invocations.labels(**labels)
        self.errors = {"client": metrics.client_errors.labels(**labels),
                       "server": metrics.server_errors.labels(**labels),
                       "throttle": metrics.throttles.labels(**labels)}
        self.input_tokens = metrics.input_tokens.labels(**labels)
        self.output_tokens = metrics.output_tokens.labels(**labels)
        self.latency = metrics.latency.labels(**labels)
        self.first_token = metrics.first_token.labels(**labels)
        self.tokens_per_second = metrics.tokens_per_second.labels(**labels)


class Metrics:
    """A Recorder (counts, tokens, latencies) and an Admission (in-flight invocations per model)."""

    def __init__(self, models: ModelLabels, loaded_models: Callable[[], int] | None = None) -> None:
        self.models = models
        self.registry = CollectorRegistry()  # never the global one: several apps share a test process
        labels = ("ModelId", "Operation")
        r = self.registry
        # Bedrock's Invocations counts requests accepted for processing, failed ones included, throttled
        # ones not (docs.aws.amazon.com/bedrock/latest/userguide/monitoring-runtime-metrics.html).
        self.invocations = Counter("Invocations", "Invocations accepted (throttled ones excluded)", labels, registry=r)
        self.client_errors = Counter("InvocationClientErrors", "Invocations that failed on the caller's side",
                                     labels, registry=r)
        self.server_errors = Counter("InvocationServerErrors", "Invocations that failed on the server's side",
                                     labels, registry=r)
        self.throttles = Counter("InvocationThrottles", "Invocations refused by a limit", labels, registry=r)
        self.input_tokens = Counter("InputTokenCount", "Tokens in the input", labels, registry=r)
        self.output_tokens = Counter("OutputTokenCount", "Tokens in the output", labels, registry=r)
        self.latency = Histogram("InvocationLatency", "Milliseconds from request to last token (successes)",
                                 labels, registry=r, buckets=LATENCY_MS)
        self.first_token = Histogram("TimeToFirstToken", "Milliseconds to the first output token (streaming)",
                                     labels, registry=r, buckets=FIRST_TOKEN_MS)
        self.tokens_per_second = Histogram("OutputTokensPerSecond", "Output tokens / (latency - TTFT) (streaming)",
                                           labels, registry=r, buckets=TOKENS_PER_SECOND)
        self.in_flight = Gauge("InvocationsInFlight", "Invocations admitted and not yet finished", ("ModelId",),
                               registry=r)
        self.loaded = Gauge("LoadedModels", "Models whose engine is loaded", registry=r)
        self.loaded.set_function(loaded_models or (lambda: 0))
        self._series: dict[tuple[str, str], _Series] = {}
        self._gauges: dict[str, Gauge] = {}  # ModelId → its in-flight child
        self._admitted: dict[int, Gauge] = {}  # id(invocation) → the in-flight child it incremented
        self._lock = threading.Lock()

    # -- Admission -----------------------------------------------------------------------------------

    def admit(self, invocation: Invocation) -> None:
        # Admission runs before the model is resolved, so served_by is still the ID as requested.
        model = self.models(invocation.served_by)
        child = self._gauges.get(model)
        if child is None:
            child = self._gauges[model] = self.in_flight.labels(ModelId=model)
        with self._lock:
            self._admitted[id(invocation)] = child
        child.inc()

    def release(self, invocation: Invocation) -> None:
        with self._lock:
            child = self._admitted.pop(id(invocation), None)
        if child is not None:
            child.dec()

    # -- Recorder ------------------------------------------------------------------------------------

    def record(self, invocation: Invocation) -> None:
        series = self._series_of(self.models(invocation.served_by), invocation.context.operation)
        kind = error_kind(invocation.error)
        if kind != "throttle":
            series.invocations.inc()
        if kind is not None:
            series.errors[kind].inc()
        if invocation.input_tokens:
            series.input_tokens.inc(invocation.input_tokens)
        if invocation.output_tokens:
            series.output_tokens.inc(invocation.output_tokens)
        if kind is None:
            self._observe_timings(series, invocation)

    def _observe_timings(self, series: _Series, invocation: Invocation) -> None:
        series.latency.observe(invocation.latency_ms)
        # Only a streamed call's first token means anything: a whole answer is collected before its
        # first token is seen. Bedrock publishes TimeToFirstToken for the streaming operations only too.
        ttft = invocation.first_token_ms
        if not invocation.streaming or ttft is None:
            return
        series.first_token.observe(ttft)
        generating_s = (invocation.latency_ms - ttft) / 1000
        if invocation.output_tokens and generating_s > 0:
            series.tokens_per_second.observe(invocation.output_tokens / generating_s)

    def _series_of(self, model: str, operation: str) -> _Series:
        series = self._series.get((model, operation))
        if series is None:
            # Two threads may both build it: prometheus_client hands both the same children.
            series = self._series[(model, operation)] = _Series(self, model, operation)
        return series
