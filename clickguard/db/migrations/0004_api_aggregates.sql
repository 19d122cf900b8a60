-- Pre-aggregates for the serving API (api/): no request counts a whole table.
--
-- Maintained by statement-level triggers with transition tables, so a streaming micro-batch that
-- upserts thousands of anomalies updates each aggregate row once per statement:
--   anomaly_type_stats     per anomaly_type: count, score sum, last detected_at  (/anomalies/types,
--                          /stats total_anomalies and last_anomaly_detected)
--   anomaly_hourly         per UTC hour of detected_at: count, score sum, distinct sessions
--                          (/anomalies/timeline)
--   anomaly_hour_sessions  per (hour, session_id): anomalies of that session in that hour; the
--                          0 <-> 1 transitions keep anomaly_hourly.unique_sessions exact
--   api_table_counts       row counts of batch tables the API reports (popular_items)
-- INSERT, UPDATE (score, type, time or session may change) and DELETE are all handled by
-- subtracting the old row and adding the new one. Triggers run as the table owner (writer).

CREATE TABLE IF NOT EXISTS anomaly_type_stats (
    anomaly_type  text PRIMARY KEY,
    anomaly_count bigint           NOT NULL DEFAULT 0,
    score_sum     double precision NOT NULL DEFAULT 0,
    last_detected timestamptz
);

