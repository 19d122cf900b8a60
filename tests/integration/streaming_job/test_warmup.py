"""The driver's start-up (warm-up, wait for Kafka) against the real PostgreSQL and Kafka (no Spark
needed)."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid

import pytest
from confluent_kafka.admin import NewTopic
from psycopg.pq import TransactionStatus

from clickguard import db, stream_state
from clickguard import kafka as kafka_helpers
from clickguard.settings import Settings
from clickguard_stack.manager import Stack
from streaming_job.job import wait_for_kafka
from streaming_job.sink import BatchSink

pytestmark = pytest.mark.integration


def test_warm_up_leaves_no_open_transaction(stack: Stack, settings: Settings) -> None:
    """After the warm-up, a batch's ``with conn.transaction()`` must be a real transaction that
    COMMITS (not a savepoint inside one the warm-up left open, which would never commit)."""
    sink = BatchSink(settings, query_id="warm-up-test")
    try:
        assert sink.warm_up() >= 0
        assert sink.pg.conn is not None and sink.producer is not None  # opened: warm for batch 1
        assert sink.pg.conn.info.transaction_status is TransactionStatus.IDLE
        component = f"warm-up-test-{uuid.uuid4().hex[:8]}"
        with sink.pg.conn.transaction():
            sink.pg.conn.execute(stream_state.HEARTBEAT, (component, "test", "{}"))
        with db.connect(settings, "reader", autocommit=True) as other:
            seen = other.execute(
                "SELECT count(*) FROM stream_heartbeat WHERE component = %s", (component,)
            ).fetchone()
        assert seen == (1,)  # visible from another session: committed
    finally:
        if sink.pg.conn is not None:
            with sink.pg.conn.transaction():
                sink.pg.conn.execute("DELETE FROM stream_heartbeat WHERE component LIKE "
                                  "'warm-up-test-%%'")
        sink.close()


def test_a_first_start_waits_for_the_raw_topic_to_answer(
    stack: Stack, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """`stack up` starts the stream while the brokers start: the driver waits until the raw
    topic answers (here: created 2 s later), then goes on."""
    topic = f"test.wait.{uuid.uuid4().hex[:8]}"
    private = settings.model_copy(update={"topic_raw": topic})
    admin = kafka_helpers.admin(settings)
    timer = threading.Timer(2.0, lambda: admin.create_topics(
        [NewTopic(topic, num_partitions=2, replication_factor=3)]))
    caplog.set_level(logging.INFO, logger="streaming_job.job")
    t0 = time.monotonic()
    timer.start()
    try:
        assert wait_for_kafka(private, timeout=60) is True
        waited = time.monotonic() - t0
        assert 1.5 < waited < 30
        assert f"waiting for Kafka (topic {topic} has no partitions yet)" in caplog.text
        assert "Kafka answers after" in caplog.text
    finally:
        timer.join()
        admin.delete_topics([topic])


def test_the_wait_for_kafka_is_bounded(settings: Settings,
                                       caplog: pytest.LogCaptureFixture) -> None:
    """Brokers that never answer (nothing listens on the port): the driver goes on after the
    timeout and says so; the query start then reports the error."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nowhere = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}"})
    caplog.set_level(logging.INFO, logger="streaming_job.job")
    t0 = time.monotonic()
    assert wait_for_kafka(nowhere, timeout=3) is False
    assert 3 <= time.monotonic() - t0 < 15
    assert "Kafka did not answer in 3s" in caplog.text
