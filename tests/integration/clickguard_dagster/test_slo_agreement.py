"""``GET /slo``, ``clickguard slo-report`` and the ``slo_report`` asset give the same numbers for
the same window: all three go through :mod:`clickguard.slo` (real PostgreSQL)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from api.main import create_app
from clickguard.settings import Settings
from clickguard.slo import STAGES
from clickguard_dagster.assets.slo import slo_report
from clickguard_dagster.resources import build_resources
from clickguard_proof.slo import slo_report as slo_report_cmd
from tests.integration.clickguard_dagster.conftest import insert_events, make_events


def spread_events(conn: psycopg.Connection, n: int) -> int:
    """``n`` events committed over the last two minutes, each stage with its own random latency
    (so the percentiles interpolate and any difference of method or rows would show)."""
    rng = random.Random(12)
    now = datetime.now(UTC)
    rows = []
    for r in make_events(sessions_per_day=20, seed=5, id_prefix="agree")[:n]:
        r = list(r)
        r[5] = now - timedelta(milliseconds=rng.uniform(500, 120_000))  # commit_ts
        r[4] = r[5] - timedelta(milliseconds=rng.expovariate(1 / 400))  # batch_start_ts
        r[3] = r[4] - timedelta(milliseconds=rng.uniform(5, 3_000))  # kafka_ts
        r[2] = r[3] - timedelta(milliseconds=rng.lognormvariate(3, 1))  # ingest_ts
        rows.append(tuple(r))
    insert_events(conn, rows)
    return len(rows)


def test_api_cli_and_asset_agree_on_one_window(
    clean: psycopg.Connection, settings: Settings, tmp_path: Path
) -> None:
    n = spread_events(clean, 400)
    assert n == 400
    res = build_resources(settings)
    result = dg.materialize([slo_report], resources={"postgres": res["postgres"],
                                                     "slo": res["slo"]})
    (mat,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in mat.materialization.metadata.items()}
    since, until = meta["window_start"], meta["window_end"]
    assert meta["events"] == n

    with TestClient(create_app(settings)) as client:
        reply = client.get("/slo", params={"since": since, "until": until, "limit": 100_000})
    assert reply.status_code == 200, reply.text
    api: dict[str, Any] = reply.json()
    assert api["samples"] == n
    by_api = {s["stage"]: s for s in api["stages"]}

    out = tmp_path / "results"
    run = CliRunner().invoke(
        slo_report_cmd,
        ["--since", since, "--until", until, "--min-events", "1", "--out", str(out)],
    )
    assert run.exit_code == 0, run.output
    cli = json.loads((out / "slo.json").read_text())["data"]
    assert cli["events"] == n
    assert (cli["window_start"], cli["window_end"]) == (since, until)

    for stage in STAGES:
        for q in ("p50", "p95", "p99"):
            from_cli = cli["stages"][stage][q]
            assert from_cli is not None and from_cli > 0
            assert by_api[stage][f"{q}_ms"] == pytest.approx(from_cli, rel=1e-12), (stage, q)
            assert meta[f"{stage}_{q}_ms"] == pytest.approx(round(from_cli, 1), abs=1e-9)
        assert by_api[stage]["max_ms"] == pytest.approx(cli["stages"][stage]["max"], rel=1e-12)
