"""Alert lifecycle and Slack Block Kit messages: pure functions, unit-tested without services.

Lifecycle of one alert key (e.g. the DLQ): quiet -> OPEN (first WARNING/CRITICAL) -> ESCALATE
(higher severity, sent at once) -> REMIND (same or lower severity again after the cooldown;
inside the cooldown it is suppressed and counted) -> RESOLVED (the condition is gone). The state
is a small JSON-able dataclass kept in the sensor cursor and in ``alert_history.state``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from clickguard.settings import Settings

Severity = Literal["WARNING", "CRITICAL"]
Transition = Literal["OPEN", "ESCALATE", "REMIND", "RESOLVED"]
RANK: dict[str | None, int] = {None: 0, "WARNING": 1, "CRITICAL": 2}
HEADER_MAX = 150  # Slack's limit for a header block's text
EMOJI = {"WARNING": ":warning:", "CRITICAL": ":rotating_light:", "RESOLVED": ":white_check_mark:"}


@dataclass(frozen=True)
class AlertState:
    """Where an alert key is in its lifecycle; ``seq`` counts decisions that were delivered."""

    severity: str | None = None  # open severity; None = resolved / never fired
    opened_at: float | None = None
    last_sent_at: float | None = None
    suppressed: int = 0  # firing ticks not re-sent inside the cooldown since the last message
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AlertState:
        return cls(**data) if data else cls()


@dataclass(frozen=True)
class Decision:
    """A message to deliver: the transition and the severity it reports."""

    transition: Transition
    severity: str  # WARNING, CRITICAL, or the severity that RESOLVED closes
    suppressed: int = 0  # repeats suppressed before this message


def classify_count(count: int, warning: int, critical: int) -> Severity | None:
    """Severity of ``count`` new messages in one interval (None below the warning threshold)."""
    if count >= critical:
        return "CRITICAL"
    if count >= warning:
        return "WARNING"
    return None


def decide(
    state: AlertState, severity: str | None, now: float, cooldown_s: float
) -> tuple[AlertState, Decision | None]:
    """Next state and the message to send (None = nothing to send) for one evaluation."""
    if severity is None:
        if state.severity is None:
            return state, None
        closed = state.severity
        new = AlertState(severity=None, last_sent_at=now, seq=state.seq + 1)
        return new, Decision("RESOLVED", closed, state.suppressed)
    if state.severity is None:
        new = AlertState(severity=severity, opened_at=now, last_sent_at=now, seq=state.seq + 1)
        return new, Decision("OPEN", severity)
    if RANK[severity] > RANK[state.severity]:
        new = replace(state, severity=severity, last_sent_at=now, suppressed=0, seq=state.seq + 1)
        return new, Decision("ESCALATE", severity, state.suppressed)
    if state.last_sent_at is not None and now - state.last_sent_at < cooldown_s:
        return replace(state, suppressed=state.suppressed + 1), None
    new = replace(state, severity=severity, last_sent_at=now, suppressed=0, seq=state.seq + 1)
    return new, Decision("REMIND", severity, state.suppressed)


@dataclass(frozen=True)
class DlqFacts:
    """What the DLQ sensor observed in one interval."""

    new_messages: int
    interval_s: float
    end_offsets: dict[str, int]
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    dagster_url: str = ""
    topic: str = Settings.model_fields["topic_dlq"].default

    @property
    def rate_per_min(self) -> float:
        return round(self.new_messages / (self.interval_s / 60.0), 2) if self.interval_s else 0.0


def _ts(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def dlq_message(decision: Decision, facts: DlqFacts, now: float) -> dict[str, Any]:
    """Slack ``chat.postMessage`` arguments (text fallback + Block Kit) for a DLQ decision."""
    label = "RESOLVED" if decision.transition == "RESOLVED" else decision.severity
    title = {
        "OPEN": f"DLQ {decision.severity}: {facts.new_messages} new dead-lettered records",
        "ESCALATE": f"DLQ escalated to {decision.severity}: {facts.new_messages} new records",
        "REMIND": f"DLQ still {decision.severity}: {facts.new_messages} new records",
        "RESOLVED": f"DLQ RESOLVED: no new records (was {decision.severity})",
    }[decision.transition]
    reasons = "\n".join(f"• `{r}`: {n}" for r, n in facts.top_reasons) or "• none recorded yet"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{EMOJI[label]} {title}"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*New messages*\n{facts.new_messages}"},
                {"type": "mrkdwn", "text": f"*Rate*\n{facts.rate_per_min}/min"},
                {"type": "mrkdwn", "text": f"*Interval*\n{round(facts.interval_s)} s"},
                {"type": "mrkdwn", "text": f"*Severity*\n{label}"},
            ],
        },
    ]
    if decision.transition != "RESOLVED":
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Top reasons*\n{reasons}"}}
        )
    offsets = ", ".join(f"p{p}={o}" for p, o in facts.end_offsets.items())
    look = (
        f"*Where to look*\n• topic `{facts.topic}` (end offsets {offsets})\n"
        "• `SELECT reason, detail, source_offset FROM dlq_events ORDER BY id DESC LIMIT 20`\n"
        "• after a fix, re-publish with the Dagster job `dlq_replay`"
    )
    if facts.dagster_url:
        look += f"\n• Dagster: {facts.dagster_url}"
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": look}})
    context = f"{decision.transition} at {_ts(now)}"
    if decision.suppressed:
        context += f" · {decision.suppressed} repeat(s) suppressed by the cooldown"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": title, "blocks": blocks}


@dataclass(frozen=True)
class StreamFacts:
    """Stream health seen by the stream-health sensor."""

    status: str  # "healthy", "stale", "down" or "crash-looping"
    last_batch_age_s: float | None
    consumer_lag: int | None
    events_per_s: float
    state_rows: int | None
    detail: str = ""
    last_error: str | None = None  # of the job's last failed run (supervisor's state)
    failed_runs: int = 0  # failed runs since the ledger last advanced
    batch_id: int | None = None  # the batch the last failed run was on
    status_file: str = ""  # the supervisor's status file (readable with the database down)


def stream_severity(facts: StreamFacts) -> Severity | None:
    return {
        "healthy": None, "stale": "WARNING", "down": "CRITICAL", "crash-looping": "CRITICAL",
    }[facts.status]


def stream_message(decision: Decision, facts: StreamFacts, now: float) -> dict[str, Any]:
    """Slack arguments for a stream-health decision."""
    label = "RESOLVED" if decision.transition == "RESOLVED" else decision.severity
    title = (
        "Stream RESOLVED: batches are committing again"
        if decision.transition == "RESOLVED"
        else f"Stream {facts.status.upper()} ({decision.severity}): {facts.detail}"
    )
    age = "never" if facts.last_batch_age_s is None else f"{round(facts.last_batch_age_s)} s ago"
    header = f"{EMOJI[label]} {title}"
    if len(header) > HEADER_MAX:  # Slack rejects longer header blocks
        header = header[: HEADER_MAX - 1] + "…"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Last batch*\n{age}"},
                {"type": "mrkdwn", "text": f"*Consumer lag*\n{facts.consumer_lag}"},
                {"type": "mrkdwn", "text": f"*Events/s*\n{facts.events_per_s}"},
                {"type": "mrkdwn", "text": f"*State rows*\n{facts.state_rows}"},
            ],
        },
    ]
    if decision.transition != "RESOLVED" and facts.status == "crash-looping":
        batch = "unknown" if facts.batch_id is None else facts.batch_id
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*Last error*\n`{facts.last_error}`\n*Failed runs without progress*\n"
            f"{facts.failed_runs} (batch {batch}); the supervisor keeps restarting the job, "
            "nothing is lost: the records wait in Kafka"
        )}})
    if decision.transition != "RESOLVED":
        look = (
            "*Where to look*\n• `clickguard stack status` (node `streaming`)\n"
            "• `clickguard stack logs streaming` (the job's full error)\n"
            "• `SELECT status, details FROM stream_heartbeat`"
        )
        if facts.status_file:
            look += f"\n• `{facts.status_file}`"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": look}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": (
                f"{decision.transition} at {_ts(now)} · `clickguard stack status`,"
                " `clickguard stack logs streaming`"
            )}],
        },
    )
    return {"text": title, "blocks": blocks}


def needs_email(decision: Decision) -> bool:
    """CRITICAL alerts go by email too, and so does the RESOLVED that closes one."""
    return decision.severity == "CRITICAL"


def _plain(text: str) -> str:
    """Slack mrkdwn -> plain text: drop *bold* markers, keep everything else."""
    return re.sub(r"\*([^*\n]+)\*", r"\1", text)


def email_message(alert_key: str, decision: Decision, message: dict[str, Any]) -> tuple[str, str]:
    """(subject, body) of the email twin of a Slack message: severity, what broke, where to look."""
    label = "RESOLVED" if decision.transition == "RESOLVED" else decision.severity
    subject = f"[clickguard {label}] {message['text']}"
    lines = [f"Severity: {label}", f"Alert: {alert_key} ({decision.transition})", ""]
    for block in message.get("blocks", []):
        if block.get("type") == "header":
            continue  # the subject says it
        if "text" in block:
            lines += [_plain(block["text"]["text"]), ""]
        for f in block.get("fields", []):
            lines.append(_plain(f["text"]).replace("\n", ": ", 1))
        if block.get("fields"):
            lines.append("")
        for e in block.get("elements", []):
            lines.append(_plain(e["text"]))
    return subject, "\n".join(lines).rstrip() + "\n"
