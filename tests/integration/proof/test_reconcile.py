"""Reconciliation against the real database: each kind of discrepancy is counted exactly."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from clickguard.settings import Settings
from clickguard_proof.reconcile import ledger_last_offsets, reconcile

pytestmark = pytest.mark.integration
TS = datetime(2002, 3, 4, 5, 6, 7, tzinfo=UTC)
PART = 5  # offsets far above anything a real run writes, so no real row can match
BASE_OFFSET = 9_000_000_000


def _insert_event(pg: psycopg.Connection, event_id: str, offset: int) -> None:
    pg.execute(
        "INSERT INTO events (event_id, event_ts, ingest_ts, kafka_ts, batch_start_ts, commit_ts,"
        " source, session_id, event_type, kafka_partition, kafka_offset, batch_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, 'test', 1, 'click', %s, %s, 0)",
        (event_id, TS, TS, TS, TS, TS, PART, offset),
    )


@pytest.fixture
def run_id(pg: psycopg.Connection, settings: Settings) -> Iterator[str]:
    rid = f"rec-{uuid.uuid4().hex[:10]}"
    yield rid
    pg.execute("DELETE FROM events WHERE event_id LIKE %s", (f"{rid}-%",))
    pg.execute("DELETE FROM late_events WHERE event_id LIKE %s", (f"{rid}-%",))
    pg.execute(
        "DELETE FROM dlq_events WHERE source_partition = %s AND source_offset >= %s",
        (PART, BASE_OFFSET),
    )


def test_counts_lost_duplicated_extra_and_misrouted(
    pg: psycopg.Connection, settings: Settings, run_id: str, tmp_path: Path
) -> None:
    o = BASE_OFFSET
    lines = [f"{run_id}-{i}\tvalid\t{PART}\t{o + i}" for i in range(10)]
    lines.append(f"{run_id}-3\tvalid\t{PART}\t{o + 10}")  # Kafka holds id 3 twice
    lines.append(f"{run_id}-4\tduplicate\t{PART}\t{o + 11}")  # injected duplicate of 4
    lines.append(f"{run_id}-50\tlate\t{PART}\t{o + 12}")
    lines.append(f"-\tmalformed:not_wire_format\t{PART}\t{o + 13}")
    lines.append(f"{run_id}-51\tlate\t{PART}\t{o + 14}")  # never routed: late_missing
    ledger = tmp_path / "ledger.tsv"
    ledger.write_text("\n".join(lines) + "\n")
    for i in range(8):  # ids 8 and 9 are lost
        _insert_event(pg, f"{run_id}-{i}", o + i)
    _insert_event(pg, f"{run_id}-77", o + 77)  # stored but never acknowledged: extra
    pg.execute(
        "INSERT INTO late_events (source_topic, source_partition, source_offset, event_id,"
        " event_ts, session_id, event_type, watermark, lateness_ms, payload, detected_at)"
        " VALUES (%s, %s, %s, %s, %s, 1, 'click', %s, 5, '{}', %s)",
        (settings.topic_raw, PART, o + 12, f"{run_id}-50", TS, TS, TS),
    )
    pg.execute(
        "INSERT INTO dlq_events (source_topic, source_partition, source_offset, reason,"
        " detected_at) VALUES (%s, %s, %s, 'not_wire_format', %s)",
        (settings.topic_raw, PART, o + 13, TS),
    )

    r = reconcile(pg, settings, ledger, run_id=run_id)

    assert r.acked == 15
    assert r.acked_by_kind == {
        "valid": 11, "duplicate": 1, "late": 2, "malformed:not_wire_format": 1,
    }
    assert r.acked_valid_ids == 10
    assert r.stored == 8
    assert r.lost == 2
    assert r.duplicated == 1  # the second Kafka copy of id 3
    assert r.extra == 1
    assert r.details["stored_from_other_offset"] == 1  # id 3's second ledger line
    assert r.details["late_missing"] == 1
    assert r.details["dlq_missing"] == 0
    assert r.details["duplicates_not_stored"] == 0
    assert r.ok is False
    assert ledger_last_offsets(ledger) == {PART: o + 14}


def test_clean_run_is_ok(
    pg: psycopg.Connection, settings: Settings, run_id: str, tmp_path: Path
) -> None:
    o = BASE_OFFSET + 1000
    ledger = tmp_path / "ledger.tsv"
    ledger.write_text("".join(f"{run_id}-{i}\tvalid\t{PART}\t{o + i}\n" for i in range(5)))
    for i in range(5):
        _insert_event(pg, f"{run_id}-{i}", o + i)
    r = reconcile(pg, settings, ledger, run_id=run_id)
    assert (r.acked, r.stored, r.lost, r.duplicated, r.extra, r.ok) == (5, 5, 0, 0, 0, True)
