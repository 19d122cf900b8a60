"""`clickguard bench producer --smoke` runs every phase for real and writes JSON + MD + PNG."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from clickguard_cli.cli import main
from clickguard_producer.parallel import auto_workers
from clickguard_stack.manager import Stack


def test_bench_producer_smoke_writes_results(stack: Stack, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["bench", "producer", "--smoke", "--out", str(tmp_path)])
    print(res.output)  # the phases' progress, shown by pytest when a later assertion fails
    assert res.exit_code == 0, res.output

    data = json.loads((tmp_path / "bench-producer.json").read_text())
    assert data["records_per_phase"] == 6_000
    phases = {p["name"]: p for p in data["phases"]}
    cores = os.cpu_count() or 1
    both = [f"healthy_{min(cores, 4)}_processes"] if cores >= 2 else []
    assert list(phases) == [
        "healthy", *both, "as_users_run_it", "broker_sigkilled", "broker_stopped"
    ]
    for name in both:  # the same records from several processes, against the same kcat run
        assert phases[name]["ours"]["workers"] == min(cores, 4)
        assert phases[name]["ratio_ours_to_kcat"] > 0
    cli = phases["as_users_run_it"]["ours"]
    assert cli["command"].startswith("clickguard produce --count 6000 ")
    assert (cli["returncode"], cli["workers"]) == (0, auto_workers(None))
    target = data["failed_broker"]
    assert phases["broker_sigkilled"]["fault"] == f"kill {target}"
    assert phases["broker_stopped"]["fault"] == f"stop {target}"
    # the broker was failed mid-run: some records were already written, not all of them
    for name in ("broker_sigkilled", "broker_stopped"):
        assert 0 < phases[name]["written_before_fault"] < 6_000
        # which node was the active KRaft controller (read from the real quorum-state files)
        assert phases[name]["active_controller"] in {"kafka-1", "kafka-2", "kafka-3"}
    for p in phases.values():
        ours = p["ours"]
        assert (ours["acknowledged"], ours["failed"], ours["offsets_written"]) == (6_000, 0, 6_000)
        assert ours["exact"] is True
        assert 0 < ours["latency_ms"]["p50"] <= ours["latency_ms"]["p99"]
    kcat = phases["healthy"]["kcat"]
    assert (kcat["returncode"], kcat["offsets_written"], kcat["exact"]) == (0, 6_000, True)
    assert "kcat" not in phases["broker_sigkilled"]  # smoke: kcat only healthy
    # the broker that was failed is back and every broker is up
    assert all(r.healthy for r in stack.status() if r.name.startswith("kafka-"))

    md = (tmp_path / "bench-producer.md").read_text()
    assert "| phase | fault | ours ev/s | kcat ev/s |" in md
    assert md.count("| broker_") == 2
    assert f"At `kill {target}` the active KRaft controller was `kafka-" in md
    assert (tmp_path / "bench-producer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
