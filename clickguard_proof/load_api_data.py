"""Bulk loader of benchmark data for the serving API (≥ 10 M events, ≥ 100 k anomalies).

Rows are generated inside PostgreSQL with ``generate_series`` (no client round trips), in chunks so
progress is visible. Every generated key starts with ``bench-`` (events, anomaly entities), so the
load is idempotent: a chunk whose last row already exists is skipped. Batch tables get 90 days of
rows so /metrics/summary, /items/* and /stats have realistic work to do.

    python -m clickguard_proof.load_api_data --events 10000000 --anomalies 100000

Events follow the contract (clickguard.contract): only its event types (checked at import),
price and quantity on purchases only, millisecond event/ingest times, and a latency chain
ingest <= kafka <= batch start <= commit <= load time, as the stream stores them. It is a
backfill: rows carry past commit times, so batch assets that already ran must be rematerialized
with ``full_refresh: true`` (their incremental plan and snapshot marks assume the database
stamps commit times as rows arrive).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import click

from clickguard import db
from clickguard.contract import EVENT_TYPES
from clickguard.db import partitions
from clickguard.settings import Settings, get_settings

CHUNK = 1_000_000
DAYS = 90
ITEMS_PER_DAY = 1_000
CATEGORIES = 40
SPAN_HOURS = 240  # events spread over the last 10 days, so /slo and /stream see recent rows
# event i gets the first type whose modulus divides i, else DEFAULT_TYPE
TYPE_MIX = (("purchase", 50), ("checkout", 40), ("add_to_cart", 10), ("page_view", 4))
DEFAULT_TYPE = "click"
if not {t for t, _ in TYPE_MIX} | {DEFAULT_TYPE} <= set(EVENT_TYPES):
    raise ValueError(f"bench event types must be contract types {EVENT_TYPES}")
TYPE_SQL = (
    "CASE " + " ".join(f"WHEN i %% {m} = 0 THEN '{t}'" for t, m in TYPE_MIX)
    + f" ELSE '{DEFAULT_TYPE}' END"
)

EVENTS_SQL = f"""
INSERT INTO events (event_id, event_ts, ingest_ts, kafka_ts, batch_start_ts, commit_ts, source,
    session_id, user_id, event_type, item_id, category, price, quantity, page, referrer,
    kafka_partition, kafka_offset, batch_id)
