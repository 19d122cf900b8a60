"""Asset checks: keys, data quality (Great Expectations), idempotency, SLO, freshness."""
