-- The original Kafka headers of dead-lettered records (issue 9), so `dlq_replay` re-sends
-- exactly key, value and headers. Parallel arrays in the record's header order (keys may
-- repeat); keys as bytea because a header key, unlike text, may contain U+0000. NULL = the
-- record had no headers or was dead-lettered before this migration.
ALTER TABLE dlq_events ADD COLUMN IF NOT EXISTS raw_header_keys bytea[];
ALTER TABLE dlq_events ADD COLUMN IF NOT EXISTS raw_header_values bytea[];
