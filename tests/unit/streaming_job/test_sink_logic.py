"""The sink's pure accounting (classification, in-batch dedup, watermark, CSV staging) and
the executor path's plumbing that needs no services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from clickguard.settings import Settings
from streaming_job import sink
from streaming_job.decode import OUTPUT_SCHEMA
from streaming_job.sink import (
    DELETE_STAGE,
    classify,
    clearing_stage,
    merge_offsets,
    next_watermark,
    offsets_json,
    stage_csv,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def row(eid: str | None, minutes: float, part: int, off: int, status: str = "ok") -> dict[str, Any]:
    r: dict[str, Any] = dict.fromkeys(OUTPUT_SCHEMA.names)
    r.update(
        event_id=eid, kafka_partition=part, kafka_offset=off, kafka_ts=T0, status=status,
        reason=None if status == "ok" else "not_wire_format",
    )
    if status == "ok":
        r.update(event_ts=T0 + timedelta(minutes=minutes), ingest_ts=T0, source="s",
                 session_id=1, event_type="click")
    return r


def table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA)


def test_every_row_in_exactly_one_bucket() -> None:
    t = table([
        row("a", 0, 1, 5),
        row("a", 0, 0, 9),  # same id, lower partition: this one is the first
        row("b", 1, 0, 1),
        row("b", 1, 0, 2),  # in-batch duplicate
        row("old", -30, 2, 1),  # before the watermark: late
        row(None, 0, 2, 2, status="dlq"),
        row("c", 5, 1, 1),
    ])
    c = classify(t, watermark=T0 - timedelta(minutes=10))
    assert c.input_rows == 7
    assert c.dlq.num_rows == 1 and c.late.column("event_id").to_pylist() == ["old"]
    kept = list(zip(c.on_time["event_id"].to_pylist(), c.on_time["kafka_partition"].to_pylist(),
                    c.on_time["kafka_offset"].to_pylist(), strict=True))
    assert kept == [("b", 0, 1), ("a", 0, 9), ("c", 1, 1)]  # in (partition, offset) order
    assert c.batch_duplicates == 2 and c.candidates == 5
    assert c.dlq.num_rows + c.late.num_rows + c.candidates == c.input_rows
    assert c.max_event_ts == T0 + timedelta(minutes=5)


def test_no_watermark_yet_means_nothing_is_late() -> None:
    c = classify(table([row("x", -600, 0, 1)]), watermark=None)
    assert c.late.num_rows == 0 and c.on_time.num_rows == 1


def test_event_exactly_at_the_watermark_is_on_time() -> None:
    c = classify(table([row("x", -10, 0, 1)]), watermark=T0 - timedelta(minutes=10))
    assert c.late.num_rows == 0 and c.on_time.num_rows == 1


def test_watermark_never_moves_back() -> None:
    delay = timedelta(minutes=10)
    assert next_watermark(None, None, delay) == (None, None)
    assert next_watermark(None, T0, delay) == (T0, T0 - delay)
    earlier = T0 - timedelta(hours=1)
    assert next_watermark(T0, earlier, delay) == (T0, T0 - delay)


def test_offsets_and_csv() -> None:
    t = table([row("a", 0, 1, 5), row("b", 0, 1, 7), row("c", 0, 3, 2)])
    assert offsets_json(t) == {"1": [5, 7], "3": [2, 2]}
    lines = stage_csv(classify(t, None).on_time).decode().splitlines()
    assert len(lines) == 3
    # nulls are empty and unquoted (NULL for COPY), strings quoted
    assert lines[0].startswith('"a",2026-01-01 12:00:00.000000Z,') and ",,," in lines[0]


def test_offsets_of_tasks_merge_per_partition() -> None:
    """The executor sink's ledger offsets: a Kafka partition split over tasks is one range."""
    tasks = ['[[1, 5, 9]]', '[[1, 10, 20], [3, 2, 2]]', "[]", None]
    assert merge_offsets(tasks) == {"1": [5, 20], "3": [2, 2]}
    assert merge_offsets([]) == {}


class RecordingCursor:
    def __init__(self) -> None:
        self.executed: list[tuple[str, Any]] = []

    def execute(self, query: str, params: Any = None) -> None:
        self.executed.append((query, params))


def test_clearing_stage_deletes_the_scratch_rows_after_the_load() -> None:
    def load(cur: Any) -> int:
        cur.execute("MOVE")
        return 7

    cur = RecordingCursor()
    assert clearing_stage(load, "q", 42)(cur) == 7  # what the load stored
    assert cur.executed == [("MOVE", None), (DELETE_STAGE, ("q", 42))]


def test_each_settings_gets_its_own_worker_sink(monkeypatch: Any) -> None:
    monkeypatch.setattr(sink, "_WORKER_SINKS", {})
    a = Settings(_env_file=None)
    b = a.model_copy(update={"topic_raw": "elsewhere"})

    def run(settings: Settings) -> None:  # a task with no rows: no connection is opened
        stats = list(sink.executor_stager(settings, "q", 1, "x", None, T0)(iter([])))
        assert stats[0].num_rows == 1

    run(a)
    run(Settings(_env_file=None))  # an equal settings (as unpickled on a worker): the same sink
    assert len(sink._WORKER_SINKS) == 1
    run(b)
    assert len(sink._WORKER_SINKS) == 2
    assert {s.settings.topic_raw for s in sink._WORKER_SINKS.values()} == {
        a.topic_raw, "elsewhere"}
