"""A stuck stream is loud: a real permission error makes the real job crash-loop.

In a private database and on private topics: the writer role loses INSERT on ``events`` (not a
data error, so every run fails the same batch and the supervisor restarts it). Then
``clickguard stack status`` shows ``crash-looping`` with the error, ``/health`` is ``degraded``
and ``/stream`` says why, and the stream health sensor sends exactly one Slack alert and one
email (to a real SMTP server); ticks after that, and a daemon restart, send nothing. GRANT back:
batches flow, the state clears, the sensor sends one RESOLVED (Slack + email), then nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import psycopg
import pytest
from psycopg import sql

from clickguard import db, stream_state
from clickguard.settings import Settings
from clickguard_dagster.resources import build_resources
from clickguard_dagster.sensors.stream_health import evaluate_stream
from clickguard_producer.core import produce, register_schemas
from clickguard_producer.faults import FaultInjector
from clickguard_producer.generator import Generator, GeneratorConfig
from clickguard_stack.manager import Stack
from tests.integration.api.conftest import LiveServer
from tests.integration.clickguard_dagster.slack import SlackStandIn
from tests.integration.clickguard_dagster.smtp import SmtpRecorder
from tests.integration.streaming_job.conftest import private_stream

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

EVENTS = 300
ERROR = "permission denied for table events"
CLI = Path(sys.executable).parent / "clickguard"


def wait_for(what: str, check: Callable[[], Any], timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1.0)
    raise TimeoutError(f"{what} not seen within {timeout:.0f}s; see {log}")


@pytest.fixture
def private_db(settings: Settings, stack: Stack) -> Iterator[Settings]:
    """A database of this test only, migrated and empty (nobody else's rows or grants)."""
    s = settings.model_copy(update={"pg_db": f"{settings.pg_db}_stuck_{uuid.uuid4().hex[:6]}"})
    db.bootstrap(s)
    db.migrate(s)
    yield s
    with db.connect(settings, "superuser", "postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(s.pg_db)))


def set_insert(s: Settings, grant: bool) -> None:
    """GRANT or REVOKE the writer role's INSERT on events (as the superuser)."""
    verb = "GRANT INSERT ON events TO {}" if grant else "REVOKE INSERT ON events FROM {}"
    with db.connect(s, "superuser", s.pg_db, autocommit=True) as conn:
        conn.execute(sql.SQL(verb).format(sql.Identifier(s.pg_writer_user)))


def cli_status() -> str:
    out = subprocess.run([str(CLI), "stack", "status"], capture_output=True, text=True,
                         timeout=60, check=True)
    return next(ln for ln in out.stdout.splitlines() if ln.startswith("streaming "))


def supervisor_row(conn: psycopg.Connection) -> tuple[str, dict[str, Any]] | None:
    return conn.execute(
        "SELECT status, details FROM stream_heartbeat WHERE component = %s",
        (stream_state.SUPERVISOR_COMPONENT,),
    ).fetchone()


@pytest.mark.timeout(2400)
def test_crash_loop_is_reported_alerted_once_and_resolved(
    private_db: Settings, tmp_path: Path
) -> None:
    s = private_db
    set_insert(s, grant=False)
    env = {"CLICKGUARD_PG_DB": s.pg_db, "CLICKGUARD_STREAM_CRASH_LOOP_RUNS": "2"}
    with (
        private_stream(tmp_path / "checkpoint", env, start=False) as run,
        SlackStandIn() as slack, SmtpRecorder() as smtp,
        LiveServer(run.settings.model_copy(update={"api_cache_ttl_s": 0.0, "api_key": None}))
        as api,
        httpx.Client(base_url=api.url, timeout=10) as client,
    ):
        rs = run.settings
        assert rs.pg_db == s.pg_db and rs.stream_crash_loop_runs == 2
        contract_id, _ = register_schemas(rs, rs.topic_raw)
        records = list(FaultInjector(contract_id).records(
            Generator(GeneratorConfig(seed=5, run_id=f"stuck{uuid.uuid4().hex[:6]}"))
            .take(EVENTS)))
        assert produce(rs, records, topic=rs.topic_raw, progress=None).acknowledged == EVENTS
        # started without `stack start`'s wait: that waits for a running query and fails
        # loudly on a crash loop (what step 1 checks by hand)
        node = run.stack.node("streaming")
        node.start()

        # 1. the job fails batch 0 again and again: crash-looping, with the error, everywhere
        status = wait_for("crash-looping", lambda: (
            st if (st := node.status()).state == "crash-looping" else None), 900, run.log)
        assert status.detail == (
            f"2 failed run(s) without progress at batch 0: InsufficientPrivilege: {ERROR}"
        )
        line = cli_status()
        assert line.split()[1] == "crash-looping" and line.endswith(ERROR), line
        file_state = stream_state.read_status(node.dir)
        assert file_state is not None
        assert [(f["exit_code"], f["batch_id"], f["ledger_advanced"])
                for f in file_state.recent_failures] == [(1, 0, False), (1, 0, False)]
        row = supervisor_row(run.conn)
        assert row is not None and row[0] == "crash-looping"
        assert row[1]["last_error"] == f"InsufficientPrivilege: {ERROR}"
        assert run.conn.execute("SELECT count(*) FROM batch_ledger").fetchone()[0] == 0

        health = client.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert (body["status"], body["database"]) == ("degraded", "connected")
        assert body["stream"]["state"] == "crash-looping"
        assert body["stream"]["last_error"] == f"InsufficientPrivilege: {ERROR}"
        assert body["stream"]["last_batch_id"] == 0
        assert body["stream"]["consecutive_failures"] >= 2
        stream = client.get("/stream").json()
        assert stream["state"]["state"] == "crash-looping"
        assert stream["last_batch"] is None and "heartbeats" in stream

        # 2. the sensor: one Slack alert and one email per incident, also across a restart
        res = build_resources(rs)
        res.pop("spark")
        res["slack"] = slack.resource()
        res["email"] = smtp.resource()

        def sense(cursor: str | None) -> dg.SensorResult:
            ctx = dg.build_sensor_context(cursor=cursor, resources=res)
            return evaluate_stream(ctx, res["kafka"], res["postgres"], res["slack"], res["alerts"],
                                   time.time(), res["email"])

        first = sense(None)
        md = {k: v.value for k, v in first.asset_events[0].metadata.items()}
        assert (md["status"], md["run_state"]) == ("crash-looping", "crash-looping")
        assert len(slack.calls) == 1
        alert = slack.calls[0]["text"]
        assert alert.startswith("Stream CRASH-LOOPING (CRITICAL): ") and alert.endswith(ERROR)
        assert len(smtp.messages) == 1
        mail = smtp.messages[0]
        assert mail["subject"] == f"[clickguard CRITICAL] {alert}"
        assert "Severity: CRITICAL" in mail["body"]
        assert f"`InsufficientPrivilege: {ERROR}`" in mail["body"]
        assert "clickguard stack logs streaming" in mail["body"]
        second = sense(first.cursor)
        restarted = sense(None)  # the daemon lost its cursor: the outbox's state is adopted
        assert (len(slack.calls), len(smtp.messages)) == (1, 1)

        # 3. the permission is back: batches flow, the state clears, one RESOLVED
        set_insert(s, grant=True)
        run.wait_accounted(EVENTS, timeout=600)
        assert run.conn.execute("SELECT count(*) FROM events").fetchone()[0] == EVENTS
        wait_for("healthy again", lambda: node.status().state == "healthy", 60, run.log)
        wait_for("supervisor running", lambda: (supervisor_row(run.conn) or ("",))[0]
                 == "running", 60, run.log)
        assert cli_status().split()[1] == "healthy"
        body = client.get("/health").json()
        assert (body["status"], body["stream"]["state"]) == ("healthy", "running")
        assert client.get("/stream").json()["state"]["state"] == "running"

        resolved = sense(restarted.cursor)
        assert resolved.asset_events[0].metadata["status"].value == "healthy"
        assert [c["text"] for c in slack.calls[1:]] == [
            "Stream RESOLVED: batches are committing again"
        ]
        assert [m["subject"] for m in smtp.messages[1:]] == [
            "[clickguard RESOLVED] Stream RESOLVED: batches are committing again"
        ]
        sense(resolved.cursor)
        sense(second.cursor)  # an old cursor again: still nothing re-sent
        assert (len(slack.calls), len(smtp.messages)) == (2, 2)
        assert run.conn.execute(
            "SELECT seq, transition, severity, status, delivered_via, email_status"
            " FROM alert_history WHERE alert_key = 'stream_health' ORDER BY seq"
        ).fetchall() == [
            (1, "OPEN", "CRITICAL", "sent", "slack", "sent"),
            (2, "RESOLVED", "CRITICAL", "sent", "slack", "sent"),
        ]
