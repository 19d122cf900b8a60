"""Warm a just-started Spark Connect server with the batch assets' own Spark plans.

``python -m clickguard_dagster.warm`` (run by ``clickguard stack up`` after it starts the
``spark-connect`` node, in a process of its own: a Connect session puts pyspark's whole process
in Connect mode). Two rounds of ``daily_sessions``' computation over 300,000 events that
PostgreSQL generates (no table is read), staged through JDBC as the asset stages its rows, the
stage dropped after (a crash leaves it to :func:`clickguard_dagster.batch.sweep_stages`).

Why the real plan: with a warm-up job of another shape (a JDBC read returning nothing and a
smaller aggregation over generated rows) the first run of ``dagster asset materialize --select
daily_sessions`` on 1 M events after a server start was 2.2–2.7 s slower than the next ones,
with this one 0.7–1.6 s (docs/results/dagster-connect/2026-12-05/). The JIT compiles the code of
the plans that run with volume, and since the server's sessions share one code-generation
cache (clickguard_stack/connect_server.py) the classes Spark generates for these plans are the
ones the runs use.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime

from clickguard.settings import Settings, get_settings
from clickguard.spark import sql_session_conf
from clickguard_dagster.assets.sessions import sessionize
from clickguard_dagster.batch import drop_stage, read_days, stage
from clickguard_dagster.resources import PostgresResource, build_resources

# events' columns as the session assets read them (EVENT_COLUMNS), 5 events per second on
# 2020-01-01 (300,000 events span 16.7 hours of that day), all committed at WARM_MARK
WARM_DAY = date(2020, 1, 1)
WARM_MARK = datetime(2020, 1, 2, tzinfo=UTC)
WARM_EVENTS = """SELECT 'warm-' || g AS event_id,
  timestamptz '2020-01-01 00:00:00+00' + g * interval '200 milliseconds' AS event_ts,
  timestamptz '2020-01-01 00:00:00+00' AS commit_ts, (g % 40000)::bigint AS session_id,
  (ARRAY['click', 'click', 'view', 'add_to_cart', 'purchase'])[1 + g % 5] AS event_type,
  (g % 500)::bigint AS item_id, 'c' || (g % 7) AS category, (g % 1000)::numeric(12,2) AS price,
  (1 + g % 3)::int AS quantity, '/p/' || (g % 20) AS page
  FROM generate_series(1, {events}) g"""


def warm(settings: Settings, rounds: int = 2, events: int = 300_000) -> float:
    """Run ``rounds`` of daily_sessions' read, compute and stage on the Connect server;
    returns seconds."""
    from pyspark.sql import SparkSession

    t0 = time.monotonic()
    postgres: PostgresResource = build_resources(settings)["postgres"]  # plain values
    remote = f"sc://127.0.0.1:{settings.spark_connect_port}"
    conf: dict[str, bool | float | int | str | None] = {**sql_session_conf(settings)}
    spark = SparkSession.builder.remote(remote).config(map=conf).getOrCreate()
    try:
        for _ in range(rounds):
            # the asset's own read (one partition per day, up to its mark), compute and stage
            ev = read_days(spark, postgres, WARM_EVENTS.format(events=int(events)), "event_ts",
                           {WARM_DAY: WARM_MARK}, "commit_ts")
            sessions = sessionize(ev, settings.session_gap_minutes)
            drop_stage(postgres, stage(postgres, "daily_sessions", sessions))
    finally:
        spark.stop()
    return time.monotonic() - t0


if __name__ == "__main__":
    if sys.argv[1:]:
        sys.exit("usage: python -m clickguard_dagster.warm")
    print(f"{warm(get_settings()):.1f}")
