"""Sensors against the real DLQ topic and a local HTTP server standing in for Slack's Web API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from confluent_kafka import Producer

from clickguard import kafka as kafka_helpers
from clickguard.settings import Settings
from clickguard_dagster.resources import build_resources
from clickguard_dagster.sensors.dlq import build_dlq_alert_sensor
from clickguard_dagster.sensors.stream_health import build_stream_health_sensor
from tests.integration.clickguard_dagster.slack import SlackStandIn

pytestmark = pytest.mark.integration
dlq_alert_sensor = build_dlq_alert_sensor(60)
stream_health_sensor = build_stream_health_sensor(60)


def sensor_resources(settings: Settings, slack: SlackStandIn, token: str = "xoxb-test") -> dict:
    res = build_resources(settings)
    res.pop("spark")
    res["slack"] = slack.resource(token)
    return res


def produce_dlq(settings: Settings, conn: psycopg.Connection, n: int, reason: str) -> None:
    """n dead-lettered records on the DLQ topic, and their rows in dlq_events."""
    producer = Producer(kafka_helpers.producer_config(settings))
    for i in range(n):
        producer.produce(settings.topic_dlq, value=f"garbage-{reason}-{i}".encode(),
                         headers=[("reason", reason.encode())])
    assert producer.flush(30) == 0
    base = conn.execute("SELECT coalesce(max(source_offset), 0) FROM dlq_events").fetchone()[0]
    conn.cursor().executemany(
        "INSERT INTO dlq_events (source_topic, source_partition, source_offset, reason,"
        " raw_value, detected_at) VALUES (%s, 0, %s, %s, %s, now())",
        [(settings.topic_raw, base + i + 1, reason, b"x") for i in range(n)],
    )


def tick(resources: dict, cursor: str | None) -> dg.SensorResult:
    ctx = dg.build_sensor_context(cursor=cursor, resources=resources)
    result = dlq_alert_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


def history(conn: psycopg.Connection, key: str = "dlq") -> list[tuple]:
    return conn.execute(
        "SELECT seq, transition, severity, new_messages, status, delivered_via"
        " FROM alert_history WHERE alert_key = %s ORDER BY seq", (key,)
    ).fetchall()


def test_dlq_alert_lifecycle_with_slack(
    clean: psycopg.Connection, settings: Settings, slack: SlackStandIn, stack: Any
) -> None:
    res = sensor_resources(settings, slack)
    first = tick(res, None)  # baseline: remembers the end offsets, sends nothing
    assert "baseline" in str(first.skip_reason)
    assert slack.calls == []

    produce_dlq(settings, clean, 3, "avro_decode_error")
    opened = tick(res, first.cursor)
    assert [c["text"] for c in slack.calls] == [
        "DLQ WARNING: 3 new dead-lettered records"
    ]
    fields = slack.calls[0]["blocks"][1]["fields"]
    assert fields[0]["text"] == "*New messages*\n3"
    assert "• `avro_decode_error`: 3" in slack.calls[0]["blocks"][2]["text"]["text"]
    assert slack.calls[0]["channel"] == "#clickguard-test"
    assert slack.calls[0]["auth"] == "Bearer xoxb-test"

    produce_dlq(settings, clean, 2, "avro_decode_error")
    suppressed = tick(res, opened.cursor)  # same severity inside the 10-minute cooldown
    assert len(slack.calls) == 1
    assert "suppressed WARNING" in str(suppressed.skip_reason)

    produce_dlq(settings, clean, 25, "unknown_schema_id")
    escalated = tick(res, suppressed.cursor)  # higher severity: sent at once
    assert slack.calls[-1]["text"] == "DLQ escalated to CRITICAL: 25 new records"
    assert "1 repeat(s) suppressed" in slack.calls[-1]["blocks"][-1]["elements"][0]["text"]

    resolved = tick(res, escalated.cursor)  # no growth
    assert slack.calls[-1]["text"] == "DLQ RESOLVED: no new records (was CRITICAL)"
    assert len(slack.calls) == 3

    # a daemon restart from the saved cursor repeats nothing
    again = tick(res, resolved.cursor)
    assert len(slack.calls) == 3
    assert "0 new DLQ message(s)" in str(again.skip_reason)

    # an alert is sent, then the daemon dies before saving the cursor: the next evaluation
    # (from the older cursor) adopts the state saved with the alert and does not re-send it
    produce_dlq(settings, clean, 4, "missing_required")
    reopened = tick(res, again.cursor)
    assert slack.calls[-1]["text"] == "DLQ WARNING: 4 new dead-lettered records"
    produce_dlq(settings, clean, 1, "missing_required")
    after_crash = tick(res, again.cursor)  # the cursor of `reopened` was "lost"
    assert len(slack.calls) == 4
    assert "1 new DLQ message(s)" in str(after_crash.skip_reason)
    seq = json.loads(reopened.cursor)["state"]["seq"]
    assert json.loads(after_crash.cursor)["state"]["seq"] == seq == 4

    assert history(clean) == [
        (1, "OPEN", "WARNING", 3, "sent", "slack"),
        (2, "ESCALATE", "CRITICAL", 25, "sent", "slack"),
        (3, "RESOLVED", "CRITICAL", 0, "sent", "slack"),
        (4, "OPEN", "WARNING", 4, "sent", "slack"),
    ]
    recorded = Path(settings.home) / "slack_messages.recorded.json"  # for the closing note
    recorded.write_text(json.dumps(slack.calls, indent=2) + "\n")


def test_failed_delivery_is_retried_not_lost(
    clean: psycopg.Connection, settings: Settings, slack: SlackStandIn, stack: Any
) -> None:
    res = sensor_resources(settings, slack)
    base = tick(res, None)
    produce_dlq(settings, clean, 2, "out_of_range")
    slack.fail_next = 1  # Slack answers ok=false once
    failed = tick(res, base.cursor)
    assert slack.calls == []
    assert failed.cursor == base.cursor  # not advanced: the alert is still owed
    assert history(clean) == [(1, "OPEN", "WARNING", 2, "failed", None)]
    retried = tick(res, failed.cursor)
    assert [c["text"] for c in slack.calls] == ["DLQ WARNING: 2 new dead-lettered records"]
    assert history(clean) == [(1, "OPEN", "WARNING", 2, "sent", "slack")]
    assert json.loads(retried.cursor)["state"]["seq"] == 1


def test_without_token_alerts_go_to_log_and_history(
    clean: psycopg.Connection, settings: Settings, slack: SlackStandIn, stack: Any
) -> None:
    res = sensor_resources(settings, slack, token="")
    base = tick(res, None)
    produce_dlq(settings, clean, 21, "not_wire_format")
    tick(res, base.cursor)
    assert slack.calls == []
    assert history(clean) == [(1, "OPEN", "CRITICAL", 21, "logged", "log")]


def test_stream_health_observes_and_alerts(
    clean: psycopg.Connection, settings: Settings, slack: SlackStandIn, stack: Any
) -> None:
    res = sensor_resources(settings, slack)
    raw = Producer(kafka_helpers.producer_config(settings))
    for _ in range(2):
        raw.produce(settings.topic_raw, value=b"x", partition=0)
    assert raw.flush(30) == 0
    end = kafka_helpers.end_offsets(settings, settings.topic_raw)
    # the sink's format: {partition: [first, last]} of the batch's rows; last = end - 1
    offsets = json.dumps({str(p): [max(0, o - 5), o - 1] for p, o in end.items() if o > 0})
    now = datetime.now(UTC)
    ledger = (
        "INSERT INTO batch_ledger (query_id, batch_id, started_at, committed_at, input_rows,"
        " stored, dlq, late, duplicates, anomalies, duration_ms, state_rows, offsets)"
        " VALUES ('q', %s, %s, %s, 10, 10, 0, 0, 0, 0, 50, 1234, %s)"
    )
    clean.execute(ledger, (1, now, now, offsets))
    clean.execute("INSERT INTO stream_heartbeat VALUES ('streaming', %s, 'running', '{}')", (now,))
    healthy = stream_health_sensor(dg.build_sensor_context(resources=res))
    obs = healthy.asset_events[0]
    assert obs.asset_key == dg.AssetKey("stream_events")
    md = {k: v.value for k, v in obs.metadata.items()}
    assert (md["status"], md["consumer_lag"], md["state_rows"], md["last_batch_id"]) == (
        "healthy", 0, 1234, 1
    )
    assert slack.calls == []

    for _ in range(3):  # records the stream has not read yet
        raw.produce(settings.topic_raw, value=b"x", partition=0)
    assert raw.flush(30) == 0
    clean.execute("UPDATE stream_heartbeat SET status = 'failed'")
    down = stream_health_sensor(dg.build_sensor_context(cursor=healthy.cursor, resources=res))
    assert down.asset_events[0].metadata["status"].value == "down"
    assert down.asset_events[0].metadata["consumer_lag"].value == 3
    assert slack.calls[-1]["text"] == "Stream DOWN (CRITICAL): heartbeat reports failed"

    clean.execute("UPDATE stream_heartbeat SET status = 'running', beat_at = now()")
    up = stream_health_sensor(dg.build_sensor_context(cursor=down.cursor, resources=res))
    assert up.asset_events[0].metadata["status"].value == "healthy"
    assert slack.calls[-1]["text"] == "Stream RESOLVED: batches are committing again"
    assert len(slack.calls) == 2
    assert history(clean, "stream_health") == [
        (1, "OPEN", "CRITICAL", 0, "sent", "slack"),
        (2, "RESOLVED", "CRITICAL", 0, "sent", "slack"),
    ]
    old = now - timedelta(hours=1)
    clean.execute("UPDATE stream_heartbeat SET beat_at = %s", (old,))
    clean.execute("UPDATE batch_ledger SET committed_at = %s", (old,))
    stale = stream_health_sensor(dg.build_sensor_context(cursor=up.cursor, resources=res))
    assert stale.asset_events[0].metadata["status"].value == "down"
    assert slack.calls[-1]["text"].startswith("Stream DOWN (CRITICAL): no heartbeat or batch for")


def test_stream_restart_below_threshold_is_quiet_crash_loop_is_one_alert(
    clean: psycopg.Connection, settings: Settings, slack: SlackStandIn, stack: Any
) -> None:
    """A failed run's own 'stopped' beat while the supervisor restarts it is not 'down'."""
    from clickguard import stream_state
    from clickguard.stream_state import FailedRun, StreamRunState

    res = sensor_resources(settings, slack)
    now = datetime.now(UTC)
    clean.execute(
        "INSERT INTO batch_ledger (query_id, batch_id, started_at, committed_at, input_rows,"
        " stored, dlq, late, duplicates, anomalies, duration_ms, state_rows, offsets)"
        " VALUES ('q', 1, %s, %s, 10, 10, 0, 0, 0, 0, 50, 0, '{}')", (now, now),
    )
    st = StreamRunState(threshold=2)
    err = "InsufficientPrivilege: permission denied for table events"
    st.record_failure(FailedRun(1, err, 2, False, 30.0))
    beat = ("INSERT INTO stream_heartbeat VALUES (%s, now(), %s, %s) ON CONFLICT (component)"
            " DO UPDATE SET beat_at = now(), status = EXCLUDED.status, details = EXCLUDED.details")
    clean.execute(beat, (stream_state.SUPERVISOR_COMPONENT, st.state, json.dumps(st.to_dict())))
    # newest beat: the failed run's
    clean.execute(beat, (stream_state.DRIVER_COMPONENT, "stopped", "{}"))
    quiet = stream_health_sensor(dg.build_sensor_context(resources=res))
    md = quiet.asset_events[0].metadata
    assert (md["status"].value, md["run_state"].value) == ("healthy", "restarting")
    assert slack.calls == []

    st.record_failure(FailedRun(1, err, 2, False, 30.0))
    clean.execute(beat, (stream_state.SUPERVISOR_COMPONENT, st.state, json.dumps(st.to_dict())))
    loud = stream_health_sensor(dg.build_sensor_context(cursor=quiet.cursor, resources=res))
    assert loud.asset_events[0].metadata["status"].value == "crash-looping"
    assert [c["text"] for c in slack.calls] == [
        f"Stream CRASH-LOOPING (CRITICAL): batch 2 failed 2 times: {err}"
    ]
    again = stream_health_sensor(dg.build_sensor_context(cursor=loud.cursor, resources=res))
    assert again.asset_events[0].metadata["status"].value == "crash-looping"
    assert len(slack.calls) == 1  # no reminder for an open stream incident
