"""Page helpers: fetch with a clear error line instead of a traceback, tables, empty states."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.client import ApiError, get_client

PRODUCE_HINT = ("run `make run` (the demo streams traffic) or `clickguard produce`, then wait "
                "a few seconds")


def fetch(path: str, ok: tuple[int, ...] = (), **params: Any) -> Any | None:
    """The API's answer, or None after showing why there is none (st.error)."""
    try:
        return get_client().get(path, ok=ok, **params)
    except ApiError as exc:
        st.error(exc.message, icon=":material/cloud_off:")
        return None


def table(df: pd.DataFrame, key: str, empty: str, height: int | None = None) -> None:
    """A static HTML table (its text is in the page: readable, testable); ``empty`` when none.

    ``key`` names the table's container (CSS class ``st-key-table-<key>``, what the browser test
    finds it by); ``height`` (px) makes a long table scroll inside the page."""
    with st.container(key=f"table-{key}"):
        if df.empty:
            st.info(empty, icon=":material/hourglass_empty:")
        else:
            st.table(df, hide_index=True, height=height if height else "content")


def chart(c: alt.Chart | None, empty: str | None = None) -> None:
    if c is None:
        if empty:
            st.info(empty, icon=":material/hourglass_empty:")
        return
    rows, spec = data.vega_lite(c)
    st.vega_lite_chart(rows, spec, width="stretch")
