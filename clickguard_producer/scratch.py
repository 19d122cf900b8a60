"""Scratch topics for benchmarks and tests: created fresh, same shape as the raw topic, removed.

Benchmarks and tests must not write into ``km.events.raw.v1``: the streaming job (and its exact
accounting tests) read that topic from the earliest offset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from clickguard import kafka as kafka_helpers
from clickguard.settings import Settings

log = logging.getLogger(__name__)


class TopicError(RuntimeError):
    """A scratch topic could not be created, read or made fully replicated in time."""


def create_fresh(settings: Settings, topic: str, retention_ms: int = 15 * 60_000) -> None:
    """(Re)create ``topic`` empty, like the raw topic (partitions, RF, min ISR, LogAppendTime)."""
    delete(settings, topic)
    spec = kafka_helpers.TopicSpec(
        topic,
        settings.topic_raw_partitions,
        {
            "min.insync.replicas": str(settings.topic_min_isr),
            "unclean.leader.election.enable": "false",
            "message.timestamp.type": "LogAppendTime",
            "retention.ms": str(retention_ms),
        },
    )
    for _ in range(30):  # a just-deleted topic may still be "marked for deletion"
        try:
            kafka_helpers.ensure_topics(settings, [spec])
            break
        except Exception as exc:
            if "deletion" not in str(exc).lower():
                raise
            time.sleep(1)
    wait_full_isr(settings, topic)


def delete(settings: Settings, topic: str) -> None:
    client = kafka_helpers.admin(settings)
    if topic not in client.list_topics(timeout=10).topics:
        return
    for fut in client.delete_topics([topic], operation_timeout=30).values():
        fut.result()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and topic in client.list_topics(timeout=10).topics:
        time.sleep(0.5)


@contextmanager
def scratch_topic(settings: Settings, topic: str) -> Iterator[str]:
    create_fresh(settings, topic)
    try:
        yield topic
    finally:
        delete(settings, topic)


def wait_full_isr(settings: Settings, topic: str, timeout: float = 180.0) -> None:
    """Until every partition of ``topic`` has a leader and a full ISR on all brokers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if kafka_helpers.cluster_health(settings, topics=[topic]).ready(settings.kafka_nodes):
                return
        except Exception:  # noqa: BLE001 - a restarting broker answers nothing for a while
            pass
        time.sleep(0.5)
    raise TopicError(f"{topic}: partitions without a full ISR after {timeout:.0f}s")


def total_offsets(settings: Settings, topic: str) -> int:
    """Sum of the end offsets of every partition (= records ever written)."""
    for _ in range(60):
        try:
            offs = kafka_helpers.end_offsets(settings, topic, timeout=5)
        except KafkaException as exc:  # a broker stopped mid-query (its handle destroyed)
            log.warning("end offsets of %s: %s; retrying", topic, exc)
            offs = {}
        if offs and len(offs) == settings.topic_raw_partitions:
            return sum(offs.values())
        time.sleep(1)
    raise TopicError(f"could not read the end offsets of {topic}")


def read_all(settings: Settings, topic: str, timeout: float = 60.0) -> list[Message]:
    """Every record of ``topic`` from offset 0 up to the end offsets seen at the call."""
    ends = kafka_helpers.end_offsets(settings, topic, timeout=10)
    consumer = Consumer(kafka_helpers.client_config(settings, {
        "group.id": f"clickguard-read-all-{time.monotonic_ns()}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    }))
    consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
    want = sum(ends.values())
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want and time.monotonic() < deadline:
            for m in consumer.consume(10_000, timeout=1.0):
                offset, partition = m.offset(), m.partition()
                if m.error() is None and offset is not None and partition is not None \
                        and offset < ends[partition]:
                    got.append(m)
    finally:
        consumer.close()
    if len(got) != want:
        raise TopicError(f"read {len(got)} of {want} records of {topic} in {timeout:.0f}s")
    return got
