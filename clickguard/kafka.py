"""Kafka helpers shared by the producer, the stack, the sensors and the tests."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from clickguard.settings import Settings

# a broker that has just started is still loading its coordinator state; librdkafka retries
# the producer-id request by itself. A fresh stack's first producer logged it as a warning, the
# line before the demo's first status line. Stuck for good, it still ends loud: every record
# the producer holds fails its delivery after ``delivery.timeout.ms``.
_TRANSIENT = re.compile(
    r"Failed to acquire \w+ PID from broker .*: Broker: "
    r"(Coordinator load in progress|Coordinator not available|Not coordinator): retrying$"
)


class _ClientLines(logging.Filter):
    """librdkafka hands a line over as ``("%s [%s] %s", facility, client name, text)``; keep the
    client and the text: ``kafka producer-7: 127.0.0.1:29092/1: Connect to … failed: …``. A
    retry librdkafka makes of a coordinator still loading is information, not a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 3:
            _, name, text = record.args
            record.msg, record.args = "kafka %s: %s", (str(name).removeprefix("rdkafka#"), text)
            if record.levelno == logging.WARNING and _TRANSIENT.search(str(text)):
                record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


# the producers' own log lines (a broker gone, a retried producer id) as Python log records, so
# they read like the rest of a command's output instead of raw syslog lines on stderr
# ("%3|1796498293.856|FAIL|rdkafka#producer-7|…"); WARNING and up show without any setup
CLIENT_LOG = logging.getLogger("clickguard.kafka.client")
CLIENT_LOG.addFilter(_ClientLines())


class Brokers(Protocol):
    """What a client needs of a configuration: ``Settings`` or a Dagster ``KafkaResource``
    (same field names, so one function builds the client config of both)."""

    @property
    def bootstrap_servers(self) -> str: ...
    @property
    def kafka_security_protocol(self) -> str: ...
    @property
    def kafka_sasl_mechanism(self) -> str: ...
    @property
    def kafka_sasl_username(self) -> str | None: ...
    @property
    def kafka_sasl_password(self) -> str | None: ...
    @property
    def kafka_ssl_ca_location(self) -> str | Path | None: ...


def client_security(settings: Brokers) -> dict[str, str]:
    """librdkafka's security keys for ``settings`` ({} for PLAINTEXT, the local cluster).

    Every client the platform makes (producers, consumers, admin, the streaming job's DLQ and
    late producers, Dagster's sensors) goes through :func:`client_config`, which adds these.
    """
    protocol = settings.kafka_security_protocol.upper()
    if protocol == "PLAINTEXT":
        return {}
    conf = {"security.protocol": protocol}
    if protocol.startswith("SASL_"):
        if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
            raise ValueError(
                f"CLICKGUARD_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                "CLICKGUARD_KAFKA_SASL_USERNAME and CLICKGUARD_KAFKA_SASL_PASSWORD"
            )
        conf |= {
            "sasl.mechanism": settings.kafka_sasl_mechanism,
            "sasl.username": settings.kafka_sasl_username,
            "sasl.password": settings.kafka_sasl_password,
        }
    if protocol.endswith("SSL") and settings.kafka_ssl_ca_location:
        conf["ssl.ca.location"] = str(settings.kafka_ssl_ca_location)
    return conf


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def spark_kafka_options(settings: Brokers) -> dict[str, str]:
    """The same security for Spark's Kafka source (the Java client), as ``kafka.*`` options."""
    conf = client_security(settings)
    if not conf:
        return {}
    opts = {"kafka.security.protocol": conf["security.protocol"]}
    if "sasl.mechanism" in conf:
        module = ("plain.PlainLoginModule" if conf["sasl.mechanism"] == "PLAIN"
                  else "scram.ScramLoginModule")
        opts["kafka.sasl.mechanism"] = conf["sasl.mechanism"]
        opts["kafka.sasl.jaas.config"] = (
            f"org.apache.kafka.common.security.{module} required "
            f"username={_jaas_quote(conf['sasl.username'])} "
            f"password={_jaas_quote(conf['sasl.password'])};"
        )
    if "ssl.ca.location" in conf:  # the Java client reads a PEM trust store since Kafka 2.7
        opts["kafka.ssl.truststore.type"] = "PEM"
        opts["kafka.ssl.truststore.location"] = conf["ssl.ca.location"]
    return opts


ConfValue = str | int | float | bool


def client_config(
    settings: Brokers, conf: Mapping[str, ConfValue] | None = None
) -> dict[str, ConfValue]:
    """``conf`` plus the bootstrap servers and the security settings: a client's whole config."""
    return {"bootstrap.servers": settings.bootstrap_servers, **client_security(settings),
            **(conf or {})}


def admin(settings: Settings, timeout_ms: int = 5000) -> AdminClient:
    return AdminClient(
        client_config(
            settings,
            {
                "socket.timeout.ms": timeout_ms,
                "request.timeout.ms": timeout_ms,
                "log_level": 0,  # probes run while brokers are down; their errors are expected
            },
        )
    )


