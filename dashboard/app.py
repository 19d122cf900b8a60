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

# Live is the default page, served at the root URL (Streamlit ignores a default page's own
# url_path for routing); "/live" is a hidden alias so that a typed or bookmarked /live opens it
# instead of Streamlit's "Page not found" dialog
LIVE = st.Page(live.page, title="Live", icon=":material/monitoring:", url_path="", default=True)


def _to_live() -> None:
    st.switch_page(LIVE)


PAGES = [
    LIVE,
    st.Page(_to_live, title="Live", url_path="live", visibility="hidden"),
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
