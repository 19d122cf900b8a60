"""ResponseCache: single flight, TTL, stale-while-revalidate, errors never cached, bounded size."""

from __future__ import annotations

import asyncio

import pytest

from api.cache import ResponseCache, cache_key


class Source:
    """A producer that counts calls and can be slowed down or made to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.value = b"v0"
        self.delay = 0.0
        self.fail = False

    async def __call__(self) -> bytes:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("db down")
        return self.value


def test_cache_key_ignores_parameter_order() -> None:
    assert cache_key("/anomalies", b"limit=3&min_score=1") == cache_key(
        "/anomalies", b"min_score=1&limit=3")
    assert cache_key("/anomalies", b"limit=3") != cache_key("/anomalies", b"limit=4")
    assert cache_key("/x", b"a=&b=1") == "/x?a=&b=1"


def test_concurrent_misses_run_one_query() -> None:
    async def main() -> None:
        cache, src = ResponseCache(10), Source()
        src.delay = 0.05
        bodies = await asyncio.gather(*(cache.get("k", src) for _ in range(20)))
        assert bodies == [b"v0"] * 20
        assert src.calls == 1
        assert (cache.misses, cache.hits) == (1, 19)

    asyncio.run(main())


def test_stale_entry_is_served_while_one_refresh_runs() -> None:
    async def main() -> None:
        cache, src = ResponseCache(0.1), Source()
        assert await cache.get("k", src) == b"v0"
        src.value = b"v1"
        assert await cache.get("k", src) == b"v0"  # fresh
        await asyncio.sleep(0.12)  # stale (< 2 x TTL): old body, refresh started
        assert await cache.get("k", src) == b"v0"
        assert await cache.get("k", src) == b"v0"
        await asyncio.sleep(0.01)
        assert src.calls == 2  # exactly one background refresh
        assert await cache.get("k", src) == b"v1"
        await asyncio.sleep(0.25)  # past 2 x TTL: a plain miss
        src.value = b"v2"
        assert await cache.get("k", src) == b"v2"

    asyncio.run(main())


def test_errors_reach_every_waiter_and_are_not_cached() -> None:
    async def main() -> None:
        cache, src = ResponseCache(10), Source()
        src.delay, src.fail = 0.05, True
        results = await asyncio.gather(*(cache.get("k", src) for _ in range(3)),
                                       return_exceptions=True)
        assert [str(r) for r in results] == ["db down"] * 3
        assert src.calls == 1
        src.fail = False
        assert await cache.get("k", src) == b"v0"
        assert src.calls == 2

    asyncio.run(main())


def test_ttl_zero_always_produces() -> None:
    async def main() -> None:
        cache, src = ResponseCache(0), Source()
        for _ in range(3):
            await cache.get("k", src)
        assert src.calls == 3 and not cache.enabled

    asyncio.run(main())


def test_size_is_bounded() -> None:
    async def main() -> None:
        cache, src = ResponseCache(10, max_entries=5), Source()
        for i in range(8):
            await cache.get(f"k{i}", src)
        assert len(cache._entries) == 5
        assert cache.lookup("k0") is None and cache.lookup("k7") is not None

    asyncio.run(main())


def test_failed_background_refresh_keeps_stale_until_expiry() -> None:
    async def main() -> None:
        cache, src = ResponseCache(0.05), Source()
        await cache.get("k", src)
        src.fail = True
        await asyncio.sleep(0.06)
        assert await cache.get("k", src) == b"v0"  # stale served; refresh fails in background
        await asyncio.sleep(0.06)
        with pytest.raises(RuntimeError, match="db down"):
            await cache.get("k", src)

    asyncio.run(main())


def test_per_entry_ttl_overrides_the_default() -> None:
    async def main() -> None:
        cache, src = ResponseCache(0.05), Source()
        await cache.get("daily", src, ttl_s=10)
        await cache.get("live", src)
        await asyncio.sleep(0.12)  # past 2 x the default TTL
        src.value = b"v1"
        assert await cache.get("daily", src, ttl_s=10) == b"v0"  # still fresh
        assert await cache.get("live", src) == b"v1"  # expired: reloaded

    asyncio.run(main())
