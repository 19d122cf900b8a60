"""API payloads → pandas frames and Altair charts, without Streamlit (unit-tested on JSON).

Display frames hold formatted strings (times in UTC, fixed decimals) so what a table shows is
exactly what the tests compare with the API's values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import altair as alt
import pandas as pd

DASH = "–"
STAGE_LABELS = {
    "produce_to_kafka": "produce → Kafka",
    "kafka_to_spark": "Kafka → Spark",
    "spark_to_db": "Spark → DB",
    "end_to_end": "end to end",
}
HISTORY_KEEP = 120  # Live samples kept per browser session (10 min at 5 s)


# -- formatting ----------------------------------------------------------------------------------
def parse_ts(value: str | None) -> pd.Timestamp | None:
    """An API datetime (ISO 8601, 'Z') as a UTC timestamp; None stays None."""
    if value is None:
        return None
    return pd.Timestamp(value).tz_convert("UTC")


def fmt_ts(value: str | pd.Timestamp | None) -> str:
    """'2026-12-01 11:02:03' in UTC, or a dash."""
    ts = parse_ts(value) if isinstance(value, str) else value
    if ts is None or pd.isna(ts):
        return DASH
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: pd.Timestamp) -> str:
    """A timestamp as the API writes and reads them: ISO 8601 in UTC with 'Z'."""
    return ts.tz_convert("UTC").isoformat().replace("+00:00", "Z")


def fmt_ms(value: float | None) -> str:
    """Milliseconds for humans: '0.4 ms', '512 ms', '1,250 ms'."""
    if value is None:
        return DASH
    return f"{value:.1f} ms" if abs(value) < 10 else f"{value:,.0f} ms"


def fmt_num(value: float | int | None, decimals: int = 0) -> str:
    if value is None:
        return DASH
    return f"{value:,.{decimals}f}"


def fmt_compact(value: float | None) -> str:
    """Large figures for a narrow card: '3.15 M', '48.2 k', '9,842'."""
    if value is None:
        return DASH
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f} M"
    if abs(value) >= 1e5:
        return f"{value / 1e3:.1f} k"
    return fmt_num(value)


def fmt_age(seconds: float | None) -> str:
    """'4 s ago', '3 min ago', '2.5 h ago'."""
    if seconds is None:
        return DASH
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


# -- Live ----------------------------------------------------------------------------------------
def slo_frame(slo: Mapping[str, Any]) -> pd.DataFrame:
    """One row per pipeline stage: p50/p95/p99/max as text."""
    rows = [
        {"stage": STAGE_LABELS.get(s["stage"], s["stage"]),
         **{k: fmt_ms(s.get(f"{k}_ms")) for k in ("p50", "p95", "p99", "max")}}
        for s in slo.get("stages", [])
    ]
    return pd.DataFrame(rows, columns=["stage", "p50", "p95", "p99", "max"])


def stage_p99(slo: Mapping[str, Any], stage: str = "end_to_end") -> float | None:
    for s in slo.get("stages", []):
        if s["stage"] == stage:
            return s.get("p99_ms")
    return None


def slo_chart(slo: Mapping[str, Any]) -> alt.Chart | None:
    """Grouped bars: p50/p95/p99 per stage (None when there are no samples)."""
    rows = [
        {"stage": STAGE_LABELS.get(s["stage"], s["stage"]), "percentile": p,
         "ms": s[f"{p}_ms"]}
        for s in slo.get("stages", []) for p in ("p50", "p95", "p99")
        if s.get(f"{p}_ms") is not None
    ]
    if not rows:
        return None
    order = list(STAGE_LABELS.values())
    return alt.Chart(pd.DataFrame(rows)).mark_bar().encode(
        x=alt.X("stage:N", sort=order, title=None),
        xOffset=alt.XOffset("percentile:N", sort=["p50", "p95", "p99"]),
        y=alt.Y("ms:Q", title="latency (ms)"),
        color=alt.Color("percentile:N", sort=["p50", "p95", "p99"]),
        tooltip=[alt.Tooltip("stage:N"), alt.Tooltip("percentile:N"),
                 alt.Tooltip("ms:Q", format=",.1f")],
    ).properties(height=240)


def stream_state(stream: Mapping[str, Any] | None, health: Mapping[str, Any] | None) -> dict:
    """The few facts of /stream and /health the Live page headlines."""
    run = (stream or {}).get("state") or (health or {}).get("stream") or {}
    last = (stream or {}).get("last_batch") or {}
    lag = (stream or {}).get("consumer_lag") or {}
    return {
        "status": (health or {}).get("status", "unknown"),
        "database": (health or {}).get("database", "unknown"),
        "version": (health or {}).get("version"),
        "state": run.get("state", "unknown"),
        "last_error": run.get("last_error"),
        "last_error_at": run.get("last_error_at"),
        "consecutive_failures": run.get("consecutive_failures", 0),
        "since": run.get("since"),
        "events_per_sec": (stream or {}).get("events_per_sec"),
        "batches_last_minute": (stream or {}).get("batches_last_minute"),
        "lag_total": lag.get("total"),
        "lag_error": lag.get("error"),
        "batch_duration_ms": last.get("duration_ms"),
        "batch_id": last.get("batch_id"),
        "batch_rows": last.get("input_rows"),
        "last_commit": last.get("committed_at"),
        "driver": (stream or {}).get("active_driver"),
    }


def driver_line(driver: Mapping[str, Any] | None, now: pd.Timestamp | None = None) -> str:
    """Which warm-standby driver runs the stream (GET /stream ``active_driver``), as markdown:
    after a failover its id and epoch change."""
    if not driver:
        return ("**active driver** unknown: no driver holds the lease and no batch recorded "
                "its driver")
    epoch = f" · epoch {driver['epoch']}" if driver.get("epoch") is not None else ""
    if driver.get("source") != "lease":
        return (f"**driver of the newest batch** `{driver['driver']}`{epoch} · no lease held "
                "(stream stopped, or between drivers)")
    line = f"**active driver** `{driver['driver']}`{epoch}"
    if driver.get("since"):
        line += f" · lease since {fmt_ts(driver['since'])}"
    expires = parse_ts(driver.get("lease_expires_at"))
    if expires is not None and expires < (now if now is not None else utc_now()):
        line += f" · :orange[lease expired {fmt_ts(expires)[11:]}: a standby should take over]"
    return line


def heartbeats_frame(stream: Mapping[str, Any] | None) -> pd.DataFrame:
    rows = [
        {"component": b["component"], "status": b["status"], "beat": fmt_age(b.get("age_sec"))}
        for b in (stream or {}).get("heartbeats", [])
    ]
    return pd.DataFrame(rows, columns=["component", "status", "beat"])


def append_sample(history: list[dict[str, Any]], sample: dict[str, Any],
                  keep: int = HISTORY_KEEP) -> list[dict[str, Any]]:
    """The Live page's rolling history (the API reports only the current values)."""
    return [*history, sample][-keep:]


