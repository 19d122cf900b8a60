-- Scratch rows of one micro-batch with CLICKGUARD_STREAM_DECODE=executors (issue 11): each
-- Spark task decodes and classifies its Kafka partition's records on an executor and COPYs them
-- here (kind = event | dlq | late), tagged with the batch's attempt and its task attempt id. The
-- driver then moves the rows of the tasks Spark counted into events, dlq_events and late_events
-- in the batch's one transaction and deletes the batch's scratch rows; rows of failed task
-- attempts or of a driver that died mid-batch are deleted with them (or by retention).
-- UNLOGGED: the rows are recomputable from Kafka, and a crash simply replays the batch.
CREATE UNLOGGED TABLE IF NOT EXISTS stream_stage (
    query_id          text        NOT NULL,
    batch_id          bigint      NOT NULL,
    attempt           text        NOT NULL,
    task              bigint      NOT NULL,
    kind              text        NOT NULL,
    staged_at         timestamptz NOT NULL DEFAULT now(),
    -- kind = event: the events columns the stream writes
    event_id          text,
    event_ts          timestamptz,
    ingest_ts         timestamptz,
    kafka_ts          timestamptz,
    source            text,
    session_id        bigint,
    user_id           bigint,
    event_type        text,
    item_id           bigint,
    category          text,
    price             numeric(12, 2),
    quantity          integer,
    page              text,
    referrer          text,
    kafka_partition   integer,
    kafka_offset      bigint,
    -- kind = dlq / late: the dlq_events / late_events columns
    reason            text,
    detail            text,
    raw_value         bytea,
    raw_key           bytea,
    raw_header_keys   bytea[],
    raw_header_values bytea[],
    watermark         timestamptz,
    lateness_ms       bigint,
    payload           jsonb,
    detected_at       timestamptz
);
CREATE INDEX IF NOT EXISTS stream_stage_batch_idx ON stream_stage (query_id, batch_id);
CREATE INDEX IF NOT EXISTS stream_stage_staged_idx ON stream_stage (staged_at);
