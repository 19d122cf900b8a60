"""Warm a just-started Spark Connect server with the batch assets' own Spark plans.

``python -m clickguard_dagster.warm`` (run by ``clickguard stack up`` after it starts the
``spark-connect`` node, in a process of its own: a Connect session puts pyspark's whole process
in Connect mode). Two rounds of ``daily_sessions``' computation over 300,000 events that
PostgreSQL generates (no table is read), staged through JDBC as the asset stages its rows, the
stage dropped after (a crash leaves it to :func:`clickguard_dagster.batch.sweep_stages`).

Why the real plan: the first ``dagster asset materialize --select daily_sessions`` on 1 M events
after a server start took 16.2–16.3 s and the next ones 13.4–13.8 s (2026-12-05) after a warm-up
job of another shape (a JDBC read returning nothing and a smaller aggregation over generated
rows); after this one, 14.1 s. The JIT compiles the code of the plans that run with volume.
"""

from __future__ import annotations

import sys
import time

from clickguard.settings import Settings, get_settings
from clickguard.spark import sql_session_conf
from clickguard_dagster.assets.sessions import sessionize
from clickguard_dagster.batch import drop_stage, stage
from clickguard_dagster.resources import PostgresResource, build_resources

# events' columns as the session assets read them (EVENT_COLUMNS), 5 events per second of 2020
WARM_EVENTS = """(SELECT 'warm-' || g AS event_id,
  timestamptz '2020-01-01 00:00:00+00' + g * interval '200 milliseconds' AS event_ts,
  timestamptz '2020-01-01 00:00:00+00' AS commit_ts, (g % 40000)::bigint AS session_id,
  (ARRAY['click', 'click', 'view', 'add_to_cart', 'purchase'])[1 + g % 5] AS event_type,
  (g % 500)::bigint AS item_id, 'c' || (g % 7) AS category, (g % 1000)::numeric(12,2) AS price,
  (1 + g % 3)::int AS quantity, '/p/' || (g % 20) AS page
  FROM generate_series(1, {events}) g) AS w"""


def warm(settings: Settings, rounds: int = 2, events: int = 300_000) -> float:
    """Run ``rounds`` of daily_sessions' compute + stage on the Connect server; seconds."""
    from pyspark.sql import SparkSession

    t0 = time.monotonic()
    postgres: PostgresResource = build_resources(settings)["postgres"]  # plain values
    remote = f"sc://127.0.0.1:{settings.spark_connect_port}"
    conf: dict[str, bool | float | int | str | None] = {**sql_session_conf(settings)}
    spark = SparkSession.builder.remote(remote).config(map=conf).getOrCreate()
    try:
        for _ in range(rounds):
            ev = spark.read.jdbc(
                postgres.jdbc_url, WARM_EVENTS.format(events=int(events)),
                predicates=["session_id % 2 = 0", "session_id % 2 = 1"],
                properties={**postgres.jdbc_properties, "fetchsize": "10000"},
            )
            drop_stage(postgres, stage(postgres, "daily_sessions", sessionize(ev, 30)))
    finally:
        spark.stop()
    return time.monotonic() - t0


if __name__ == "__main__":
    if sys.argv[1:]:
        sys.exit("usage: python -m clickguard_dagster.warm")
    print(f"{warm(get_settings()):.1f}")
