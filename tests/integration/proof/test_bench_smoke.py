"""Each proof bench/demo command in smoke mode runs on the real stack and writes well-formed
JSON, Markdown and PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from clickguard_proof.bench_api import api
from clickguard_proof.bench_capacity import SMOKE_RATES, capacity
from clickguard_proof.bench_latency import latency
from clickguard_proof.demo import demo
from clickguard_proof.slo import slo_report
from clickguard_stack.manager import Stack

pytestmark = pytest.mark.integration


def _well_formed(out: Path, name: str) -> dict:
    doc = json.loads((out / f"{name}.json").read_text())
    assert doc["name"] == name and doc["generated_at"] and doc["machine"]["nproc"] >= 1
    md = (out / f"{name}.md").read_text()
    assert md.startswith("# ") and "|---|" in md and f"({name}.png)" in md
    assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return doc


def test_capacity_smoke(streaming: Stack, tmp_path: Path) -> None:
    res = CliRunner().invoke(capacity, ["--smoke", "--keep-going", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = _well_formed(tmp_path, "bench-capacity")
    steps = doc["data"]["steps"]
    assert [s["target_eps"] for s in steps] == SMOKE_RATES
    for s in steps:
        assert s["acknowledged"] > 0 and s["failed"] == 0
        assert s["events"] == s["acknowledged"]  # every produced event was stored and measured
        assert s["batches"] >= 1 and s["e2e_p95_ms"] > 0
        assert s["e2e_p99_ms"] >= s["e2e_p95_ms"] >= s["e2e_p50_ms"] > 0
        assert s["cpu_pct"]["streaming"] > 0 and s["cpu_pct"]["total"] > 0  # sampled per step
    assert "whole_stack" in doc["data"]
    assert any("NOT a sustained rate" in n for n in doc["notes"])  # drain figure labelled


def test_latency_bench_measures_every_event(streaming: Stack, tmp_path: Path) -> None:
    """A short `bench latency` run: every acknowledged event stored and in the percentiles."""
    res = CliRunner().invoke(latency, [
        "--rate", "400", "--minutes", "0.25", "--idle", "2", "--partial-stack",
        "--out", str(tmp_path),
    ])
    assert res.exit_code == 0, res.output
    doc = _well_formed(tmp_path, "bench-latency")
    data = doc["data"]
    assert data["acknowledged"] > 0 and data["failed"] == 0
    assert data["stored"] == data["acknowledged"] and data["complete"]
    assert sum(m["events"] for m in data["per_minute"]) == data["stored"]
    # a 15 s run lies within its first minute: the 10 s windows hold every event
    assert [w["seconds"] for w in data["first_minute"]] == ["0-10", "10-20"]
    assert sum(w["events"] for w in data["first_minute"]) == data["stored"]
    e2e = data["slo"]["stages"]["end_to_end"]
    assert e2e["p99"] >= e2e["p95"] >= e2e["p50"] > 0
    assert data["cpu_pct"]["streaming"] > 0
    _well_formed(tmp_path, "slo")


def test_demo_runs_for_a_duration(streaming: Stack, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        demo, ["--duration", "12", "--rate", "300", "--status-every", "3", "--core-only",
               "--out", str(tmp_path)],
    )
    assert res.exit_code == 0, res.output
    assert "Where to look" in res.output and "events/s" in res.output
    doc = _well_formed(tmp_path, "demo")
    assert len(doc["data"]["status"]) >= 3
    assert doc["data"]["producer"]["failed"] == 0
    assert doc["data"]["producer"]["acknowledged"] > 0


def test_api_smoke(api_node: Stack, tmp_path: Path) -> None:
    res = CliRunner().invoke(api, ["--smoke", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = _well_formed(tmp_path, "bench-api")
    totals = {r["target"]: r for r in doc["table"] if r["endpoint"] == "ALL"}
    assert set(totals) == {"baseline", "api"}
    assert totals["api"]["requests"] > 0 and totals["api"]["failures"] == 0


def test_slo_report_command_refuses_too_few_events(stack: Stack, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        slo_report, ["--since", "1999-01-01T00:00:00", "--until", "1999-01-02T00:00:00",
                     "--out", str(tmp_path)],
    )
    assert res.exit_code == 1
    assert f"only 0 events in the window (< 10,000): nothing written to {tmp_path}" in res.output
    assert not list(tmp_path.glob("slo*"))  # a published report is not replaced by an empty one
