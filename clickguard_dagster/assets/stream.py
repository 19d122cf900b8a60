"""``stream_events``: the events table written by the Spark streaming job (external asset)."""


import dagster as dg

from clickguard.settings import Settings

stream_events = dg.AssetSpec(
    "stream_events",
    description=(
        "Valid, deduplicated, on-time events written by the streaming job "
        "(streaming_job/, table `events`). Not materialized by Dagster: the stream_health_sensor "
        "records observations (lag, events/s, last batch, state rows)."
    ),
    group_name="stream",
    kinds={"kafka", "spark", "postgres"},
    # the topic name of the settings (its default: definitions load without the environment)
    metadata={"table": "events", "topic": Settings.model_fields["topic_raw"].default},
)
