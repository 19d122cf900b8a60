-- Dagster orchestration state (clickguard_dagster/): alert lifecycle history and the per-day
-- change tracking that makes the batch assets incremental.

-- One row per alert decision that must reach a human (OPEN, ESCALATE, REMIND, RESOLVED).
-- Written BEFORE the Slack call (status 'pending') and updated after it, so a sensor restarted
-- from an older cursor finds the decision here: a sent alert is not repeated, a pending one
-- is delivered instead of lost. `state` is the lifecycle state after this decision.
CREATE TABLE IF NOT EXISTS alert_history (
    id            bigserial PRIMARY KEY,
    alert_key     text        NOT NULL,
    seq           bigint      NOT NULL,
    transition    text        NOT NULL,
    severity      text        NOT NULL,
    new_messages  bigint      NOT NULL,
    rate_per_min  double precision NOT NULL,
    status        text        NOT NULL DEFAULT 'pending',
    delivered_via text,
    message       jsonb       NOT NULL,
    state         jsonb       NOT NULL,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    UNIQUE (alert_key, seq)
);
CREATE INDEX IF NOT EXISTS alert_history_key_idx ON alert_history (alert_key, seq DESC);

-- What each batch asset last computed per day: the source rows it saw (count and newest
-- ingestion/update time). A day whose source stats differ is recomputed; others are skipped.
CREATE TABLE IF NOT EXISTS asset_day_watermarks (
    asset_key     text        NOT NULL,
    day           date        NOT NULL,
    source_rows   bigint      NOT NULL,
    source_max_ts timestamptz,
    output_rows   bigint      NOT NULL,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    run_id        text,
    PRIMARY KEY (asset_key, day)
);
