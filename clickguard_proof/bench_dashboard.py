"""`clickguard bench dashboard`: what the dashboard costs while one browser watches Live.

With the stack's ``api`` and ``dashboard`` nodes up (and whatever else runs: measure with traffic
flowing for realistic figures), two phases of ``--watch-s`` seconds each:

1. no browser: the dashboard idles; a fixed-rate probe (``--probe-rate`` requests/s cycling
   over the endpoints a client reads) measures the API's latency;
2. one headless Chromium on the Live page (it refreshes every ``dashboard_refresh_s``): the
   dashboard's process tree is sampled from /proc (CPU over the phase, RSS max), the same probe
   runs again, and the browser's own CPU is reported (a viewer's machine normally pays it; here
   it shares the 2 cores with the stack, which is part of any p99 change).

Targets (issue 13): dashboard RSS ≤ 250 MB and CPU ≤ 3 % of the machine's cores while watched;
the API's p99 with the browser within noise of the p99 without it (reported, not asserted).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click
import httpx

from clickguard.settings import Settings, get_settings
from clickguard_proof.report import Report
from clickguard_stack import usage

RSS_TARGET_MB = 250.0
CPU_TARGET_PCT = 3.0  # of all cores
PROBE_PATHS = ("/health", "/stats", "/anomalies?limit=100", "/anomalies/types", "/stream",
               "/slo", "/dlq")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1))
    return ordered[k]


def probe_api(base_url: str, seconds: float, rate: float, api_key: str | None,
              stop: threading.Event | None = None) -> dict[str, Any]:
    """GETs at a fixed rate (paced, not closed-loop) cycling PROBE_PATHS; latency summary."""
    headers = {"X-API-Key": api_key} if api_key else {}
    lat: list[float] = []
    failures = 0
    interval = 1.0 / rate
    with httpx.Client(base_url=base_url, headers=headers, timeout=10) as c:
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds and not (stop and stop.is_set()):
            due = t0 + i * interval
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            path = PROBE_PATHS[i % len(PROBE_PATHS)]
            start = time.perf_counter()
            try:
                ok = c.get(path).status_code == 200
            except httpx.HTTPError:
                ok = False
            lat.append((time.perf_counter() - start) * 1000.0)
            failures += not ok
            i += 1
    return {"requests": len(lat), "failures": failures,
            **{f"p{q}_ms": _round(percentile(lat, q)) for q in (50, 95, 99)},
            "max_ms": _round(max(lat) if lat else None)}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def sample_phase(pid: int, seconds: float, every: float = 2.0,
                 others: dict[str, int] | None = None) -> dict[str, Any]:
    """CPU (% of all cores) over ``seconds`` and RSS max/mean of ``pid``'s tree (and others')."""
    cores = os.cpu_count() or 1
    trees = {"dashboard": pid, **(others or {})}
    first = {k: usage.sample_tree(p, with_pss=False) for k, p in trees.items()}
    rss: dict[str, list[float]] = {k: [s.rss_kb / 1024] for k, s in first.items()}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(every, max(0.0, deadline - time.monotonic())))
        for k, p in trees.items():
            rss[k].append(usage.sample_tree(p, with_pss=False).rss_kb / 1024)
    last = {k: usage.sample_tree(p, with_pss=False) for k, p in trees.items()}
    out = {}
    for k in trees:
        out[k] = {
            "cpu_pct_machine": round(usage.cpu_percent(first[k], last[k], cores), 2),
            "rss_mb_max": round(max(rss[k]), 1),
            "rss_mb_mean": round(sum(rss[k]) / len(rss[k]), 1),
        }
    return out


def open_browser(url: str, profile: Path) -> Any:
    """Headless Chromium (Debian's chromium + chromium-driver) on ``url``, loopback only."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise click.ClickException("needs Debian's chromium and chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                f"--user-data-dir={profile}", "--window-size=1400,1900",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    browser = webdriver.Chrome(options=opts, service=Service(executable_path=driver))
    browser.get(url)
    return browser


def run(settings: Settings, watch_s: float, probe_rate: float, warmup_s: float,
        echo: Any = print) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from clickguard_stack.manager import Stack

    stack = Stack(settings, echo=lambda _m: None)
    stack.up(["postgres", "api", "dashboard"], timeout=180)
    nodes = {r.name: r.state for r in stack.status()}
    pid = stack.node("dashboard").pid()
    api_pid = stack.node("api").pid()
    assert pid and api_pid
    api = f"http://{settings.api_host}:{settings.api_port}"
    url = f"http://{settings.dashboard_host}:{settings.dashboard_port}/"  # Live: the default

    def phase(label: str) -> dict[str, Any]:
        box: dict[str, Any] = {}
        t = threading.Thread(target=lambda: box.update(
            probe=probe_api(api, watch_s, probe_rate, settings.api_key)))
        t.start()
        usage_ = sample_phase(pid, watch_s, others={"api": api_pid, **browser_pids})
        t.join(watch_s + 60)
        echo(f"{label}: dashboard {usage_['dashboard']['cpu_pct_machine']} % of the cores, "
             f"RSS max {usage_['dashboard']['rss_mb_max']} MB; API p99 "
             f"{box['probe']['p99_ms']} ms over {box['probe']['requests']} requests")
        return {"usage": usage_, "api_probe": box["probe"]}

    browser_pids: dict[str, int] = {}
    echo(f"phase 1: no browser ({watch_s:.0f} s)")
    idle = phase("no browser")
    profile = Path(tempfile.mkdtemp(prefix="cg-dash-bench-"))
    browser = open_browser(url, profile)
    try:
        WebDriverWait(browser, 60).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid='stMetric']"))
        browser_pids = {"browser": browser.service.process.pid}
        echo(f"phase 2: one browser on {url} (warm-up {warmup_s:.0f} s, then {watch_s:.0f} s)")
        time.sleep(warmup_s)
        watched = phase("watched")
        errors = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
        page_ok = not errors
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return {"watch_s": watch_s, "probe_rate": probe_rate, "warmup_s": warmup_s,
            "refresh_s": settings.dashboard_refresh_s, "cores": os.cpu_count(), "nodes": nodes,
            "idle": idle, "watched": watched, "page_without_exception": page_ok}


