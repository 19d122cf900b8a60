"""``stream_health_sensor``: observations of ``stream_events`` and alerts when stale, down or
crash-looping (the supervisor's state in ``stream_heartbeat``, see clickguard.stream_state).

One message per incident: the stream alert opens (or escalates) once and is RESOLVED when
batches flow again; unlike the DLQ alert it sends no cooldown reminders. Delivery goes through
the same outbox as the DLQ alert, so a daemon restart neither repeats nor loses a message.
"""


import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg

from clickguard import ledger, stream_state
from clickguard_dagster.alerts import (
    AlertState,
    StreamFacts,
    decide,
    stream_message,
    stream_severity,
)
from clickguard_dagster.resources import (
    AlertPolicyResource,
    EmailAlertResource,
    KafkaResource,
    PostgresResource,
    SlackAlertResource,
)
from clickguard_dagster.sensors.outbox import deliver, reconcile

ALERT_KEY = "stream_health"
DOWN_STATUSES = {"down", "failed", "stopped", "error", "crashed"}


def stream_facts(
    kafka: KafkaResource, postgres: PostgresResource, alerts: AlertPolicyResource, now: float
) -> tuple[StreamFacts, dict[str, Any]]:
    """Health of the stream from the ledger, the heartbeat, the events table and the raw topic."""
    window = max(alerts.stream_health_interval_s, 10)
    with postgres.connect() as conn:
        batch = conn.execute(
            "SELECT committed_at, state_rows, batch_id FROM batch_ledger"
            " ORDER BY committed_at DESC LIMIT 1"
        ).fetchone()
        beats = conn.execute(
            "SELECT beat_at, status, component, details FROM stream_heartbeat"
            " ORDER BY beat_at DESC"
        ).fetchall()
        positions = ledger.committed_offsets(conn)
        events_per_s = ledger.events_per_second(conn, window)
    end = kafka.end_offsets(kafka.topic_raw)
    lag = ledger.total_lag(end, positions) if end else None
    batch_at: datetime | None = batch[0] if batch else None
    batch_age = now - batch_at.timestamp() if batch_at else None
    beat = beats[0] if beats else None
    supervisor = next((b for b in beats if b[2] == stream_state.SUPERVISOR_COMPONENT), None)
    run = stream_state.effective_state(supervisor[3], batch_at) if supervisor else None
    if run is not None and run.state in (stream_state.RUNNING, stream_state.RESTARTING):
        # the supervisor is alive and restarting the job: a failed run's own "stopped" beat
        # is not a dead stream (below the crash-loop threshold a restart is expected)
        beat = next((b for b in beats if str(b[1]).lower() not in DOWN_STATUSES), beat)
    beat_age = now - beat[0].timestamp() if beat else None
    ages = [a for a in (batch_age, beat_age) if a is not None]
    alive_age = min(ages) if ages else None
    status, detail = "healthy", "batches committing"
    if run is not None and run.state == stream_state.CRASH_LOOPING:
        status, detail = "crash-looping", run.headline()
    elif beat and str(beat[1]).lower() in DOWN_STATUSES:
        status, detail = "down", f"heartbeat reports {beat[1]}"
    elif alive_age is None or alive_age > 2 * alerts.stream_stale_seconds:
        status = "down"
        detail = "no heartbeat or batch ever" if alive_age is None else (
            f"no heartbeat or batch for {round(alive_age)} s"
        )
    elif (lag or 0) > 0 and (batch_age is None or batch_age > alerts.stream_stale_seconds):
        age = round(batch_age) if batch_age is not None else "never"
        status, detail = "stale", f"{lag} records waiting, last batch {age} s ago"
    facts = StreamFacts(
        status=status, last_batch_age_s=batch_age, consumer_lag=lag,
        events_per_s=round(events_per_s, 2), state_rows=int(batch[1]) if batch else None,
        detail=detail,
        last_error=run.last_error if run else None,
        failed_runs=run.consecutive_failures if run else 0,
        batch_id=run.last_batch_id if run else None,
        status_file=str(Path(alerts.stream_home) / stream_state.STATUS_FILE),
    )
    metadata: dict[str, Any] = {
        "status": status,
        "detail": detail,
        "consumer_lag": lag if lag is not None else -1,
        "events_per_s": facts.events_per_s,
        "last_batch_at": batch_at.isoformat() if batch_at else "never",
        "last_batch_age_s": round(batch_age, 1) if batch_age is not None else -1.0,
        "last_batch_id": int(batch[2]) if batch else -1,
        "state_rows": facts.state_rows if facts.state_rows is not None else -1,
        "heartbeat": f"{beat[1]} at {beat[0].isoformat()}" if beat else "none",
        "run_state": run.state if run else "unknown",
        "last_error": (run.last_error if run else None) or "",
        "failed_runs_without_progress": facts.failed_runs,
    }
    return facts, metadata


def evaluate_stream(
    context: dg.SensorEvaluationContext,
    kafka: KafkaResource,
    postgres: PostgresResource,
    slack: SlackAlertResource,
    alerts: AlertPolicyResource,
    now: float,
    email: EmailAlertResource | None = None,
) -> dg.SensorResult:
    """Observe ``stream_events``; open/escalate/resolve the stream alert."""
    cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    cursor = reconcile(postgres, ALERT_KEY, cursor)
    facts, metadata = stream_facts(kafka, postgres, alerts, now)
    state = AlertState.from_dict(cursor.get("state"))
    # infinite cooldown: an open incident is never re-sent, only escalated or resolved
    new_state, decision = decide(state, stream_severity(facts), now, float("inf"))
    next_cursor = {"state": new_state.to_dict(), "tick_at": now}
    observation = dg.AssetObservation(asset_key="stream_events", metadata=metadata)
    if decision is not None:
        message = stream_message(decision, facts, now)
        if not deliver(
            context, postgres, slack, ALERT_KEY, decision, message, next_cursor, email=email
        ):
            next_cursor = cursor
    return dg.SensorResult(asset_events=[observation], cursor=json.dumps(next_cursor))


def build_stream_health_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """The sensor, ticking every ``stream_health_interval_s`` (fixed when the code location
    loads)."""

    @dg.sensor(
        name="stream_health_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Observes stream_events (lag, events/s, last batch, state); alerts stale/"
        "down/crash-looping (CRITICAL also by email).",
    )
    def stream_health_sensor(
        context: dg.SensorEvaluationContext,
        kafka: KafkaResource,
        postgres: PostgresResource,
        slack: SlackAlertResource,
        email: EmailAlertResource,
        alerts: AlertPolicyResource,
    ) -> dg.SensorResult:
        """Liveness of the Spark streaming job as observations of the external asset."""
        return evaluate_stream(context, kafka, postgres, slack, alerts, time.time(), email)

    return stream_health_sensor
