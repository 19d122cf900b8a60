"""Producing to the real 3-node cluster: what was planned is exactly what a consumer reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from clickguard.settings import Settings
from clickguard_cli.cli import main
from clickguard_producer.core import produce, register_schemas
from clickguard_producer.faults import FaultConfig, FaultInjector, expected_counts
from clickguard_producer.generator import Generator, GeneratorConfig
from clickguard_producer.scratch import read_all
from clickguard_producer.wire import event_id_of

DATA = Path(__file__).resolve().parents[2] / "data"


def test_consumer_reads_exactly_the_planned_records(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    schema_id, rogue_id = register_schemas(settings)
    gen = Generator(GeneratorConfig(seed=21, anomaly_every=1_000, spike_events=150,
                                    error_burst_events=120))
    inj = FaultInjector(schema_id, FaultConfig.uniform(0.02), seed=21, rogue_schema_id=rogue_id)
    records = list(inj.records(gen.events(3_000)))
    plan = expected_counts(records)
    ledger = tmp_path / "ledger.tsv"

    summary = produce(settings, records, topic=topic, ledger=ledger, progress=None)

    assert (summary.sent, summary.acknowledged, summary.failed) == (len(records),) * 2 + (0,)
    assert summary.per_kind == plan
    assert summary.latency_ms["p50"] > 0
    got = read_all(settings, topic)
    assert len(got) == len(records)
    assert Counter((m.key(), m.value()) for m in got) == Counter(
        (r.key, r.value) for r in records
    )
    # the ledger names every acknowledged record by partition/offset with its planned kind
    rows = [line.split("\t") for line in ledger.read_text().splitlines()]
    assert len(rows) == len(records)
    by_pos = {(int(p), int(o)): (eid, kind) for eid, kind, p, o in rows}
    assert Counter(kind for _, kind in by_pos.values()) == plan
    for m in got:
        eid, kind = by_pos[(m.partition(), m.offset())]
        if kind in ("valid", "duplicate", "late"):
            assert event_id_of(m.value()) == eid
    assert sum(m.key() == str(gen.ground_truth[0].session_id).encode() for m in got) == 60


def test_produce_command_summary_ledger_and_ground_truth(topic: str, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    res = CliRunner().invoke(main, [
        "produce", "--count", "2500", "--topic", topic, "--faults", "0.01", "--seed", "3",
        "--anomaly-every", "500", "--ledger", str(tmp_path / "l.tsv"),
        "--ground-truth", str(tmp_path / "gt.jsonl"), "--summary", str(out), "--quiet",
    ])
    assert res.exit_code == 0, res.output
    s = json.loads(out.read_text())
    assert (s["sent"], s["acknowledged"], s["failed"]) == (2500, 2500, 0)
    assert sum(s["per_kind"].values()) == 2500 and s["per_kind"]["duplicate"] > 0
    assert len((tmp_path / "l.tsv").read_text().splitlines()) == 2500
    gt = [json.loads(x) for x in (tmp_path / "gt.jsonl").read_text().splitlines()]
    assert len(gt) == s["anomalies_injected"] >= 2
    assert {g["type"] for g in gt} >= {"HIGH_FREQUENCY", "BOT_LIKE"}


def test_fixed_rate_is_held(settings: Settings, topic: str) -> None:
    schema_id, _ = register_schemas(settings)
    records = FaultInjector(schema_id).records(Generator(GeneratorConfig(seed=2)).events())
    s = produce(settings, records, topic=topic, rate=1_500, count=3_000, progress=None)
    assert (s.acknowledged, s.failed) == (3_000, 0)
    assert 1.8 <= s.send_s <= 3.5, s.send_s


def test_replay_yoochoose_sample(topic: str, tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    res = CliRunner().invoke(main, [
        "produce", "--replay", str(DATA / "yoochoose-clicks-sample.dat"),
        "--replay", str(DATA / "yoochoose-buys-sample.dat"), "--speed", "0",
        "--topic", topic, "--summary", str(out), "--quiet",
    ])
    assert res.exit_code == 0, res.output
    s = json.loads(out.read_text())
    assert s["acknowledged"] == 21
    assert s["per_kind"] == {"valid": 20, "malformed:out_of_range": 1}
    assert s["per_event_type"] == {"click": 18, "purchase": 3}


def _clickguard(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clickguard_cli", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )


def test_unreachable_cluster_says_how_to_fix_it(stack: object) -> None:
    # nothing listens on port 1: a real connection failure, not a simulated one
    res = _clickguard({"CLICKGUARD_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "produce", "--count", "5")
    assert res.returncode == 1
    assert "127.0.0.1:1 is unreachable" in res.stderr
    assert "clickguard stack up" in res.stderr
    res = _clickguard(
        {"CLICKGUARD_REGISTRY_URL": "http://127.0.0.1:1/apis/ccompat/v7"}, "produce", "--count", "5"
    )
    assert res.returncode == 1
    assert "schema registry" in res.stderr and "clickguard stack up" in res.stderr


def test_undeliverable_records_are_reported_failed_not_acked(
    settings: Settings, topic: str, tmp_path: Path
) -> None:
    """A topic whose max.message.bytes is below any batch: the brokers really refuse every write."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    from clickguard.kafka import admin

    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("max.message.bytes", "64", incremental_operation=AlterConfigOpType.SET)
    ])
    client = admin(settings)  # keep a reference: the futures die with the client
    for fut in client.incremental_alter_configs([res]).values():
        fut.result()
    time.sleep(2.0)  # brokers apply topic config changes asynchronously
    described = client.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    for fut in described.values():
        assert fut.result()["max.message.bytes"].value == "64"
    schema_id, _ = register_schemas(settings)
    records = list(FaultInjector(schema_id).records(Generator(GeneratorConfig(seed=4)).events(50)))
    ledger = tmp_path / "l.tsv"
    s = produce(settings, records, topic=topic, ledger=ledger, progress=None,
                **{"delivery.timeout.ms": 3000, "request.timeout.ms": 1000, "linger.ms": 5})
    assert (s.sent, s.acknowledged, s.failed) == (50, 0, 50)
    assert sum(s.errors.values()) == 50
    assert any("too large" in e.lower() for e in s.errors), s.errors
    assert ledger.read_text() == ""  # only acknowledged records are in the ledger