def dashboard_report(result: dict[str, Any]) -> Report:
    rows = []
    for label in ("idle", "watched"):
        p = result[label]
        d, a = p["usage"]["dashboard"], p["api_probe"]
        rows.append({
            "phase": "no browser" if label == "idle" else "1 browser on Live",
            "dashboard CPU % of cores": d["cpu_pct_machine"], "dashboard RSS max MB":
            d["rss_mb_max"], "API CPU % of cores": p["usage"]["api"]["cpu_pct_machine"],
            "browser CPU % of cores": (p["usage"].get("browser") or {}).get("cpu_pct_machine"),
            "API requests": a["requests"], "API failures": a["failures"],
            "API p50 ms": a["p50_ms"], "API p95 ms": a["p95_ms"], "API p99 ms": a["p99_ms"],
        })
    w = result["watched"]["usage"]["dashboard"]
    passed = (w["rss_mb_max"] <= RSS_TARGET_MB and w["cpu_pct_machine"] <= CPU_TARGET_PCT
              and result["page_without_exception"])

    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 2, 1)
        ax.bar([r["phase"] for r in rows], [r["dashboard RSS max MB"] for r in rows])
        ax.axhline(RSS_TARGET_MB, color="red", ls="--", lw=0.8, label="target 250 MB")
        ax.set_ylabel("dashboard RSS max (MB)")
        ax.legend(fontsize=8)
        ax = fig.add_subplot(1, 2, 2)
        xs = range(len(rows))
        for i, key in enumerate(("API p50 ms", "API p95 ms", "API p99 ms")):
            ax.bar([x + (i - 1) * 0.27 for x in xs], [r[key] or 0 for r in rows], 0.27,
                   label=key.removeprefix("API ").removesuffix(" ms"))
        ax.set_xticks(list(xs), [r["phase"] for r in rows])
        ax.set_ylabel("API latency (ms)")
        ax.legend(fontsize=8)

    return Report(
        name="bench-dashboard",
        title="Dashboard cost while one browser watches the Live page",
        data=result, rows=rows, plot=draw, passed=passed,
        notes=[
            f"Two phases of {result['watch_s']:.0f} s: without a browser, then one headless "
            f"Chromium on the Live page (refresh every {result['refresh_s']:g} s, after a "
            f"{result['warmup_s']:.0f} s warm-up). CPU is over the phase from /proc (process "
            "tree, % of all cores), RSS the max of samples every 2 s.",
            f"API probe: {result['probe_rate']:g} GET/s paced over {', '.join(PROBE_PATHS)}. "
            "The browser runs on the same machine (its CPU is the 'browser' column).",
            f"Targets: dashboard RSS ≤ {RSS_TARGET_MB:.0f} MB and CPU ≤ {CPU_TARGET_PCT:g} % of "
            f"the cores while watched. Nodes: {result['nodes']}.",
        ],
    )


@click.command("dashboard")
@click.option("--watch-s", type=float, default=120.0, show_default=True,
              help="Seconds per phase (no browser, then one browser on Live).")
@click.option("--warmup-s", type=float, default=15.0, show_default=True)
@click.option("--probe-rate", type=float, default=20.0, show_default=True,
              help="API probe requests per second in each phase.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Results folder (default: settings.results_dir).")
def dashboard(watch_s: float, warmup_s: float, probe_rate: float, out: Path | None) -> None:
    """Dashboard CPU/RSS with one browser on Live, and the API's p99 with and without it."""
    s = get_settings()
    result = run(s, watch_s, probe_rate, warmup_s, echo=click.echo)
    report = dashboard_report(result)
    paths = report.write(out or s.results_dir)
    click.echo(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
    if not report.passed:
        raise SystemExit(1)
