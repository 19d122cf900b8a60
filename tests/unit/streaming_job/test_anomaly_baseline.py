"""EWMA baseline and z-score of the TRAFFIC_SPIKE rule (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streaming_job.anomalies import ewma_baseline, zscore

M = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def minutes(counts: list[int]) -> list[tuple[datetime, int]]:
    start = M - timedelta(minutes=len(counts))
    return [(start + timedelta(minutes=i), c) for i, c in enumerate(counts)]


def test_steady_history_flags_a_spike_but_not_noise() -> None:
    base = ewma_baseline(M, minutes([100, 104, 98, 101, 99, 100]), alpha=0.3)
    assert base is not None and base.minutes == 6
    assert base.mean == pytest.approx(100, abs=2)
    assert zscore(105, base) < 4  # Poisson floor: sqrt(100) = 10
    assert zscore(400, base) > 4


def test_gaps_count_as_zero_and_no_history_gives_none() -> None:
    assert ewma_baseline(M, [], alpha=0.3) is None
    hist = [(M - timedelta(minutes=5), 100)]  # then four silent minutes
    base = ewma_baseline(M, hist, alpha=0.5)
    assert base is not None and base.minutes == 5
    assert base.mean == pytest.approx(100 * 0.5**4)


def test_relative_floor_ignores_a_small_share_of_a_large_count() -> None:
    steady = minutes([60_000] * 6)  # a paced producer: no variance at all
    poisson_only = ewma_baseline(M, steady, alpha=0.3)
    relative = ewma_baseline(M, steady, alpha=0.3, min_relative_std=0.1)
    assert poisson_only is not None and relative is not None
    assert zscore(63_000, poisson_only) > 4  # +5 % would be flagged on the Poisson floor alone
    assert zscore(63_000, relative) < 1
    quiet = ewma_baseline(M, minutes([1_000] * 6), alpha=0.3, min_relative_std=0.1)
    assert quiet is not None and zscore(4_000, quiet) == pytest.approx(30)
