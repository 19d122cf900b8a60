"""Pure parts of the sending core: pacing and latency percentiles."""

from __future__ import annotations

import time

import numpy as np
import pytest

from clickguard_producer.core import TokenBucket, latency_percentiles


def test_token_bucket_holds_the_rate() -> None:
    bucket = TokenBucket(2_000, burst=20)
    t0 = time.monotonic()
    for _ in range(50):
        bucket.take(20)  # 1,000 tokens at 2,000/s: ~0.49 s after the first burst
    took = time.monotonic() - t0
    assert 0.45 <= took < 3.0  # generous upper bound: the machine is shared


def test_latency_percentiles_match_numpy() -> None:
    lat = [i / 1000 for i in range(1, 1001)]  # 1..1000 ms
    got = latency_percentiles(lat)
    ms = np.arange(1, 1001, dtype=float)
    assert got == {
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p95": round(float(np.percentile(ms, 95)), 2),
        "p99": round(float(np.percentile(ms, 99)), 2),
        "max": 1000.0,
    }
    assert got["p50"] == pytest.approx(500.5)
    assert latency_percentiles([]) == {}
