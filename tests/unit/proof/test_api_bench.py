"""The benchmark's verdict and report: the target needs the rate AND every key endpoint's p99."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from clickguard_proof.api_bench import (
    NOT_FOUND_HINT,
    api_data_facts,
    failure_causes,
    failure_lines,
    verdict,
)
from clickguard_proof.bench_api import api_report


def row(name: str, rps: float, p99: float, failures: int = 0) -> dict[str, Any]:
    return {"name": name, "requests": int(rps * 60), "failures": failures, "rps": rps,
            "p50_ms": 2.0, "p95_ms": 5.0, "p99_ms": p99, "max_ms": 40.0, "avg_ms": 2.5}


def result(total: float, p99: float, failures: int = 0) -> dict[str, Any]:
    api = [row("/anomalies", 300, p99), row("/stats", 300, 8), row("/metrics/summary", 300, 9),
           row("ALL", total, p99, failures)]
    r = {"started_at": "t", "users": 50, "user_rate": 25.0, "offered_rps": 1250,
         "duration_s": 60, "api_workers": 2, "cache_ttl_s": 1.0, "cpus": 2, "data": {},
         "load_average_before": [0.5, 0.4, 0.3], "load_average_after": [1.5, 0.6, 0.3],
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
    """The command's one report: table per endpoint, the target's verdict, load, CPU, plot."""
    r = result(1100, 12)
    r["api"][-1] |= {"server_cpu_s": 33.0, "cpu_ms_per_request": 0.5}
    paths = api_report(r).write(tmp_path)
    md = paths["md"].read_text()
    assert "| api | /stats | 18,000 | 0 | 300 | 2.00 | 5.00 | 8 | 40.00 |" in md
    assert "**met** — 1100 req/s" in md
    assert "load average (1/5/15 min) before [0.5, 0.4, 0.3], after [1.5, 0.6, 0.3]" in md
    assert "api server CPU 33.0 s, 0.5 ms per request (≈ 2000 req/s per core)" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    slow = api_report(result(1100, 21)).write(tmp_path / "slow")["md"].read_text()
    assert "**NOT met** — 1100 req/s" in slow


def _failures_csv(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    """A failures file as Locust writes it (locust/stats.py: failures_csv)."""
    lines = ['"Method","Name","Error","Occurrences","First Seen","Last Seen"']
    lines += [f'"GET","{n}","{e}","{k}","2026-12-06 09:00:00","2026-12-06 09:01:00"'
              for n, e, k in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_failures_are_reported_by_cause_with_a_hint_for_404s(tmp_path: Path) -> None:
    """A bench on an empty database counted hundreds of failures and said nothing more: they
    were 404s for days without events."""
    csv_path = _failures_csv(tmp_path / "api_failures.csv", [
        ("/metrics/funnel/{day}", "HTTP 404", 120), ("/sessions/{id}", "HTTP 404", 480),
    ])
    causes = failure_causes(csv_path)
    assert [(c["name"], c["occurrences"]) for c in causes] == [
        ("/sessions/{id}", 480), ("/metrics/funnel/{day}", 120)]
    r = result(1100, 12, failures=600)
    r["api"][-1]["failure_causes"] = causes
    notes = "\n".join(api_report(r).notes)
    assert "api /sessions/{id}: HTTP 404 × 480" in notes
    assert NOT_FOUND_HINT in notes and NOT_FOUND_HINT in failure_lines(r)


def test_other_failures_get_no_404_hint_and_none_get_no_section(tmp_path: Path) -> None:
    r = result(1100, 12, failures=3)
    r["api"][-1]["failure_causes"] = failure_causes(
        _failures_csv(tmp_path / "f.csv", [("/stats", "HTTP 500", 3)]))
    assert failure_lines(r) == ["api /stats: HTTP 500 × 3"]
    assert failure_causes(tmp_path / "absent.csv") == []
    assert not any("Failures by cause" in n for n in api_report(result(1100, 12)).notes)


def test_an_api_elsewhere_is_described_by_its_own_stats() -> None:
    """--api-url: the data facts are what that API serves (its /stats), not the database of
    the shell's settings, which may be another one."""
    stats = {"total_anomalies": 75, "days_processed": 2, "total_popular_items": 40,
             "last_anomaly_detected": None, "last_metrics_date": None}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(stats).encode() if self.path == "/stats" else b"{}"
            self.send_response(200 if self.path == "/stats" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert api_data_facts(url) == {"source": f"{url}/stats", "anomalies": 75,
                                       "daily_metrics_days": 2, "popular_items": 40}
    finally:
        server.shutdown()
        server.server_close()
