"""The one SLO query: its window, its bound, and reading its row (tuple or dict)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clickguard import slo

START = datetime(2026, 12, 1, 10, tzinfo=UTC)
END = START + timedelta(minutes=5)


def test_query_window_and_bound() -> None:
    sql, params, window = slo.slo_query((START, END), cdf=False, max_events=100)
    assert window == (START, END) and (params["start"], params["end"]) == (START, END)
    assert "commit_ts >= %(start)s AND commit_ts < %(end)s" in sql
    assert "ORDER BY commit_ts DESC LIMIT %(limit)s" in sql and params["limit"] == 100
    assert "%(cdf)s" not in sql
    unbounded, _, _ = slo.slo_query((START, END))
    assert "LIMIT" not in unbounded and "%(cdf)s" in unbounded
    now = START + timedelta(hours=1)
    _, _, recent = slo.slo_query(timedelta(minutes=5), now=now)
    assert recent == (now - timedelta(minutes=5), now)
    with pytest.raises(ValueError):
        slo.slo_query((START, END), column="kafka_ts")


def test_a_row_reads_the_same_as_tuple_or_dict() -> None:
    stage = ([10.0, 20.0, 30.0], 15.0, 1.0, 40.0)
    values = [7, *[v for _ in slo.STAGES for v in stage]]
    names = ["events"] + [f"{n}_{k}" for n in slo.STAGES for k in ("pct", "mean", "min", "max")]
    from_tuple = slo.slo_from_row(tuple(values), (START, END), cdf=False)
    from_dict = slo.slo_from_row(dict(zip(names, values, strict=True)), (START, END), cdf=False)
    assert from_tuple == from_dict
    assert from_tuple.events == 7
    e2e = from_tuple.stages["end_to_end"]
    assert (e2e.p50, e2e.p95, e2e.p99, e2e.max) == (10.0, 20.0, 30.0, 40.0)


def test_no_events_gives_nulls() -> None:
    values = [0, *[v for _ in slo.STAGES for v in (None, None, None, None)]]
    result = slo.slo_from_row(values, (START, END), cdf=False)
    assert result.events == 0 and result.stages["spark_to_db"].p95 is None
