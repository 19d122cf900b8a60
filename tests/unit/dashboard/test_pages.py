"""Every page run by Streamlit's AppTest against canned API answers (the dashboard's HTTP client
and Streamlit run for real; only the API is canned): values, empty states and API errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from clickguard.settings import REPO_ROOT
from dashboard import client
from tests.unit.dashboard import payloads

PAGES = ("live", "anomalies", "daily", "dlq")
TIMEOUT_S = 30


def script(name: str) -> None:
    """AppTest's script: one page of the dashboard (imports inside: AppTest runs the body)."""
    import importlib

    importlib.import_module(f"dashboard.views.{name}").page()


@pytest.fixture
def api() -> Iterator[payloads.FakeApi]:
    fake = payloads.FakeApi(payloads.full())
    client.use_transport(fake.transport)
    yield fake
    client.use_transport(None)


def use(routes: dict, status: dict[str, int] | None = None) -> payloads.FakeApi:
    fake = payloads.FakeApi(routes, status)
    client.use_transport(fake.transport)
    return fake


def run(page: str, query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_function(script, args=(page,), default_timeout=TIMEOUT_S)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements: object) -> list[str]:
    return [e.value for e in elements]  # type: ignore[attr-defined]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def chart_data(at: AppTest, index: int) -> pd.DataFrame:
    """The rows chart ``index`` draws (Streamlit ships them beside the spec, as Arrow IPC)."""
    proto = at.get("vega_lite_chart")[index].proto
    assert not proto.datasets  # one table of rows, not one named by its hash
    return pa.ipc.open_stream(proto.data.data).read_all().to_pandas()


def test_live_shows_stream_figures(api: payloads.FakeApi) -> None:
    at = run("live")
    assert not at.error
    assert metrics(at) == {"Events/s (last 60 s)": "987.5", "Consumer lag (records)": "4,321",
                           "Last batch duration": "812 ms", "End-to-end p99": "200 ms"}
    slo, last, beats = (t.value for t in at.table)
    assert list(slo["p99"]) == ["50 ms", "100 ms", "150 ms", "200 ms"]
    assert last.iloc[0]["batch"] == "41" and last.iloc[0]["rows"] == "1,234"
    assert list(beats["component"]) == ["streaming_driver"]
    assert len(charts(at)) == 2  # latency per stage, anomalies per minute
    assert "running" in at.markdown[0].value
    assert at.markdown[1].value == ("**active driver** `d1:4242@node-a` · epoch 3 · lease since "
                                    "2026-12-01 14:00:03")
    assert {"/health", "/stream", "/slo", "/anomalies/per-minute"} == set(api.paths())
    # cheap calls (issue 13): the newest 2,000 events for the percentiles, and the anomaly
    # chart from the API's per-minute counts, at one fixed URL for every viewer
    slo_q = [r for r in api.requests if r.url.path == "/slo"][-1].url.params
    assert dict(slo_q) == {"minutes": "5", "limit": "2000"}
    per_minute = [r for r in api.requests if r.url.path == "/anomalies/per-minute"][-1]
    assert dict(per_minute.url.params) == {"minutes": "30"}
    # the chart's bars are exactly the API's counts
    bars = chart_data(at, 1)
    expected = payloads.per_minute(payloads.anomalies(), per_minute)
    assert sorted(zip(pd.to_datetime(bars["bucket"], utc=True), bars["anomaly_type"],
                      bars["count"], strict=True)) == sorted(
        (pd.Timestamp(e["minute"]), e["anomaly_type"], e["anomaly_count"]) for e in expected)
    assert sum(e["anomaly_count"] for e in expected) == 13  # every fixture anomaly is recent


def test_live_says_when_the_lease_expired_or_no_driver_is_known() -> None:
    def stream(expires: str | None, source: str = "lease") -> dict:
        body = payloads.stream()
        body["active_driver"].update(lease_expires_at=expires, source=source)
        return body

    use(dict(payloads.full(), **{"/stream": lambda r: stream(payloads.ago(seconds=30))}))
    assert "a standby should take over" in run("live").markdown[1].value
    use(dict(payloads.full(), **{"/stream": lambda r: stream(None, "ledger")}))
    assert run("live").markdown[1].value.startswith(
        "**driver of the newest batch** `d1:4242@node-a` · epoch 3 · no lease held")
    use(dict(payloads.full(), **{"/stream": lambda r: dict(payloads.stream(),
                                                            active_driver=None)}))
    assert run("live").markdown[1].value.startswith("**active driver** unknown")