SELECT 'bench-' || lpad(i::text, 12, '0'),
       t, t + interval '3 ms', t + interval '15 ms',
       t + make_interval(secs => 0.2 + (i %% 7) * 0.05),
       t + make_interval(secs => 0.2 + (i %% 7) * 0.05 + 0.2 + (i %% 11) * 0.05),
       'bench', i / 20, i / 200,
       {TYPE_SQL},
       (i * 7919) %% 50000, 'cat-' || ((i * 7919) %% 50000) %% %(categories)s,
       CASE WHEN i %% 50 = 0 THEN ((i %% 9000) / 100.0 + 1)::numeric(12, 2) END,
       CASE WHEN i %% 50 = 0 THEN 1 + i %% 3 END,
       '/p/' || (i %% 100), NULL, (i %% 6)::int, i / 6, i / 5000
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i,
     -- millisecond times (the contract's timestamp-millis); the newest commit is >= 0.3 s old
     LATERAL (SELECT date_trunc('milliseconds',
                     now() - make_interval(secs => 1.5 + (%(n)s - i) * %(step)s)) AS t) AS ts
ON CONFLICT (event_id, event_ts) DO NOTHING
"""

ANOMALIES_SQL = """
INSERT INTO anomalies (anomaly_type, entity, session_id, window_start, window_end, detected_at,
    updated_at, click_count, unique_items, anomaly_score, observed, threshold)
SELECT CASE WHEN i %% 3 = 0 THEN 'BOT_LIKE' ELSE 'HIGH_FREQUENCY' END,
       'bench-session-' || i, i, w, w + interval '10 seconds', w + interval '12 seconds',
       w + interval '12 seconds', 51 + i %% 150, 1 + i %% 5,
       (51 + i %% 150) / 50.0, 51 + i %% 150, 50
FROM generate_series(1, %(n)s::bigint) AS i,
     LATERAL (SELECT now() - make_interval(secs => i * %(step)s) AS w) AS ws
ON CONFLICT (anomaly_type, entity, window_start) DO NOTHING
"""

BATCH_SQL = [
    """
    INSERT INTO daily_metrics (metric_date, total_clicks, total_purchases, unique_sessions,
        unique_items, conversion_rate, avg_session_duration_sec, avg_clicks_per_session,
        total_revenue, avg_order_value)
    SELECT current_date - d, 100000 + d * 37, 2000 + d, 5000 + d * 3, 30000 + d,
           (2000 + d)::float / (5000 + d * 3), 300 + d, (100000 + d * 37)::float / (5000 + d * 3),
           (2000 + d) * 42.5, 42.5
    FROM generate_series(0, %(days)s - 1) AS d
    ON CONFLICT (metric_date) DO NOTHING
    """,
    """
    INSERT INTO popular_items (metric_date, item_id, category, click_count, purchase_count,
        revenue, rank, click_to_purchase_ratio)
    SELECT current_date - d, (r * 31 + d * 7) %% 50000, 'cat-' || (r %% %(categories)s),
           10000 - r * 5, 100 - r / 10, (100 - r / 10) * 9.5, r,
           (100 - r / 10)::float / (10000 - r * 5)
    FROM generate_series(0, %(days)s - 1) AS d, generate_series(1, %(items)s) AS r
    ON CONFLICT (metric_date, item_id) DO NOTHING
    """,
    """
    INSERT INTO popular_categories (metric_date, category, click_count, purchase_count,
        unique_items, revenue, rank)
    SELECT current_date - d, 'cat-' || c, 50000 - c * 100, 500 - c, 1000 - c, (500 - c) * 9.5,
           c + 1
    FROM generate_series(0, %(days)s - 1) AS d, generate_series(0, %(categories)s - 1) AS c
    ON CONFLICT (metric_date, category) DO NOTHING
    """,
    """
    INSERT INTO session_funnel (metric_date, funnel_stage, stage_order, session_count,
        percentage, drop_rate)
    SELECT current_date - d, s.stage, s.ord, 5000 / s.ord, 100.0 / s.ord,
           CASE WHEN s.ord = 1 THEN 0 ELSE 100.0 - 100.0 * (s.ord - 1) / s.ord END
    FROM generate_series(0, %(days)s - 1) AS d,
         (VALUES ('session', 1), ('click', 2), ('add_to_cart', 3), ('purchase', 4))
         AS s(stage, ord)
    ON CONFLICT (metric_date, funnel_stage) DO NOTHING
    """,
    """
    INSERT INTO dlq_events (source_topic, source_partition, source_offset, reason, detail,
        event_id, raw_value, kafka_ts, detected_at)
    SELECT %(topic)s, i %% 6, 1000000000 + i,
           (ARRAY['not_wire_format', 'avro_decode_error', 'missing_required'])[1 + i %% 3],
           'bench row', 'bench-dlq-' || i, '\\x00'::bytea,
           now() - make_interval(secs => i * 6), now() - make_interval(secs => i * 6)
    FROM generate_series(1, 10000) AS i
    ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
    """,
    """
    INSERT INTO batch_ledger (query_id, batch_id, started_at, committed_at, input_rows, stored,
        dlq, late, duplicates, anomalies, duration_ms, max_event_ts, watermark, offsets)
    SELECT 'bench', b, now() - make_interval(secs => (5000 - b) + 0.5),
           now() - make_interval(secs => 5000 - b), 1000, 990, 5, 3, 2, 1, 500,
           now() - make_interval(secs => 5000 - b), now() - make_interval(secs => 5600 - b),
           jsonb_build_object('0', jsonb_build_array(b * 500 - 499, b * 500),
                              '1', jsonb_build_array(b * 500 - 499, b * 500))
    FROM generate_series(1, 5000) AS b
    ON CONFLICT (query_id, batch_id) DO NOTHING
    """,
    """
    INSERT INTO stream_heartbeat (component, beat_at, status)
    VALUES ('bench', now(), 'running')
    ON CONFLICT (component) DO UPDATE SET beat_at = excluded.beat_at
    """,
]


def load(
    settings: Settings,
    events: int = 10_000_000,
    anomalies: int = 100_000,
    progress: Callable[[str], None] = print,
) -> dict[str, float]:
    """Load the benchmark data set; returns seconds spent per part."""
    timings: dict[str, float] = {}
    step = SPAN_HOURS * 3600 / max(events, 1)
    with db.connect(settings, "writer", autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        today = datetime.now(UTC).date()  # the events' days get their partitions, as live ones
        created = partitions.ensure_days(
            conn, today - timedelta(days=SPAN_HOURS // 24 + 1), today).created
        if created:
            progress(f"  day partitions created: {', '.join(created)}")
        t0 = time.monotonic()
        for lo in range(1, events + 1, CHUNK):
            hi = min(lo + CHUNK - 1, events)
            last = f"bench-{hi:012d}"
            if conn.execute("SELECT 1 FROM events WHERE event_id = %s", (last,)).fetchone():
                progress(f"  events {lo:,}-{hi:,}: present, skipped")
                continue
            t = time.monotonic()
            conn.execute(
                EVENTS_SQL,
                {"lo": lo, "hi": hi, "n": events, "step": step, "categories": CATEGORIES},
            )
            progress(f"  events {lo:,}-{hi:,} loaded in {time.monotonic() - t:.1f}s")
        timings["events"] = time.monotonic() - t0
        t = time.monotonic()
        conn.execute(ANOMALIES_SQL, {"n": anomalies, "step": 7 * 86400 / max(anomalies, 1)})
        timings["anomalies"] = time.monotonic() - t
        progress(f"  {anomalies:,} anomalies loaded in {timings['anomalies']:.1f}s")
        t = time.monotonic()
        for stmt in BATCH_SQL:
            conn.execute(stmt, {"days": DAYS, "items": ITEMS_PER_DAY, "categories": CATEGORIES,
                                "topic": settings.topic_raw})
        timings["batch_tables"] = time.monotonic() - t
        progress(f"  batch tables, DLQ, ledger loaded in {timings['batch_tables']:.1f}s")
        t = time.monotonic()
        for table in ("events", "anomalies", "popular_items", "dlq_events", "batch_ledger"):
            conn.execute(f"ANALYZE {table}")
        timings["analyze"] = time.monotonic() - t
    return timings


@click.command()
@click.option("--events", default=10_000_000, show_default=True)
@click.option("--anomalies", default=100_000, show_default=True)
def main(events: int, anomalies: int) -> None:
    """Load the API benchmark data set into the configured PostgreSQL."""
    timings = load(get_settings(), events, anomalies, progress=lambda m: click.echo(m))
    click.echo("done: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))


if __name__ == "__main__":
    main()