CREATE TABLE IF NOT EXISTS anomaly_hourly (
    hour            timestamptz PRIMARY KEY,
    anomaly_count   bigint           NOT NULL DEFAULT 0,
    score_sum       double precision NOT NULL DEFAULT 0,
    unique_sessions bigint           NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS anomaly_hour_sessions (
    hour       timestamptz NOT NULL,
    session_id bigint      NOT NULL,
    anomalies  bigint      NOT NULL,
    PRIMARY KEY (hour, session_id)
);

CREATE TABLE IF NOT EXISTS api_table_counts (
    table_name text PRIMARY KEY,
    row_count  bigint NOT NULL DEFAULT 0
);

-- Serves /anomalies?anomaly_type=... (newest first) and the last_detected recomputation.
CREATE INDEX IF NOT EXISTS anomalies_type_detected_idx ON anomalies (anomaly_type, detected_at DESC);
-- Serves /anomalies?min_score=... when few rows qualify.
CREATE INDEX IF NOT EXISTS anomalies_score_idx ON anomalies (anomaly_score);

-- One signed contribution of an anomaly row to the aggregates.
DO $$ BEGIN
    CREATE TYPE anomaly_delta AS (
        anomaly_type text, session_id bigint, detected_at timestamptz, score double precision,
        sign integer
    );
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE OR REPLACE FUNCTION anomaly_agg_apply(deltas anomaly_delta[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- per type: counts and sums are additive; last_detected only grows on additions
    INSERT INTO anomaly_type_stats AS s (anomaly_type, anomaly_count, score_sum, last_detected)
    SELECT d.anomaly_type, sum(d.sign), sum(d.sign * d.score),
           max(d.detected_at) FILTER (WHERE d.sign > 0)
    FROM unnest(deltas) AS d
    GROUP BY d.anomaly_type
    ON CONFLICT (anomaly_type) DO UPDATE
    SET anomaly_count = s.anomaly_count + excluded.anomaly_count,
        score_sum = s.score_sum + excluded.score_sum,
        last_detected = greatest(s.last_detected, excluded.last_detected);

    -- a removed row may have been the latest of its type: recompute from the index
    UPDATE anomaly_type_stats AS s
    SET last_detected = (SELECT max(a.detected_at) FROM anomalies a
                         WHERE a.anomaly_type = s.anomaly_type)
    WHERE s.anomaly_type IN (SELECT d.anomaly_type FROM unnest(deltas) AS d WHERE d.sign < 0);
    DELETE FROM anomaly_type_stats WHERE anomaly_count <= 0;

    -- per (hour, session): which sessions appear or disappear in an hour
    WITH d AS (
        SELECT date_trunc('hour', x.detected_at, 'UTC') AS hour, x.session_id,
               sum(x.sign) AS n
        FROM unnest(deltas) AS x
        WHERE x.session_id IS NOT NULL
        GROUP BY 1, 2
    ), up AS (
        INSERT INTO anomaly_hour_sessions AS h (hour, session_id, anomalies)
        SELECT d.hour, d.session_id, d.n FROM d WHERE d.n <> 0
        ON CONFLICT (hour, session_id) DO UPDATE SET anomalies = h.anomalies + excluded.anomalies
        RETURNING h.hour, h.session_id, h.anomalies
    ), moved AS (
        SELECT up.hour,
               sum(CASE WHEN up.anomalies - d.n <= 0 AND up.anomalies > 0 THEN 1
                        WHEN up.anomalies - d.n > 0 AND up.anomalies <= 0 THEN -1
                        ELSE 0 END) AS sessions
        FROM up JOIN d USING (hour, session_id)
        GROUP BY up.hour
    ), hourly AS (
        SELECT date_trunc('hour', x.detected_at, 'UTC') AS hour, sum(x.sign) AS n,
               sum(x.sign * x.score) AS score
        FROM unnest(deltas) AS x
        GROUP BY 1
    )
    INSERT INTO anomaly_hourly AS a (hour, anomaly_count, score_sum, unique_sessions)
    SELECT hourly.hour, hourly.n, hourly.score, coalesce(moved.sessions, 0)
    FROM hourly LEFT JOIN moved USING (hour)
    ON CONFLICT (hour) DO UPDATE
    SET anomaly_count = a.anomaly_count + excluded.anomaly_count,
        score_sum = a.score_sum + excluded.score_sum,
        unique_sessions = a.unique_sessions + excluded.unique_sessions;

    DELETE FROM anomaly_hour_sessions WHERE anomalies <= 0;
    DELETE FROM anomaly_hourly WHERE anomaly_count <= 0;
END $$;

CREATE OR REPLACE FUNCTION anomalies_agg_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM anomaly_agg_apply(ARRAY(
        SELECT ROW(n.anomaly_type, n.session_id, n.detected_at, n.anomaly_score, 1)::anomaly_delta
        FROM new_rows n));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION anomalies_agg_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM anomaly_agg_apply(ARRAY(
        SELECT ROW(o.anomaly_type, o.session_id, o.detected_at, o.anomaly_score, -1)::anomaly_delta
        FROM old_rows o
        UNION ALL
        SELECT ROW(n.anomaly_type, n.session_id, n.detected_at, n.anomaly_score, 1)::anomaly_delta
        FROM new_rows n));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION anomalies_agg_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM anomaly_agg_apply(ARRAY(
        SELECT ROW(o.anomaly_type, o.session_id, o.detected_at, o.anomaly_score, -1)::anomaly_delta
        FROM old_rows o));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION anomalies_agg_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM anomaly_type_stats;
    DELETE FROM anomaly_hourly;
    DELETE FROM anomaly_hour_sessions;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS anomalies_agg_insert ON anomalies;
CREATE TRIGGER anomalies_agg_insert AFTER INSERT ON anomalies
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION anomalies_agg_insert();
DROP TRIGGER IF EXISTS anomalies_agg_update ON anomalies;
CREATE TRIGGER anomalies_agg_update AFTER UPDATE ON anomalies
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION anomalies_agg_update();
DROP TRIGGER IF EXISTS anomalies_agg_delete ON anomalies;
CREATE TRIGGER anomalies_agg_delete AFTER DELETE ON anomalies
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION anomalies_agg_delete();
DROP TRIGGER IF EXISTS anomalies_agg_truncate ON anomalies;
CREATE TRIGGER anomalies_agg_truncate AFTER TRUNCATE ON anomalies
    FOR EACH STATEMENT EXECUTE FUNCTION anomalies_agg_truncate();

-- Row count of popular_items for /stats total_popular_items.
CREATE OR REPLACE FUNCTION table_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE api_table_counts SET row_count = 0 WHERE table_name = TG_TABLE_NAME;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO delta FROM new_rows;
    ELSE
        SELECT -count(*) INTO delta FROM old_rows;
    END IF;
    INSERT INTO api_table_counts AS c (table_name, row_count) VALUES (TG_TABLE_NAME, delta)
    ON CONFLICT (table_name) DO UPDATE SET row_count = c.row_count + excluded.row_count;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS popular_items_count_insert ON popular_items;
CREATE TRIGGER popular_items_count_insert AFTER INSERT ON popular_items
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION table_count_change();
DROP TRIGGER IF EXISTS popular_items_count_delete ON popular_items;
CREATE TRIGGER popular_items_count_delete AFTER DELETE ON popular_items
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION table_count_change();
DROP TRIGGER IF EXISTS popular_items_count_truncate ON popular_items;
CREATE TRIGGER popular_items_count_truncate AFTER TRUNCATE ON popular_items
    FOR EACH STATEMENT EXECUTE FUNCTION table_count_change();

-- Backfill from rows written before this migration (the triggers see only later changes; the
-- migration holds its lock, so no writes slip in between).
LOCK TABLE anomalies, popular_items IN SHARE ROW EXCLUSIVE MODE;
DELETE FROM anomaly_type_stats;
DELETE FROM anomaly_hourly;
DELETE FROM anomaly_hour_sessions;
SELECT anomaly_agg_apply(ARRAY(
    SELECT ROW(a.anomaly_type, a.session_id, a.detected_at, a.anomaly_score, 1)::anomaly_delta
    FROM anomalies a));
INSERT INTO api_table_counts (table_name, row_count)
SELECT 'popular_items', count(*) FROM popular_items
ON CONFLICT (table_name) DO UPDATE SET row_count = excluded.row_count;
