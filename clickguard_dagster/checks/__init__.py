"""Asset checks: keys, data quality (Great Expectations), idempotency, SLO, freshness.

Checks judge the snapshot the asset computed: the batch checks read each day's source rows up to
the day mark the materialization recorded with its rows (``batch.last_run_marks``, see the
``clickguard_dagster.batch`` docstring), the SLO target check recomputes the report's own
window; rows the stream adds later cannot make a correct asset fail.
"""