def test_live_keeps_a_history_across_refreshes(api: payloads.FakeApi) -> None:
    at = run("live")
    at.run()
    assert len(at.session_state["live_history"]) == 2


def test_live_says_when_the_stream_is_crash_looping() -> None:
    use(dict(payloads.full(), **{"/stream": lambda r: payloads.stream("crash-looping", "OOM")}))
    at = run("live")
    assert any("crash-looping" in e and "OOM" in e for e in texts(at.error))


def test_live_dates_an_old_error_and_calls_it_history_once_the_stream_runs_again() -> None:
    """A run killed an hour ago, the stream running since: a dated note, not a live warning."""
    error = "killed by signal 9"
    use(dict(payloads.full(), **{"/stream": lambda r: payloads.stream(
        "running", error, "2026-12-01T11:02:03.5Z")}))
    at = run("live")
    assert not texts(at.warning)
    assert any("Recovered" in i and "2026-12-01 11:02:03 UTC" in i and error in i
               for i in texts(at.info))
    use(dict(payloads.full(), **{"/stream": lambda r: payloads.stream(
        "restarting", error, "2026-12-01T11:02:03.5Z")}))
    at = run("live")
    assert any("2026-12-01 11:02:03 UTC: killed by signal 9" in w for w in texts(at.warning))


def test_anomalies_page_filters_and_drills_down(api: payloads.FakeApi) -> None:
    at = run("anomalies")
    assert not at.error
    types, evidence, session_anomalies, events = (t.value for t in at.table)
    assert list(types["type"]) == ["HIGH_FREQUENCY", "BOT_LIKE", "TRAFFIC_SPIKE"]
    assert len(evidence) == 13 and evidence.iloc[0]["session"] == "7000"
    assert session_anomalies.iloc[0]["threshold"] == "50.0"
    assert len(events) == 6
    assert "/sessions/7000" in api.paths()
    assert len(charts(at)) == 2  # timeline, session's events per second
    at.selectbox[0].select("BOT_LIKE").run()
    at.number_input[0].set_value(1.5).run()
    last = [r for r in api.requests if r.url.path == "/anomalies"][-1]
    params = dict(last.url.params)
    since = pd.Timestamp(params.pop("since"))
    assert params == {"limit": "1000", "anomaly_type": "BOT_LIKE", "min_score": "1.5"}
    # the time range ("last 24 hours") is a parameter of the API's query
    assert abs(since - (pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=24))) < pd.Timedelta(
        seconds=30)


def test_anomalies_time_range_is_applied_by_the_api(api: payloads.FakeApi) -> None:
    at = run("anomalies")
    at.selectbox[1].select("last 15 min").run()
    assert not at.exception
    since = pd.Timestamp(
        [r for r in api.requests if r.url.path == "/anomalies"][-1].url.params["since"])
    assert abs(since - (pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=15))) < pd.Timedelta(
        seconds=30)
    # what the API returned for that range: 8 rule hits at 0-14 min and the traffic spike
    evidence = at.table[1].value
    assert len(evidence) == 9 and "15 min" in at.subheader[0].value


def test_anomalies_session_from_the_url(api: payloads.FakeApi) -> None:
    at = run("anomalies", {"session": "424242"})
    assert at.selectbox[2].value == 424242
    assert "/sessions/424242" in api.paths()


def test_daily_page_for_the_newest_day(api: payloads.FakeApi) -> None:
    at = run("daily")
    assert not at.error
    assert metrics(at)["Clicks"] == "1,000" and metrics(at)["Revenue"] == "123"
    funnel, cats, items, fresh = (t.value for t in at.table)
    assert list(funnel["stage"]) == ["view", "click", "purchase"]
    assert list(cats["category"]) == ["cat-0", "cat-1", "cat-2", "cat-3"]
    assert list(items["item"]) == ["900", "901", "902", "903", "904"]
    assert fresh.iloc[0]["asset"] == "daily_metrics"
    assert "/metrics/funnel/2024-03-10" in api.paths()
    daily = next(r for r in api.requests if r.url.path == "/metrics/daily")
    assert dict(daily.url.params) == {"start_date": "2024-02-10", "end_date": "2024-03-10"}
    assert len(charts(at)) == 3  # trend, funnel, categories
    assert any("7,210 clicks" in c.value and "20.00 %" in c.value for c in at.caption)


