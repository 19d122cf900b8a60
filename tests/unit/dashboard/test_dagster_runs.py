"""The DLQ page's replay runs: the GraphQL query against Dagster's own schema, and the parsing
and display of its answer (a payload in the shape dagster-webserver returns)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dashboard import data
from dashboard.client import RUNS_QUERY
from tests.unit.dashboard import payloads

UI = "http://dagster.example:3000"


def test_the_runs_query_is_valid_for_the_installed_dagster() -> None:
    """A renamed field in a Dagster upgrade fails here, not as an empty state in production."""
    from dagster_graphql.schema import create_schema
    from graphql import parse, validate

    assert validate(create_schema().graphql_schema, parse(RUNS_QUERY)) == []


def test_parse_runs_keeps_order_and_reads_epoch_seconds_as_utc() -> None:
    runs = data.parse_runs(payloads.DAGSTER_RUNS)
    assert [r["status"] for r in runs] == ["STARTED", "FAILURE", "SUCCESS", "QUEUED"]
    failed = runs[1]
    assert failed["run_id"] == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert failed["start"] == pd.Timestamp("2026-12-01 14:00:01", tz="UTC")
    assert failed["end"] == pd.Timestamp("2026-12-01 14:02:06.400", tz="UTC")
    assert runs[3]["start"] is None and runs[3]["end"] is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"data": {"runsOrError": {"__typename": "PythonError", "message": "instance down"}}},
         "instance down"),
        ({"data": {"runsOrError": {"__typename": "InvalidPipelineRunsFilterError",
                                   "message": "bad filter"}}}, "bad filter"),
        ({"errors": [{"message": "Cannot query field 'runId' on type 'Run'."}], "data": None},
         "Cannot query field 'runId' on type 'Run'."),
        ({"data": None}, "unexpected answer {}"),
    ],
)
def test_parse_runs_raises_dagsters_message(payload: dict, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        data.parse_runs(payload)


def test_runs_frame_status_start_duration_and_link() -> None:
    now = pd.Timestamp("2026-12-01 15:00:31.5", tz="UTC")
    df = data.runs_frame(data.parse_runs(payloads.DAGSTER_RUNS), UI, now=now)
    assert df.to_dict("records") == [
        {"run": f"[4b7c3f0e]({UI}/runs/4b7c3f0e-9d1a-4c57-8e2b-5a6f0c1d2e3f)",
         "status": ":blue[STARTED]", "started": "2026-12-01 15:00:01",
         "duration": "30 s so far"},
        {"run": f"[0f1e2d3c]({UI}/runs/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)",
         "status": ":red[FAILURE]", "started": "2026-12-01 14:00:01", "duration": "2 min 05 s"},
        {"run": f"[9a8b7c6d]({UI}/runs/9a8b7c6d-5e4f-4321-9876-0fedcba98765)",
         "status": ":green[SUCCESS]", "started": "2026-12-01 13:00:00", "duration": "4.5 s"},
        {"run": f"[11111111]({UI}/runs/11111111-2222-3333-4444-555555555555)",
         "status": ":violet[QUEUED]", "started": "2026-12-01 12:00:00",  # created, not started
         "duration": "not started"},
    ]


def test_fmt_duration() -> None:
    assert [data.fmt_duration(s) for s in (0.84, 42.4, 185, 7440)] == [
        "0.8 s", "42 s", "3 min 05 s", "2 h 04 min"]


def test_markdown_table_escapes_cell_pipes() -> None:
    df = pd.DataFrame([{"a": "x|y", "b": "line\nbreak"}])
    assert data.markdown_table(df) == "| a | b |\n|---|---|\n| x\\|y | line break |"


def test_driver_line() -> None:
    now = pd.Timestamp("2026-12-01 15:00:00", tz="UTC")
    lease = {"driver": "d0:7@h", "epoch": 4, "source": "lease",
             "since": "2026-12-01T14:59:00Z", "lease_expires_at": "2026-12-01T15:00:09Z",
             "last_commit_at": None}
    assert data.driver_line(lease, now) == (
        "**active driver** `d0:7@h` · epoch 4 · lease since 2026-12-01 14:59:00")
    expired = dict(lease, lease_expires_at="2026-12-01T14:59:50Z")
    assert data.driver_line(expired, now).endswith(
        ":orange[lease expired 14:59:50: a standby should take over]")
    assert data.driver_line(None).startswith("**active driver** unknown")


def test_parse_runs_of_a_recorded_answer() -> None:
    """dagster-webserver 1.13.27's answer to RUNS_QUERY after `clickguard dlq-replay --dry-run`
    and `clickguard dlq-replay --limit 20` on a private stack (2026-12-01)."""
    recorded = json.loads((Path(__file__).parent / "dagster_runs_recorded.json").read_text())
    runs = data.parse_runs(recorded)
    assert [(r["run_id"][:8], r["status"]) for r in runs] == [
        ("30cf5f61", "SUCCESS"), ("be711a12", "SUCCESS")]
    df = data.runs_frame(runs, UI)
    assert list(df["started"]) == ["2026-12-01 15:56:50", "2026-12-01 15:56:35"]
    assert list(df["duration"]) == ["1.6 s", "0.7 s"]
