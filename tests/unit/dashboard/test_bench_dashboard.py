"""Pure parts of `clickguard bench dashboard`: percentiles and the verdict of the report."""

from __future__ import annotations

from typing import Any

from clickguard_proof import bench_dashboard as bd


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bd.percentile(values, 50) == 50.0
    assert bd.percentile(values, 99) == 99.0
    assert bd.percentile([3.0], 99) == 3.0
    assert bd.percentile([], 99) is None


def result(rss: float, cpu: float, page_ok: bool = True) -> dict[str, Any]:
    probe = {"requests": 1200, "failures": 0, "p50_ms": 2.0, "p95_ms": 5.0, "p99_ms": 9.0,
             "max_ms": 20.0}

    def phase(browser: bool) -> dict[str, Any]:
        u = {"dashboard": {"cpu_pct_machine": cpu, "rss_mb_max": rss, "rss_mb_mean": rss},
             "api": {"cpu_pct_machine": 1.0, "rss_mb_max": 90.0, "rss_mb_mean": 90.0}}
        if browser:
            u["browser"] = {"cpu_pct_machine": 4.0, "rss_mb_max": 300.0, "rss_mb_mean": 300.0}
        return {"usage": u, "api_probe": probe}

    return {"watch_s": 120.0, "probe_rate": 20.0, "warmup_s": 15.0, "refresh_s": 5.0,
            "cores": 2, "nodes": {"api": "healthy"}, "idle": phase(False),
            "watched": phase(True), "page_without_exception": page_ok}


def test_report_verdict_follows_the_targets() -> None:
    ok = bd.dashboard_report(result(180.0, 1.5))
    assert ok.passed is True
    assert [r["phase"] for r in ok.rows] == ["no browser", "1 browser on Live"]
    assert ok.rows[1]["browser CPU % of cores"] == 4.0 and ok.rows[0]["API p99 ms"] == 9.0
    assert bd.dashboard_report(result(251.0, 1.5)).passed is False
    assert bd.dashboard_report(result(180.0, 3.1)).passed is False
    assert bd.dashboard_report(result(180.0, 1.5, page_ok=False)).passed is False
