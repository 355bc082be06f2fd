"""OpenTelemetry: with an OTLP endpoint configured, request spans reach the collector (a local stand-in)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from tests.e2e.conftest import free_port, start_server, stop_server
from tests.e2e.iam import operator


class Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Collector.received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def test_request_spans_are_exported_over_otlp(tmp_path):
    collector = HTTPServer(("127.0.0.1", free_port()), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    live = start_server(tmp_path / "home", free_port(), {"OUTCROP_OTLP_ENDPOINT": endpoint,
                                                         "OTEL_BSP_SCHEDULE_DELAY": "200"})
    try:
        assert operator(live).client("bedrock").list_foundation_models()["modelSummaries"]
        deadline = time.monotonic() + 30  # spans leave in batches: wait for the one with our request
        while time.monotonic() < deadline and not any("/foundation-models" in n for n in exported()[1]):
            time.sleep(0.2)
    finally:
        stop_server(live)
        collector.shutdown()
    services, names = exported()
    assert {path for path, _ in Collector.received} == {"/v1/traces"}
    assert services == {"outcrop"}
    assert any("/foundation-models" in name for name in names), names


def exported() -> tuple[set[str], list[str]]:
    """The service names and span names received so far, parsed as OTLP."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    services, names = set(), []
    for _, body in list(Collector.received):
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"}
            names += [span.name for scope in resource_spans.scope_spans for span in scope.spans]
    return services, names
