"""The FastAPI application factory of the serving API.

``create_app(settings)`` wires the read-only PostgreSQL pool (opened in the lifespan), the
response cache, the error handlers, CORS, the optional API key (every route except /health,
/docs and /openapi.json) and the routers, one per resource.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import errors
from api.cache import CacheMiddleware, ResponseCache
from api.db import make_pool
from api.deps import API_KEY_HEADER, require_api_key
from api.routes import (
    anomalies,
    dlq,
    health,
    items,
    metrics,
    prometheus,
    slo,
    stats,
    stream,
)
from api.schemas import ErrorResponse
from clickguard import __version__
from clickguard.settings import Settings, get_settings

DESCRIPTION = """
Clickstream Guardian serving API: the original REST contract (same paths, parameters, limits and
field names) plus /dlq, /slo, /stream and Prometheus /metrics. Every error is
`{"error": {"code", "message", "details"}}`. When an API key is configured, send it in the
`X-API-Key` header (all routes but /health).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app bound to ``settings`` (default: the process settings)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = make_pool(settings)
        await pool.open(wait=False)  # start even if PostgreSQL is down: /health reports it
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title="Clickstream Guardian API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.cache = ResponseCache(settings.api_cache_ttl_s)
    app.state.lag_probe = stream.LagProbe(settings)
    app.state.request_stats = prometheus.RequestStats()
    errors.install(app)

    app.include_router(health.router)
    # the key (and its 401) is part of the routes and the OpenAPI document only when configured
    protected: dict[str, Any] = {"responses": dict(errors.ERROR_RESPONSES)}
    if settings.api_key:
        protected["dependencies"] = [Depends(require_api_key)]
        protected["responses"][401] = {
            "model": ErrorResponse, "description": f"Missing or wrong {API_KEY_HEADER}"
        }
    for module in (stats, anomalies, metrics, items, dlq, slo, stream, prometheus):
        app.include_router(module.router, **protected)

    # middleware added last runs first: request metrics → CORS → cache → routes
    app.add_middleware(CacheMiddleware, cache=app.state.cache, api_key=settings.api_key)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "OPTIONS"],
            allow_headers=[API_KEY_HEADER, "Content-Type"],
        )
    app.add_middleware(prometheus.RequestStatsMiddleware, stats=app.state.request_stats)
    return app

