"""Annotated dependencies shared by the routes: settings, pool, cache, API key, JSON replies.

All are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, which would
cost a thread hand-off per dependency per request.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyHeader
from pydantic import TypeAdapter

from api.cache import ResponseCache, cache_key
from api.db import Pool
from api.errors import ApiError
from clickguard.settings import Settings

API_KEY_HEADER = "X-API-Key"
_api_key_header = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="Required when settings.api_key is set"
)


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_pool(request: Request) -> Pool:
    return request.app.state.pool


async def get_cache(request: Request) -> ResponseCache:
    return request.app.state.cache


async def require_api_key(
    settings: Annotated[Settings, Depends(get_settings_dep)],
    key: Annotated[str | None, Depends(_api_key_header)],
) -> None:
    """401 unless the header matches ``settings.api_key`` (no-op when no key is configured)."""
    expected = settings.api_key
    if not expected:
        return
    if key is None:
        raise ApiError(401, "unauthorized", f"missing {API_KEY_HEADER} header")
    if not secrets.compare_digest(key.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", f"invalid {API_KEY_HEADER}")


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
PoolDep = Annotated[Pool, Depends(get_pool)]
CacheDep = Annotated[ResponseCache, Depends(get_cache)]
ApiKeyDep = Annotated[None, Depends(require_api_key)]

_adapters: dict[Any, TypeAdapter[Any]] = {}


def _adapter(model: Any) -> TypeAdapter[Any]:
    if model not in _adapters:
        _adapters[model] = TypeAdapter(model)
    return _adapters[model]


class Replier:
    """Builds JSON responses through the cache: validate rows with the response model, dump once."""

    def __init__(self, request: Request, cache: ResponseCache) -> None:
        self.request = request
        self.cache = cache

    async def __call__(
        self, model: Any, produce: Callable[[], Awaitable[Any]], batch: bool = False
    ) -> Response:
        """Serve ``produce()``'s rows as ``model`` JSON; ``batch`` = over daily batch tables."""
        scope = self.request.scope
        key = cache_key(scope["path"], scope["query_string"])
        route = str(getattr(scope.get("route"), "path", scope["path"]))
        adapter = _adapter(model)

        async def render() -> bytes:
            return adapter.dump_json(adapter.validate_python(await produce()))

        ttl = self.request.app.state.settings.api_batch_cache_ttl_s if batch else None
        body = await self.cache.get(key, render, route, ttl)
        return Response(body, media_type="application/json")


async def get_replier(request: Request, cache: CacheDep) -> Replier:
    return Replier(request, cache)


ReplyDep = Annotated[Replier, Depends(get_replier)]
