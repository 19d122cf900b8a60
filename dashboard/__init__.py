"""The Streamlit dashboard: Live, Anomalies, Daily and DLQ pages over the public API.

It reads nothing but the API (URL and key from :mod:`clickguard.settings`), so it works the same
against the local stack and a remote deployment. Started by the stack's ``dashboard`` node
(``python -m dashboard.serve``).
"""
