"""``dlq_replay`` job: selected DLQ records go back to the raw topic byte for byte: key, value and
the original headers (repeated keys, a null value, and none at all), without our error headers."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import psycopg
import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition

from clickguard import kafka as kafka_helpers
from clickguard.contract import encode, parsed_schema, split
from clickguard.settings import Settings
from clickguard_dagster.cli import dlq_replay as dlq_replay_cli
from clickguard_dagster.jobs import dlq_replay
from clickguard_dagster.resources import build_resources

pytestmark = pytest.mark.integration


def event(i: int) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp() * 1000)
    return {
        "event_id": f"replay-{i}", "event_ts": now, "ingest_ts": now, "source": "test",
        "session_id": 7, "event_type": "click", "item_id": i,
    }


def consume(settings: Settings, start: dict[int, int], n: int) -> list[Any]:
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers, "group.id": "replay-test",
        "enable.auto.commit": False,
    })
    consumer.assign([TopicPartition(settings.topic_raw, p, o) for p, o in start.items()])
    out: list[Any] = []
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while len(out) < n and datetime.now(UTC) < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and not msg.error():
            out.append(msg)
    consumer.close()
    return out


def test_replay_selected_reason_and_range(
    clean: psycopg.Connection, settings: Settings, stack: Any
) -> None:
    now = datetime.now(UTC)
    rows = [
        # (reason, detected_at, event index)
        ("unknown_schema_id", now - timedelta(minutes=5), 0),
        ("unknown_schema_id", now - timedelta(minutes=4), 1),
        ("unknown_schema_id", now - timedelta(days=2), 2),  # outside the time range
        ("out_of_range", now - timedelta(minutes=3), 3),  # other reason
    ]
    # original headers of record 0: order kept, a repeated key, a null value, binary bytes
    headers0 = [("traceparent", b"00-4bf92f-00f067-01"), ("x-tag", b"a"), ("x-tag", None),
                ("bin", bytes(range(256)))]
    originals = {0: headers0, 1: None}
    values: dict[int, bytes] = {}
    for offset, (reason, detected, i) in enumerate(rows):
        h = originals.get(i)
        values[i] = encode(event(i), 1)
        clean.execute(
            "INSERT INTO dlq_events (source_topic, source_partition, source_offset, reason,"
            " event_id, raw_value, raw_key, detected_at, raw_header_keys, raw_header_values)"
            " VALUES (%s, 1, %s, %s, %s, %s, %s, %s, %s::bytea[], %s::bytea[])",
            (settings.topic_raw, 100 + offset, reason, f"replay-{i}", values[i], b"7", detected,
             [k.encode() for k, _ in h] if h else None,
             [v for _, v in h] if h else None),
        )
    start = kafka_helpers.end_offsets(settings, settings.topic_raw)
    config = {"reasons": ["unknown_schema_id"],
              "since": (now - timedelta(hours=1)).isoformat(), "until": now.isoformat()}
    res = build_resources(settings)
    res.pop("spark")
    result = dlq_replay.execute_in_process(
        run_config={"ops": {"replay_dlq_records": {"config": config}}}, resources=res
    )
    assert result.output_for_node("replay_dlq_records") == {
        "selected": 2, "published": 2, "failed": 0, "skipped_no_bytes": 0
    }
    msgs = consume(settings, start, 2)
    by_id = {
        fastavro.schemaless_reader(io.BytesIO(split(m.value())[1]), parsed_schema())["event_id"]:
        m for m in msgs
    }
    assert sorted(by_id) == ["replay-0", "replay-1"]  # event_id kept: dedup still applies
    assert {m.key() for m in msgs} == {b"7"}
    assert {i: by_id[f"replay-{i}"].value() for i in (0, 1)} == {i: values[i] for i in (0, 1)}
    # exactly the original headers, nothing of ours added
    assert by_id["replay-0"].headers() == headers0
    assert by_id["replay-1"].headers() is None
    replayed = clean.execute(
        "SELECT source_offset FROM dlq_events WHERE replayed_at IS NOT NULL ORDER BY 1"
    ).fetchall()
    assert replayed == [(100,), (101,)]
    again = dlq_replay.execute_in_process(
        run_config={"ops": {"replay_dlq_records": {"config": config}}}, resources=res
    )
    assert again.output_for_node("replay_dlq_records")["selected"] == 0
    # the shell command runs the same job in the platform's instance
    out = CliRunner().invoke(
        dlq_replay_cli, ["--reason", "unknown_schema_id", "--include-replayed", "--dry-run"]
    )
    assert out.exit_code == 0, out.output
    # Dagster's own log lines may interleave with ours in the captured output
    assert (
        "dlq-replay: selected 3, published 0, failed 0, skipped (no bytes) 0 (dry run); run "
        in out.output
    )