def test_dlq_page(api: payloads.FakeApi) -> None:
    at = run("dlq")
    assert not at.error
    assert metrics(at) == {"DLQ records, last hour": "30"}
    reasons, recent = (t.value for t in at.table)
    assert set(reasons["records"]) == {"10"}
    assert len(recent) == 30 and recent.iloc[0]["detail"] == "detail 0"
    assert any("dlq_replay" in m for m in texts(at.markdown))
    assert len(charts(at)) == 1
    asked = next(r for r in api.requests if r.url.path == "/dlq")
    assert dict(asked.url.params) == {"minutes": "60", "limit": "50", "bucket_minutes": "5"}
    over = chart_data(at, 0)  # every record of the window, counted by the API per 5 minutes
    expected = payloads.dlq(bucket_minutes=5)["over_time"]
    assert over["count"].tolist() == [b["count"] for b in expected]
    assert over["count"].sum() == 30
    runs = at.markdown[-1].value.splitlines()
    assert runs[0] == "| run | status | started | duration |"
    assert runs[3] == ("| [0f1e2d3c](http://127.0.0.1:3000/runs/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)"
                       " | :red[FAILURE] | 2026-12-01 14:00:01 | 2 min 05 s |")
    assert len(runs) == 2 + 4
    graphql = next(r for r in api.requests if r.url.path == "/graphql")
    assert (graphql.method, graphql.url.host) == ("POST", "127.0.0.1")
    assert json.loads(graphql.content)["variables"] == {"job": "dlq_replay", "limit": 10}


@pytest.mark.parametrize(
    ("dagster", "hint"),
    [
        ("refused", "Cannot reach Dagster at http://127.0.0.1:3000 (ConnectError): start it "
                    "with `clickguard stack up dagster-webserver`"),
        ("404", "answered 404 to Dagster's GraphQL API"),
        ("python-error", "could not list the runs of `dlq_replay`: boom in the instance"),
        ("none", "`dlq_replay` has not run yet"),
    ],
)
def test_dlq_replay_runs_empty_states(dagster: str, hint: str) -> None:
    routes = payloads.full()
    fake = payloads.FakeApi(routes)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/graphql":
            return fake.handle(request)
        if dagster == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        if dagster == "404":
            return httpx.Response(404, text="Not Found")
        answer = ({"__typename": "PythonError", "message": "boom in the instance"}
                  if dagster == "python-error" else {"__typename": "Runs", "results": []})
        return httpx.Response(200, json={"data": {"runsOrError": answer}})

    client.use_transport(httpx.MockTransport(handle))
    try:
        at = run("dlq")
    finally:
        client.use_transport(None)
    assert not at.error  # the records still show; Dagster's state is an empty state
    assert len(at.table) == 2
    infos = texts(at.info)
    assert len(infos) == 1 and hint in infos[0], infos
    assert "`" in infos[0]  # says what to run or where to look


@pytest.mark.parametrize(
    ("page", "hint"),
    [("live", "No micro-batch committed yet"), ("anomalies", "No anomalies yet"),
     ("daily", "No daily metrics yet"), ("dlq", "The DLQ is empty")],
)
def test_empty_states_say_what_to_do(page: str, hint: str) -> None:
    use(payloads.empty())
    at = run(page)
    assert not at.error and not at.table
    infos = texts(at.info)
    assert any(hint in i for i in infos), infos
    assert all("`" in i for i in infos)  # each names a command or a place to look


@pytest.mark.parametrize("page", PAGES)
def test_api_down_is_one_clear_message(page: str) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client.use_transport(httpx.MockTransport(refuse))
    try:
        at = run(page)
    finally:
        client.use_transport(None)
    assert [e.startswith("Cannot reach the API at") for e in texts(at.error)] == [True]


@pytest.mark.parametrize("page", PAGES)
def test_api_errors_show_their_code_and_message(page: str) -> None:
    status = {p: 503 for p in ("/stream", "/anomalies/types", "/stats", "/dlq")}
    use(payloads.full(), status)
    at = run(page)
    errors = texts(at.error)
    assert errors and all("503 database_unavailable: database unavailable" in e
                          for e in errors[:1]), errors


def test_the_app_opens_on_live_with_navigation(api: payloads.FakeApi) -> None:
    at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "app.py"), default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception
    assert at.title[0].value == "Live"
    assert any("API http://" in c.value for c in at.sidebar.caption)
