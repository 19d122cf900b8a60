"""Per-worker cache of serialized responses: single-flight misses, stale-while-revalidate, and an
ASGI middleware that answers warm URLs before FastAPI's routing and validation run.

Dashboards poll the same few URLs; under load many requests for one URL arrive within a second.
Caching the JSON bytes for ``settings.api_cache_ttl_s`` (default 1 s, 0 = off) means about one
query per URL per TTL per worker, whatever the request rate:

- concurrent misses of one key wait for a single query instead of each running it;
- after the TTL an entry stays servable for one more TTL while ONE background task refreshes it,
  so no request waits for the database once a URL is warm. A response is therefore at most
  2 × TTL old. Errors are never cached (a failed refresh leaves the entry to expire);
- endpoints over the daily batch tables (/metrics/*, /items/*), which change when a Dagster
  asset recomputes a day, use the longer ``settings.api_batch_cache_ttl_s``;
- only URLs that FastAPI validated and answered with 200 are ever stored, so serving exactly the
  same URL (path + normalized query) from :class:`CacheMiddleware` skips no validation. The API
  key is still checked there; without a valid key the request goes on to FastAPI (→ 401).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("clickguard.api.cache")

Producer = Callable[[], Awaitable[bytes]]


def cache_key(path: str, query_string: bytes) -> str:
    """Path plus the query with its parameters sorted (same URL, any parameter order)."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return f"{path}?{urlencode(sorted(pairs))}"


@dataclass
class Entry:
    fresh_until: float
    ttl_s: float
    body: bytes
    produce: Producer
    route: str  # route template, for the request metrics


class ResponseCache:
    """TTL cache of response bytes keyed by :func:`cache_key`; bounded to ``max_entries``."""

    def __init__(self, ttl_s: float, max_entries: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def lookup(self, key: str) -> Entry | None:
        """A servable entry (refreshed in the background when stale), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = time.monotonic()
        if now < entry.fresh_until:
            self.hits += 1
            return entry
        if now < entry.fresh_until + entry.ttl_s:
            self.hits += 1
            if key not in self._inflight:  # claim the refresh now, so it starts only once
                future = self._claim(key)
                task = asyncio.create_task(
                    self._refresh(key, future, entry.produce, entry.route, entry.ttl_s)
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return entry
        return None

    async def get(
        self, key: str, produce: Producer, route: str = "", ttl_s: float | None = None
    ) -> bytes:
        """The cached bytes for ``key``, or ``produce()``'s (stored when caching is on).

        ``ttl_s`` overrides the cache's TTL for this entry (e.g. longer for daily tables)."""
        if not self.enabled:
            return await produce()
        entry = self.lookup(key)
        if entry is not None:
            return entry.body
        pending = self._inflight.get(key)
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending)
        self.misses += 1
        return await self._load(key, self._claim(key), produce, route, ttl_s or self.ttl_s)

    def _claim(self, key: str) -> asyncio.Future[bytes]:
        """Mark ``key`` as being loaded; later requests for it wait on this future."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        return future

    async def _load(
        self, key: str, future: asyncio.Future[bytes], produce: Producer, route: str, ttl_s: float
    ) -> bytes:
        try:
            body = await produce()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        else:
            future.set_result(body)
            self._entries[key] = Entry(time.monotonic() + ttl_s, ttl_s, body, produce, route)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return body
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    async def _refresh(
        self, key: str, future: asyncio.Future[bytes], produce: Producer, route: str, ttl_s: float
    ) -> None:
        try:
            await self._load(key, future, produce, route, ttl_s)
        except Exception as exc:  # noqa: BLE001 - the stale entry just expires
            log.warning("background refresh of %s failed: %s", key, exc)

    def clear(self) -> None:
        self._entries.clear()


class CacheMiddleware:
    """Answers a GET whose exact URL is warm in the cache, before routing; else passes it on."""

    def __init__(self, app: ASGIApp, cache: ResponseCache, api_key: str | None) -> None:
        self.app = app
        self.cache = cache
        self.api_key = api_key.encode() if api_key else None

    def _authorized(self, scope: Scope) -> bool:
        if self.api_key is None:
            return True
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                return secrets.compare_digest(value, self.api_key)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and self.cache.enabled
            and self._authorized(scope)
        ):
            entry = self.cache.lookup(cache_key(scope["path"], scope["query_string"]))
            if entry is not None:
                scope["cached_route"] = entry.route
                await send({
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(entry.body)).encode()),
                    ],
                })
                await send({"type": "http.response.body", "body": entry.body})
                return
        await self.app(scope, receive, send)
