"""Known rows for the API tests, written with the writer role (as the stream and Dagster do)."""

from __future__ import annotations

import datetime as dt

import psycopg

ANCHOR = dt.date(2024, 3, 10)  # newest day of the batch tables
TOPIC = "km.events.raw.v1"


def seed_anomalies(conn: psycopg.Connection) -> None:
    """45 anomalies, 40 in the last ~13 h (about 3 an hour, sessions repeating within an hour) and
    5 at 41–45 h; two session rules and a session-less TRAFFIC_SPIKE; then an upsert that raises
    the score of every third row (the stream's ON CONFLICT DO UPDATE path)."""
    conn.execute(
        """
        INSERT INTO anomalies (anomaly_type, entity, session_id, window_start, window_end,
            detected_at, updated_at, click_count, unique_items, anomaly_score, observed, threshold)
        SELECT CASE WHEN i %% 4 = 0 THEN 'BOT_LIKE' WHEN i %% 9 = 0 THEN 'TRAFFIC_SPIKE'
                    ELSE 'HIGH_FREQUENCY' END,
               CASE WHEN i %% 9 = 0 AND i %% 4 <> 0 THEN 'all' ELSE 'session-' || (i / 6) %% 7 END,
               CASE WHEN i %% 9 = 0 AND i %% 4 <> 0 THEN NULL ELSE 1000 + (i / 6) %% 7 END,
               t - interval '10 seconds', t, t + make_interval(secs => i %% 3),
               now(), 50 + i, 1 + i %% 5, 1.0 + i / 10.0, 50 + i, 50
        FROM generate_series(1, 45) AS i,
             LATERAL (SELECT now() - make_interval(mins => CASE WHEN i <= 40 THEN i * 20
                                                              ELSE i * 60 END) AS t) AS ts
        """,
        {},
    )
    # the stream's upsert: same key, higher observed values (exercises the UPDATE trigger)
    conn.execute(
        """
        INSERT INTO anomalies (anomaly_type, entity, session_id, window_start, window_end,
            detected_at, updated_at, click_count, unique_items, anomaly_score, observed)
        SELECT anomaly_type, entity, session_id, window_start, window_end, detected_at, now(),
               click_count + 10, unique_items, anomaly_score + 0.5, observed + 10
        FROM anomalies WHERE id %% 3 = 0
        ON CONFLICT (anomaly_type, entity, window_start) DO UPDATE
        SET click_count = excluded.click_count, anomaly_score = excluded.anomaly_score,
            observed = excluded.observed, updated_at = excluded.updated_at
        """,
        {},
    )


def seed_batch_tables(conn: psycopg.Connection) -> None:
    """20 days of daily metrics/items ending at ANCHOR; funnel and categories for ANCHOR."""
    conn.execute(
        """
        INSERT INTO daily_metrics (metric_date, total_clicks, total_purchases, unique_sessions,
            unique_items, conversion_rate, avg_session_duration_sec, avg_clicks_per_session,
            total_revenue, avg_order_value)
        SELECT %(anchor)s::date - d, 1000 + d * 10, 20 + d, 100 + d, 300 + d, (20 + d) / 100.0,
               60.5 + d, (1000 + d * 10) / (100.0 + d), 123.45 + d, 6.17
        FROM generate_series(0, 19) AS d
        """,
        {"anchor": ANCHOR},
    )
    conn.execute(
        """
        INSERT INTO session_funnel VALUES
            (%(anchor)s, 'view', 1, 100, 100.0, 0.0), (%(anchor)s, 'cart', 3, 20, 20.0, 60.0),
            (%(anchor)s, 'click', 2, 50, 50.0, 50.0), (%(anchor)s, 'purchase', 4, 5, 5.0, 75.0)
        """,
        {"anchor": ANCHOR},
    )
    # item i: clicks grow over time for odd items, shrink for even ones; 30 items a day
    conn.execute(
        """
        INSERT INTO popular_items (metric_date, item_id, category, click_count, purchase_count,
            revenue, rank, click_to_purchase_ratio)
        SELECT %(anchor)s::date - d, i, CASE WHEN i %% 5 = 0 THEN NULL ELSE 'cat-' || (i %% 3) END,
               c, c / 10, c * 1.5, row_number() OVER (PARTITION BY d ORDER BY c DESC, i),
               (c / 10)::float8 / c
        FROM generate_series(0, 19) AS d, generate_series(1, 30) AS i,
             LATERAL (SELECT CASE WHEN i %% 2 = 1 THEN 100 + i * 3 + (19 - d) * i
                                  ELSE 400 + i * 2 + d * 5 END AS c) AS x
        """,
        {"anchor": ANCHOR},
    )
    conn.execute(
        """
        INSERT INTO popular_categories (metric_date, category, click_count, purchase_count,
            unique_items, revenue, rank)
        SELECT %(anchor)s::date, 'cat-' || c, 900 - c * 100, 90 - c, 10 - c, 99.5 - c, c + 1
        FROM generate_series(0, 5) AS c
        """,
        {"anchor": ANCHOR},
    )


def seed_stream(conn: psycopg.Connection, ledger_offsets: dict | None = None) -> None:
    """DLQ records (recent and old), 200 recent events with latencies, ledger rows, heartbeat."""
    conn.execute(
        """
        INSERT INTO dlq_events (source_topic, source_partition, source_offset, reason, detail,
            event_id, raw_value, kafka_ts, detected_at)
        SELECT %(topic)s, i %% 3, i,
               (ARRAY['not_wire_format', 'avro_decode_error', 'missing_required'])[1 + i %% 3],
               'detail ' || i, CASE WHEN i %% 2 = 0 THEN 'e-' || i END, '\\x00'::bytea,
               now() - make_interval(mins => i * 7), now() - make_interval(mins => i * 7)
        FROM generate_series(1, 30) AS i
        """,
        {"topic": TOPIC},
    )
    conn.execute(
        """
        INSERT INTO events (event_id, event_ts, ingest_ts, kafka_ts, batch_start_ts, commit_ts,
            source, session_id, event_type, kafka_partition, kafka_offset, batch_id)
        SELECT 'ev-' || i, t, t, t + make_interval(secs => i / 1000.0),
               t + make_interval(secs => 0.1 + i / 500.0),
               t + make_interval(secs => 0.3 + i / 250.0),
               'test', i %% 10, 'click', i %% 3, i, 1
        FROM generate_series(1, 200) AS i,
             LATERAL (SELECT now() - make_interval(secs => 30 + i) AS t) AS ts
        """,
        {},
    )
    # the sink's format (clickguard.ledger): {partition: [first, last]}
    offsets = ledger_offsets if ledger_offsets is not None else {"0": [0, 9], "1": [0, 19]}
    conn.execute(
        """
        INSERT INTO batch_ledger (query_id, batch_id, started_at, committed_at, input_rows, stored,
            dlq, late, duplicates, anomalies, duration_ms, max_event_ts, watermark, offsets)
        SELECT 'q', b, now() - make_interval(secs => 130 - b * 30) - interval '1 second',
               now() - make_interval(secs => 130 - b * 30), 100 * b, 90 * b, 5 * b, 3 * b, 2 * b,
               b, 250 * b, now(), now() - interval '10 minutes',
               CASE WHEN b = 4 THEN %(offsets)s::jsonb ELSE '{}'::jsonb END
        FROM generate_series(1, 4) AS b
        """,
        {"offsets": psycopg.types.json.Jsonb(offsets)},
    )
    conn.execute(
        "INSERT INTO stream_heartbeat (component, beat_at, status) VALUES"
        " ('job', now() - interval '3 seconds', 'running')"
    )
