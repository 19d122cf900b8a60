"""Anomalies: timeline by type, filters, the rules' evidence, and one session's drill-down.

Type, minimum score and time range are filtered by the API (/anomalies ``since``), so the newest
``LIMIT`` rows are all in the range; the drill-down reads GET /sessions/{id}. A session can be
opened directly with ``?session=<id>``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data, ui

LIMIT = 1000
RANGES = {  # label: (minutes, bucket)
    "last 15 min": (15, "1min"),
    "last hour": (60, "1min"),
    "last 6 hours": (360, "10min"),
    "last 24 hours": (1440, "1h"),
    "last 7 days": (10080, "6h"),
}
ALL = "all types"


def page() -> None:
    st.title("Anomalies")
    types = ui.fetch("/anomalies/types")
    if types is None:
        return
    if not types:
        st.info("No anomalies yet: the rules fire on bot-like sessions and traffic spikes; "
                f"{ui.PRODUCE_HINT}.", icon=":material/hourglass_empty:")
        return
    with st.expander("Totals by type", expanded=False):
        ui.table(data.types_frame(types), "types", "")
    c1, c2, c3 = st.columns([2, 1, 2])
    kind = c1.selectbox("Type", [ALL, *(t["anomaly_type"] for t in types)])
    min_score = c2.number_input("Min score", min_value=0.0, value=0.0, step=0.5)
    label = c3.selectbox("Time range", list(RANGES), index=3)
    minutes, bucket = RANGES[label]
    # whole seconds: the same query string within a second (the API's response cache key)
    since = (data.utc_now() - pd.Timedelta(minutes=minutes)).floor("s")
    rows = ui.fetch("/anomalies", limit=LIMIT, anomaly_type=None if kind == ALL else kind,
                    min_score=min_score or None, since=data.iso(since))
    if rows is None:
        return
    df = data.anomalies_frame(rows)
    st.subheader(f"Timeline ({len(df):,} anomalies, {label})")
    if len(rows) == LIMIT:
        st.caption(f"Of the newest {LIMIT:,} anomalies that match the filters.")
    ui.chart(data.stacked_bars(data.counts_by_type(df, bucket), "bucket", "anomaly_type",
                               "anomalies", "%m-%d %H:%M", span=(since, data.utc_now())),
             "No anomaly matches these filters: widen the time range or lower the score.")
    st.subheader("Evidence")
    st.caption("Newest 50: the rule's window, clicks and unique items in it, and the score "
               "(HIGH_FREQUENCY: clicks/50 in 10 s; BOT_LIKE: 50+ clicks in 60 s with "
               "unique/clicks < 0.1). Open a session below for the thresholds and its events.")
    ui.table(data.anomalies_display(df), "anomalies", "No anomaly matches these filters.",
             height=420)
    session(df)


def session(df: pd.DataFrame) -> None:
    st.subheader("Session drill-down")
    ids = [int(x) for x in df["session_id"].dropna().unique()] if not df.empty else []
    wanted = st.query_params.get("session")
    if wanted is not None and wanted.lstrip("-").isdigit() and int(wanted) not in ids:
        ids.insert(0, int(wanted))
    if not ids:
        st.info("No session-level anomaly in this selection (TRAFFIC_SPIKE and ERROR_BURST "
                "are not about one session).", icon=":material/hourglass_empty:")
        return
    index = ids.index(int(wanted)) if wanted is not None and wanted.lstrip("-").isdigit() else 0
    sid = st.selectbox("Session", ids, index=index)
    detail = ui.fetch(f"/sessions/{sid}", limit=200)
    if detail is None:
        return
    st.markdown(f"**Anomalies of session {sid}** (observed value against the rule's threshold)")
    ui.table(data.evidence_frame(detail["anomalies"]), "evidence",
             "This session has no stored anomaly.")
    st.markdown(f"**Recent events of session {sid}** (newest {len(detail['events'])})")
    ui.chart(data.session_clicks_chart(detail["events"]))
    ui.table(data.session_events_frame(detail["events"]), "session-events",
             "No stored events for this session (events older than the retention, or the "
             "stream has not committed them yet).", height=420)
