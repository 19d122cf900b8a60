"""`clickguard stack` from the outside: a private stack on its own ports and run folder.

up → status healthy → kill kafka-2 → status shows it down while acks=all still succeeds →
down leaves no process → up again keeps the topic data → down --reset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clickguard import kafka as kafka_helpers
from clickguard import procs
from clickguard.settings import Settings
from clickguard_stack.nodes import SHUTDOWN_GRANTED

PORTS = {
    "CLICKGUARD_PG_PORT": "11432",
    "CLICKGUARD_KAFKA_BROKER_PORT_BASE": "11092",
    "CLICKGUARD_KAFKA_CONTROLLER_PORT_BASE": "11192",
    "CLICKGUARD_REGISTRY_PORT": "11081",
}

# written by a broker's LogManager when it shut down cleanly (Kafka's LogLoader.CleanShutdownFile)
CLEAN_SHUTDOWN_MARKER = ".kafka_cleanshutdown"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("stack-home")
    return {**os.environ, **PORTS, "CLICKGUARD_HOME": str(home)}


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(
        [sys.executable, "-m", "clickguard_cli", "stack", *args],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )
    # the command's own words (which node, which log) belong in the failure, not a bare exit code
    assert not check or res.returncode == 0, (
        f"`clickguard stack {' '.join(args)}` exited {res.returncode}\n"
        f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    )
    return res


def status(env: dict[str, str]) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(cli(env, "status", "--json").stdout)}


def unclean(env: dict[str, str]) -> list[str]:
    """Brokers whose last shutdown left no clean-shutdown marker."""
    home = Path(env["CLICKGUARD_HOME"])
    return [b for b in ("kafka-1", "kafka-2", "kafka-3")
            if not (home / b / "data" / CLEAN_SHUTDOWN_MARKER).exists()]


def killed_by(down: subprocess.CompletedProcess) -> list[str]:
    """Brokers `stack down` reported it had to SIGKILL."""
    return sorted(line.split(":")[0].strip() for line in down.stdout.splitlines()
                  if "SIGKILL" in line)


def our_processes(home: str) -> list[int]:
    """Pids whose command line or environment mentions the private run folder."""
    mine = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            if home in " ".join(procs.cmdline(pid)) or any(
                procs.environ_has(pid, f"CLICKGUARD_NODE={home}/{n}")
                for n in ("postgres", "kafka-1", "kafka-2", "kafka-3", "registry")
            ):
                mine.append(pid)
    return [p for p in mine if procs.is_alive(p)]


def test_lifecycle(env: dict[str, str]) -> None:
    infra = ["postgres", "kafka-1", "kafka-2", "kafka-3", "registry"]
    settings = Settings(_env_file=None, home=Path(env["CLICKGUARD_HOME"]),
                        pg_port=11432, kafka_broker_port_base=11092,
                        kafka_controller_port_base=11192, registry_port=11081)
    try:
        up = cli(env, "up", *infra)
        assert "stack up in" in up.stdout
        assert all(status(env)[n]["state"] == "healthy" for n in infra)

        # a node that dies is reported down, and acks=all producers still succeed (min ISR 2)
        cli(env, "kill", "kafka-2")
        assert status(env)["kafka-2"]["state"] == "down"
        marker = uuid.uuid4().hex
        producer = Producer(kafka_helpers.producer_config(settings))
        delivered: list[str] = []
        for i in range(200):
            producer.produce(settings.topic_late, f"{marker}-{i}".encode(),
                             on_delivery=lambda err, m: delivered.append(err))
        assert producer.flush(60) == 0
        assert delivered == [None] * 200
        cli(env, "start", "kafka-2")
        assert status(env)["kafka-2"]["state"] == "healthy"

        # down leaves no process of ours behind, and each broker shut down cleanly (its marker
        # spares the next start a log recovery; one at a time, the last broker was SIGKILLed
        # every time) unless down said it had to kill it (a lost race for the quorum's grant)
        down = cli(env, "down")
        assert our_processes(env["CLICKGUARD_HOME"]) == []
        assert unclean(env) == killed_by(down), down.stdout
        # the log line down's quorum watch reads to tell a granted broker from a waiting one
        # (Kafka's BrokerLifecycleManager): a Kafka version that words it otherwise fails here
        home = Path(env["CLICKGUARD_HOME"])
        for b in sorted({"kafka-1", "kafka-2", "kafka-3"} - set(killed_by(down))):
            assert SHUTDOWN_GRANTED in (home / b / f"{b}.log").read_text(errors="replace"), b
        assert all(r["state"] == "down" for r in status(env).values())

        # up after down keeps the topic data
        cli(env, "up", *infra)
        consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers,
                             "group.id": f"lifecycle-{marker}", "auto.offset.reset": "earliest"})
        parts = consumer.list_topics(settings.topic_late, timeout=10).topics[
            settings.topic_late].partitions
        consumer.assign([TopicPartition(settings.topic_late, p, 0) for p in parts])
        seen = set()
        for _ in range(60):
            for m in consumer.consume(1000, timeout=1):
                if not m.error() and m.value().decode().startswith(marker):
                    seen.add(m.value().decode())
            if len(seen) == 200:
                break
        consumer.close()
        assert len(seen) == 200

        # the last broker alive has no controller quorum to grant its controlled shutdown (Kafka
        # would wait 5 minutes): down kills it after a short grace and says so
        cli(env, "kill", "kafka-2")
        cli(env, "kill", "kafka-3")
        down = cli(env, "down")
        assert killed_by(down) == ["kafka-1"], down.stdout
        assert "no controller quorum" in down.stdout
        assert our_processes(env["CLICKGUARD_HOME"]) == []
    finally:
        cli(env, "down", "--reset", check=False)
    assert our_processes(env["CLICKGUARD_HOME"]) == []