def producer_config(settings: Brokers, **overrides: object) -> dict[str, object]:
    """Durable producer defaults: every acknowledged record is on min ISR brokers."""
    conf: dict[str, object] = {
        **client_config(settings),
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "retries": 2_147_483_647,
        "retry.backoff.ms": 100,
        # a retry after a leader change goes out within 250 ms of the new leader being known
        # (a broker SIGKILL costs the session timeout, not that plus a 1-s backoff)
        "retry.backoff.max.ms": 250,
        "socket.connection.setup.timeout.ms": 5_000,  # a hung (not dead) broker: fail over sooner
        "delivery.timeout.ms": 120_000,
        "request.timeout.ms": 10_000,
        "compression.type": "lz4",
        # fewer, larger produce requests: with the 400 ms trigger, each broker's CPU at 1,000
        # events/s fell from ~17 to ~12 % of a core (docs/performance.md, third pass); an
        # event waits at most 50 ms in the producer
        "linger.ms": 50,
        "batch.size": 512 * 1024,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "socket.nagle.disable": True,
        "topic.metadata.refresh.interval.ms": 5000,
        "logger": CLIENT_LOG,  # delivered by poll()/flush(), which every producer here calls
    }
    conf.update(overrides)
    return conf


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The platform's topics: raw (LogAppendTime for latency), DLQ and late."""
    common = {
        "min.insync.replicas": str(settings.topic_min_isr),
        "unclean.leader.election.enable": "false",
    }
    return [
        TopicSpec(
            settings.topic_raw,
            settings.topic_raw_partitions,
            {**common, "message.timestamp.type": "LogAppendTime"},
        ),
        TopicSpec(settings.topic_dlq, settings.topic_partitions, dict(common)),
        TopicSpec(settings.topic_late, settings.topic_partitions, dict(common)),
    ]


def ensure_topics(
    settings: Settings, specs: list[TopicSpec] | None = None, timeout: float = 30.0
) -> list[str]:
    """Create missing topics (RF from settings) and align configs of existing ones.

    Returns the names created. Idempotent: a second call creates nothing.
    """
    client = admin(settings)
    specs = specs or topic_specs(settings)
    existing = set(client.list_topics(timeout=timeout).topics)
    new = [
        NewTopic(s.name, s.partitions, settings.topic_replication, config=s.config)
        for s in specs
        if s.name not in existing
    ]
    created: list[str] = []
    if new:
        for name, fut in client.create_topics(new, operation_timeout=timeout).items():
            try:
                fut.result()
                created.append(name)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    deadline = time.monotonic() + timeout
    for s in specs:
        if s.name in existing:
            entries = [
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in s.config.items()
            ]
            res = ConfigResource(ConfigResource.Type.TOPIC, s.name, incremental_configs=entries)
            while True:  # a cluster that just restarted may still be electing its controller
                try:
                    for fut in client.incremental_alter_configs([res]).values():
                        fut.result()
                    break
                except KafkaException as exc:
                    err = exc.args[0] if exc.args else None
                    if not getattr(err, "retriable", lambda: False)() or (
                        time.monotonic() >= deadline
                    ):
                        raise
                    time.sleep(0.5)
    return created


@dataclass
class ClusterHealth:
    broker_ids: frozenset[int]  # node ids of the registered brokers
    partitions: int
    under_replicated: int
    offline: int

    @property
    def brokers(self) -> int:
        return len(self.broker_ids)

    def ready(self, expected_brokers: int) -> bool:
        return (
            self.brokers >= expected_brokers
            and self.partitions > 0
            and self.under_replicated == 0
            and self.offline == 0
        )


def cluster_health(settings: Settings, topics: list[str] | None = None) -> ClusterHealth:
    """Registered brokers and the ISR state of the given topics (default: ours)."""
    md = admin(settings, 3000).list_topics(timeout=3)
    names = topics or [s.name for s in topic_specs(settings)]
    parts = under = offline = 0
    for name in names:
        t = md.topics.get(name)
        if t is None or t.error is not None:
            continue
        for p in t.partitions.values():
            parts += 1
            if p.leader < 0:
                offline += 1
            if len(p.isrs) < len(p.replicas):
                under += 1
    return ClusterHealth(frozenset(md.brokers), parts, under, offline)


def end_offsets(settings: Brokers, topic: str, timeout: float = 5.0) -> dict[int, int]:
    """High watermarks per partition, read without consuming (bounded metadata calls)."""
    consumer = Consumer(
        client_config(
            settings,
            {
                "group.id": "clickguard-offset-probe",
                "enable.auto.commit": False,
                "socket.timeout.ms": int(timeout * 1000),
                "log_level": 0,
            },
        )
    )
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        if topic not in md.topics or md.topics[topic].error:
            return {}
        out: dict[int, int] = {}
        for pid in md.topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, pid), timeout=timeout)
            out[pid] = high
        return out
    finally:
        consumer.close()
