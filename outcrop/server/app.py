"""The ASGI application: one origin for the Bedrock, OpenAI and native surfaces."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outcrop import __version__
from outcrop.errors import Invalid, NotFound, OutcropError, PayloadTooLarge
from outcrop.server import deps
from outcrop.server.bedrock import routes_control, routes_runtime
from outcrop.server.bedrock import wire as bedrock_wire
from outcrop.server.openai import routes as openai_routes
from outcrop.server.openai import wire as openai_wire
from outcrop.settings import Settings

log = logging.getLogger("outcrop.server")


def render_error(request: Request, exc: Exception) -> Response:
    """Each surface answers in its own envelope."""
    if request.url.path.startswith("/v1/") or request.url.path == "/v1":
        return openai_wire.error_response(exc)
    return bedrock_wire.error_response(exc)


class BodyLimit:
    """Refuse bodies over the limit before they are buffered (declared or streamed length)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise PayloadTooLarge(f"Request body exceeds the limit of {self.limit} bytes")
            return message

        await self.app(scope, counted, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = PayloadTooLarge(f"Request body exceeds the limit of {self.limit} bytes")
        response = render_error(Request(scope, receive), exc)
        await response(scope, receive, send)


def create_app(settings: Settings, services: deps.Services | None = None, plugins: list[object] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = services or deps.Services.build(settings, plugins)
        yield
        app.state.services.close()

    # FastAPI's native OpenTelemetry wrapper costs ~0.3 ms a request even with no-op providers; traces
    # come with the governance work (issue 4), when an OTLP endpoint is configured.
    telemetry_off = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    app = FastAPI(title="Outcrop", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/outcrop/v1/openapi.json", telemetry=telemetry_off)  # type: ignore[arg-type]
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
    app.include_router(openai_routes.router)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
