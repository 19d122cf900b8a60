-- Retention (clickguard/db/partitions.py, trim_tables) deletes late_events by arrival time:
-- an index on it keeps each chunk's lookup a range scan.
CREATE INDEX IF NOT EXISTS late_events_detected_idx ON late_events (detected_at);
