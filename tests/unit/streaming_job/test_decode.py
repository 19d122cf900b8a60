"""Decoding and validation of raw records, one DLQ reason per malformed kind (no services)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pyarrow as pa
import pytest

from clickguard.contract import DlqReason, encode, parsed_schema, schema_json
from clickguard.producer.faults import LATE, VALID, FaultConfig, FaultInjector, rogue_schema
from clickguard.producer.generator import Generator, GeneratorConfig
from streaming_job.decode import (
    OUTPUT_SCHEMA,
    RegistryUnavailable,
    SchemaCache,
    decode_table,
    decode_value,
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
