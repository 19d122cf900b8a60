"""Alert delivery through ``alert_history`` (an outbox), so restarts neither repeat nor lose.

A decision is written to ``alert_history`` (status ``pending``) with the cursor it leads to,
then sent, then marked ``sent`` (or ``logged`` without a Slack token, ``failed`` on error).
At the next evaluation ``reconcile`` compares the history with the cursor it was given: if a
delivered row is newer than the cursor (the daemon died before saving the cursor), its saved
cursor is adopted, so nothing is re-sent; a newer ``pending``/``failed`` row is simply
re-decided and overwritten (same ``seq``), so nothing is lost.
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg
from psycopg.types.json import Jsonb
from slack_sdk.errors import SlackApiError, SlackClientError

from clickguard_dagster.alerts import Decision
from clickguard_dagster.resources import PostgresResource, SlackAlertResource


def reconcile(postgres: PostgresResource, alert_key: str, cursor: dict[str, Any]) -> dict[str, Any]:
    """The cursor to continue from: ``cursor`` or a newer one saved with a delivered alert."""
    seq = int(cursor.get("state", {}).get("seq", 0))
    with postgres.connect() as conn:
        row = conn.execute(
            "SELECT seq, state FROM alert_history WHERE alert_key = %s"
            " AND status IN ('sent', 'logged') ORDER BY seq DESC LIMIT 1",
            (alert_key,),
        ).fetchone()
    if row and row[0] > seq:
        return dict(row[1])
    return cursor


def deliver(
    context: dg.SensorEvaluationContext,
    postgres: PostgresResource,
    slack: SlackAlertResource,
    alert_key: str,
    decision: Decision,
    message: dict[str, Any],
    next_cursor: dict[str, Any],
    new_messages: int = 0,
    rate_per_min: float = 0.0,
) -> bool:
    """Record, send and mark one alert; True when it was delivered (Slack or log)."""
    seq = int(next_cursor["state"]["seq"])
    with postgres.connect() as conn:
        conn.execute(
            "INSERT INTO alert_history (alert_key, seq, transition, severity, new_messages,"
            " rate_per_min, status, message, state) VALUES (%s,%s,%s,%s,%s,%s,'pending',%s,%s)"
            " ON CONFLICT (alert_key, seq) DO UPDATE SET transition = EXCLUDED.transition,"
            " severity = EXCLUDED.severity, new_messages = EXCLUDED.new_messages,"
            " rate_per_min = EXCLUDED.rate_per_min, status = 'pending',"
            " message = EXCLUDED.message, state = EXCLUDED.state, error = NULL,"
            " created_at = now() WHERE alert_history.status IN ('pending', 'failed')",
            (alert_key, seq, decision.transition, decision.severity, new_messages,
             rate_per_min, Jsonb(message), Jsonb(next_cursor)),
        )
        conn.commit()
    status, via, error = "logged", "log", None
    if slack.enabled:
        try:
            slack.get_client().chat_postMessage(
                channel=slack.channel, text=message["text"], blocks=message["blocks"]
            )
            status, via = "sent", "slack"
        except (SlackApiError, SlackClientError, OSError) as exc:  # retried next tick
            status, via, error = "failed", None, f"{type(exc).__name__}: {exc}"
            context.log.error(f"{alert_key}: Slack delivery failed, will retry: {error}")
    else:
        context.log.warning(
            f"{alert_key} {decision.transition} {decision.severity} (no Slack token): "
            f"{message['text']} | {json.dumps(message['blocks'])[:2000]}"
        )
    with postgres.connect() as conn:
        conn.execute(
            "UPDATE alert_history SET status = %s, delivered_via = %s, error = %s,"
            " delivered_at = CASE WHEN %s IN ('sent', 'logged') THEN now() END"
            " WHERE alert_key = %s AND seq = %s",
            (status, via, error, status, alert_key, seq),
        )
        conn.commit()
    return status != "failed"
