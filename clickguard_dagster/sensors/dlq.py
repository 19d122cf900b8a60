"""``dlq_alert_sensor``: growth of the DLQ topic -> WARNING / CRITICAL / RESOLVED in Slack
(CRITICAL, and its RESOLVED, also by email when SMTP is configured).

The sensor reads only the DLQ topic's end offsets (bounded metadata calls, it never consumes):
new messages in the interval = sum over partitions of the growth of the high watermark.
"""


import json
import time
from typing import Any

import dagster as dg

from clickguard_dagster.alerts import AlertState, DlqFacts, classify_count, decide, dlq_message
from clickguard_dagster.resources import (
    AlertPolicyResource,
    EmailAlertResource,
    KafkaResource,
    PostgresResource,
    SlackAlertResource,
)
from clickguard_dagster.sensors.outbox import deliver, reconcile

ALERT_KEY = "dlq"


def top_reasons(
    postgres: PostgresResource, since: float | None, limit: int
) -> list[tuple[str, int]]:
    """Most frequent DLQ reasons since ``since`` (epoch s), else over the last hour."""
    with postgres.connect() as conn:
        for start in ([since - 60] if since else []) + [time.time() - 3600]:
            rows = conn.execute(
                "SELECT reason, count(*) FROM dlq_events WHERE detected_at >= to_timestamp(%s)"
                " GROUP BY reason ORDER BY count(*) DESC, reason LIMIT %s",
                (start, limit),
            ).fetchall()
            if rows:
                return [(r[0], int(r[1])) for r in rows]
    return []


def evaluate_dlq(
    context: dg.SensorEvaluationContext,
    kafka: KafkaResource,
    postgres: PostgresResource,
    slack: SlackAlertResource,
    alerts: AlertPolicyResource,
    now: float,
    email: EmailAlertResource | None = None,
) -> dg.SensorResult:
    """One evaluation: count new DLQ messages, decide, deliver, and return the next cursor."""
    cursor: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    cursor = reconcile(postgres, ALERT_KEY, cursor)
    offsets = kafka.end_offsets(kafka.topic_dlq)
    if not offsets:
        return dg.SensorResult(
            skip_reason=f"DLQ topic {kafka.topic_dlq} unreachable; cursor kept",
            cursor=json.dumps(cursor),
        )
    current = {str(p): o for p, o in sorted(offsets.items())}
    state = AlertState.from_dict(cursor.get("state"))
    previous: dict[str, int] | None = cursor.get("offsets")
    if previous is None:
        baseline = {"offsets": current, "tick_at": now, "state": state.to_dict()}
        return dg.SensorResult(
            skip_reason=f"baseline DLQ end offsets {current}", cursor=json.dumps(baseline)
        )
    # a partition whose high watermark went down (topic recreated) counts from zero
    new = sum(o - previous.get(p, 0) if o >= previous.get(p, 0) else o for p, o in current.items())
    interval = now - float(cursor.get("tick_at") or now - alerts.dlq_poll_interval_s)
    severity = classify_count(new, alerts.dlq_warning_threshold, alerts.dlq_critical_threshold)
    new_state, decision = decide(state, severity, now, alerts.alert_cooldown_minutes * 60)
    next_cursor = {"offsets": current, "tick_at": now, "state": new_state.to_dict()}
    if decision is not None:
        facts = DlqFacts(
            new_messages=new, interval_s=max(interval, 1.0), end_offsets=current,
            top_reasons=top_reasons(postgres, cursor.get("tick_at"), alerts.dlq_top_reasons),
            dagster_url=f"{alerts.dagster_url}/overview/sensors",
            topic=kafka.topic_dlq,
        )
        message = dlq_message(decision, facts, now)
        if not deliver(
            context, postgres, slack, ALERT_KEY, decision, message, next_cursor,
            new_messages=new, rate_per_min=facts.rate_per_min, email=email,
        ):
            return dg.SensorResult(
                skip_reason="alert delivery failed; cursor kept to retry", cursor=json.dumps(cursor)
            )
    what = f"{decision.transition} {decision.severity}" if decision else "no alert"
    if decision is None and new_state.suppressed > state.suppressed:
        what = f"suppressed {severity} (cooldown)"
    return dg.SensorResult(
        skip_reason=f"{new} new DLQ message(s) in {round(interval)} s: {what}",
        cursor=json.dumps(next_cursor),
    )


def build_dlq_alert_sensor(minimum_interval_seconds: int) -> dg.SensorDefinition:
    """The sensor, ticking every ``dlq_poll_interval_s`` (fixed when the code location loads)."""

    @dg.sensor(
        name="dlq_alert_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts Slack when the DLQ topic grows (WARNING/CRITICAL/RESOLVED, "
        "cooldown); CRITICAL also by email.",
    )
    def dlq_alert_sensor(
        context: dg.SensorEvaluationContext,
        kafka: KafkaResource,
        postgres: PostgresResource,
        slack: SlackAlertResource,
        email: EmailAlertResource,
        alerts: AlertPolicyResource,
    ) -> dg.SensorResult:
        """Growth of the DLQ topic's end offsets per interval, with the alert lifecycle."""
        return evaluate_dlq(context, kafka, postgres, slack, alerts, time.time(), email)

    return dlq_alert_sensor
