"""Alert lifecycle state machine and Block Kit messages (pure functions)."""

from __future__ import annotations

import pytest

from clickguard_dagster.alerts import (
    AlertState,
    Decision,
    DlqFacts,
    StreamFacts,
    classify_count,
    decide,
    dlq_message,
    email_message,
    needs_email,
    stream_message,
    stream_severity,
)

COOLDOWN = 600.0


@pytest.mark.parametrize(
    ("count", "expected"), [(0, None), (1, "WARNING"), (19, "WARNING"), (20, "CRITICAL")]
)
def test_thresholds(count: int, expected: str | None) -> None:
    assert classify_count(count, 1, 20) == expected


def test_open_suppress_remind_escalate_resolve() -> None:
    s0 = AlertState()
    s1, d1 = decide(s0, "WARNING", 1000.0, COOLDOWN)
    assert d1 == Decision("OPEN", "WARNING")
    assert (s1.severity, s1.seq, s1.last_sent_at) == ("WARNING", 1, 1000.0)

    s2, d2 = decide(s1, "WARNING", 1060.0, COOLDOWN)  # inside the cooldown
    assert d2 is None
    assert (s2.suppressed, s2.seq) == (1, 1)

    s3, d3 = decide(s2, "WARNING", 1000.0 + COOLDOWN, COOLDOWN)  # cooldown over
    assert d3 == Decision("REMIND", "WARNING", suppressed=1)
    assert (s3.suppressed, s3.seq, s3.last_sent_at) == (0, 2, 1600.0)

    s4, d4 = decide(s3, "CRITICAL", 1601.0, COOLDOWN)  # escalation ignores the cooldown
    assert d4 == Decision("ESCALATE", "CRITICAL")
    assert s4.opened_at == 1000.0

    s5, d5 = decide(s4, "WARNING", 1700.0, COOLDOWN)  # lower severity inside the cooldown
    assert d5 is None and s5.severity == "CRITICAL"

    s6, d6 = decide(s5, None, 1760.0, COOLDOWN)
    assert d6 == Decision("RESOLVED", "CRITICAL", suppressed=1)
    assert (s6.severity, s6.seq) == (None, 4)

    s7, d7 = decide(s6, None, 1820.0, COOLDOWN)  # stays quiet
    assert d7 is None and s7 == s6

    _, d8 = decide(s7, "WARNING", 1830.0, COOLDOWN)  # a new incident opens at once
    assert d8 == Decision("OPEN", "WARNING")


def test_state_round_trips_through_json_dict() -> None:
    state = AlertState("CRITICAL", 1.0, 2.0, 3, 4)
    assert AlertState.from_dict(state.to_dict()) == state
    assert AlertState.from_dict(None) == AlertState()


def test_dlq_message_blocks() -> None:
    facts = DlqFacts(25, 60.0, {"0": 10, "1": 15}, [("avro_decode_error", 20), ("x", 5)],
                     "http://127.0.0.1:3000/overview/sensors")
    msg = dlq_message(Decision("ESCALATE", "CRITICAL", suppressed=2), facts, 0.0)
    assert msg["text"] == "DLQ escalated to CRITICAL: 25 new records"
    header, fields, reasons, look, context = msg["blocks"]
    assert header["text"]["text"] == ":rotating_light: DLQ escalated to CRITICAL: 25 new records"
    assert [f["text"] for f in fields["fields"]] == [
        "*New messages*\n25", "*Rate*\n25.0/min", "*Interval*\n60 s", "*Severity*\nCRITICAL"
    ]
    assert reasons["text"]["text"] == "*Top reasons*\n• `avro_decode_error`: 20\n• `x`: 5"
    assert "end offsets p0=10, p1=15" in look["text"]["text"]
    assert "dlq_replay" in look["text"]["text"]
    assert context["elements"][0]["text"] == (
        "ESCALATE at 1970-01-01 00:00:00 UTC · 2 repeat(s) suppressed by the cooldown"
    )


def test_resolved_message_has_no_reasons_block() -> None:
    msg = dlq_message(Decision("RESOLVED", "WARNING"), DlqFacts(0, 60.0, {"0": 1}), 0.0)
    assert msg["text"] == "DLQ RESOLVED: no new records (was WARNING)"
    assert [b["type"] for b in msg["blocks"]] == ["header", "section", "section", "context"]


