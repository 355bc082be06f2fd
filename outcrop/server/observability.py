"""GET /metrics: the Prometheus exposition of this process's metrics; unauthenticated, like /healthz."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from outcrop.server.deps import services

router = APIRouter()


# Scrapers rarely sign requests; the exposition holds model IDs and counts, never accounts or keys.
# The network allowlist (Guard) still applies.
@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(services(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)
