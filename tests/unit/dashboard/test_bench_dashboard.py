"""Pure parts of `clickguard bench dashboard`: percentiles, the p99 interval and the verdict."""

from __future__ import annotations

import random
from typing import Any

from clickguard_proof import bench_dashboard as bd


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bd.percentile(values, 50) == 50.0
    assert bd.percentile(values, 99) == 99.0
    assert bd.percentile([3.0], 99) == 3.0
    assert bd.percentile([], 99) is None


def test_p99_difference_interval_holds_zero_only_without_a_shift() -> None:
    rng = random.Random(1)
    base = [rng.expovariate(1 / 3.0) for _ in range(3000)]
    same = [rng.expovariate(1 / 3.0) for _ in range(3000)]
    slower = [v + 10.0 for v in same]
    d = bd.p99_difference(base, same)
    assert d["ci_low_ms"] is not None and d["ci_low_ms"] <= 0 <= d["ci_high_ms"]  # type: ignore[operator]
    s = bd.p99_difference(base, slower)
    assert s["ci_low_ms"] > 0  # type: ignore[operator]
    assert s["diff_ms"] == round(bd.percentile(slower, 99) - bd.percentile(base, 99), 2)  # type: ignore[operator]
    assert bd.p99_difference([], same)["diff_ms"] is None


def result(rss: float, cpu: float, page_ok: bool = True, rounds: int = 2) -> dict[str, Any]:
    def phase(r: int, cond: str) -> dict[str, Any]:
        lat = [1.0 + (i % 100) / 10 for i in range(1200)]  # 12 each of 1.0 … 10.9 ms: p99 = 10.8 ms
        u = {"dashboard": {"cpu_pct_machine": cpu if cond != "off" else 0.1, "rss_mb_max": rss,
                           "rss_mb_mean": rss},
             "api": {"cpu_pct_machine": 1.0, "rss_mb_max": 90.0, "rss_mb_mean": 90.0},
             "browser": {"cpu_pct_machine": 4.0, "rss_mb_max": 300.0, "rss_mb_mean": 300.0}}
        probe = {**bd.latency_summary(lat), "failures": 0, "latencies_ms": lat}
        return {"round": r, "condition": cond, "usage": u, "api_probe": probe}

    return {"watch_s": 60.0, "probe_rate": 20.0, "warmup_s": 10.0, "refresh_s": 5.0,
            "rounds": rounds, "cores": 2, "nodes": {"api": "healthy"},
            "phases": [phase(r, c) for r in range(1, rounds + 1) for c in bd.CONDITIONS],
            "page_without_exception": page_ok}


def test_report_pools_the_rounds_per_condition_and_follows_the_targets() -> None:
    ok = bd.dashboard_report(result(180.0, 1.5))
    assert ok.passed is True
    assert [r["condition"] for r in ok.rows] == [bd.LABELS[c] for c in bd.CONDITIONS]
    off, on = ok.rows[0], ok.rows[1]
    assert (off["API requests"], off["API p99 ms"], off["p99 per round ms"]) == (
        2400, 10.8, "10.8 / 10.8")
    assert on["p99 − off, 95 % CI ms"].startswith("+0.0 [")  # same latencies: no shift
    assert on["browser CPU % of cores"] == 4.0 and on["dashboard CPU % of cores"] == 1.5
    # the JSON keeps summaries, not the raw latencies
    assert "latencies_ms" not in ok.data["phases"][0]["api_probe"]
    assert ok.data["conditions"]["on"]["round_p99_ms"] == [10.8, 10.8]
    assert bd.dashboard_report(result(251.0, 1.5)).passed is False
    assert bd.dashboard_report(result(180.0, 3.1)).passed is False
    assert bd.dashboard_report(result(180.0, 1.5, page_ok=False)).passed is False


def test_the_calls_condition_replays_exactly_the_live_pages_api_calls() -> None:
    """A real local HTTP server records what replay_live_calls requests in one refresh."""
    import http.server
    import threading
    from urllib.parse import parse_qsl, urlsplit

    from dashboard.views.live import LIVE_CALLS

    assert bd.LIVE_CALLS == LIVE_CALLS  # the bench's copy is what the page requests
    seen: list[tuple[str, dict[str, str], str | None]] = []
    stop = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            seen.append((url.path, dict(parse_qsl(url.query)), self.headers.get("X-API-Key")))
            if len(seen) == len(LIVE_CALLS):
                stop.set()  # one refresh done
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        bd.replay_live_calls(f"http://127.0.0.1:{server.server_port}", "k", 60.0, stop)
    finally:
        server.shutdown()
    assert seen == [(path, {k: str(v) for k, v in params.items()}, "k")
                    for path, params in LIVE_CALLS]
    assert [p for p, _, _ in seen] == ["/health", "/stream", "/slo", "/anomalies/per-minute"]


SESSION_APP = '''
import os
import pathlib

import streamlit as st

log = pathlib.Path(os.environ["CG_SESSION_LOG"])
with log.open("a") as f:
    f.write("page\\n")


@st.fragment(run_every=0.5)
def ticker() -> None:
    with log.open("a") as f:
        f.write("fragment\\n")
    n = log.read_text().count("fragment")
    st.write(f"tick {n}")
    if n == 3:
        raise ValueError("third run fails")


ticker()
'''


def test_a_session_without_a_browser_runs_the_page_once_then_its_fragment_on_its_timer(
        tmp_path: Any) -> None:
    """A real Streamlit server; the client keeps the session as a browser would: one page run,
    then reruns of the ``run_every`` fragment only, each finished, and a raising run counted."""
    import os
    import socket
    import subprocess
    import sys
    import threading
    import time

    import httpx

    from clickguard_proof.streamlit_session import SessionStats, hold_session

    app, log = tmp_path / "app.py", tmp_path / "runs.log"
    app.write_text(SESSION_APP)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(app), "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false"],
        env={**os.environ, "CG_SESSION_LOG": str(log)}, cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "streamlit did not start in 60 s"
            time.sleep(0.3)
        stop, stats = threading.Event(), SessionStats()
        t = threading.Thread(target=hold_session, args=(f"http://127.0.0.1:{port}/", stop, stats))
        t.start()
        while stats.runs < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        t.join(10)
    finally:
        proc.terminate()
        proc.wait(10)
    lines = log.read_text().split()
    assert stats.error is None
    assert lines.count("page") == 1  # the reruns were the fragment's, not the page's
    assert stats.runs >= 6 and lines.count("fragment") in (stats.runs, stats.runs + 1)
    assert list(stats.fragments.values()) == [0.5]
    assert stats.exceptions == 1  # the third run raised, and the session went on
