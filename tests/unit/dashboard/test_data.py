"""Payload → frame/chart functions of the dashboard, on the API's own JSON shapes."""

from __future__ import annotations

import pandas as pd

from dashboard import data
from tests.unit.dashboard import payloads


def test_slo_frame_formats_every_stage_and_handles_no_samples() -> None:
    df = data.slo_frame(payloads.slo())
    assert list(df["stage"]) == ["produce → Kafka", "Kafka → Spark", "Spark → DB", "end to end"]
    assert df.iloc[3].to_dict() == {"stage": "end to end", "p50": "40 ms", "p95": "120 ms",
                                    "p99": "200 ms", "max": "360 ms"}
    assert data.stage_p99(payloads.slo()) == 200.0
    empty = payloads.slo(0)
    assert set(data.slo_frame(empty)["p99"]) == {data.DASH}
    assert data.slo_chart(empty) is None
    spec = data.slo_chart(payloads.slo()).to_dict()  # type: ignore[union-attr]
    assert spec["mark"]["type"] == "bar"


def test_fmt_helpers() -> None:
    assert data.fmt_ms(0.42) == "0.4 ms"
    assert data.fmt_ms(1250.4) == "1,250 ms"
    assert data.fmt_ms(None) == data.DASH
    assert data.fmt_ts("2024-03-10T01:02:03.456Z") == "2024-03-10 01:02:03"
    assert data.fmt_ts("2024-03-10T03:02:03+02:00") == "2024-03-10 01:02:03"  # shown in UTC
    assert data.fmt_age(4.2) == "4 s ago"
    assert data.fmt_age(600) == "10 min ago"
    assert data.fmt_num(12345.678, 2) == "12,345.68"
    assert (data.fmt_compact(3_149_584.05), data.fmt_compact(482_000.0),
            data.fmt_compact(9842.0)) == ("3.15 M", "482.0 k", "9,842")


def test_stream_state_takes_the_run_state_of_stream_else_health() -> None:
    s = data.stream_state(payloads.stream("crash-looping", "boom"), payloads.health())
    assert (s["state"], s["last_error"], s["status"]) == ("crash-looping", "boom", "healthy")
    assert (s["events_per_sec"], s["lag_total"], s["batch_duration_ms"]) == (987.5, 4321, 812)
    s = data.stream_state(None, payloads.health("restarting"))
    assert s["state"] == "restarting" and s["lag_total"] is None


def test_anomalies_frame_evidence_and_counts_by_minute() -> None:
    rows = payloads.anomalies(12)
    df = data.anomalies_frame(rows)
    assert len(df) == 13
    first = df.iloc[0]
    assert first["window_s"] == 60 and first["unique_ratio"] == 3 / 60
    spike = df[df["anomaly_type"] == "TRAFFIC_SPIKE"].iloc[0]
    assert pd.isna(spike["unique_ratio"])  # no clicks: no ratio, no division by zero
    shown = data.anomalies_display(df)
    assert list(shown.columns) == data.ANOMALY_COLUMNS
    assert shown.iloc[0]["session"] == "7000" and shown.iloc[0]["clicks"] == "60"
    assert shown.iloc[0]["score"] == "1.20" and shown.iloc[0]["window"].endswith("(60 s)")
    assert shown[shown["type"] == "TRAFFIC_SPIKE"].iloc[0]["session"] == data.DASH
    counts = data.counts_by_type(df, "1min")
    assert counts["count"].sum() == 13
    assert set(counts["anomaly_type"]) == {"BOT_LIKE", "HIGH_FREQUENCY", "TRAFFIC_SPIKE"}
    assert data.stacked_bars(counts, "bucket", "anomaly_type", "n") is not None


def test_no_anomalies_give_empty_frames_and_no_chart() -> None:
    empty = data.anomalies_frame([])
    assert data.counts_by_type(empty, "1min").empty
    assert data.stacked_bars(data.counts_by_type(empty, "1min"), "bucket", "t", "n") is None
    assert data.anomalies_display(empty).empty


def test_session_evidence_and_events() -> None:
    detail = payloads.session(7001)
    ev = data.evidence_frame(detail["anomalies"])
    row = ev.iloc[0].to_dict()
    assert (row["observed"], row["threshold"], row["score"]) == ("60.0", "50.0", "1.20")
    assert row["window"].endswith("(10 s rule)") and row["rule"].startswith("clicks in one")
    events = data.session_events_frame(detail["events"])
    assert len(events) == 6
    buy = events[events["event_id"] == "e-buy"].iloc[0]
    assert (buy["type"], buy["price"], buy["quantity"], buy["category"]) == (
        "purchase", "19.50", "2", data.DASH)
    assert data.session_clicks_chart(detail["events"]) is not None
    assert data.session_clicks_chart([]) is None


def test_daily_frames() -> None:
    rows = payloads.daily("2024-03-01", "2024-03-12")
    df = data.daily_frame(rows)
    assert len(df) == 10 and df["metric_date"].max() == pd.Timestamp("2024-03-10")
    assert data.daily_trend_chart(df) is not None
    assert data.daily_trend_chart(data.daily_frame([])) is None
    assert data.funnel_frame(payloads.FUNNEL).iloc[2].to_dict() == {
        "stage": "purchase", "sessions": "5", "share": "5.0 %", "drop": "90.0 %"}
    items = data.items_frame(payloads.ITEMS)
    assert items.iloc[0].to_dict() == {"rank": "1", "item": "900", "category": "cat-0",
                                       "clicks": "500", "purchases": "50", "revenue": "75.50"}
    assert items.iloc[2]["category"] == data.DASH
    cats = data.categories_frame(payloads.CATEGORIES)
    assert list(cats["category"]) == ["cat-0", "cat-1", "cat-2", "cat-3"]
    assert data.funnel_chart([]) is None and data.categories_chart([]) is None
    fresh = data.freshness_frame(payloads.FRESHNESS).iloc[0]
    assert (fresh["asset"], fresh["run"], fresh["newest day"]) == (
        "daily_metrics", "01234567", "2024-03-10")


