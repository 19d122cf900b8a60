"""Fault injection: each record's bytes are what its kind says; counts are exact per seed."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime

import fastavro
import pytest

from clickguard.contract import (
    DlqReason,
    WireFormatError,
    encode,
    parsed_schema,
    split,
    validate,
)
from clickguard_producer.faults import (
    DUPLICATE,
    KINDS,
    LATE,
    UNKNOWN_SCHEMA_ID,
    VALID,
    FaultConfig,
    FaultInjector,
    Record,
    expected_counts,
    malformed,
    rogue_schema,
)
from clickguard_producer.generator import Generator, GeneratorConfig
from clickguard_producer.wire import encode_event, event_id_of, header

SCHEMA_ID, ROGUE_ID = 11, 12
NOW_S = 1_764_100_000.0
WATERMARK_MIN = 10.0


def records(n: int, cfg: FaultConfig, seed: int = 1, rogue: int | None = ROGUE_ID) -> list[Record]:
    gen = Generator(GeneratorConfig(seed=seed, run_id="f", anomaly_every=700,
                                    spike_events=100, error_burst_events=110),
                    clock=lambda: NOW_S)
    inj = FaultInjector(SCHEMA_ID, cfg, seed=seed, rogue_schema_id=rogue,
                        watermark_minutes=WATERMARK_MIN, clock=lambda: NOW_S)
    out = list(inj.records(gen.events(n)))
    assert dict(inj.counts) == expected_counts(out)
    return out


def classify(value: bytes, seen_valid: set[bytes]) -> str:
    """What a correct streaming job concludes from the bytes alone (independent of the injector)."""
    schemas = {SCHEMA_ID: parsed_schema(), ROGUE_ID: fastavro.parse_schema(rogue_schema())}
    try:
        schema_id, body = split(value)
    except WireFormatError:
        return malformed(DlqReason.NOT_WIRE_FORMAT)
    if schema_id not in schemas:
        return malformed(DlqReason.UNKNOWN_SCHEMA_ID)
    try:
        event = fastavro.schemaless_reader(io.BytesIO(body), schemas[schema_id], None)
    except (EOFError, ValueError, IndexError, UnicodeDecodeError):
        return malformed(DlqReason.AVRO_DECODE_ERROR)
    problem = validate(event, now=datetime.fromtimestamp(NOW_S, UTC))
    if problem:
        return malformed(problem[0])
    if value in seen_valid:
        return DUPLICATE
    event_ts = event["event_ts"]
    ts_ms = event_ts.timestamp() * 1000 if isinstance(event_ts, datetime) else event_ts
    if ts_ms < NOW_S * 1000 - WATERMARK_MIN * 60_000:
        return LATE
    seen_valid.add(value)
    return VALID


def test_every_record_is_what_its_kind_says() -> None:
    recs = records(6_000, FaultConfig.uniform(0.03))
    seen: set[bytes] = set()
    assert [classify(r.value, seen) for r in recs] == [r.kind for r in recs]
    counts = expected_counts(recs)
    assert set(counts) == set(KINDS)  # every kind occurs at these rates
    # a duplicate is byte-identical to an earlier valid record, key included
    valid = {(r.key, r.value) for r in recs if r.kind == VALID}
    assert all((r.key, r.value) in valid for r in recs if r.kind == DUPLICATE)


def test_counts_are_exact_for_a_seed() -> None:
    cfg = FaultConfig(duplicate_rate=0.02, late_rate=0.01, not_wire_format_rate=0.01,
                      unknown_schema_id_rate=0.005, missing_required_rate=0.005,
                      out_of_range_rate=0.005, avro_decode_error_rate=0.005)
    a = expected_counts(records(4_000, cfg, seed=3))
    assert a == expected_counts(records(4_000, cfg, seed=3))
    assert a != expected_counts(records(4_000, cfg, seed=4))
    # duplicates are extra records on top of the 4,000 events
    assert sum(a.values()) - a[DUPLICATE] == 4_000
    assert a == {
        "valid": 3838, "duplicate": 86, "late": 42, "malformed:not_wire_format": 37,
        "malformed:unknown_schema_id": 29, "malformed:missing_required": 21,
        "malformed:out_of_range": 18, "malformed:avro_decode_error": 15,
    }


def test_anomaly_events_are_never_faulted() -> None:
    recs = records(3_000, FaultConfig.uniform(0.05))
    ids = {r.event_id for r in recs if r.kind == VALID}
    gen = Generator(GeneratorConfig(seed=1, run_id="f", anomaly_every=700,
                                    spike_events=100, error_burst_events=110),
                    clock=lambda: NOW_S)
    anomalous = [e["event_id"] for e in gen.events(3_000) if "_anomaly" in e]
    assert anomalous and set(anomalous) <= ids


def test_missing_required_without_registry_uses_empty_event_id() -> None:
    recs = records(2_000, FaultConfig(missing_required_rate=0.05), rogue=None)
    missing = [r for r in recs if r.kind == malformed(DlqReason.MISSING_REQUIRED)]
    assert missing and all(split(r.value)[0] == SCHEMA_ID and r.event_id == "" for r in missing)


def test_late_events_are_older_than_three_watermarks() -> None:
    recs = records(2_000, FaultConfig(late_rate=0.05))
    late = [r for r in recs if r.kind == LATE]
    assert late
    for r in late:
        body = split(r.value)[1]
        e = fastavro.schemaless_reader(io.BytesIO(body), parsed_schema(), None)
        assert (e["ingest_ts"] - e["event_ts"]).total_seconds() == 3 * WATERMARK_MIN * 60


def test_rates_must_leave_room_for_valid_records() -> None:
    with pytest.raises(ValueError, match="add up"):
        FaultInjector(1, FaultConfig.uniform(0.2))


@pytest.mark.parametrize("event_type", ["page_view", "purchase", "error"])
@pytest.mark.parametrize("nulls", [True, False])
def test_fast_encoder_matches_fastavro(event_type: str, nulls: bool) -> None:
    event = {
        "event_id": "é-ünïcode-" + "x" * 70, "event_ts": 1_764_100_000_123,
        "ingest_ts": -5, "source": "web", "session_id": 2**52 + 17,
        "user_id": None if nulls else 0, "event_type": event_type,
        "item_id": None if nulls else 5000, "category": None if nulls else "home",
        "price": None if nulls else 0.1, "quantity": None if nulls else 2**20,
        "page": None if nulls else "/p/1", "referrer": None if nulls else "r" * 5000,
    }
    assert encode_event(event, header(77)) == encode(event, 77)


def test_event_id_of() -> None:
    e = Generator(GeneratorConfig(run_id="r")).take(1)[0]
    assert event_id_of(encode_event(e, header(1))) == e["event_id"]
    assert event_id_of(b"{json}") is None
    assert event_id_of(encode_event(e, header(UNKNOWN_SCHEMA_ID))) == e["event_id"]
    assert Counter(KINDS)[VALID] == 1
