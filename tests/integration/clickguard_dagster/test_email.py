"""CRITICAL alerts by email, against a real SMTP server (aiosmtpd) that records the messages."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from clickguard.settings import Settings
from tests.integration.clickguard_dagster.slack import SlackStandIn
from tests.integration.clickguard_dagster.smtp import USER, SmtpRecorder, free_port
from tests.integration.clickguard_dagster.test_sensors import produce_dlq, sensor_resources, tick

pytestmark = pytest.mark.integration


def email_history(conn: psycopg.Connection, key: str = "dlq") -> list[tuple]:
    return conn.execute(
        "SELECT seq, transition, severity, status, delivered_via, email_status"
        " FROM alert_history WHERE alert_key = %s ORDER BY seq", (key,)
    ).fetchall()


def test_critical_dlq_alert_and_its_resolve_are_emailed(
    clean: psycopg.Connection, settings: Settings, slack: SlackStandIn, smtp: SmtpRecorder,
    stack: Any,
) -> None:
    res = {**sensor_resources(settings, slack), "email": smtp.resource()}
    base = tick(res, None)
    produce_dlq(settings, clean, 3, "avro_decode_error")
    warned = tick(res, base.cursor)  # WARNING: Slack only
    assert len(slack.calls) == 1 and smtp.messages == []

    produce_dlq(settings, clean, 21, "not_wire_format")
    critical = tick(res, warned.cursor)
    assert slack.calls[-1]["text"] == "DLQ escalated to CRITICAL: 21 new records"
    assert len(smtp.messages) == 1
    mail = smtp.messages[0]
    assert mail["subject"] == "[clickguard CRITICAL] DLQ escalated to CRITICAL: 21 new records"
    assert (mail["from"], mail["to"], mail["login"]) == (
        "clickguard@test.local", ["oncall@test.local", "data@test.local"], USER
    )
    body = mail["body"].splitlines()
    assert body[:2] == ["Severity: CRITICAL", "Alert: dlq (ESCALATE)"]
    assert "New messages: 21" in body  # what broke
    assert "• `not_wire_format`: 21" in body
    assert "Where to look" in body and "• after a fix, re-publish with the Dagster job" \
        " `dlq_replay`" in body

    tick(res, critical.cursor)  # no growth: RESOLVED, by Slack and by email
    assert slack.calls[-1]["text"] == "DLQ RESOLVED: no new records (was CRITICAL)"
    assert [m["subject"] for m in smtp.messages] == [
        "[clickguard CRITICAL] DLQ escalated to CRITICAL: 21 new records",
        "[clickguard RESOLVED] DLQ RESOLVED: no new records (was CRITICAL)",
    ]
    assert email_history(clean) == [
        (1, "OPEN", "WARNING", "sent", "slack", None),
        (2, "ESCALATE", "CRITICAL", "sent", "slack", "sent"),
        (3, "RESOLVED", "CRITICAL", "sent", "slack", "sent"),
    ]


def test_smtp_down_is_retried_without_posting_slack_twice(
    clean: psycopg.Connection, settings: Settings, slack: SlackStandIn, smtp: SmtpRecorder,
    stack: Any,
) -> None:
    res = {**sensor_resources(settings, slack), "email": smtp.resource(port=free_port())}
    base = tick(res, None)
    produce_dlq(settings, clean, 20, "unknown_schema_id")
    failed = tick(res, base.cursor)  # nothing listens on that port: connection refused
    assert failed.cursor == base.cursor  # the alert is still owed
    assert [c["text"] for c in slack.calls] == ["DLQ CRITICAL: 20 new dead-lettered records"]
    row = clean.execute(
        "SELECT status, delivered_via, email_status, email_error FROM alert_history"
        " WHERE alert_key = 'dlq'"
    ).fetchone()
    assert row[:3] == ("failed", "slack", "failed")
    assert row[3].startswith("ConnectionRefusedError")

    res["email"] = smtp.resource()  # the SMTP server is reachable again
    retried = tick(res, failed.cursor)
    assert len(slack.calls) == 1  # Slack already had it: not re-posted
    assert [m["subject"] for m in smtp.messages] == [
        "[clickguard CRITICAL] DLQ CRITICAL: 20 new dead-lettered records"
    ]
    assert email_history(clean) == [(1, "OPEN", "CRITICAL", "sent", "slack", "sent")]
    assert json.loads(retried.cursor)["state"]["seq"] == 1


def test_without_smtp_host_a_critical_alert_logs_that_no_email_went(
    clean: psycopg.Connection, settings: Settings, slack: SlackStandIn, stack: Any
) -> None:
    res = sensor_resources(settings, slack)
    assert not res["email"].enabled  # this worktree's settings set no SMTP host
    base = tick(res, None)
    produce_dlq(settings, clean, 25, "out_of_range")
    tick(res, base.cursor)
    assert len(slack.calls) == 1
    assert email_history(clean) == [(1, "OPEN", "CRITICAL", "sent", "slack", "logged")]