def test_dlq_frames() -> None:
    report = payloads.dlq(30)
    reasons = data.dlq_reasons_frame(report)
    assert reasons.to_dict("records") == [
        {"reason": "avro_decode_error", "records": "10"},
        {"reason": "missing_required", "records": "10"},
        {"reason": "not_wire_format", "records": "10"},
    ]
    recent = data.dlq_recent_frame(report)
    assert recent.iloc[1]["source"] == "km.events.raw.v1[1]@9001"
    assert recent.iloc[0]["event_id"] == data.DASH and recent.iloc[0]["replayed"] == data.DASH
    assert data.dlq_over_time(report).empty  # no buckets asked for
    over = data.dlq_over_time(payloads.dlq(30, limit=5, bucket_minutes=5))
    assert over["count"].sum() == 30  # every record, not only the newest 5
    assert list(over.columns) == ["bucket", "end", "reason", "count"]
    assert (over["end"] - over["bucket"] == pd.Timedelta(minutes=5)).all()
    assert (over["bucket"].dt.minute % 5 == 0).all() and over["bucket"].is_monotonic_increasing
    assert data.dlq_over_time({"recent": [], "over_time": []}).empty


def test_history_keeps_the_newest_samples() -> None:
    h: list[dict] = []
    for i in range(data.HISTORY_KEEP + 5):
        h = data.append_sample(h, {"t": i})
    assert len(h) == data.HISTORY_KEEP and h[0]["t"] == 5


def test_time_axes_are_labelled_in_utc_24_hour_without_repeats() -> None:
    """Streamlit's chart theme ignores an axis `format` (15:52 UTC showed as '03:52'): the
    labels are a UTC label expression; ticks finer than the format get none."""
    counts = data.counts_by_type(data.anomalies_frame(payloads.anomalies(12)), "1min")
    chart = data.stacked_bars(counts, "bucket", "anomaly_type", "n")
    assert chart is not None
    axis = chart.to_dict()["encoding"]["x"]["axis"]
    assert "format" not in axis
    assert axis["labelExpr"] == ("utcseconds(datum.value) == 0 ? "
                                 "utcFormat(datum.value, '%H:%M') : ''")
    day = data.utc_axis("%m-%d").to_dict()["labelExpr"]
    assert day.startswith("utchours(datum.value) + utcminutes(datum.value)")
    assert data.utc_axis("%H:%M:%S").to_dict() == {
        "labelExpr": "utcFormat(datum.value, '%H:%M:%S')"}


def test_a_time_range_chart_spans_the_range_the_page_names() -> None:
    """An hour of anomalies in "last 24 hours" was one bar filling the whole chart (the axis
    covered only the buckets with rows); with the page's range it is a bar at the right end."""
    counts = data.counts_by_type(data.anomalies_frame(payloads.anomalies(12)), "1h")
    end = counts["end"].max()
    start = end - pd.Timedelta(hours=24)
    spec = data.stacked_bars(counts, "bucket", "anomaly_type", "n", span=(start, end)).to_dict()
    assert spec["encoding"]["x"]["scale"] == {
        "type": "utc", "domain": [int(start.timestamp() * 1000), int(end.timestamp() * 1000)]}
    assert spec["mark"]["clip"] is True  # a bucket begun before the range is cut at its edge
    assert "domain" not in data.stacked_bars(counts, "bucket", "anomaly_type", "n").to_dict()[
        "encoding"]["x"]["scale"]


def test_every_chart_is_valid_vega_lite_and_is_drawn_with_exactly_its_rows() -> None:
    """The page draws ``vega_lite(chart)`` without validating it (the cost of a refresh), so
    every builder's spec is validated here against Vega-Lite's schema, and what the page gets
    is that spec without the rows, plus the rows themselves."""
    anomalies = data.anomalies_frame(payloads.anomalies())
    charts = {
        "slo": data.slo_chart(payloads.slo()),
        "per-minute": data.stacked_bars(data.counts_by_type(anomalies, "1min"), "bucket",
                                        "anomaly_type", "anomalies / min"),
        "session": data.session_clicks_chart(payloads.session(7)["events"]),
        "daily": data.daily_trend_chart(data.daily_frame(payloads.daily("2024-03-01",
                                                                         "2024-03-12"))),
        "funnel": data.funnel_chart(payloads.FUNNEL),
        "categories": data.categories_chart(payloads.CATEGORIES),
        "dlq": data.stacked_bars(data.dlq_over_time(payloads.dlq(bucket_minutes=60)), "bucket",
                                 "reason", "records"),
    }
    for name, chart in charts.items():
        assert chart is not None, name
        validated = chart.to_dict()  # raises on a spec Vega-Lite rejects
        rows, spec = data.vega_lite(chart)
        assert rows is chart.data, name
        assert "data" not in spec and "datasets" not in spec and "config" not in spec, name
        assert spec == {k: v for k, v in validated.items()
                        if k not in ("data", "datasets", "config")}, name
        assert validated["encoding"]["tooltip"], name  # every chart explains its marks
