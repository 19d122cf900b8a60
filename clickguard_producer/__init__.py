"""The producer: realistic generator, fault injection, YOOCHOOSE replay, durable Kafka sending.

Stable interface (the streaming job's tests import it):

    from clickguard_producer import Generator, GeneratorConfig, FaultInjector, FaultConfig
    gen = Generator(GeneratorConfig(seed=1, anomaly_every=500))
    inj = FaultInjector(schema_id, FaultConfig(duplicate_rate=0.01))
    records = list(inj.records(gen.events(1000)))
    summary = produce(settings, records, ledger=path)   # clickguard_producer.core
"""

from clickguard_producer.faults import (
    DUPLICATE,
    KINDS,
    LATE,
    VALID,
    FaultConfig,
    FaultInjector,
    Record,
    expected_counts,
    malformed,
)
from clickguard_producer.generator import (
    ANOMALY_TYPES,
    EventGenerator,
    Generator,
    GeneratorConfig,
    GroundTruth,
    read_ground_truth,
)

__all__ = [
    "ANOMALY_TYPES",
    "DUPLICATE",
    "KINDS",
    "LATE",
    "VALID",
    "EventGenerator",
    "FaultConfig",
    "FaultInjector",
    "Generator",
    "GeneratorConfig",
    "GroundTruth",
    "Record",
    "expected_counts",
    "malformed",
    "read_ground_truth",
]
