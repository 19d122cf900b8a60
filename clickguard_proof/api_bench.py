"""The API benchmark's measuring: Locust headless against the API and a bare uvicorn baseline.

``run_api_bench(settings, work_dir)`` checks the API answers, starts the baseline app
(baseline_app.py) on a free port with the same number of workers, runs Locust for
``duration_s`` against the baseline and then against the API (same users and offered load) with
its CSVs in ``work_dir``, and returns the result document; ``clickguard bench api``
(bench_api.py) is the one command that runs it and writes the report. Locust runs in a
subprocess (it monkey-patches the process with gevent), so the caller stays clean. Data set:
load_api_data.py.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickguard import db, procs
from clickguard.settings import REPO_ROOT, Settings

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
KEY_ENDPOINTS = ("/anomalies", "/stats", "/metrics/summary")
TARGET_RPS = 1000.0
TARGET_P99_MS = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")
        time.sleep(0.3)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of ``pid`` and its descendants (uvicorn workers), from /proc."""
    if pid is None:
        return None
    total = 0
    for p in [pid, *procs.descendants(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def api_pid(settings: Settings) -> int | None:
    """The stack's api node process, when it runs on this machine."""
    from clickguard_stack.manager import Stack

    return Stack(settings, echo=lambda _m: None).node("api").pid()


def data_facts(settings: Settings) -> dict[str, Any]:
    """Sizes of the loaded data (events from the planner's estimate: counting 10 M rows is slow)."""
    with db.connect(settings, "reader") as conn:
        row = conn.execute(
            # events is partitioned by day: its partitions hold the estimates
            "SELECT (SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_inherits i"
            "  JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass),"
            " (SELECT coalesce(sum(anomaly_count), 0) FROM anomaly_type_stats),"
            " (SELECT count(*) FROM daily_metrics),"
            " (SELECT row_count FROM api_table_counts WHERE table_name = 'popular_items')"
        ).fetchone()
    assert row is not None
    return {"events_estimate": int(row[0]), "anomalies": int(row[1]),
            "daily_metrics_days": int(row[2]),
            "popular_items": int(row[3] or 0)}


def api_data_facts(api_url: str) -> dict[str, Any]:
    """What an API elsewhere serves, from its own ``/stats``: the database this process's
    settings name need not be the one behind ``--api-url``."""
    with urllib.request.urlopen(f"{api_url}/stats", timeout=10) as r:
        stats = json.load(r)
    return {"source": f"{api_url}/stats", "anomalies": stats.get("total_anomalies"),
            "daily_metrics_days": stats.get("days_processed"),
            "popular_items": stats.get("total_popular_items")}


def run_locust(
    host: str, user_class: str, users: int, user_rate: float, duration_s: int, prefix: Path,
    progress: Callable[[str], None] = print, server_pid: int | None = None,
) -> list[dict[str, Any]]:
    """One headless Locust run; per-endpoint rows (plus 'ALL') from its CSV. The 'ALL' row also
    gets the server's CPU milliseconds per request when ``server_pid`` is known (whole run,
    ramp-up included): a figure that depends far less on what else the machine runs."""
    cpu0 = cpu_seconds(server_pid)
    env = {**os.environ, "CLICKGUARD_BENCH_USER_RATE": str(user_rate)}
    cmd = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(max(1, users // 2)), "-t", f"{duration_s}s",
        "--host", host, "--csv", str(prefix), "--reset-stats", "--only-summary",
        "--stop-timeout", "5", "--loglevel", "WARNING", user_class,
    ]
    log = prefix.with_suffix(".log")
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
        t0, next_report = time.monotonic(), 10.0
        while proc.poll() is None:
            time.sleep(0.5)
            elapsed = time.monotonic() - t0
            if elapsed >= next_report:
                progress(f"  {user_class}: {elapsed:.0f}/{duration_s}s")
                next_report += 10
        if proc.returncode not in (0, 1):  # 1 = some requests failed; still a result
            raise RuntimeError(f"locust exited {proc.returncode}; see {log}")
    cpu1 = cpu_seconds(server_pid)
    rows = []
    with open(f"{prefix}_stats.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            rows.append({
                "name": r["Name"] if r["Name"] != "Aggregated" else "ALL",
                "requests": int(r["Request Count"]),
                "failures": int(r["Failure Count"]),
                "rps": round(float(r["Requests/s"]), 1),
                "p50_ms": float(r["50%"]),
                "p95_ms": float(r["95%"]),
                "p99_ms": float(r["99%"]),
                "max_ms": round(float(r["Max Response Time"]), 1),
                "avg_ms": round(float(r["Average Response Time"]), 2),
            })
    causes = failure_causes(Path(f"{prefix}_failures.csv"))
    if causes and rows:
        rows[-1]["failure_causes"] = causes
    if cpu0 is not None and cpu1 is not None:
        served = _served_requests(prefix)
        rows[-1]["server_cpu_s"] = round(cpu1 - cpu0, 2)
        rows[-1]["cpu_ms_per_request"] = round(1000 * (cpu1 - cpu0) / max(served, 1), 3)
    return rows


def _served_requests(prefix: Path) -> int:
    """All requests of the run, ramp-up included (--reset-stats zeroes the running total once)."""
    done, last = 0, 0
    with open(f"{prefix}_stats_history.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["Name"] != "Aggregated":
                continue
            total = int(r["Total Request Count"])
            if total < last:
                done += last
            last = total
    return done + last


def run_api_bench(
    settings: Settings,
    work_dir: Path,
    duration_s: int = 60,
    users: int = 50,
    user_rate: float = 25.0,
    api_url: str | None = None,
    baseline: bool = True,
    progress: Callable[[str], None] = print,
    api_user: str = "ApiUser",
) -> dict[str, Any]:
    """Benchmark the running API (and the baseline); returns the results (Locust's own CSVs
    stay in ``work_dir``).

    ``api_user``: "ApiUser" (every endpoint, weighted) or "KeyEndpointsUser" (only /anomalies,
    /stats, /metrics/summary)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    local = api_url is None  # the stack's api node: its CPU per request can be read from /proc
    api_url = api_url or f"http://{settings.api_host}:{settings.api_port}"
    _wait_http(f"{api_url}/health", 10)
    result: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": duration_s, "users": users, "user_rate": user_rate,
        "offered_rps": users * user_rate, "api_workers": settings.api_workers,
        "cache_ttl_s": settings.api_cache_ttl_s, "cpus": os.cpu_count(),
        "data": data_facts(settings) if local else api_data_facts(api_url),
        "load_average_before": list(os.getloadavg()),
    }
    progress(f"data: {result['data']}")
    if baseline:
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "clickguard_proof.baseline_app:app",
             "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(settings.api_workers), "--no-access-log",
             "--log-level", "warning"],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            _wait_http(f"http://127.0.0.1:{port}/", 30)
            progress(f"baseline on :{port}, {users} users x {user_rate}/s for {duration_s}s")
            result["baseline"] = run_locust(
                f"http://127.0.0.1:{port}", "BaselineUser", users, user_rate, duration_s,
                work_dir / "baseline", progress, server_pid=proc.pid)
        finally:
            proc.terminate()
            proc.wait(15)
    progress(f"api at {api_url}, {users} users x {user_rate}/s for {duration_s}s")
    result["api_user"] = api_user
    result["api"] = run_locust(api_url, api_user, users, user_rate, duration_s, work_dir / "api",
                               progress, server_pid=api_pid(settings) if local else None)
    result["load_average_after"] = list(os.getloadavg())
    result["verdict"] = verdict(result)
    return result


NOT_FOUND_HINT = (
    "HTTP 404 = the endpoint had nothing for what it was asked (a day, session or item "
    "without events in the database): `clickguard bench api --load-events 100000` loads a "
    "data set first"
)


def failure_causes(path: Path) -> list[dict[str, Any]]:
    """What failed, how and how often (most first), from Locust's ``*_failures.csv``: a
    failure count alone did not say that every one was a 404 for a day with no events."""
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        causes = [{"name": r["Name"], "error": r["Error"], "occurrences": int(r["Occurrences"])}
                  for r in csv.DictReader(fh)]
    return sorted(causes, key=lambda c: -c["occurrences"])


def failure_lines(result: dict[str, Any], limit: int = 10) -> list[str]:
    """Human lines for the failures of every target, with a hint when some were 404s."""
    lines = []
    for target in ("baseline", "api"):
        total: dict[str, Any] = next((r for r in result.get(target, []) if r["name"] == "ALL"), {})
        for c in total.get("failure_causes", [])[:limit]:
            lines.append(f"{target} {c['name']}: {c['error']} × {c['occurrences']:,}")
    if any("404" in line for line in lines):
        lines.append(NOT_FOUND_HINT)
    return lines


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """Did the API meet ≥ 1,000 req/s overall with p99 ≤ 20 ms on the three key endpoints?"""
    rows = {r["name"]: r for r in result["api"]}
    total = rows.get("ALL", {}).get("rps", 0.0)
    p99 = {n: rows[n]["p99_ms"] for n in KEY_ENDPOINTS if n in rows}
    failures = rows.get("ALL", {}).get("failures", 0)
    return {
        "total_rps": total,
        "key_p99_ms": p99,
        "failures": failures,
        "meets_target": total >= TARGET_RPS and failures == 0
        and all(v <= TARGET_P99_MS for v in p99.values()) and len(p99) == len(KEY_ENDPOINTS),
    }
