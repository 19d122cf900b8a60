-- Core tables written by the streaming job (streaming_job/sink.py).
-- Every input record ends in exactly one of: events, dlq_events, late_events, or the
-- `duplicates` counter of batch_ledger. Owner: the writer role; the API's role only reads.

-- One row per unique, valid, on-time event. Latency columns give per-stage latency per event:
--   produce->Kafka = kafka_ts - ingest_ts, Kafka->Spark = batch_start_ts - kafka_ts,
--   Spark->DB = commit_ts - batch_start_ts.
CREATE TABLE IF NOT EXISTS events (
    event_id        text PRIMARY KEY,
    event_ts        timestamptz NOT NULL,
    ingest_ts       timestamptz NOT NULL,
    kafka_ts        timestamptz NOT NULL,
    batch_start_ts  timestamptz NOT NULL,
    commit_ts       timestamptz NOT NULL,
    source          text        NOT NULL,
    session_id      bigint      NOT NULL,
    user_id         bigint,
    event_type      text        NOT NULL,
    item_id         bigint,
    category        text,
    price           numeric(12, 2),
    quantity        integer,
    page            text,
    referrer        text,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    batch_id        bigint      NOT NULL
);
CREATE INDEX IF NOT EXISTS events_event_ts_idx ON events (event_ts);
CREATE INDEX IF NOT EXISTS events_session_ts_idx ON events (session_id, event_ts);
CREATE INDEX IF NOT EXISTS events_commit_ts_idx ON events (commit_ts);

-- Records that could not be decoded or failed validation, with the original bytes.
CREATE TABLE IF NOT EXISTS dlq_events (
    id               bigserial PRIMARY KEY,
    source_topic     text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    reason           text        NOT NULL,
    detail           text,
    event_id         text,
    raw_value        bytea,
    raw_key          bytea,
    kafka_ts         timestamptz,
    detected_at      timestamptz NOT NULL,
    replayed_at      timestamptz,
    UNIQUE (source_topic, source_partition, source_offset)
);
CREATE INDEX IF NOT EXISTS dlq_events_detected_idx ON dlq_events (detected_at);
CREATE INDEX IF NOT EXISTS dlq_events_reason_idx ON dlq_events (reason, detected_at);

-- Valid events whose event time was older than the watermark when they arrived.
CREATE TABLE IF NOT EXISTS late_events (
    source_topic     text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    event_id         text        NOT NULL,
    event_ts         timestamptz NOT NULL,
    session_id       bigint      NOT NULL,
    event_type       text        NOT NULL,
    watermark        timestamptz NOT NULL,
    lateness_ms      bigint      NOT NULL,
    payload          jsonb       NOT NULL,
    detected_at      timestamptz NOT NULL,
    PRIMARY KEY (source_topic, source_partition, source_offset)
);
CREATE INDEX IF NOT EXISTS late_events_event_ts_idx ON late_events (event_ts);

-- Anomalies; idempotent key (type, entity, window start). `session_id` is set for session rules.
CREATE TABLE IF NOT EXISTS anomalies (
    id            bigserial PRIMARY KEY,
    anomaly_type  text             NOT NULL,
    entity        text             NOT NULL,
    session_id    bigint,
    window_start  timestamptz      NOT NULL,
    window_end    timestamptz      NOT NULL,
    detected_at   timestamptz      NOT NULL,
    updated_at    timestamptz      NOT NULL,
    click_count   integer          NOT NULL DEFAULT 0,
    unique_items  integer          NOT NULL DEFAULT 0,
    anomaly_score double precision NOT NULL,
    observed      double precision NOT NULL,
    threshold     double precision,
    baseline      double precision,
    details       jsonb            NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (anomaly_type, entity, window_start)
);
CREATE INDEX IF NOT EXISTS anomalies_detected_idx ON anomalies (detected_at DESC);
CREATE INDEX IF NOT EXISTS anomalies_session_idx ON anomalies (session_id, detected_at DESC);
CREATE INDEX IF NOT EXISTS anomalies_type_score_idx ON anomalies (anomaly_type, anomaly_score);

-- One row per committed micro-batch: the exactly-once ledger and the per-batch metrics.
-- A replayed (query_id, batch_id) is found here and skipped. `watermark` is the event-time
-- watermark in force for the NEXT batch (max event time so far minus the configured delay).
CREATE TABLE IF NOT EXISTS batch_ledger (
    query_id      text        NOT NULL,
    batch_id      bigint      NOT NULL,
    started_at    timestamptz NOT NULL,
    committed_at  timestamptz NOT NULL,
    input_rows    integer     NOT NULL,
    stored        integer     NOT NULL,
    dlq           integer     NOT NULL,
    late          integer     NOT NULL,
    duplicates    integer     NOT NULL,
    anomalies     integer     NOT NULL,
    duration_ms   integer     NOT NULL,
    max_event_ts  timestamptz,
    watermark     timestamptz,
    state_rows    bigint      NOT NULL DEFAULT 0,
    offsets       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (query_id, batch_id)
);
CREATE INDEX IF NOT EXISTS batch_ledger_committed_idx ON batch_ledger (committed_at DESC);

-- Per-minute counts that the TRAFFIC_SPIKE and ERROR_BURST rules read (scope: 'all' or
-- 'category'); incremented inside the batch transaction, so replays cannot double count.
CREATE TABLE IF NOT EXISTS minute_counts (
    scope   text        NOT NULL,
    key     text        NOT NULL,
    minute  timestamptz NOT NULL,
    events  bigint      NOT NULL DEFAULT 0,
    errors  bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key, minute)
);
CREATE INDEX IF NOT EXISTS minute_counts_minute_idx ON minute_counts (minute);

-- Liveness of the streaming job, written by its progress listener / supervisor.
CREATE TABLE IF NOT EXISTS stream_heartbeat (
    component   text PRIMARY KEY,
    beat_at     timestamptz NOT NULL,
    status      text        NOT NULL,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
