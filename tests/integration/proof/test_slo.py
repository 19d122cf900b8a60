"""compute_slo over known rows in the real events table = a direct numpy computation."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from clickguard.settings import Settings
from clickguard.slo import PERCENTILES, STAGES, compute_slo
from clickguard_proof.slo import slo_report_for

pytestmark = pytest.mark.integration

N = 3000
BASE = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)  # far from any real traffic


@pytest.fixture
def known_rows(pg: psycopg.Connection) -> dict[str, np.ndarray]:
    """N events with random per-stage latencies in whole microseconds (PostgreSQL's precision)."""
    rng = np.random.default_rng(20010203)
    us = {
        "produce_to_kafka": rng.integers(100, 50_000, N),
        "kafka_to_spark": rng.lognormal(11, 1.0, N).astype(np.int64),
        "spark_to_db": rng.integers(1_000, 900_000, N),
    }
    prefix = f"slo-test-{uuid.uuid4().hex[:8]}"
    rows = []
    for i in range(N):
        ingest = BASE + timedelta(milliseconds=i * 7)
        kafka = ingest + timedelta(microseconds=int(us["produce_to_kafka"][i]))
        start = kafka + timedelta(microseconds=int(us["kafka_to_spark"][i]))
        commit = start + timedelta(microseconds=int(us["spark_to_db"][i]))
        rows.append((f"{prefix}-{i}", ingest, ingest, kafka, start, commit, "test", i, "click",
                     0, i, 0))
    with pg.cursor() as cur, cur.copy(
        "COPY events (event_id, event_ts, ingest_ts, kafka_ts, batch_start_ts, commit_ts, source,"
        " session_id, event_type, kafka_partition, kafka_offset, batch_id) FROM STDIN"
    ) as cp:
        for r in rows:
            cp.write_row(r)
    ms = {k: v / 1000.0 for k, v in us.items()}
    ms["end_to_end"] = ms["produce_to_kafka"] + ms["kafka_to_spark"] + ms["spark_to_db"]
    yield ms
    pg.execute("DELETE FROM events WHERE event_id LIKE %s", (f"{prefix}-%",))


def test_percentiles_equal_numpy_over_every_row(
    pg: psycopg.Connection, known_rows: dict[str, np.ndarray], settings: Settings, tmp_path
) -> None:
    window = (BASE - timedelta(seconds=1), BASE + timedelta(hours=1))
    result = compute_slo(pg, window)
    assert result.events == N
    for name in STAGES:
        expected = np.percentile(known_rows[name], [p * 100 for p in PERCENTILES])
        st = result.stages[name]
        got = [st.p50, st.p95, st.p99]
        assert got == pytest.approx(list(expected), rel=1e-12, abs=1e-9), name
        assert st.max == pytest.approx(known_rows[name].max(), abs=1e-9)
        assert st.min == pytest.approx(known_rows[name].min(), abs=1e-9)
        assert st.mean == pytest.approx(known_rows[name].mean(), rel=1e-9)
        assert st.cdf_ms[0] == pytest.approx(known_rows[name].min(), abs=1e-9)
        assert st.cdf_ms[-1] == pytest.approx(known_rows[name].max(), abs=1e-9)
    # the window is half-open on commit_ts: cut it at the 1000th row's commit time
    by_ingest = compute_slo(pg, (BASE, BASE + timedelta(milliseconds=1000 * 7)),
                            column="ingest_ts", cdf=False)
    assert by_ingest.events == 1000
    assert by_ingest.stages["end_to_end"].p99 == pytest.approx(
        float(np.percentile(known_rows["end_to_end"][:1000], 99)), rel=1e-12
    )
    paths = slo_report_for(result, settings, min_events=N).write(tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert doc["data"]["events"] == N and doc["data"]["enough_events"] is True
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_window_gives_no_percentiles(pg: psycopg.Connection) -> None:
    empty = compute_slo(pg, (datetime(1999, 1, 1, tzinfo=UTC), datetime(1999, 1, 2, tzinfo=UTC)))
    assert empty.events == 0
    assert empty.stages["end_to_end"].p95 is None
