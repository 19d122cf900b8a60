"""DLQ: records the stream could not decode or validate — by reason, over time, the newest with
their detail — and the way back: the Dagster job ``dlq_replay`` and its last runs (from
Dagster's GraphQL API: the Clickstream Guardian API does not know about Dagster runs)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from clickguard.settings import get_settings
from dashboard import data, ui
from dashboard.client import DagsterError, dagster_url, get_dagster

WINDOWS = {"last 15 min": (15, 1), "last hour": (60, 5),
           "last 6 hours": (360, 30), "last 24 hours": (1440, 60)}
"""Window label: (minutes, minutes per bar of the over-time chart)."""
SHOWN = 50
REPLAY_JOB = "dlq_replay"  # clickguard_dagster/jobs.py
DAGSTER_LOCATION = "clickguard"  # workspace.yaml's code location
REPLAY_RUNS = 10


def page() -> None:
    st.title("Dead-letter queue")
    ui_url = dagster_url(get_settings())
    job = f"{ui_url}/locations/{DAGSTER_LOCATION}/jobs/{REPLAY_JOB}"
    st.markdown(f"After a fix, replay records with the Dagster job [`{REPLAY_JOB}`]({job}) "
                f"([its runs]({job}/runs)) or `clickguard dlq-replay`.")
    records()
    replay_runs(ui_url, job)


def records() -> None:
    label = st.selectbox("Window", list(WINDOWS), index=1)
    minutes, bucket = WINDOWS[label]
    report = ui.fetch("/dlq", minutes=minutes, limit=SHOWN, bucket_minutes=bucket)
    if report is None:
        return
    st.metric(f"DLQ records, {label}", data.fmt_num(report["total"]), border=True)
    if not report["total"]:
        st.info(f"The DLQ is empty for the {label}: nothing failed to decode or validate. "
                "(`make run` injects a few bad records unless `--no-faults`.)",
                icon=":material/check_circle:")
        return
    left, right = st.columns([1, 2])
    with left:
        st.subheader("By reason")
        ui.table(data.dlq_reasons_frame(report), "dlq-reasons", "")
    with right:
        st.subheader("Over time")
        now = data.utc_now()
        ui.chart(data.stacked_bars(data.dlq_over_time(report), "bucket", "reason", "records",
                                   span=(now - pd.Timedelta(minutes=minutes), now)))
        st.caption(f"Every record of the window, per {bucket} min; times UTC.")
    st.subheader(f"Newest records (of {report['total']:,})")
    ui.table(data.dlq_recent_frame(report), "dlq-recent", "", height=420)


def replay_runs(ui_url: str, job: str) -> None:
    """The replay job's newest runs, each linked to its page in the Dagster UI."""
    st.subheader(f"Last runs of `{REPLAY_JOB}`")
    with st.container(key="table-replay-runs"):
        try:
            runs = data.parse_runs(get_dagster().runs(REPLAY_JOB, REPLAY_RUNS))
        except DagsterError as exc:
            st.info(f"{exc.message} The replay job's runs show here then.",
                    icon=":material/cloud_off:")
            return
        except ValueError as exc:
            st.info(f"Dagster at {ui_url} could not list the runs of `{REPLAY_JOB}`: {exc}",
                    icon=":material/cloud_off:")
            return
        if not runs:
            st.info(f"`{REPLAY_JOB}` has not run yet: launch it from the [Dagster UI]({job}) "
                    "or run `clickguard dlq-replay` after fixing the cause.",
                    icon=":material/hourglass_empty:")
            return
        st.caption(f"Newest {len(runs)}, times UTC; a run's link opens it in the Dagster UI.")
        st.markdown(data.markdown_table(data.runs_frame(runs, ui_url)))
