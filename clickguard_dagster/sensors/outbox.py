"""Alert delivery through ``alert_history`` (an outbox), so restarts neither repeat nor lose.

A decision is written to ``alert_history`` (status ``pending``) with the cursor it leads to,
then sent, then marked ``sent`` (or ``logged`` without a Slack token, ``failed`` on error).
At the next evaluation ``reconcile`` compares the history with the cursor it was given: if a
delivered row is newer than the cursor (the daemon died before saving the cursor), its saved
cursor is adopted, so nothing is re-sent; a newer ``pending``/``failed`` row is simply
re-decided and overwritten (same ``seq``), so nothing is lost.

CRITICAL decisions (and the RESOLVED closing one) also go by email. Each channel has its own
status on the row (``delivered_via`` for Slack, ``email_status``), so a retry after one channel
failed re-sends only that channel: nobody gets the same Slack post or email twice.
"""

from __future__ import annotations

import json
import smtplib
from typing import Any

import dagster as dg
from psycopg.types.json import Jsonb
from slack_sdk.errors import SlackApiError, SlackClientError

from clickguard_dagster.alerts import Decision, email_message, needs_email
from clickguard_dagster.resources import (
    EmailAlertResource,
    PostgresResource,
    SlackAlertResource,
)


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
    email: EmailAlertResource | None = None,
) -> bool:
    """Record, send and mark one alert; True when every channel delivered (or logged) it."""
    seq = int(next_cursor["state"]["seq"])
    with postgres.connect() as conn:
        row = conn.execute(
            "INSERT INTO alert_history (alert_key, seq, transition, severity, new_messages,"
            " rate_per_min, status, message, state) VALUES (%s,%s,%s,%s,%s,%s,'pending',%s,%s)"
            " ON CONFLICT (alert_key, seq) DO UPDATE SET transition = EXCLUDED.transition,"
            " severity = EXCLUDED.severity, new_messages = EXCLUDED.new_messages,"
            " rate_per_min = EXCLUDED.rate_per_min, status = 'pending',"
            " message = EXCLUDED.message, state = EXCLUDED.state, error = NULL,"
            " created_at = now() WHERE alert_history.status IN ('pending', 'failed')"
            " RETURNING delivered_via, email_status",
            (alert_key, seq, decision.transition, decision.severity, new_messages,
             rate_per_min, Jsonb(message), Jsonb(next_cursor)),
        ).fetchone()
        conn.commit()
    done_via, done_email = row if row else (None, None)
    slack_status, via, error = _send_slack(context, slack, alert_key, decision, message, done_via)
    email_status, email_error = None, None
    if needs_email(decision):
        email_status, email_error = _send_email(context, email, alert_key, decision, message,
                                                done_email)
    statuses = (slack_status, email_status)
    status = (
        "failed" if "failed" in statuses else "sent" if "sent" in statuses else "logged"
    )
    with postgres.connect() as conn:
        conn.execute(
            "UPDATE alert_history SET status = %s, delivered_via = %s, error = %s,"
            " email_status = %s, email_error = %s,"
            " delivered_at = CASE WHEN %s IN ('sent', 'logged') THEN now() END"
            " WHERE alert_key = %s AND seq = %s",
            (status, via, error, email_status, email_error, status, alert_key, seq),
        )
        conn.commit()
    return status != "failed"


def _send_slack(
    context: dg.SensorEvaluationContext, slack: SlackAlertResource, alert_key: str,
    decision: Decision, message: dict[str, Any], done_via: str | None,
) -> tuple[str, str | None, str | None]:
    """(status, delivered_via, error) of the Slack channel; skipped if an earlier try sent it."""
    if done_via == "slack":
        return "sent", "slack", None
    if not slack.enabled:
        context.log.warning(
            f"{alert_key} {decision.transition} {decision.severity} (no Slack token): "
            f"{message['text']} | {json.dumps(message['blocks'])[:2000]}"
        )
        return "logged", "log", None
    try:
        slack.get_client().chat_postMessage(
            channel=slack.channel, text=message["text"], blocks=message["blocks"]
        )
        return "sent", "slack", None
    except (SlackApiError, SlackClientError, OSError) as exc:  # retried next tick
        error = f"{type(exc).__name__}: {exc}"
        context.log.error(f"{alert_key}: Slack delivery failed, will retry: {error}")
        return "failed", None, error


def _send_email(
    context: dg.SensorEvaluationContext, email: EmailAlertResource | None, alert_key: str,
    decision: Decision, message: dict[str, Any], done: str | None,
) -> tuple[str, str | None]:
    """(status, error) of the email channel; skipped if an earlier try sent it."""
    if done == "sent":
        return "sent", None
    if email is None or not email.enabled:
        context.log.warning(
            f"{alert_key} {decision.transition} {decision.severity}: no email sent "
            "(set CLICKGUARD_SMTP_HOST and CLICKGUARD_ALERT_EMAIL_TO to email CRITICAL alerts)"
        )
        return "logged", None
    subject, body = email_message(alert_key, decision, message)
    try:
        email.send(subject, body)
        return "sent", None
    except (smtplib.SMTPException, OSError) as exc:  # retried next tick
        error = f"{type(exc).__name__}: {exc}"
        context.log.error(f"{alert_key}: email to {email.to} failed, will retry: {error}")
        return "failed", error