def history_chart(history: list[dict[str, Any]], field: str, title: str) -> alt.Chart | None:
    """A line of one sampled field over the browser session's watch time."""
    rows = [{"t": h["t"], title: h[field]} for h in history if h.get(field) is not None]
    if len(rows) < 2:
        return None
    return alt.Chart(pd.DataFrame(rows)).mark_line(point=True).encode(
        x=alt.X("t:T", title=None, axis=utc_axis("%H:%M:%S")),
        y=alt.Y(f"{title}:Q", title=title),
        tooltip=[alt.Tooltip("t:T", format="%H:%M:%S", formatType="utc"),
                 alt.Tooltip(f"{title}:Q", format=",.1f")],
    ).properties(height=160)


# -- anomalies -----------------------------------------------------------------------------------
ANOMALY_COLUMNS = ["detected_at", "type", "session", "window", "clicks", "unique items",
                   "unique/clicks", "score"]


def anomalies_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """/anomalies rows with parsed times, the window length and the unique-item ratio."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame(columns=["id", "session_id", "detected_at", "window_start",
                                     "window_end", "click_count", "unique_items",
                                     "anomaly_score", "anomaly_type", "window_s", "unique_ratio"])
    for col in ("detected_at", "window_start", "window_end"):
        df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
    df["window_s"] = (df["window_end"] - df["window_start"]).dt.total_seconds()
    clicks = df["click_count"].where(df["click_count"] > 0)
    df["unique_ratio"] = df["unique_items"] / clicks
    return df


def anomalies_display(df: pd.DataFrame, limit: int = 50) -> pd.DataFrame:
    """The evidence table: what each rule saw (window, clicks, unique items, ratio, score)."""
    rows = [
        {"detected_at": fmt_ts(r.detected_at), "type": r.anomaly_type,
         "session": DASH if pd.isna(r.session_id) else str(int(r.session_id)),
         "window": f"{fmt_ts(r.window_start)[11:]}–{fmt_ts(r.window_end)[11:]} "
                   f"({r.window_s:.0f} s)",
         "clicks": fmt_num(r.click_count), "unique items": fmt_num(r.unique_items),
         "unique/clicks": DASH if pd.isna(r.unique_ratio) else f"{r.unique_ratio:.2f}",
         "score": f"{r.anomaly_score:.2f}"}
        for r in df.head(limit).itertuples()
    ]
    return pd.DataFrame(rows, columns=ANOMALY_COLUMNS)


def counts_by_type(df: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Anomalies per ``freq`` bucket ('1min', '5min', '1h') and type: bucket, end, type, count."""
    if df.empty:
        return pd.DataFrame(columns=["bucket", "end", "anomaly_type", "count"])
    b = df.assign(bucket=df["detected_at"].dt.floor(freq))
    out = (b.groupby(["bucket", "anomaly_type"]).size().reset_index(name="count")
           .sort_values(["bucket", "anomaly_type"], ignore_index=True))
    out.insert(1, "end", out["bucket"] + pd.Timedelta(freq))
    return out


