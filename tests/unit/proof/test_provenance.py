"""Every result file says how to re-run it and where, when and on what it was measured."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from clickguard_proof.provenance import command_line, provenance, provenance_line
from clickguard_proof.results import write_results


def test_command_line_through_the_cli_runs_as_written() -> None:
    argv = ["/x/.venv/bin/clickguard", "bench", "latency", "--rate", "5000", "--note", "a b"]
    line = command_line(argv, main_spec=None)
    assert line == "clickguard bench latency --rate 5000 --note 'a b'"
    assert shlex.split(line)[1:] == argv[1:]
    assert command_line(["/x/clickguard_cli/__main__.py", "chaos", "all"],
                        main_spec="clickguard_cli.__main__") == "clickguard chaos all"


def test_command_line_of_a_module_run() -> None:
    assert (command_line(["/x/clickguard_proof/bench_dagster.py", "--events", "10"],
                         main_spec="clickguard_proof.bench_dagster")
            == "python -m clickguard_proof.bench_dagster --events 10")


def test_provenance_has_what_a_reader_needs() -> None:
    p = provenance(command="clickguard slo-report")
    assert p["command"] == "clickguard slo-report"
    assert {"cpu", "nproc", "ram_gb", "kernel"} <= set(p["machine"])
    assert p["load_avg_end"] is not None and "load_avg_start" in p
    assert p["generated_at"].endswith("+00:00")
    assert {"python", "pyspark", "kafka", "postgres", "dagster"} <= set(p["versions"])
    assert "commit" in p["git"]


def test_write_results_adds_provenance_to_json_and_md(tmp_path: Path) -> None:
    paths = write_results(tmp_path, "r", {"x": 1}, "# Title\n\nbody", {})
    doc = json.loads(paths[0].read_text())
    assert doc["x"] == 1 and doc["provenance"]["machine"]["nproc"] >= 1
    assert doc["command"] == doc["provenance"]["command"]
    md = paths[1].read_text().splitlines()
    assert md[0] == "# Title" and md[2].startswith("Provenance: `")
    # a writer's own command wins at the top level; the provenance block is not replaced
    paths = write_results(tmp_path, "s", {"command": "clickguard fuzz-stream --records 5",
                                          "provenance": {"command": "c"}}, "body", {})
    doc = json.loads(paths[0].read_text())
    assert doc["command"] == "clickguard fuzz-stream --records 5"
    assert doc["provenance"] == {"command": "c"}


def test_settings_from_the_environment_are_recorded_and_shown_secrets_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A figure measured with a non-default setting says which (a bench cpu run with Serial GC
    brokers looked like any other run before this)."""
    for k in [k for k in os.environ if k.startswith("CLICKGUARD_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("CLICKGUARD_KAFKA_JVM_OPTS", "-XX:+UseSerialGC")
    monkeypatch.setenv("CLICKGUARD_PG_PASSWORD", "hunter2")
    monkeypatch.setenv("CLICKGUARD_PG_PORT", "25432")
    p = provenance(command="clickguard bench cpu")
    assert p["settings_env"] == {"CLICKGUARD_KAFKA_JVM_OPTS": "-XX:+UseSerialGC",
                                 "CLICKGUARD_PG_PASSWORD": "***", "CLICKGUARD_PG_PORT": "25432"}
    line = provenance_line(p)
    assert line.endswith("settings from the environment: CLICKGUARD_KAFKA_JVM_OPTS="
                         "-XX:+UseSerialGC")
    assert "hunter2" not in line and "25432" not in line
    monkeypatch.delenv("CLICKGUARD_KAFKA_JVM_OPTS")
    monkeypatch.delenv("CLICKGUARD_PG_PASSWORD")
    assert "settings from the environment" not in provenance_line(provenance(command="x"))
