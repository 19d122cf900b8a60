"""Issue 2 durability: an acks=all idempotent producer loses and duplicates nothing while kafka-2
is SIGKILLed and restarted in the middle of the run."""

from __future__ import annotations

import time
import uuid
from collections import Counter

from clickguard.settings import Settings
from clickguard_producer.core import produce, register_schemas
from clickguard_producer.faults import FaultInjector
from clickguard_producer.generator import Generator, GeneratorConfig
from clickguard_producer.scratch import read_all, scratch_topic, wait_full_isr
from clickguard_producer.wire import event_id_of
from clickguard_stack.manager import Stack

N = 24_000
RATE = 4_000.0  # 6 s of sending: the kill lands mid-run, the restart too


def test_sigkill_of_a_broker_mid_run_loses_and_duplicates_nothing(
    stack: Stack, settings: Settings
) -> None:
    schema_id, _ = register_schemas(settings)
    records = list(FaultInjector(schema_id).records(
        Generator(GeneratorConfig(seed=8)).events(N)
    ))
    broker = stack.node("kafka-2")
    seen: dict[str, object] = {}

    def crash_and_restart() -> None:
        seen["pid_before"] = broker.pid()
        stack.control("kill", "kafka-2")
        seen["state_after_kill"] = broker.status().state
        seen["sent_at_kill"] = time.monotonic()
        time.sleep(2.0)
        stack.control("start", "kafka-2")
        seen["pid_after"] = broker.pid()

    with scratch_topic(settings, f"test.durability.{uuid.uuid4().hex[:8]}") as topic:
        summary = produce(
            settings, records, topic=topic, rate=RATE, at={N // 4: crash_and_restart},
            progress=None,
        )
        wait_full_isr(settings, topic)
        got = read_all(settings, topic)

    # the crash really happened, mid-run, and the broker came back as a new process
    assert seen["state_after_kill"] == "down"
    assert seen["pid_before"] and seen["pid_after"] and seen["pid_before"] != seen["pid_after"]
    assert summary.send_s > 3.0
    # every record acknowledged, none failed
    assert (summary.sent, summary.acknowledged, summary.failed) == (N, N, 0)
    # each event_id read exactly once: no loss, no duplicate from retries (idempotence)
    ids = Counter(event_id_of(m.value()) for m in got)
    assert len(got) == N
    assert set(ids) == {r.event_id for r in records}
    assert max(ids.values()) == 1
