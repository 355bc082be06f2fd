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
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not Collector.received:
            time.sleep(0.2)
    finally:
        stop_server(live)
        collector.shutdown()
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    assert {path for path, _ in Collector.received} == {"/v1/traces"}
    services, spans = set(), []
    for _, body in Collector.received:
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"}
            spans += [span for scope in resource_spans.scope_spans for span in scope.spans]
    assert services == {"outcrop"}
    names = [span.name for span in spans]
    assert any("/foundation-models" in name for name in names), names
