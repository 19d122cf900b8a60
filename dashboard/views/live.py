"""Live: what the stream is doing now, refreshed every ``dashboard_refresh_s`` seconds.

Only the fragment reruns on the timer (not the whole page), and each run costs four small API
calls (/health, /stream, /slo, /anomalies/per-minute), kept cheap because they share the API's
cores with every other client (issue 13: the dashboard must not move the API's p99): /slo over
the newest SLO_SAMPLES events (PostgreSQL sorts each stage's latencies, so the cost grows with
the sample), and the anomaly chart from PostgreSQL's per-minute counts (a few dozen rows,
exact however many anomalies) instead of the anomalies themselves. Every URL is fixed, so all
viewers share the API's cached answer. The API reports current values only, so the sparklines
are the samples this browser session has seen.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from clickguard.settings import get_settings
from dashboard import data, ui

ANOMALY_MINUTES = 30
SLO_MINUTES = 5
SLO_SAMPLES = 2000  # p99 from 2,000 samples: its 20 slowest, enough for a live gauge
# the API calls of one refresh (`clickguard bench dashboard` replays them without a browser)
SLO_QUERY: dict[str, Any] = {"minutes": SLO_MINUTES, "limit": SLO_SAMPLES}
PER_MINUTE_QUERY: dict[str, Any] = {"minutes": ANOMALY_MINUTES}
LIVE_CALLS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("/health", {}), ("/stream", {}), ("/slo", SLO_QUERY),
    ("/anomalies/per-minute", PER_MINUTE_QUERY))
# colored text, not emoji: a browser without an emoji font (headless Chromium on a server)
# draws emoji as empty boxes
STATE_ICONS = {"running": ":green[●]", "restarting": ":orange[●]", "crash-looping": ":red[●]",
               "stopped": ":gray[○]"}


def page() -> None:
    st.title("Live")
    st.caption(f"Refreshes every {get_settings().dashboard_refresh_s:g} s. Times are UTC.")
    live()


@st.fragment(run_every=get_settings().dashboard_refresh_s)
def live() -> None:
    health = ui.fetch("/health", ok=(503,))
    if health is None:
        return
    stream = ui.fetch("/stream") if health.get("database") == "connected" else None
    if stream is None:
        st.error("The API cannot read the database: stream figures are unavailable.")
        return
    slo = ui.fetch("/slo", **SLO_QUERY) or {"samples": 0, "stages": []}
    per_minute = ui.fetch("/anomalies/per-minute", **PER_MINUTE_QUERY) or []
    since = data.utc_now().floor("min") - pd.Timedelta(minutes=ANOMALY_MINUTES - 1)
    s = data.stream_state(stream, health)
    history = record(s, slo)
    headline(s)
    metrics(s, slo, history)
    left, right = st.columns(2)
    with left:
        st.subheader("Latency per stage")
        st.caption(f"Newest {slo['samples']:,} events committed in the last {SLO_MINUTES} min.")
        if slo["samples"]:
            ui.chart(data.slo_chart(slo))
        ui.table(data.slo_frame(slo) if slo["samples"] else pd.DataFrame(), "slo",
                 f"No events committed in the last {SLO_MINUTES} min: {ui.PRODUCE_HINT}.")
    with right:
        st.subheader("Anomalies per minute")
        st.caption(f"By type, since {data.fmt_ts(since)[11:16]} (last {ANOMALY_MINUTES} min).")
        ui.chart(data.stacked_bars(data.minute_counts(per_minute), "bucket",
                                   "anomaly_type", "anomalies / min",
                                   span=(since, since + pd.Timedelta(minutes=ANOMALY_MINUTES))),
                 f"No anomalies in the last {ANOMALY_MINUTES} min: `make run` injects bot "
                 "sessions every few seconds; otherwise the rules have not fired.")
    st.subheader("Last micro-batch")
    last = stream.get("last_batch")
    if last is None:
        st.info(f"No micro-batch committed yet: {ui.PRODUCE_HINT}.")
    else:
        ui.table(pd.DataFrame([{
            "batch": str(last["batch_id"]), "committed": data.fmt_ts(last["committed_at"]),
            "rows": data.fmt_num(last["input_rows"]), "stored": data.fmt_num(last["stored"]),
            "dlq": data.fmt_num(last["dlq"]), "late": data.fmt_num(last["late"]),
            "duplicates": data.fmt_num(last["duplicates"]),
            "anomalies": data.fmt_num(last["anomalies"]),
            "duration": data.fmt_ms(last["duration_ms"]),
        }]), "last-batch", "")
    st.subheader("Heartbeats")
    ui.table(data.heartbeats_frame(stream), "heartbeats",
             "No component has reported yet: is the streaming node up? "
             "(`clickguard stack status`)")


def record(s: dict[str, Any], slo: dict[str, Any]) -> list[dict[str, Any]]:
    """Append this refresh's sample to the browser session's history."""
    sample = {"t": data.utc_now(), "events_per_sec": s["events_per_sec"], "lag": s["lag_total"],
              "batch_ms": s["batch_duration_ms"], "e2e_p99": data.stage_p99(slo)}
    history = data.append_sample(st.session_state.get("live_history", []), sample)
    st.session_state["live_history"] = history
    return history


def headline(s: dict[str, Any]) -> None:
    icon = STATE_ICONS.get(s["state"], ":gray[○]")
    with st.container(key="stream-state"):
        st.markdown(f"**API** {s['status']} · **database** {s['database']} · "
                    f"**stream** {icon} {s['state']}"
                    + (f" since {data.fmt_ts(s['since'])}" if s["since"] else ""))
        st.markdown(data.driver_line(s["driver"]))
    if s["state"] == "crash-looping":
        st.error(f"The streaming job is crash-looping ({s['consecutive_failures']} failed runs "
                 f"in a row): {s['last_error'] or 'no error recorded'}. "
                 "See `clickguard stack logs streaming`.")
    elif s["last_error"]:
        at = f" at {data.fmt_ts(s['last_error_at'])} UTC" if s["last_error_at"] else ""
        if s["state"] == "running":  # history: the stream restarted and commits again
            st.info(f"Recovered: a run of the streaming job failed{at} "
                    f"({s['last_error']}); the stream runs again.")
        else:
            st.warning(f"Last error of the streaming job{at}: {s['last_error']}")


def spark(history: list[dict[str, Any]], key: str) -> list[float] | None:
    """The sampled values of ``key`` for a metric's sparkline (none until there are two)."""
    values = [h[key] for h in history if h.get(key) is not None]
    return values if len(values) >= 2 else None


def metrics(s: dict[str, Any], slo: dict[str, Any], history: list[dict[str, Any]]) -> None:
    cols = st.columns(4)
    cols[0].metric("Events/s (last 60 s)", data.fmt_num(s["events_per_sec"], 1),
                   chart_data=spark(history, "events_per_sec"), border=True)
    lag = s["lag_total"]
    cols[1].metric("Consumer lag (records)", data.fmt_num(lag) if lag is not None else "unknown",
                   help=s["lag_error"], chart_data=spark(history, "lag"), border=True)
    cols[2].metric("Last batch duration", data.fmt_ms(s["batch_duration_ms"]),
                   chart_data=spark(history, "batch_ms"), border=True)
    cols[3].metric("End-to-end p99", data.fmt_ms(data.stage_p99(slo)),
                   chart_data=spark(history, "e2e_p99"), border=True)
    if lag is None and s["lag_error"]:
        st.caption(f"Consumer lag unknown: {s['lag_error']}")
