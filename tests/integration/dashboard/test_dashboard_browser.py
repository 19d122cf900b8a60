"""Every dashboard page in a real headless Chromium, against the real API on real PostgreSQL.

The rows come from tests/integration/api/seed.py (the API tests' known data, written with the
writer role as the stream and Dagster write them), the API is a live uvicorn server (read-only
role), and the dashboard runs as the stack runs it (``python -m dashboard.serve``), pointed at
that API. Each page must draw its tables with the values the API returns, its charts, no
Streamlit exception or error box, and nothing from outside loopback (the browser cannot resolve
other hosts). Dagster is a stub of its GraphQL endpoint answering the runs of ``dlq_replay`` in
the webserver's shape (tests/unit/dashboard/payloads.py). Screenshots go to
docs/screenshots/dashboard-<page>.png.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psycopg
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from clickguard.settings import REPO_ROOT, Settings
from dashboard import data
from tests.integration.api import seed
from tests.integration.api.conftest import LiveServer, free_port
from tests.integration.api.test_docs_browser import off_loopback, requested_urls
from tests.unit.dashboard.payloads import DAGSTER_RUNS

pytestmark = pytest.mark.integration

SHOTS = REPO_ROOT / "docs" / "screenshots"
SESSION = 1002  # a session of seed_anomalies; its events are added below
RENDER_TIMEOUT_S = 45
REFRESH_S = 2


SESSION_EVENTS = """
INSERT INTO events (event_id, event_ts, ingest_ts, kafka_ts, batch_start_ts, commit_ts, source,
    session_id, event_type, item_id, category, price, quantity, kafka_partition, kafka_offset,
    batch_id)
SELECT 'sess-' || i, t, t, t, t, t + interval '1 second', 'browser-test', %(sid)s,
       CASE WHEN i %% 12 = 0 THEN 'purchase' ELSE 'click' END, 700 + i %% 3, 'shoes',
       CASE WHEN i %% 12 = 0 THEN 24.90 END, CASE WHEN i %% 12 = 0 THEN 1 END, 0, 5000 + i, 1
FROM generate_series(1, 36) AS i,
     LATERAL (SELECT now() - interval '20 minutes' + make_interval(secs => i / 4.0) AS t) AS ts
"""
FRESHNESS = """
INSERT INTO asset_day_watermarks (asset_key, day, source_rows, output_rows, computed_at, run_id)
SELECT a, %(day)s, 1000, 10, now() - interval '90 seconds', 'browser-test-run'
FROM unnest(ARRAY['daily_metrics', 'session_funnel', 'popular_items', 'popular_categories']) a
ON CONFLICT (asset_key, day) DO UPDATE SET computed_at = EXCLUDED.computed_at
"""
# the warm-standby drivers: d1 took the lease over (epoch 2) from d0, which committed batches 1-3
LEASE = """
INSERT INTO stream_lease (name, holder, holder_backend, epoch, acquired_at, renewed_at, expires_at)
VALUES ('/browser-test/checkpoint', 'd1:4242@browser-test', 1, 2, now() - interval '45 seconds',
        now(), now() + interval '1 hour')
"""
DRIVERS = """
UPDATE batch_ledger SET driver = CASE WHEN batch_id < 4 THEN 'd0:4141@browser-test'
                                      ELSE 'd1:4242@browser-test' END,
                        driver_epoch = CASE WHEN batch_id < 4 THEN 1 ELSE 2 END
