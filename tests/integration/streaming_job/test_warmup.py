"""The driver's start-up warm-up against the real PostgreSQL and Kafka (no Spark needed)."""

from __future__ import annotations

import uuid

import pytest
from psycopg.pq import TransactionStatus

from clickguard import db
from clickguard.settings import Settings
from clickguard_stack.manager import Stack
from streaming_job.sink import HEARTBEAT, BatchSink

pytestmark = pytest.mark.integration


def test_warm_up_leaves_no_open_transaction(stack: Stack, settings: Settings) -> None:
    """After the warm-up, a batch's ``with conn.transaction()`` must be a real transaction that
    COMMITS (not a savepoint inside one the warm-up left open, which would never commit)."""
    sink = BatchSink(settings, query_id="warm-up-test")
    try:
        assert sink.warm_up() >= 0
        assert sink.conn is not None and sink.producer is not None  # opened: warm for batch 1
        assert sink.conn.info.transaction_status is TransactionStatus.IDLE
        component = f"warm-up-test-{uuid.uuid4().hex[:8]}"
        with sink.conn.transaction():
            sink.conn.execute(HEARTBEAT, (component, "test", "{}"))
        with db.connect(settings, "reader", autocommit=True) as other:
            seen = other.execute(
                "SELECT count(*) FROM stream_heartbeat WHERE component = %s", (component,)
            ).fetchone()
        assert seen == (1,)  # visible from another session: committed
    finally:
        if sink.conn is not None:
            with sink.conn.transaction():
                sink.conn.execute("DELETE FROM stream_heartbeat WHERE component LIKE "
                                  "'warm-up-test-%%'")
        sink.close()
