"""/health and /stream report the supervisor's run state (rows as the supervisor writes them)."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import psycopg
import pytest

from clickguard import stream_state
from clickguard.stream_state import FailedRun, StreamRunState

pytestmark = pytest.mark.integration

ERR = "InsufficientPrivilege: permission denied for table events"
BEAT = (
    "INSERT INTO stream_heartbeat (component, beat_at, status, details)"
    " VALUES (%s, now(), %s, %s)"
)


def z(iso: str) -> str:
    """An ISO time as the API writes it (UTC with 'Z')."""
    return dt.datetime.fromisoformat(iso).isoformat().replace("+00:00", "Z")


def looping() -> StreamRunState:
    st = StreamRunState(threshold=3)
    for _ in range(3):
        st.record_failure(FailedRun(exit_code=1, error=ERR, batch_id=12, ledger_advanced=False,
                                    ran_s=40.0))
    return st


def test_crash_looping_makes_health_degraded_and_stream_says_why(
    client: httpx.Client, wpg: psycopg.Connection
) -> None:
    st = looping()
    wpg.execute(BEAT, (stream_state.SUPERVISOR_COMPONENT, st.state, json.dumps(st.to_dict())))
    wpg.execute(BEAT, (stream_state.DRIVER_COMPONENT, "stopped", "{}"))
    try:
        r = client.get("/health")
        assert r.status_code == 200  # the API itself serves: degraded, not down
        expected = {
            "state": "crash-looping", "last_error": ERR,
            "last_error_at": z(st.recent_failures[-1]["ended_at"]),
            "consecutive_failures": 3,
            "last_batch_id": 12,
            "since": z(st.since),
        }
        assert r.json() == {
            "status": "degraded", "database": "connected", "version": "1.0.0",
            "stream": expected,
        }
        body = client.get("/stream").json()
        assert body["state"] == expected
        assert {b["component"]: b["status"] for b in body["heartbeats"]} == {
            "streaming_driver": "stopped", "streaming_supervisor": "crash-looping",
        }

        # a batch committed after the loop began: flowing again, even before the supervisor
        # (which checks every few seconds) rewrites its row
        wpg.execute(
            "INSERT INTO batch_ledger (query_id, batch_id, started_at, committed_at, input_rows,"
            " stored, dlq, late, duplicates, anomalies, duration_ms) VALUES"
            " ('q', 12, now(), now(), 5, 5, 0, 0, 0, 0, 10)"
        )
        health = client.get("/health").json()
        assert (health["status"], health["stream"]["state"]) == ("healthy", "running")
        assert client.get("/stream").json()["state"]["state"] == "running"
    finally:
        wpg.execute("TRUNCATE stream_heartbeat, batch_ledger")


def test_restarting_below_the_threshold_is_not_degraded(
    client: httpx.Client, wpg: psycopg.Connection
) -> None:
    st = StreamRunState(threshold=3)
    st.record_failure(FailedRun(exit_code=1, error=ERR, batch_id=3, ledger_advanced=False,
                                ran_s=2.0))
    wpg.execute(BEAT, (stream_state.SUPERVISOR_COMPONENT, st.state, json.dumps(st.to_dict())))
    try:
        body = client.get("/health").json()
        assert body["status"] == "healthy"
        assert (body["stream"]["state"], body["stream"]["consecutive_failures"]) == (
            "restarting", 1)
    finally:
        wpg.execute("TRUNCATE stream_heartbeat")