def test_stream_severity_and_message() -> None:
    down = StreamFacts("down", None, None, 0.0, None, "no heartbeat or batch ever")
    assert stream_severity(down) == "CRITICAL"
    assert stream_severity(StreamFacts("stale", 300.0, 10, 0.0, 5)) == "WARNING"
    assert stream_severity(StreamFacts("healthy", 1.0, 0, 10.0, 5)) is None
    msg = stream_message(Decision("OPEN", "CRITICAL"), down, 0.0)
    assert msg["text"] == "Stream DOWN (CRITICAL): no heartbeat or batch ever"
    assert msg["blocks"][1]["fields"][0]["text"] == "*Last batch*\nnever"


ERR = "InsufficientPrivilege: permission denied for table events"
LOOPING = StreamFacts(
    "crash-looping", 95.0, 1200, 0.0, 40, f"batch 0 failed 3 times: {ERR}",
    last_error=ERR, failed_runs=3, batch_id=0, status_file="/run/streaming/stream-status.json",
)


def test_crash_looping_message_names_the_error_and_where_to_look() -> None:
    assert stream_severity(LOOPING) == "CRITICAL"
    msg = stream_message(Decision("OPEN", "CRITICAL"), LOOPING, 0.0)
    assert msg["text"] == (
        f"Stream CRASH-LOOPING (CRITICAL): batch 0 failed 3 times: {ERR}"
    )
    header, _fields, error, look, _context = msg["blocks"]
    assert header["text"]["text"] == f":rotating_light: {msg['text']}"
    assert error["text"]["text"].startswith(f"*Last error*\n`{ERR}`\n")
    assert "3 (batch 0)" in error["text"]["text"]
    assert "`clickguard stack logs streaming`" in look["text"]["text"]
    assert "`/run/streaming/stream-status.json`" in look["text"]["text"]
    resolved = stream_message(Decision("RESOLVED", "CRITICAL"), LOOPING, 0.0)
    assert [b["type"] for b in resolved["blocks"]] == ["header", "section", "context"]


def test_long_header_is_cut_to_slacks_limit() -> None:
    facts = StreamFacts("crash-looping", None, None, 0.0, None, "x" * 400, last_error="x")
    header = stream_message(Decision("OPEN", "CRITICAL"), facts, 0.0)["blocks"][0]
    assert len(header["text"]["text"]) == 150 and header["text"]["text"].endswith("…")


def test_email_goes_with_critical_and_its_resolve_only() -> None:
    assert needs_email(Decision("OPEN", "CRITICAL"))
    assert needs_email(Decision("ESCALATE", "CRITICAL"))
    assert needs_email(Decision("RESOLVED", "CRITICAL"))
    assert not needs_email(Decision("OPEN", "WARNING"))
    assert not needs_email(Decision("RESOLVED", "WARNING"))


def test_email_text_carries_severity_what_and_where() -> None:
    decision = Decision("OPEN", "CRITICAL")
    subject, body = email_message(
        "stream_health", decision, stream_message(decision, LOOPING, 0.0)
    )
    assert subject == f"[clickguard CRITICAL] {stream_message(decision, LOOPING, 0.0)['text']}"
    lines = body.splitlines()
    assert lines[:2] == ["Severity: CRITICAL", "Alert: stream_health (OPEN)"]
    assert "Last batch: 95 s ago" in lines
    assert f"`{ERR}`" in lines and "Where to look" in lines
    assert "• `clickguard stack logs streaming` (the job's full error)" in lines
    assert "*" not in body  # mrkdwn bold markers are gone
    subject, body = email_message(
        "dlq", Decision("RESOLVED", "CRITICAL"),
        dlq_message(Decision("RESOLVED", "CRITICAL"), DlqFacts(0, 60.0, {"0": 1}), 0.0),
    )
    assert subject == "[clickguard RESOLVED] DLQ RESOLVED: no new records (was CRITICAL)"
    assert body.startswith("Severity: RESOLVED\nAlert: dlq (RESOLVED)\n")
