"""EWMA baseline and z-score of the TRAFFIC_SPIKE rule (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streaming_job.anomalies import ewma_baseline, full_minutes, zscore

M = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def minutes(counts: list[int]) -> list[tuple[datetime, int]]:
    start = M - timedelta(minutes=len(counts))
    return [(start + timedelta(minutes=i), c) for i, c in enumerate(counts)]


def test_steady_history_flags_a_spike_but_not_noise() -> None:
    base = ewma_baseline(M, minutes([100, 104, 98, 101, 99, 100]), alpha=0.3)
    assert base is not None and base.minutes == 5  # the first minute may be partial
    assert base.mean == pytest.approx(100, abs=2)
    assert zscore(105, base) < 4  # Poisson floor: sqrt(100) = 10
    assert zscore(400, base) > 4


def test_no_history_gives_none() -> None:
    assert ewma_baseline(M, [], alpha=0.3) is None
    # one minute long ago, then silence: no full minute, so no baseline (not a decayed 100)
    assert ewma_baseline(M, [(M - timedelta(minutes=5), 100)], alpha=0.5) is None


def test_relative_floor_ignores_a_small_share_of_a_large_count() -> None:
    steady = minutes([60_000] * 6)  # a paced producer: no variance at all
    poisson_only = ewma_baseline(M, steady, alpha=0.3)
    relative = ewma_baseline(M, steady, alpha=0.3, min_relative_std=0.1)
    assert poisson_only is not None and relative is not None
    assert zscore(63_000, poisson_only) > 4  # +5 % would be flagged on the Poisson floor alone
    assert zscore(63_000, relative) < 1
    quiet = ewma_baseline(M, minutes([1_000] * 6), alpha=0.3, min_relative_std=0.1)
    assert quiet is not None and zscore(4_000, quiet) == pytest.approx(30)


# --- warm-up, gaps, partial minutes, earlier spikes (issue 9) ---------------------------------
def test_no_baseline_until_full_minutes_exist() -> None:
    """Cold start: the first minute of a series may be partial, so it is never history."""
    assert ewma_baseline(M, minutes([100]), alpha=0.3) is None
    base = ewma_baseline(M, minutes([7, 100, 100]), alpha=0.3)
    assert base is not None and base.minutes == 2  # the partial 7 is left out
    assert base.mean == pytest.approx(100)


def test_outage_gap_is_not_a_zero_and_its_edges_are_left_out() -> None:
    # ten steady minutes, a partial one, a 12-minute outage, a partial one, then the judged minute
    hist = minutes([1000] * 10 + [300] + [0] * 12 + [450])
    base = ewma_baseline(M, hist, alpha=0.3, min_relative_std=0.1)
    assert base is not None
    assert base.minutes == 9  # 10 full minutes minus the first; 300 and 450 are edge minutes
    assert base.mean == pytest.approx(1000)
    assert zscore(1000, base) == pytest.approx(0)  # traffic resuming is not a spike
    # the old treatment (gaps = 0, edges kept) made the same resumption a huge z-score
    gap_as_zero = 1000.0
    for x in [300] + [0] * 12 + [450]:
        gap_as_zero += 0.3 * (x - gap_as_zero)
    assert (1000 - gap_as_zero) / max(gap_as_zero**0.5, 0.1 * gap_as_zero) > 4


def test_an_isolated_spike_is_not_learnt_but_a_level_shift_is() -> None:
    spiky = minutes([500] * 6 + [2000] + [500] * 3)
    base = ewma_baseline(M, spiky, alpha=0.3, min_relative_std=0.1, outlier_z=4)
    assert base is not None and base.mean == pytest.approx(500)
    assert zscore(800, base) > 4  # the next spike still stands out
    learnt = ewma_baseline(M, spiky, alpha=0.3, min_relative_std=0.1)
    assert learnt is not None and zscore(800, learnt) < 4  # without it, the first hides it
    shifted = minutes([500] * 6 + [2000] * 4)
    base = ewma_baseline(M, shifted, alpha=0.3, min_relative_std=0.1, outlier_z=4,
                         level_shift_minutes=3)
    assert base is not None and base.mean == pytest.approx(2000)  # the new normal
    assert zscore(2100, base) < 4


def test_full_minutes_marks_edges() -> None:
    hist = minutes([5, 10, 10, 0, 10, 10, 10])
    kept = full_minutes(M, hist)
    start = M - timedelta(minutes=7)
    # 5 = series start, second 10 is before the gap, first 10 after the gap follows it
    assert kept == [start + timedelta(minutes=i) for i in (1, 5, 6)]
