"""The ASGI application: one origin for the Bedrock, OpenAI and native surfaces."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outcrop import __version__
from outcrop.core.governance.audit import AuditTrail, Outcome
from outcrop.errors import AccessDenied, Invalid, NotFound, OutcropError, PayloadTooLarge
from outcrop.ids import request_id
from outcrop.server import awsjson, deps, observability
from outcrop.server.bedrock import (
    routes_agent,
    routes_agent_runtime,
    routes_batch,
    routes_control,
    routes_customization,
    routes_guardrails,
    routes_runtime,
    routes_tags,
)
from outcrop.server.bedrock import wire as bedrock_wire
from outcrop.server.logs import REQUEST_ID
from outcrop.server.native import audit as native_audit
from outcrop.server.native import quotas as native_quotas
from outcrop.server.native import routes as native_routes
from outcrop.server.native import usage as native_usage
from outcrop.server.openai import files as openai_files
from outcrop.server.openai import routes as openai_routes
from outcrop.server.openai import wire as openai_wire
from outcrop.settings import Settings

log = logging.getLogger("outcrop.server")


def render_error(request: Request, exc: Exception) -> Response:
    """Each surface answers in its own envelope; the audit trail gets the AWS error code either way."""
    code, _ = bedrock_wire.error_code(exc)
    message = exc.message if isinstance(exc, OutcropError) else "The server encountered an internal error."
    request.scope["outcrop.error"] = (code, message)
    path = request.scope["path"]
    if path.startswith("/v1/") or path == "/v1":
        return openai_wire.error_response(exc)
    if awsjson.is_awsjson(request):
        return awsjson.error_response(request, exc)
    return bedrock_wire.error_response(exc, agent=path.startswith(_AGENT_PATHS))


_AGENT_PATHS = ("/knowledgebases", "/retrieveAndGenerate", "/rerank")  # bedrock-agent(-runtime): Conflict is 409


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
_KEEP_LIMIT = 64 * 1024


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-type" and b"json" in v for k, v in headers)


_SECURITY_HEADERS_TLS = [*_SECURITY_HEADERS, (b"strict-transport-security", b"max-age=31536000")]


class Guard:
    """The first door: the network allowlist, the body limit (declared or streamed), security headers, the
    request ID on every response, and the audit event of every API call once its response is sent.

    One middleware, not five: each ASGI layer costs on every request (docs/benchmarks.md)."""

    def __init__(self, app: ASGIApp, limit: int, allowed_cidrs: list[str],
                 trail: Callable[[], AuditTrail | None] = lambda: None, region: str = "us-east-1") -> None:
        self.app = app
        self.region = region
        self.limit = limit
        self.networks = [ipaddress.ip_network(c, strict=False) for c in allowed_cidrs]
        self.trail = trail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = datetime.now(UTC)
        rid = scope["outcrop.request_id"] = request_id()
        REQUEST_ID.set(rid)
        extra = [*(_SECURITY_HEADERS_TLS if scope.get("scheme") == "https" else _SECURITY_HEADERS),
                 (b"x-amzn-requestid", rid.encode())]

        writes = scope["method"] not in ("GET", "HEAD")
        kept: list[bytes] = []  # a write's JSON answer, for the audit event's responseElements (IDs only)
        audited = False

        def audit() -> None:
            nonlocal audited
            if not audited and "outcrop.operation" in scope:
                audited = True
                self._audit(scope, started, rid, b"".join(kept) if writes else b"")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
                if writes and not _is_json(message["headers"]):
                    kept.append(b"")  # a stream or a file: nothing to keep
            elif message["type"] == "http.response.body":
                if writes and kept != [b""] and sum(map(len, kept)) < _KEEP_LIMIT:
                    kept.append(message.get("body", b""))
                if not message.get("more_body"):
                    audit()  # before the client has the whole answer: a lookup it sends next will see the event
            await send(message)

        try:
            await self._guarded(scope, receive, send_with_headers)
        finally:
            audit()  # a call that ended without a complete answer

    def _audit(self, scope: Scope, started: datetime, rid: str, answer: bytes) -> None:
        trail = self.trail()
        if trail is None:
            return
        ctx = scope.get("outcrop.ctx")
        headers = dict(scope.get("headers", []))
        parameters = dict(scope.get("path_params") or {})
        if scope.get("query_string"):
            parameters.update(parse_qsl(scope["query_string"].decode("latin-1")))
        parameters.update(scope.get("outcrop.request_parameters") or {})
        error = scope.get("outcrop.error")
        trail.record(Outcome(
            operation=scope["outcrop.operation"], started=started, context=ctx,
            source_ip=scope["client"][0] if scope.get("client") else None,
            user_agent=headers.get(b"user-agent", b"").decode("latin-1") or None,
            region=self.region, request_id=rid,
            attempted_key=scope.get("outcrop.attempted_key"),
            error_code=error[0] if error else None, error_message=error[1] if error else None,
            request_parameters=parameters or None, response_body=answer if not error else b""))

    async def _guarded(self, scope: Scope, receive: Receive, send_with_headers: Send) -> None:
        if self.networks and not self._allowed(scope):
            client = (scope.get("client") or ("unknown",))[0]
            await self._reject(scope, receive, send_with_headers,
                               AccessDenied(f"Requests from {client} are not allowed by this endpoint's network policy."))
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, receive, send_with_headers,
                               PayloadTooLarge(f"Request body exceeds the limit of {self.limit} bytes"))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise PayloadTooLarge(f"Request body exceeds the limit of {self.limit} bytes")
            return message

        await self.app(scope, counted, send_with_headers)

    def _allowed(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        response = render_error(Request(scope, receive), exc)
        await response(scope, receive, send)


def telemetry(settings: Settings) -> dict[str, object]:
    """FastAPI's own OpenTelemetry spans, exported over OTLP/HTTP only when an endpoint is configured.

    Off otherwise: FastAPI's wrapper costs ~0.3 ms a request even with no-op providers."""
    off: dict[str, object] = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    if not settings.otlp_endpoint:
        return off
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise OutcropError("OUTCROP_OTLP_ENDPOINT needs the otel extra: pip install 'outcrop[otel]'") from None
    provider = TracerProvider(resource=Resource.create({"service.name": "outcrop", "service.version": __version__}))
    endpoint = settings.otlp_endpoint.rstrip("/")
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
    return {**off, "tracing": True, "operation_spans": True, "auto_configure": False, "tracer_provider": provider}


