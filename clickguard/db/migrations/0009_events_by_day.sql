-- `events` partitioned by UTC day of event_ts (issue 11): retention drops whole days instead of
-- deleting rows, and a query over a time range reads only its days' partitions.
--
-- Each day is `events_pYYYYMMDD`; rows of a day without a partition land in `events_default`
-- (events replayed from long ago, clocks far off). `clickguard_attach_event_day(day)` creates
-- a day's partition and moves that day's rows out of the default; the Dagster job
-- `event_partitions` (clickguard/db/partitions.py) calls it for the days ahead every hour and
-- detaches and drops the days past CLICKGUARD_EVENTS_RETENTION_DAYS.
--
-- The primary key becomes (event_id, event_ts): PostgreSQL requires the partition key in every
-- unique index. The stream's dedup (INSERT ... ON CONFLICT) is unchanged for what a producer
-- retry or a replay sends (the same event: same id, same event time); a record that reuses an
-- event_id with another event time is now stored as the distinct event it describes.

CREATE OR REPLACE FUNCTION clickguard_event_partition(day date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'events_p' || to_char(day, 'YYYYMMDD') $$;

CREATE OR REPLACE FUNCTION clickguard_attach_event_day(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := clickguard_event_partition(day);
    lo timestamptz := (day::timestamp AT TIME ZONE 'UTC');
    hi timestamptz := ((day + 1)::timestamp AT TIME ZONE 'UTC');
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN false;
    END IF;
    -- created apart and attached: ATTACH takes a SHARE UPDATE EXCLUSIVE lock on `events`, so the
    -- stream's inserts and the API's reads go on (CREATE ... PARTITION OF would block them)
    EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS)', part);
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (event_ts >= %L AND event_ts < %L)',
                   part, part || '_range', lo, hi);  -- lets ATTACH skip its validation scan
    IF to_regclass('events_default') IS NOT NULL THEN
        EXECUTE format('WITH moved AS (DELETE FROM events_default WHERE event_ts >= %L'
                       ' AND event_ts < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                       lo, hi, part);
    END IF;
    EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   part, lo, hi);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', part, part || '_range');
    RETURN true;
END $$;

DO $$
DECLARE
    day date;
BEGIN
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass('events')) <> 'r' THEN
        RETURN;  -- already partitioned
    END IF;
    ALTER TABLE events RENAME TO events_unpartitioned;
    ALTER INDEX events_pkey RENAME TO events_unpartitioned_pkey;
    ALTER INDEX events_event_ts_idx RENAME TO events_unpartitioned_event_ts_idx;
    ALTER INDEX events_session_ts_idx RENAME TO events_unpartitioned_session_ts_idx;
    ALTER INDEX events_commit_ts_idx RENAME TO events_unpartitioned_commit_ts_idx;

    CREATE TABLE events (LIKE events_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
        PARTITION BY RANGE (event_ts);
    ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (event_id, event_ts);
    CREATE INDEX events_event_ts_idx ON events (event_ts);
    CREATE INDEX events_session_ts_idx ON events (session_id, event_ts);
    CREATE INDEX events_commit_ts_idx ON events (commit_ts);
    CREATE TABLE events_default PARTITION OF events DEFAULT;

    -- a partition for each of the last 90 days that holds events, and today and tomorrow;
    -- older rows go to the default partition, which retention empties too
    FOR day IN
        SELECT DISTINCT (event_ts AT TIME ZONE 'UTC')::date FROM events_unpartitioned
        WHERE event_ts >= now() - interval '90 days' AND event_ts < now() + interval '2 days'
        UNION SELECT (now() AT TIME ZONE 'UTC')::date
        UNION SELECT (now() AT TIME ZONE 'UTC')::date + 1
    LOOP
        PERFORM clickguard_attach_event_day(day);
    END LOOP;
    INSERT INTO events SELECT * FROM events_unpartitioned;
    DROP TABLE events_unpartitioned;
END $$;
