"""Decoding and validation of raw records, one DLQ reason per malformed kind (no services)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pyarrow as pa
import pytest

from clickguard.contract import DlqReason, encode, parsed_schema, schema_json
from clickguard_producer.faults import LATE, VALID, FaultConfig, FaultInjector, rogue_schema
from clickguard_producer.generator import Generator, GeneratorConfig
from streaming_job.decode import (
    HEADERS,
    OUTPUT_SCHEMA,
    WARMUP_SCHEMA_ID,
    RegistryUnavailable,
    SchemaCache,
    decode_table,
    decode_value,
    warmup_batch,
    warmup_schema,
)

CONTRACT, ROGUE, EVOLVED = 1, 2, 3


def evolved() -> dict[str, Any]:
    s = schema_json()
    s["fields"].append({"name": "device", "type": ["null", "string"], "default": None})
    return s


def writer_schemas() -> dict[int, Any]:
    """Schemas by id as the registry would return them."""
    return {
        CONTRACT: parsed_schema(),
        ROGUE: fastavro.parse_schema(rogue_schema()),
        EVOLVED: fastavro.parse_schema(evolved()),
    }


def cache() -> SchemaCache:
    known = writer_schemas()

    def fetch(schema_id: int) -> Any:
        return known[schema_id]  # KeyError = unknown id, like the registry's 404

    return SchemaCache(fetch)


def event(**kw: Any) -> dict[str, Any]:
    now = int(time.time() * 1000)
    base = {"event_id": "e-1", "event_ts": now, "ingest_ts": now, "source": "t",
            "session_id": 7, "event_type": "click", "item_id": 3}
    return {**base, **kw}


def test_every_injected_fault_gets_its_reason() -> None:
    """Each record labelled by the fault injector decodes to exactly the labelled fate."""
    inj = FaultInjector(CONTRACT, FaultConfig.uniform(0.1), seed=1, rogue_schema_id=ROGUE)
    records = list(inj.records(Generator(GeneratorConfig(seed=2)).take(2000)))
    schemas = cache()
    seen: dict[str, int] = {}
    for r in records:
        v = decode_value(r.value, schemas)
        fate = VALID if v.ok else f"malformed:{v.reason}"
        expected = VALID if r.kind in (VALID, LATE, "duplicate") else r.kind
        assert fate == expected, (r.kind, v.detail)
        seen[r.kind] = seen.get(r.kind, 0) + 1
    assert set(seen) >= {f"malformed:{x.value}" for x in DlqReason}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", DlqReason.NOT_WIRE_FORMAT),
        (b"\x01\x00\x00\x00\x01abc", DlqReason.NOT_WIRE_FORMAT),
        (encode(event(), 424242), DlqReason.UNKNOWN_SCHEMA_ID),
        (encode(event(), CONTRACT)[:9], DlqReason.AVRO_DECODE_ERROR),
        (encode(event(), CONTRACT) + b"\x00\x00", DlqReason.AVRO_DECODE_ERROR),
        (encode({k: v for k, v in event().items() if k != "event_id"}, ROGUE,
                schema=fastavro.parse_schema(rogue_schema())), DlqReason.MISSING_REQUIRED),
        (encode(event(event_id=""), CONTRACT), DlqReason.MISSING_REQUIRED),
        (encode(event(event_type="purchase", price=-1.0, quantity=1), CONTRACT),
         DlqReason.OUT_OF_RANGE),
        (encode(event(event_type="purchase"), CONTRACT), DlqReason.MISSING_REQUIRED),
        (encode(event(event_ts=int(time.time() * 1000) + 30 * 86_400_000), CONTRACT),  # the
         # parameters are built at collection: far enough ahead to still be future at run time
         DlqReason.OUT_OF_RANGE),
        (encode(event(session_id=-5), CONTRACT), DlqReason.OUT_OF_RANGE),
    ],
)
def test_malformed_records(value: bytes, reason: DlqReason) -> None:
    v = decode_value(value, cache())
    assert not v.ok and v.reason is reason and v.detail


def test_evolved_writer_decodes_into_the_contract_shape() -> None:
    value = encode({**event(), "device": "tablet"}, EVOLVED, schema=writer_schemas()[EVOLVED])
    v = decode_value(value, cache())
    assert v.ok and v.event is not None
    assert "device" not in v.event and v.event["event_id"] == "e-1"


def test_registry_outage_raises_instead_of_dlq() -> None:
    calls = []

    def down(schema_id: int) -> Any:
        calls.append(schema_id)
        raise ConnectionError("registry down")

    with pytest.raises(RegistryUnavailable):
        decode_value(encode(event(), CONTRACT), SchemaCache(down, retry_s=0.3))
    assert len(calls) >= 2  # it retried before giving up


def test_unknown_ids_are_cached_and_known_ids_fetched_once() -> None:
    calls: list[int] = []
    known = writer_schemas()

    def fetch(schema_id: int) -> Any:
        calls.append(schema_id)
        return known[schema_id]

    c = SchemaCache(fetch)
    for _ in range(3):
        assert c.get(CONTRACT) is not None
        assert c.get(99) is None
    assert calls == [CONTRACT, 99]


def test_decode_table_keeps_one_row_per_record_and_raw_bytes_only_where_needed() -> None:
    now = datetime.now(UTC)
    wm = now - timedelta(minutes=10)
    old = int((now - timedelta(minutes=30)).timestamp() * 1000)
    values = [
        encode(event(event_id="ok"), CONTRACT),
        encode(event(event_id="old", event_ts=old), CONTRACT),
        b"junk",
        encode(event(event_id="neg", event_type="purchase", price=-2.0, quantity=1), CONTRACT),
    ]
    batch = pa.table({
        "key": [b"k"] * 4, "value": values, "partition": pa.array([0, 1, 2, 3], pa.int32()),
        "offset": pa.array([10, 11, 12, 13], pa.int64()),
        "timestamp": pa.array([now] * 4, pa.timestamp("us", tz="UTC")),
    })
    out = decode_table(batch, cache(), keep_raw_before=wm)
    assert out.schema == OUTPUT_SCHEMA and out.num_rows == 4
    d = out.to_pydict()
    assert d["status"] == ["ok", "ok", "dlq", "dlq"]
    assert d["reason"] == [None, None, "not_wire_format", "out_of_range"]
    assert d["event_id"] == ["ok", "old", None, "neg"]  # invalid but decoded: id kept
    assert d["raw_value"] == [None, values[1], values[2], values[3]]
    assert d["kafka_offset"] == [10, 11, 12, 13]


def raw_table(values: list[bytes | None], first_offset: int = 0) -> pa.Table:
    """Kafka rows as the streaming driver collects them from Spark (every source column)."""
    n = len(values)
    now = datetime.now(UTC)
    return pa.table({
        "key": pa.array([b"k%d" % i for i in range(n)], pa.binary()),
        "value": pa.array(values, pa.binary()),
        "partition": pa.array([i % 3 for i in range(n)], pa.int32()),
        "offset": pa.array(range(first_offset, first_offset + n), pa.int64()),
        "timestamp": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        "headers": pa.array([[{"key": "h", "value": b"%d" % i}] for i in range(n)], HEADERS),
    })


def test_driver_decode_of_a_chunked_table_equals_the_worker_path() -> None:
    """The driver decodes the whole collected table (several Arrow chunks, one per Spark task);
    the result must be row for row what the Python workers produced batch by batch."""
    inj = FaultInjector(CONTRACT, FaultConfig.uniform(0.1), seed=3, rogue_schema_id=ROGUE)
    values = [r.value for r in inj.records(Generator(GeneratorConfig(seed=4)).take(600))]
    parts = [raw_table(values[:250]), raw_table(values[250:], first_offset=250)]
    chunked = pa.concat_tables(parts)
    assert chunked.column("value").num_chunks == 2
    now = datetime.now(UTC)
    wm = now - timedelta(minutes=10)
    driver = decode_table(chunked, cache(), keep_raw_before=wm, now=now)
    workers = pa.Table.from_batches([
        decode_table(b, cache(), keep_raw_before=wm, now=now)
        for p in parts for b in p.to_batches()
    ])
    assert driver.schema == OUTPUT_SCHEMA and driver.num_rows == len(values)
    assert pa.Table.from_batches([driver]).equals(workers)
    statuses = set(driver.column("status").to_pylist())
    assert statuses == {"ok", "dlq"}  # both paths exercised
    reasons = {r for r in driver.column("reason").to_pylist() if r}
    assert reasons == {x.value for x in DlqReason}
    dlq_headers = [
        h for h, s in zip(driver.column("raw_headers").to_pylist(),
                          driver.column("status").to_pylist(), strict=True) if s == "dlq"
    ]
    assert all(h and h[0]["key"] == "h" for h in dlq_headers)  # original headers kept


def test_driver_decode_of_an_empty_batch() -> None:
    out = decode_table(raw_table([]).slice(0, 0), cache())
    assert out.num_rows == 0 and out.schema == OUTPUT_SCHEMA


def test_warmup_batch_runs_every_path_without_a_registry() -> None:
    """The start-up warm-up decodes a valid record and two DLQ ones with no registry at all."""
    out = decode_table(warmup_batch(), SchemaCache(warmup_schema, retry_s=0))
    d = out.to_pydict()
    assert d["status"] == ["ok", "dlq", "dlq"]
    assert d["reason"] == [None, DlqReason.OUT_OF_RANGE, DlqReason.NOT_WIRE_FORMAT]
    with pytest.raises(KeyError):
        warmup_schema(WARMUP_SCHEMA_ID + 1)
