"""`clickguard bench cpu` on the real whole stack, tiny size: every node measured, sane values."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from clickguard_proof.bench_cpu import PRODUCER, cpu
from clickguard_stack.manager import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def whole_stack(stack: Stack) -> Iterator[Stack]:
    """Every node up (the budget is per node of the whole stack); leaves it as found."""
    names = stack.resolve(None)
    started = [n for n in names if stack.node(n).pid() is None]
    stack.up(None, timeout=300)
    yield stack
    if not os.environ.get("CLICKGUARD_KEEP_STACK"):
        for n in reversed(started):
            stack.node(n).stop()


def test_bench_cpu_measures_every_node(whole_stack: Stack, tmp_path: Path) -> None:
    res = CliRunner().invoke(cpu, ["--steps", "0,200", "--step-s", "10", "--warmup-s", "5",
                                   "--prewarm-s", "4", "--sample-s", "2", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "bench-cpu.json").read_text())
    md = (tmp_path / "bench-cpu.md").read_text()
    assert (tmp_path / "bench-cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    steps = doc["data"]["steps"]
    assert doc["data"]["prewarm_s"] == 4
    assert "Prewarm: 4 s at 200 ev/s" in md
    assert [s["rate"] for s in steps] == [0, 200]
    nodes = whole_stack.resolve(None)
    cores = os.cpu_count() or 1
    for s in steps:
        assert s["seconds"] >= 10
        assert set(nodes) <= set(s["nodes"])
        for name in nodes:
            n = s["nodes"][name]
            assert n["processes"] >= 1, name
            assert 0 <= n["cpu_pct_one_core"] <= 100 * cores, (name, n)
            assert n["cpu_pct_machine"] == pytest.approx(n["cpu_pct_one_core"] / cores, abs=0.01)
            assert n["rss_mb_max"] >= n["rss_mb_mean"] > 10, (name, n)
            assert 0 < n["pss_mb_mean"] <= n["rss_mb_max"] + 1, (name, n)
        assert s["stack_rss_mb_max"] == pytest.approx(
            sum(s["nodes"][name]["rss_mb_max"] for name in nodes), abs=0.2
        )
        assert 0 < s["stack_cpu_pct_machine"] <= 100
        assert f"| {nodes[0]} |" in md
    # the producer is measured, outside the stack's total, and delivered everything
    assert PRODUCER not in steps[0]["nodes"]
    prod = steps[1]["nodes"][PRODUCER]
    assert prod["cpu_pct_one_core"] > 0 and prod["rss_mb_max"] > 10
    summary = steps[1]["producer_summary"]
    assert summary["acknowledged"] > 0 and summary["failed"] == 0
    assert summary["acknowledged"] == summary["sent"]
    assert steps[1]["produced_eps"] > 0 and steps[0]["reached_rate"] is True
    assert "whole machine busy %" in md and "**stack total**" in md
