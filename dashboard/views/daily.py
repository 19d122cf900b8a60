"""Daily: the batch tables of the Dagster assets for a chosen day (what the original showed)
plus when the assets last computed (GET /batch/freshness)."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from clickguard.settings import get_settings
from dashboard import data, ui
from dashboard.client import dagster_url

TREND_DAYS = 30
EMPTY = ("No daily metrics yet: the Dagster assets compute them (`make run` turns on the live "
         "batch sensor: first run within ~2 min; or materialize `daily_batch` in the Dagster UI).")


def page() -> None:
    st.title("Daily")
    stats = ui.fetch("/stats")
    if stats is None:
        return
    last = stats.get("last_metrics_date")
    if last is None:
        st.info(EMPTY, icon=":material/hourglass_empty:")
        freshness(None)
        return
    day = st.date_input("Day", value=dt.date.fromisoformat(last))
    if not isinstance(day, dt.date):
        return
    start = day - dt.timedelta(days=TREND_DAYS - 1)
    rows = ui.fetch("/metrics/daily", start_date=start.isoformat(), end_date=day.isoformat())
    if rows is None:
        return
    today = [r for r in rows if r["metric_date"] == day.isoformat()]
    if today:
        m = today[0]
        cols = st.columns(5)
        cols[0].metric("Clicks", data.fmt_num(m["total_clicks"]), border=True)
        cols[1].metric("Purchases", data.fmt_num(m["total_purchases"]), border=True)
        cols[2].metric("Sessions", data.fmt_num(m["unique_sessions"]), border=True)
        cols[3].metric("Conversion", f"{m['conversion_rate'] * 100:.2f} %", border=True)
        cols[4].metric("Revenue", data.fmt_compact(m["total_revenue"]), border=True,
                       help=f"{m['total_revenue']:,.2f}")
    else:
        st.info(f"No metrics for {day.isoformat()}: the newest computed day is {last}.",
                icon=":material/hourglass_empty:")
    week = ui.fetch("/metrics/summary", days=7)
    if week:
        st.caption(
            f"Last {week['days_processed']} computed days: {week['total_clicks']:,} clicks, "
            f"{week['total_purchases']:,} purchases, {week['total_sessions']:,} sessions, "
            f"conversion {week['avg_conversion_rate'] * 100:.2f} %, revenue "
            f"{week['total_revenue']:,.2f}.")
    st.subheader(f"Clicks and purchases, {TREND_DAYS} days to {day.isoformat()}")
    ui.chart(data.daily_trend_chart(data.daily_frame(rows)), "No days computed in this range.")
    left, right = st.columns(2)
    funnel = ui.fetch(f"/metrics/funnel/{day.isoformat()}") or []
    with left:
        st.subheader("Session funnel")
        ui.chart(data.funnel_chart(funnel))
        ui.table(data.funnel_frame(funnel), "funnel", "No funnel for this day.")
    cats = ui.fetch(f"/items/categories/{day.isoformat()}", limit=20) or []
    with right:
        st.subheader("Popular categories")
        ui.chart(data.categories_chart(cats))
        ui.table(data.categories_frame(cats), "categories", "No categories for this day.")
    st.subheader("Popular items")
    items = ui.fetch(f"/items/popular/{day.isoformat()}", limit=20) or []
    ui.table(data.items_frame(items), "items", "No popular items for this day.", height=420)
    freshness(day)


def freshness(day: dt.date | None) -> None:
    st.subheader("Batch assets")
    ui_url = dagster_url(get_settings())
    st.caption(f"When each Dagster asset last computed (its runs: [Dagster UI]({ui_url}/assets)).")
    rows = ui.fetch("/batch/freshness", date=day.isoformat() if day else None)
    if rows is not None:
        ui.table(data.freshness_frame(rows), "freshness",
                 "No batch asset has run yet: materialize `daily_batch` in the Dagster UI or "
                 "wait for the live batch sensor.")
