"""A small per-worker cache of serialized responses, with single-flight on a miss.

Dashboards poll the same few URLs; under load many requests for one URL arrive within a second.
Caching the JSON bytes for ``settings.api_cache_ttl_s`` (default 1 s, 0 = off) means one query per
URL per second per worker, whatever the request rate, and concurrent misses wait for one query
instead of each running it. Errors are never cached.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable


class ResponseCache:
    """TTL cache of bytes keyed by (path, sorted query); bounded to ``max_entries``."""

    def __init__(self, ttl_s: float, max_entries: int = 2048) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: str, produce: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached bytes for ``key``, or ``produce()``'s (stored when the TTL is > 0)."""
        if self.ttl_s <= 0:
            return await produce()
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            self.hits += 1
            return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending)
        self.misses += 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            body = await produce()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters (if any) re-raise it themselves
            raise
        else:
            future.set_result(body)
            self._store(key, body, time.monotonic() + self.ttl_s)
            return body
        finally:
            del self._inflight[key]

    def _store(self, key: str, body: bytes, expires: float) -> None:
        self._entries[key] = (expires, body)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
