-- `clickguard_attach_event_day` one caller at a time: since `clickguard stack up` (db.migrate)
-- also creates the days ahead, it may run while the hourly Dagster job `event_partitions` does;
-- both would see a day missing and the second CREATE TABLE would fail. A transaction-scoped
-- advisory lock makes the second caller wait and then find the day there (returns false).

CREATE OR REPLACE FUNCTION clickguard_attach_event_day(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    part text := clickguard_event_partition(day);
    lo timestamptz := (day::timestamp AT TIME ZONE 'UTC');
    hi timestamptz := ((day + 1)::timestamp AT TIME ZONE 'UTC');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('clickguard_attach_event_day'));
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
