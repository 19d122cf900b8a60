-- CRITICAL alerts also go by email (clickguard_dagster/sensors/outbox.py). Each channel is
-- tracked on its own, so a retry after a failed email does not post to Slack again.
-- email_status: NULL = not needed (not CRITICAL), 'sent', 'failed', 'logged' (no SMTP host).
ALTER TABLE alert_history ADD COLUMN IF NOT EXISTS email_status text;
ALTER TABLE alert_history ADD COLUMN IF NOT EXISTS email_error text;
