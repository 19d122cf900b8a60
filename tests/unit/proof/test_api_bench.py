"""The benchmark's verdict and report: the target needs the rate AND every key endpoint's p99."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clickguard_proof.api_bench import markdown, plot, verdict


def row(name: str, rps: float, p99: float, failures: int = 0) -> dict[str, Any]:
    return {"name": name, "requests": int(rps * 60), "failures": failures, "rps": rps,
            "p50_ms": 2.0, "p95_ms": 5.0, "p99_ms": p99, "max_ms": 40.0, "avg_ms": 2.5}


def result(total: float, p99: float, failures: int = 0) -> dict[str, Any]:
    api = [row("/anomalies", 300, p99), row("/stats", 300, 8), row("/metrics/summary", 300, 9),
           row("ALL", total, p99, failures)]
    r = {"started_at": "t", "users": 50, "user_rate": 25.0, "offered_rps": 1250,
         "duration_s": 60, "api_workers": 2, "cache_ttl_s": 1.0, "cpus": 2, "data": {},
         "baseline": [row("baseline /", 1250, 4), row("ALL", 1250, 4)], "api": api}
    r["verdict"] = verdict(r)
    return r


def test_verdict() -> None:
    assert result(1100, 12)["verdict"]["meets_target"] is True
    assert result(990, 12)["verdict"]["meets_target"] is False
    assert result(1100, 21)["verdict"]["meets_target"] is False
    assert result(1100, 12, failures=1)["verdict"]["meets_target"] is False
    assert result(1100, 12)["verdict"]["key_p99_ms"] == {
        "/anomalies": 12, "/stats": 8, "/metrics/summary": 9}


def test_report_files(tmp_path: Path) -> None:
    r = result(1100, 12)
    md = markdown(r)
    assert "| api | /stats | 18000 | 0 | 300 | 2 | 5 | 8 | 40 |" in md
    assert "**met**" in md
    plot(r, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