def create_app(settings: Settings, services: deps.Services | None = None, plugins: list[object] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = services or deps.Services.build(settings, plugins)
        routes_batch.attach(app.state.services)  # batch records and async invokes run InvokeModel's code path
        app.state.services.jobs.start()  # the in-process job worker (ingestion, ...)
        yield
        app.state.services.close()

    app = FastAPI(title="Outcrop", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/outcrop/v1/openapi.json", telemetry=telemetry(settings))  # type: ignore[arg-type]
    if services is not None:
        app.state.services = services

    @app.exception_handler(OutcropError)
    async def _domain_error(request: Request, exc: OutcropError) -> Response:
        return render_error(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return render_error(request, NotFound(f"Unknown operation: {request.method} {request.url.path}"))
        if exc.status_code == 405:
            return render_error(request, Invalid(f"Method {request.method} is not allowed on {request.url.path}"))
        return render_error(request, Invalid(str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return render_error(request, exc)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        svc = deps.services(request)
        return JSONResponse({"status": "ready", "loaded_models": svc.inference.loaded(),
                             "fallbacks": svc.inference.pool.fallbacks})

    app.include_router(routes_runtime.router)
    app.include_router(routes_control.router)
    app.include_router(routes_guardrails.router)
    app.include_router(routes_tags.router)
    app.include_router(routes_customization.router)
    app.include_router(routes_batch.router)
    app.include_router(routes_agent.router)
    app.include_router(routes_agent_runtime.router)
    app.include_router(openai_routes.router)
    app.include_router(openai_files.router)
    app.include_router(native_routes.router)
    app.include_router(native_audit.router)
    app.include_router(native_usage.router)
    app.include_router(native_quotas.router)
    app.include_router(observability.router)
    app.include_router(awsjson.router)
    app.add_middleware(Guard, limit=settings.max_body_bytes, allowed_cidrs=settings.allowed_cidrs,
                       trail=lambda: getattr(getattr(app.state, "services", None), "audit", None),
                       region=settings.region)
    return app
