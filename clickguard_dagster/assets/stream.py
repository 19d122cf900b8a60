"""``stream_events``: the events table written by the Spark streaming job (external asset)."""


import dagster as dg

stream_events = dg.AssetSpec(
    "stream_events",
    description=(
        "Valid, deduplicated, on-time events written by the streaming job "
        "(streaming_job/, table `events`). Not materialized by Dagster: the stream_health_sensor "
        "records observations (lag, events/s, last batch, state rows)."
    ),
    group_name="stream",
    kinds={"kafka", "spark", "postgres"},
    metadata={"table": "events", "topic": "km.events.raw.v1"},
)
