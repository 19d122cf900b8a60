-- Warm-standby streaming drivers (streaming_job/lease.py): one lease per stream (checkpoint).
-- Only the holder runs the streaming query; `epoch` is the fencing token: every batch commit
-- checks it in the same transaction (SELECT ... FOR SHARE), so a driver that lost the lease
-- (paused, partitioned) commits nothing. `holder_backend` is the holder's lease connection
-- (pg_backend_pid): when that session is gone (the process died) a standby takes over at once
-- instead of waiting for `expires_at`.
CREATE TABLE IF NOT EXISTS stream_lease (
    name           text        PRIMARY KEY,
    holder         text,
    holder_backend integer,
    epoch          bigint      NOT NULL DEFAULT 0,
    acquired_at    timestamptz,
    renewed_at     timestamptz,
    expires_at     timestamptz
);

-- Which driver (lease holder and epoch) committed each batch; NULL for older rows.
ALTER TABLE batch_ledger ADD COLUMN IF NOT EXISTS driver text;
ALTER TABLE batch_ledger ADD COLUMN IF NOT EXISTS driver_epoch bigint;
