"""The Streamlit script (``streamlit run dashboard/app.py``): page setup and navigation.

``python -m dashboard.serve`` runs it with the stack's flags; every page is a function of
:mod:`dashboard.views` (no ``pages/`` folder: st.navigation owns the routing).
"""

from __future__ import annotations

import streamlit as st

from clickguard import __version__
from clickguard.settings import get_settings
from dashboard.client import api_url
from dashboard.views import anomalies, daily, dlq, live

st.set_page_config(page_title="Clickstream Guardian", page_icon="🛡️", layout="wide")

PAGES = [
    st.Page(live.page, title="Live", icon=":material/monitoring:", url_path="live",
            default=True),
    st.Page(anomalies.page, title="Anomalies", icon=":material/crisis_alert:",
            url_path="anomalies"),
    st.Page(daily.page, title="Daily", icon=":material/calendar_month:", url_path="daily"),
    st.Page(dlq.page, title="DLQ", icon=":material/report:", url_path="dlq"),
]

nav = st.navigation(PAGES)
with st.sidebar:
    st.markdown("**Clickstream Guardian**")
    st.caption(f"API {api_url(get_settings())} · dashboard {__version__}")
nav.run()
