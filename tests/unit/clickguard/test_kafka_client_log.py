"""A producer's own log lines reach Python logging as one readable line, not raw syslog text.

A real librdkafka producer pointed at a port nobody listens on: its connection failure is a
real event, logged by librdkafka and delivered by ``poll``.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest
from confluent_kafka import Producer

from clickguard import kafka as kafka_helpers
from clickguard.settings import Settings


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_failure_is_a_log_record_not_a_syslog_line(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    settings = Settings(_env_file=None, kafka_bootstrap=f"127.0.0.1:{port}")
    producer = Producer(kafka_helpers.producer_config(settings))
    with caplog.at_level(logging.WARNING, logger="clickguard.kafka.client"):
        producer.produce("t", b"x")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not caplog.records:
            producer.poll(0.2)
    producer.purge()
    lines = [r.getMessage() for r in caplog.records]
    assert lines, "librdkafka logged nothing about a refused connection"
    assert lines[0].startswith("kafka producer-"), lines[0]
    assert f"127.0.0.1:{port}" in lines[0] and "Connection refused" in lines[0], lines[0]
    assert "%3|" not in capfd.readouterr().err  # nothing went around logging to stderr


@pytest.mark.parametrize(("text", "level"), [
    ("[thrd:main]: Failed to acquire idempotence PID from broker 127.0.0.1:19092/1: Broker: "
     "Coordinator load in progress: retrying", logging.INFO),
    ("[thrd:main]: Failed to acquire idempotence PID from broker 127.0.0.1:19092/1: Broker: "
     "Not coordinator: retrying", logging.INFO),
    ("[thrd:main]: Failed to acquire idempotence PID from broker 127.0.0.1:19092/1: Broker: "
     "Cluster authorization failed: retrying", logging.WARNING),
    ("[thrd:127.0.0.1:19092/bootstrap]: 127.0.0.1:19092/1: Connect to ipv4#127.0.0.1:19092 "
     "failed: Connection refused", logging.WARNING),
])
def test_a_coordinator_still_loading_is_information(
    caplog: pytest.LogCaptureFixture, text: str, level: int
) -> None:
    """The line a fresh stack's first producer logged as a warning (the demo's first line): the
    client's own retry of a broker that is loading its coordinator state. Called the way
    confluent-kafka's log callback calls the logger."""
    with caplog.at_level(logging.DEBUG, logger="clickguard.kafka.client"):
        kafka_helpers.CLIENT_LOG.log(logging.WARNING, "%s [%s] %s", "GETPID",
                                     "rdkafka#producer-5", text)
    (record,) = caplog.records
    assert (record.levelno, record.levelname) == (level, logging.getLevelName(level))
    assert record.getMessage() == f"kafka producer-5: {text}"
