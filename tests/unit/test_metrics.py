"""Prometheus metrics: Bedrock's names, bounded labels, error classes, histograms and the in-flight gauge."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from outcrop.core.catalog import Catalog
from outcrop.core.governance import LOCAL, Admissions, CallContext, Invocation
from outcrop.core.governance.metrics import UNRESOLVED, Metrics, ModelLabels, error_kind
from outcrop.core.inference import InferenceService, ModelPool
from outcrop.errors import NotFound, Throttled
from outcrop.plugins import engine_classes, plugin_manager
from outcrop.settings import Settings
from outcrop.types import ChatRequest, InferenceConfig, Message, TextBlock
from tests.doubles import ScriptedPlugin

SERVED = {"local.chat-v1:0", "local.embed-v1:0"}
ALIASES = {"anthropic.claude-3-haiku-20240307-v1:0": "local.chat-v1:0"}


def resolve(model_id: str) -> str:
    if model_id in SERVED:
        return model_id
    if model_id in ALIASES:
        return ALIASES[model_id]
    raise NotFound(f"no model {model_id}")


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(ModelLabels(resolve), loaded_models=lambda: 2)


def call(operation: str = "Converse", model: str = "local.chat-v1:0", **fields: object) -> Invocation:
    return Invocation(CallContext(None, operation), model, model, **fields)  # type: ignore[arg-type]


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return found if found is not None else 0.0


def test_counts_and_token_totals(metrics):
    for n in range(3):
        metrics.record(call(input_tokens=10 + n, output_tokens=5, latency_ms=40))
    metrics.record(call("CreateEmbedding", "local.embed-v1:0", input_tokens=7, kind="embedding", latency_ms=3))
    chat = {"ModelId": "local.chat-v1:0", "Operation": "Converse"}
    assert value(metrics, "Invocations_total", **chat) == 3
    assert value(metrics, "InputTokenCount_total", **chat) == 33
    assert value(metrics, "OutputTokenCount_total", **chat) == 15
    embed = {"ModelId": "local.embed-v1:0", "Operation": "CreateEmbedding"}
    assert value(metrics, "Invocations_total", **embed) == 1
    assert value(metrics, "InputTokenCount_total", **embed) == 7
    assert value(metrics, "OutputTokenCount_total", **embed) == 0


@pytest.mark.parametrize(("error", "kind"), [
    ("Invalid", "client"), ("PayloadTooLarge", "client"), ("NotFound", "client"), ("AccessDenied", "client"),
    ("Conflict", "client"), ("GeneratorExit", "client"), ("CancelledError", "client"),
    ("Throttled", "throttle"), ("ModelNotReady", "throttle"),
    ("ModelError", "server"), ("ModelTimeout", "server"), ("Unavailable", "server"), ("ValueError", "server"),
    (None, None),
])
def test_error_classes(error, kind):
    assert error_kind(error) == kind


def test_errors_are_counted_by_class_and_throttles_are_not_invocations(metrics):
    for error in ("Invalid", "AccessDenied", "ModelError", "RuntimeError", "Throttled", "ModelNotReady"):
        metrics.record(call(error=error))
    labels = {"ModelId": "local.chat-v1:0", "Operation": "Converse"}
    assert value(metrics, "InvocationClientErrors_total", **labels) == 2
    assert value(metrics, "InvocationServerErrors_total", **labels) == 2
    assert value(metrics, "InvocationThrottles_total", **labels) == 2
    assert value(metrics, "Invocations_total", **labels) == 4  # Bedrock: failed ones count, throttled ones not
    assert value(metrics, "InvocationLatency_count", **labels) == 0  # latency is for answered calls


def test_histograms(metrics):
    metrics.record(call(latency_ms=80, output_tokens=3))
    metrics.record(call("ConverseStream", latency_ms=1100, first_token_ms=100.0, output_tokens=50, streaming=True))
    metrics.record(call(latency_ms=130_000, output_tokens=1))
    whole = {"ModelId": "local.chat-v1:0", "Operation": "Converse"}
    stream = {"ModelId": "local.chat-v1:0", "Operation": "ConverseStream"}
    assert value(metrics, "InvocationLatency_count", **whole) == 2
    assert value(metrics, "InvocationLatency_bucket", le="100.0", **whole) == 1
    assert value(metrics, "InvocationLatency_bucket", le="120000.0", **whole) == 1
    assert value(metrics, "InvocationLatency_bucket", le="+Inf", **whole) == 2
    assert value(metrics, "InvocationLatency_sum", **whole) == 130_080
    # A whole answer has no meaningful first token: only the stream reports TTFT and throughput.
    assert value(metrics, "TimeToFirstToken_count", **whole) == 0
    assert value(metrics, "TimeToFirstToken_sum", **stream) == 100
    assert value(metrics, "OutputTokensPerSecond_sum", **stream) == 50  # 50 tokens in the 1 s after the first
    assert value(metrics, "OutputTokensPerSecond_bucket", le="30.0", **stream) == 0
    assert value(metrics, "OutputTokensPerSecond_bucket", le="50.0", **stream) == 1


def test_in_flight_gauge_follows_admit_and_release(metrics):
    first, second = call(model="anthropic.claude-3-haiku-20240307-v1:0"), call()
    metrics.admit(first)  # admitted before resolution: the alias counts under the model that will serve it
    metrics.admit(second)
    assert value(metrics, "InvocationsInFlight", ModelId="local.chat-v1:0") == 2
    first.served_by = "local.chat-v1:0"
    metrics.release(first)
    assert value(metrics, "InvocationsInFlight", ModelId="local.chat-v1:0") == 1
    metrics.release(first)  # a second release changes nothing
    metrics.release(second)
    assert value(metrics, "InvocationsInFlight", ModelId="local.chat-v1:0") == 0


def test_a_throttling_admission_leaves_the_gauge_balanced(metrics):
    class Quota:
        def admit(self, invocation: Invocation) -> None:
            raise Throttled("too many")

        def release(self, invocation: Invocation) -> None:
            return None

    with pytest.raises(Throttled):
        Admissions(metrics, Quota()).admit(call())
    assert value(metrics, "InvocationsInFlight", ModelId="local.chat-v1:0") == 0


def test_caller_strings_never_become_labels(metrics):
    for n in range(2000):
        metrics.record(call(model=f"made-up.model-{n}", error="NotFound"))
        metrics.admit(probe := call(model=f"other-{n}"))
        metrics.release(probe)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    models = {s.labels["ModelId"] for f in families.values() for s in f.samples if "ModelId" in s.labels}
    assert models == {UNRESOLVED}
    assert value(metrics, "InvocationClientErrors_total", ModelId=UNRESOLVED, Operation="Converse") == 2000
    assert len(metrics.models._cache) <= 1024


def test_exposition_parses_with_bedrock_names(metrics):
    metrics.record(call(input_tokens=4, output_tokens=2, latency_ms=12))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    assert {"Invocations", "InvocationClientErrors", "InvocationServerErrors", "InvocationThrottles",
            "InputTokenCount", "OutputTokenCount", "InvocationLatency", "TimeToFirstToken", "OutputTokensPerSecond",
            "InvocationsInFlight", "LoadedModels"} <= set(families)
    assert families["Invocations"].type == "counter"
    assert families["InvocationLatency"].type == "histogram"
    assert families["LoadedModels"].samples[0].value == 2
    labels = {k for f in families.values() for s in f.samples for k in s.labels}
    assert labels <= {"ModelId", "Operation", "le"}  # no account or key: unbounded cardinality


def test_each_app_has_its_own_registry():
    one, two = Metrics(ModelLabels(resolve)), Metrics(ModelLabels(resolve))
    one.record(call())
    assert two.registry.get_sample_value("Invocations_total", {"ModelId": "local.chat-v1:0",
                                                               "Operation": "Converse"}) is None
    assert REGISTRY.get_sample_value("Invocations_total", {"ModelId": "local.chat-v1:0",
                                                           "Operation": "Converse"}) is None


def test_inference_reports_through_the_governance_hook(tmp_path):
    (tmp_path / "models.toml").write_text(
        '[[models]]\nid = "test.scripted-v1:0"\nengine = "scripted"\noptions = { words = ["a", " b"] }\n')
    settings = Settings(home=tmp_path)
    catalog = Catalog.load(settings)
    pool = ModelPool(settings, engine_classes(plugin_manager([ScriptedPlugin()])))
    metrics = Metrics(ModelLabels.of(catalog), loaded_models=lambda: len(pool.engines))
    service = InferenceService(settings, catalog, pool, recorder=metrics, admission=metrics)
    request = ChatRequest("test.scripted-v1:0", [Message("user", [TextBlock("hi")])], config=InferenceConfig(4))
    asyncio.run(service.chat(LOCAL, request))
    with pytest.raises(NotFound):
        asyncio.run(service.chat(LOCAL, ChatRequest("nobody.nothing-v1:0", request.messages)))
    labels = {"ModelId": "test.scripted-v1:0", "Operation": "Local"}
    assert value(metrics, "Invocations_total", **labels) == 1
    assert value(metrics, "InputTokenCount_total", **labels) == 3
    assert value(metrics, "OutputTokenCount_total", **labels) == 2
    assert value(metrics, "InvocationClientErrors_total", ModelId=UNRESOLVED, Operation="Local") == 1
    assert value(metrics, "InvocationsInFlight", ModelId="test.scripted-v1:0") == 0
    assert value(metrics, "LoadedModels") == 1