"""


@pytest.fixture
def seeded(wpg: psycopg.Connection) -> Iterator[psycopg.Connection]:
    seed.seed_anomalies(wpg)
    seed.seed_batch_tables(wpg)
    seed.seed_stream(wpg)
    wpg.execute(SESSION_EVENTS, {"sid": SESSION})
    wpg.execute("DELETE FROM asset_day_watermarks")
    wpg.execute(FRESHNESS, {"day": seed.ANCHOR})
    wpg.execute("TRUNCATE stream_lease")
    wpg.execute(DRIVERS)
    wpg.execute(LEASE)
    yield wpg
    wpg.execute("DELETE FROM asset_day_watermarks")
    wpg.execute("TRUNCATE stream_lease")


class DagsterStub:
    """Dagster's GraphQL endpoint (POST /graphql) answering DAGSTER_RUNS; records the queries."""

    def __init__(self) -> None:
        queries: list[dict[str, Any]] = []
        self.queries = queries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                queries.append({"path": self.path, **json.loads(body)})
                out = json.dumps(DAGSTER_RUNS).encode()
                self.send_response(200 if self.path == "/graphql" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def dagster() -> Iterator[DagsterStub]:
    stub = DagsterStub()
    yield stub
    stub.close()


@pytest.fixture
def dashboard(
    live_api: LiveServer, api_settings: Settings, dagster: DagsterStub, tmp_path: Path
) -> Iterator[str]:
    """``python -m dashboard.serve`` (the stack node's command) reading the live test API."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKGUARD_")}
    env.update({
        "CLICKGUARD_DASHBOARD_PORT": str(port), "CLICKGUARD_DASHBOARD_API_URL": live_api.url,
        "CLICKGUARD_DASHBOARD_REFRESH_S": str(REFRESH_S), "CLICKGUARD_HOME": str(tmp_path),
        "CLICKGUARD_DASHBOARD_DAGSTER_URL": dagster.url,  # never a Dagster on the default port
    })
    log = (tmp_path / "dashboard.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "dashboard.serve"], env=env, cwd=REPO_ROOT,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dashboard did not start: "
                                   + (tmp_path / "dashboard.log").read_text()[-3000:])
            time.sleep(0.25)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def api(live_api: LiveServer, path: str, **params: Any) -> Any:
    r = httpx.get(f"{live_api.url}{path}", params=params, timeout=10)
    r.raise_for_status()
    return r.json()


def wait_css(driver: webdriver.Chrome, css: str, n: int = 1) -> list[Any]:
    """Elements matching ``css`` once there are ``n`` (fails with what the page shows)."""
    try:
        WebDriverWait(driver, RENDER_TIMEOUT_S, poll_frequency=0.25).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, css)) >= n)
    except Exception:  # noqa: BLE001 - the assertion says what was on the page
        body = driver.find_element(By.TAG_NAME, "body").text[:3000]
        pytest.fail(f"{css!r} did not appear {n}× within {RENDER_TIMEOUT_S}s; page:\n{body}")
    return driver.find_elements(By.CSS_SELECTOR, css)


def text(element: Any) -> str:
    return (element.get_attribute("textContent") or "").strip()


def table(driver: webdriver.Chrome, key: str) -> list[dict[str, str]]:
    """The rows of the dashboard table ``key`` (container class st-key-table-<key>)."""
    (tab,) = wait_css(driver, f".st-key-table-{key} table")
    # textContent, not .text: rows scrolled out of a fixed-height table count too
    heads = [text(th) for th in tab.find_elements(By.CSS_SELECTOR, "thead th")]
    rows = []
    for tr in tab.find_elements(By.CSS_SELECTOR, "tbody tr"):
        cells = [text(c) for c in tr.find_elements(By.CSS_SELECTOR, "th, td")]
        rows.append(dict(zip(heads[-len(cells):], cells, strict=True)))
    return rows


def links(driver: webdriver.Chrome, key: str) -> list[str]:
    """The link targets inside the dashboard table ``key``."""
    (tab,) = wait_css(driver, f".st-key-table-{key} table")
    return [a.get_attribute("href") or "" for a in tab.find_elements(By.CSS_SELECTOR, "a")]


def metric_values(driver: webdriver.Chrome) -> dict[str, str]:
    out = {}
    for m in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stMetric']"):
        label = m.find_element(By.CSS_SELECTOR, "[data-testid='stMetricLabel']").text.strip()
        out[label] = m.find_element(By.CSS_SELECTOR, "[data-testid='stMetricValue']").text.strip()
    return out


def settle_and_check(driver: webdriver.Chrome, charts: int, name: str) -> None:
    """Charts drawn, no exception or error box, nothing off loopback; then the screenshot."""
    wait_css(driver, "[data-testid='stVegaLiteChart'] canvas, "
                     "[data-testid='stVegaLiteChart'] svg", charts)
    time.sleep(0.5)  # let the last chart finish its transition before the screenshot
    assert "Page not found" not in driver.find_element(By.TAG_NAME, "body").text
    exceptions = driver.find_elements(By.CSS_SELECTOR, "[data-testid='stException']")
    assert not exceptions, exceptions[0].text
    errors = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stAlert']")
              if e.find_elements(By.CSS_SELECTOR, "[data-testid='stAlertContentError']")]
    assert not errors, errors
    assert off_loopback(requested_urls(driver)) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"dashboard-{name}.png"))


def test_every_page_shows_the_apis_values(
    browser: webdriver.Chrome, dashboard: str, live_api: LiveServer, seeded: psycopg.Connection,
    dagster: DagsterStub,
) -> None:
    browser.set_window_size(1400, 1900)

    # -- Live: figures of /stream and /slo, refreshed by the fragment timer --------------------
    stream, slo = api(live_api, "/stream"), api(live_api, "/slo", minutes=5)
    browser.get(f"{dashboard}/")  # Live is the default page: its address is the root
    slo_rows = table(browser, "slo")
    assert [r["p99"] for r in slo_rows] == list(data.slo_frame(slo)["p99"])
    assert [r["stage"] for r in slo_rows] == list(data.STAGE_LABELS.values())
    assert slo["samples"] == 200
    last = table(browser, "last-batch")[0]
    assert (last["batch"], last["rows"], last["duration"]) == (
        str(stream["last_batch"]["batch_id"]), f"{stream['last_batch']['input_rows']:,}",
        data.fmt_ms(stream["last_batch"]["duration_ms"]))
    assert [r["component"] for r in table(browser, "heartbeats")] == ["job"]
    active = stream["active_driver"]
    assert (active["driver"], active["epoch"], active["source"]) == (
        "d1:4242@browser-test", 2, "lease")
    (state,) = wait_css(browser, ".st-key-stream-state")
    assert (f"active driver {active['driver']} · epoch {active['epoch']} · "
            f"lease since {data.fmt_ts(active['since'])}") in state.text
    m = metric_values(browser)
    # a seeded batch may leave the 60 s window between the two reads: either value is right
    now = api(live_api, "/stream")
    assert m["Events/s (last 60 s)"] in {f"{stream['events_per_sec']:,.1f}",
                                          f"{now['events_per_sec']:,.1f}"}
    assert stream["events_per_sec"] > 0
    assert m["Last batch duration"] == data.fmt_ms(stream["last_batch"]["duration_ms"])
    assert m["End-to-end p99"] == data.fmt_ms(data.stage_p99(slo))
    counted = live_api.app.state.request_stats.count
    before = sum(n for (_, route, _), n in counted.items() if route == "/stream")
    settle_and_check(browser, 2, "live")
    time.sleep(REFRESH_S * 2 + 1)
    after = sum(n for (_, route, _), n in counted.items() if route == "/stream")
    assert after >= before + 2, "the Live page did not refresh on its timer"

    # -- /live, the page's name: an alias of the root, not Streamlit's "Page not found" -------
    browser.get(f"{dashboard}/live")
    assert [r["stage"] for r in table(browser, "slo")] == list(data.STAGE_LABELS.values())
    WebDriverWait(browser, RENDER_TIMEOUT_S).until(
        lambda d: d.current_url.rstrip("/") == dashboard)
    time.sleep(1)  # the dialog is drawn after the page's first elements
    assert "Page not found" not in browser.find_element(By.TAG_NAME, "body").text

    # -- Anomalies: evidence table = /anomalies since 24 h ago; drill-down = /sessions/{id} -----
    since = data.iso(data.utc_now() - pd.Timedelta(hours=24))
    rows = api(live_api, "/anomalies", limit=1000, since=since)
    browser.get(f"{dashboard}/anomalies?session={SESSION}")
    shown = table(browser, "anomalies")
    day = data.anomalies_frame(rows)
    assert len(day) == 40  # of 45: the API left out the 5 older than 24 h
    expected = data.anomalies_display(day).to_dict("records")
    assert shown == expected
    first = day.iloc[0]
    assert (shown[0]["type"], shown[0]["clicks"]) == (first.anomaly_type,
                                                      str(first.click_count))
    detail = api(live_api, f"/sessions/{SESSION}", limit=200)
    evidence = table(browser, "evidence")
    assert [r["clicks"] for r in evidence] == [str(a["click_count"]) for a in detail["anomalies"]]
    assert [r["threshold"] for r in evidence] == [
        data.fmt_num(a["threshold"], 1) for a in detail["anomalies"]]
    events = table(browser, "session-events")
    assert [r["event_id"] for r in events] == [e["event_id"] for e in detail["events"]]
    assert len(events) == 36
    settle_and_check(browser, 2, "anomalies")

    # -- Daily: the newest day of /stats; metrics, funnel, categories, items, freshness ---------
    day_s = api(live_api, "/stats")["last_metrics_date"]
    assert day_s == seed.ANCHOR.isoformat()
    browser.get(f"{dashboard}/daily")
    items = table(browser, "items")
    api_items = api(live_api, f"/items/popular/{day_s}", limit=20)
    assert [(r["rank"], r["item"], r["clicks"]) for r in items] == [
        (str(i["rank"]), str(i["item_id"]), f"{i['click_count']:,}") for i in api_items]
    cats = api(live_api, f"/items/categories/{day_s}", limit=20)
    assert [r["category"] for r in table(browser, "categories")] == [c["category"] for c in cats]
    funnel = api(live_api, f"/metrics/funnel/{day_s}")
    assert [(r["stage"], r["sessions"]) for r in table(browser, "funnel")] == [
        (f["funnel_stage"], f"{f['session_count']:,}") for f in funnel]
    fresh = api(live_api, "/batch/freshness", date=day_s)
    assert [(r["asset"], r["this day computed"]) for r in table(browser, "freshness")] == [
        (f["asset_key"], data.fmt_ts(f["day_computed_at"])) for f in fresh]
    metric = api(live_api, f"/metrics/daily/{day_s}")
    assert metric_values(browser)["Clicks"] == f"{metric['total_clicks']:,}"
    week = api(live_api, "/metrics/summary", days=7)
    assert f"{week['total_clicks']:,} clicks" in browser.find_element(By.TAG_NAME, "body").text
    settle_and_check(browser, 3, "daily")

    # -- DLQ: counts by reason and newest records of the last hour -----------------------------
    report = api(live_api, "/dlq", minutes=60, limit=500)
    assert report["total"] > 0
    browser.get(f"{dashboard}/dlq")
    reasons = table(browser, "dlq-reasons")
    assert reasons == [{"reason": r["reason"], "records": f"{r['count']:,}"}
                       for r in report["by_reason"]]
    recent = table(browser, "dlq-recent")
    assert [(r["reason"], r["detail"]) for r in recent] == [
        (r["reason"], r["detail"]) for r in report["recent"]]
    assert metric_values(browser) == {"DLQ records, last hour": f"{report['total']:,}"}
    runs = data.parse_runs(DAGSTER_RUNS)
    shown_runs = table(browser, "replay-runs")
    assert [(r["status"], r["started"]) for r in shown_runs] == [
        (r["status"], data.fmt_ts(r["start"] if r["start"] is not None else r["created"]))
        for r in runs]
    assert shown_runs[1]["duration"] == "2 min 05 s"
    assert links(browser, "replay-runs") == [f"{dagster.url}/runs/{r['run_id']}" for r in runs]
    assert [q["variables"] for q in dagster.queries] == [{"job": "dlq_replay", "limit": 10}]
    settle_and_check(browser, 1, "dlq")