def minute_counts(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """/anomalies/per-minute rows in :func:`counts_by_type`'s shape (bucket, end, type, count)."""
    df = pd.DataFrame(list(rows), columns=["minute", "anomaly_type", "anomaly_count"])
    if df.empty:
        return pd.DataFrame(columns=["bucket", "end", "anomaly_type", "count"])
    bucket = pd.to_datetime(df["minute"], utc=True, format="ISO8601")
    return (pd.DataFrame({"bucket": bucket, "end": bucket + pd.Timedelta("1min"),
                          "anomaly_type": df["anomaly_type"], "count": df["anomaly_count"]})
            .sort_values(["bucket", "anomaly_type"], ignore_index=True))


def tooltips(*fields: str) -> list[alt.Tooltip]:
    """Tooltip channels with explicit types. Not bare field names: Altair resolves each of those
    by hashing its whole schema's classes (≈ 60 ms of CPU per chart)."""
    return [alt.Tooltip(f) for f in fields]


def vega_lite(chart: alt.Chart) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The chart's rows and its Vega-Lite spec without them, for ``st.vega_lite_chart``.

    Not ``st.altair_chart``: that validates the spec against Vega-Lite's JSON schema on every
    run, most of a Live refresh's CPU on the dashboard server (the unit tests validate every
    chart builder's spec instead), and names the rows by their hash, so the browser rebuilt the
    chart whenever the data changed. The spec is the one Streamlit would send: without what
    Altair's default theme adds (a fixed view size)."""
    rows = chart.data
    assert isinstance(rows, pd.DataFrame), "dashboard charts are built on a DataFrame"
    spec = chart.copy(deep=False)
    spec.data = alt.Undefined
    out = spec.to_dict(validate=False)
    for key in ("data", "datasets"):  # Altair names a chart without rows "empty"
        out.pop(key, None)
    if chart.config is alt.Undefined:
        out.pop("config", None)  # what Altair's default theme adds
    return rows, out


def utc_axis(time_format: str) -> alt.Axis:
    """A time axis labelled in UTC with ``time_format``. A label expression, not ``format``:
    under Streamlit's chart theme an axis ``format`` is ignored and Vega's default multi-format
    labels 15:52 UTC as '03:52' and half minutes as ':30'. Ticks finer than the format's last
    field (a '15:52' label on 15:52:30) get no label, so no label repeats."""
    label = f"utcFormat(datum.value, '{time_format}')"
    finer = ("" if "%S" in time_format else "utcseconds(datum.value)" if "%M" in time_format
             else "utcminutes(datum.value) + utcseconds(datum.value)" if "%H" in time_format
             else "utchours(datum.value) + utcminutes(datum.value) + utcseconds(datum.value)")
    return alt.Axis(labelExpr=f"{finer} == 0 ? {label} : ''" if finer else label)


def stacked_bars(counts: pd.DataFrame, x: str, color: str, title: str,
                 time_format: str = "%H:%M",
                 span: tuple[pd.Timestamp, pd.Timestamp] | None = None) -> alt.Chart | None:
    """Stacked bars of ``count`` per time bucket (``x`` to ``end``, in UTC), coloured by
    ``color`` (None when empty): each bar spans its bucket. The x axis covers ``span`` (the
    range the page names) when given, so an hour of anomalies in "last 24 hours" is one bar
    at the right end, not a block filling the chart; else the buckets that have rows."""
    if counts.empty:
        return None
    scale = (alt.Scale(type="utc") if span is None else
             alt.Scale(type="utc", domain=[int(t.timestamp() * 1000) for t in span]))
    return alt.Chart(counts).mark_bar(orient="vertical", clip=True).encode(
        x=alt.X(f"{x}:T", title=None, scale=scale, axis=utc_axis(time_format)),
        x2=alt.X2("end"),
        y=alt.Y("count:Q", title=title),
        color=alt.Color(f"{color}:N", title=None),
        tooltip=[alt.Tooltip(f"{x}:T", format="%Y-%m-%d %H:%M", formatType="utc", title="UTC"),
                 alt.Tooltip(f"{color}:N"), alt.Tooltip("count:Q")],
    ).properties(height=220)


def types_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    out = [{"type": r["anomaly_type"], "count": fmt_num(r["count"]),
            "avg score": f"{r['avg_score']:.2f}", "last detected": fmt_ts(r["last_detected"])}
           for r in rows]
    return pd.DataFrame(out, columns=["type", "count", "avg score", "last detected"])


def evidence_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A session's anomalies (GET /sessions/{id}) with observed value against the threshold."""
    out = []
    for r in rows:
        details = r.get("details") or {}
        window = details.get("window_seconds")
        out.append({
            "detected_at": fmt_ts(r["detected_at"]), "type": r["anomaly_type"],
            "window": f"{fmt_ts(r['window_start'])[11:]}–{fmt_ts(r['window_end'])[11:]}"
                      + (f" ({window} s rule)" if window else ""),
            "clicks": fmt_num(r["click_count"]), "unique items": fmt_num(r["unique_items"]),
            "observed": fmt_num(r["observed"], 1), "threshold": fmt_num(r.get("threshold"), 1),
            "score": f"{r['anomaly_score']:.2f}", "rule": str(details.get("rule", DASH)),
        })
    return pd.DataFrame(out, columns=["detected_at", "type", "window", "clicks", "unique items",
                                      "observed", "threshold", "score", "rule"])


def session_events_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    out = [{"event_ts": fmt_ts(r["event_ts"]), "type": r["event_type"],
            "item": DASH if r.get("item_id") is None else str(r["item_id"]),
            "category": r.get("category") or DASH,
            "price": DASH if r.get("price") is None else f"{r['price']:.2f}",
            "quantity": DASH if r.get("quantity") is None else str(r["quantity"]),
            "event_id": r["event_id"]}
           for r in rows]
    return pd.DataFrame(out, columns=["event_ts", "type", "item", "category", "price",
                                      "quantity", "event_id"])


def session_clicks_chart(rows: Iterable[Mapping[str, Any]]) -> alt.Chart | None:
    """A session's events per second, by type: what a bot's burst looks like."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        return None
    df["second"] = pd.to_datetime(df["event_ts"], utc=True, format="ISO8601").dt.floor("1s")
    counts = df.groupby(["second", "event_type"]).size().reset_index(name="count")
    counts["end"] = counts["second"] + pd.Timedelta("1s")
    return stacked_bars(counts, "second", "event_type", "events", time_format="%H:%M:%S")


# -- daily ---------------------------------------------------------------------------------------
def daily_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    if df.empty:
        return df
    df["metric_date"] = pd.to_datetime(df["metric_date"])
    return df


def daily_trend_chart(df: pd.DataFrame) -> alt.Chart | None:
    """Clicks and purchases per day (two y scales would mislead; purchases are a second line)."""
    if df.empty:
        return None
    long = df.melt(id_vars="metric_date", value_vars=["total_clicks", "total_purchases"],
                   var_name="metric", value_name="value")
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("metric_date:T", title=None, scale=alt.Scale(type="utc"),
                axis=utc_axis("%m-%d")),
        y=alt.Y("value:Q", title=None),
        color=alt.Color("metric:N", title=None),
        tooltip=[alt.Tooltip("metric_date:T", format="%Y-%m-%d"), alt.Tooltip("metric:N"),
                 alt.Tooltip("value:Q")],
    ).properties(height=220)


def funnel_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    out = [{"stage": r["funnel_stage"], "sessions": fmt_num(r["session_count"]),
            "share": f"{r['percentage']:.1f} %", "drop": f"{r['drop_rate']:.1f} %"}
           for r in rows]
    return pd.DataFrame(out, columns=["stage", "sessions", "share", "drop"])


def funnel_chart(rows: list[Mapping[str, Any]]) -> alt.Chart | None:
    if not rows:
        return None
    df = pd.DataFrame(rows)
    order = list(df["funnel_stage"])
    return alt.Chart(df).mark_bar().encode(
        y=alt.Y("funnel_stage:N", sort=order, title=None),
        x=alt.X("session_count:Q", title="sessions"),
        tooltip=tooltips("funnel_stage:N", "session_count:Q", "percentage:Q",
                         "drop_rate:Q"),
    ).properties(height=40 * len(order) + 20)


def items_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    out = [{"rank": str(r["rank"]), "item": str(r["item_id"]), "category": r["category"] or DASH,
            "clicks": fmt_num(r["click_count"]), "purchases": fmt_num(r["purchase_count"]),
            "revenue": fmt_num(r["revenue"], 2)}
           for r in rows]
    return pd.DataFrame(out, columns=["rank", "item", "category", "clicks", "purchases",
                                      "revenue"])


def categories_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    out = [{"rank": str(r["rank"]), "category": r["category"], "clicks": fmt_num(r["click_count"]),
            "purchases": fmt_num(r["purchase_count"]), "items": fmt_num(r["unique_items"]),
            "revenue": fmt_num(r["revenue"], 2)}
           for r in rows]
    return pd.DataFrame(out, columns=["rank", "category", "clicks", "purchases", "items",
                                      "revenue"])


def categories_chart(rows: list[Mapping[str, Any]]) -> alt.Chart | None:
    if not rows:
        return None
    df = pd.DataFrame(rows)
    return alt.Chart(df).mark_bar().encode(
        y=alt.Y("category:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
        x=alt.X("click_count:Q", title="clicks"),
        tooltip=tooltips("category:N", "click_count:Q", "purchase_count:Q", "revenue:Q"),
    ).properties(height=30 * len(df) + 20)


def freshness_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    out = [{"asset": r["asset_key"], "last computed": fmt_ts(r["last_computed_at"]),
            "this day computed": fmt_ts(r.get("day_computed_at")),
            "newest day": r["newest_day"], "days": fmt_num(r["days_computed"]),
            "run": (r.get("last_run_id") or DASH)[:8]}
           for r in rows]
    return pd.DataFrame(out, columns=["asset", "last computed", "this day computed",
                                      "newest day", "days", "run"])


# -- DLQ -----------------------------------------------------------------------------------------
def dlq_reasons_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    out = [{"reason": r["reason"], "records": fmt_num(r["count"])}
           for r in report.get("by_reason", [])]
    return pd.DataFrame(out, columns=["reason", "records"])


def dlq_recent_frame(report: Mapping[str, Any]) -> pd.DataFrame:
    out = [{"detected_at": fmt_ts(r["detected_at"]), "reason": r["reason"],
            "detail": (r.get("detail") or DASH)[:160],
            "source": f"{r['source_topic']}[{r['source_partition']}]@{r['source_offset']}",
            "event_id": r.get("event_id") or DASH, "replayed": fmt_ts(r.get("replayed_at"))}
           for r in report.get("recent", [])]
    return pd.DataFrame(out, columns=["detected_at", "reason", "detail", "source", "event_id",
                                      "replayed"])


def dlq_over_time(report: Mapping[str, Any]) -> pd.DataFrame:
    """DLQ records per bucket and reason (bucket, end, reason, count) from GET /dlq's
    ``over_time``, which the API counts over every record of the window."""
    rows = report.get("over_time") or []
    if not rows:
        return pd.DataFrame(columns=["bucket", "end", "reason", "count"])
    df = pd.DataFrame(rows, columns=["bucket", "reason", "count"])
    df["bucket"] = pd.to_datetime(df["bucket"], utc=True, format="ISO8601")
    df.insert(1, "end", df["bucket"] + pd.Timedelta(minutes=report["bucket_minutes"]))
    return df.sort_values(["bucket", "reason"], ignore_index=True)


RUNNING = {"QUEUED", "NOT_STARTED", "MANAGED", "STARTING", "STARTED", "CANCELING"}
STATUS_COLORS = {"SUCCESS": "green", "FAILURE": "red", "CANCELED": "gray", "CANCELING": "gray",
                 "STARTED": "blue", "STARTING": "blue", "QUEUED": "violet"}


def parse_runs(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Runs from Dagster's ``runsOrError`` GraphQL answer (newest first), times as UTC
    timestamps; ValueError with Dagster's message when it reports an error instead."""
    if payload.get("errors"):
        raise ValueError("; ".join(str(e.get("message", e)) for e in payload["errors"])[:300])
    answer = (payload.get("data") or {}).get("runsOrError") or {}
    if answer.get("__typename") != "Runs":
        raise ValueError(answer.get("message") or f"unexpected answer {answer!r:.200}")

    def ts(value: float | None) -> pd.Timestamp | None:
        return None if value is None else pd.Timestamp(value, unit="s", tz="UTC").round("us")

    return [{"run_id": r["runId"], "status": r["status"], "created": ts(r.get("creationTime")),
             "start": ts(r.get("startTime")), "end": ts(r.get("endTime"))}
            for r in answer.get("results", [])]


def fmt_duration(seconds: float) -> str:
    """'0.8 s', '42 s', '3 min 05 s', '2 h 04 min'."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def runs_frame(runs: Iterable[Mapping[str, Any]], ui_url: str,
               now: pd.Timestamp | None = None) -> pd.DataFrame:
    """The replay job's runs as display text: status, start, duration (running: so far) and a
    markdown link to the run in the Dagster UI."""
    now = now if now is not None else utc_now()
    out = []
    for r in runs:
        start, end, status = r["start"], r["end"], r["status"]
        if start is None:
            duration = "not started"
        elif end is None:
            duration = (f"{fmt_duration((now - start).total_seconds())} so far"
                        if status in RUNNING else DASH)
        else:
            duration = fmt_duration((end - start).total_seconds())
        color = STATUS_COLORS.get(status)
        out.append({"run": f"[{r['run_id'][:8]}]({ui_url}/runs/{r['run_id']})",
                    "status": f":{color}[{status}]" if color else status,
                    "started": fmt_ts(start if start is not None else r.get("created")),
                    "duration": duration})
    return pd.DataFrame(out, columns=["run", "status", "started", "duration"])


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-style markdown table (cells may hold links, unlike st.table's text)."""
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def utc_now() -> pd.Timestamp:
    return pd.Timestamp(dt.datetime.now(dt.UTC))
