"""Sensors: DLQ growth -> Slack alerts, stream health -> observations of ``stream_events``."""
