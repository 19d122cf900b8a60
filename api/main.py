"""The FastAPI application factory of the serving API.

``create_app(settings)`` wires the read-only PostgreSQL pool (opened in the lifespan), the
response cache, the error handlers, CORS, the optional API key (every route except /health,
/docs, /redoc, their assets and /openapi.json) and the routers, one per resource.

/docs (Swagger UI) and /redoc load their JavaScript and CSS from this server (the files of the
pinned ``fastapi-offline`` wheel): FastAPI's defaults come from a CDN, so without internet the
pages were blank.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from api import errors
from api.cache import CacheMiddleware, ResponseCache
from api.db import make_pool
from api.deps import API_KEY_HEADER, require_api_key
from api.routes import (
    anomalies,
    batch,
    dlq,
    health,
    items,
    metrics,
    prometheus,
    sessions,
    slo,
    stats,
    stream,
)
from api.schemas import ErrorResponse
from clickguard import __version__, procs
from clickguard.settings import Settings, get_settings

DESCRIPTION = """
Clickstream Guardian serving API: the original REST contract (same paths, parameters, limits and
field names) plus /dlq, /slo, /stream and Prometheus /metrics. Every error is
`{"error": {"code", "message", "details"}}`. When an API key is configured, send it in the
`X-API-Key` header (all routes but /health).
"""
TITLE = "Clickstream Guardian API"
DOCS_ASSETS_URL = "/docs-assets"
# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png of the pinned wheel
DOCS_ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app bound to ``settings`` (default: the process settings)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # a uvicorn worker: a SIGKILLed master left its workers serving the port, unseen by
        # `stack status` and unstoppable by `make stop` (the next start: address in use)
        procs.die_with_parent_from_env()
        pool = make_pool(settings)
        await pool.open(wait=False)  # start even if PostgreSQL is down: /health reports it
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(
        title=TITLE,
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.cache = ResponseCache(settings.api_cache_ttl_s)
    app.state.lag_probe = stream.LagProbe(settings)
    app.state.request_stats = prometheus.RequestStats()
    errors.install(app)

    app.include_router(health.router)
    install_docs(app)
    # the key (and its 401) is part of the routes and the OpenAPI document only when configured
    protected: dict[str, Any] = {"responses": dict(errors.ERROR_RESPONSES)}
    if settings.api_key:
        protected["dependencies"] = [Depends(require_api_key)]
        protected["responses"][401] = {
            "model": ErrorResponse, "description": f"Missing or wrong {API_KEY_HEADER}"
        }
    for module in (stats, anomalies, sessions, metrics, items, batch, dlq, slo, stream,
                   prometheus):
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


def install_docs(app: FastAPI) -> None:
    """/docs and /redoc with their assets served by this app (no CDN, no Google Fonts), open
    without the API key like /openapi.json: the key is typed into Swagger UI's Authorize."""
    if not (DOCS_ASSETS_DIR / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"Swagger UI assets missing in {DOCS_ASSETS_DIR}: run `make setup`")
    # ReDoc's sidebar footer always loads Redocly's logo from its CDN; an empty src loads nothing
    redoc_js = (DOCS_ASSETS_DIR / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, b"")

    @app.get(f"{DOCS_ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(redoc_js, media_type="text/javascript")

    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect_url = "/docs/oauth2-redirect"
    favicon = f"{DOCS_ASSETS_URL}/favicon.png"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{TITLE} - Swagger UI",
            oauth2_redirect_url=oauth2_redirect_url,
            swagger_js_url=f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=favicon,
            # no badge fetched from validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(oauth2_redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{TITLE} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,
        )
