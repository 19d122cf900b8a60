"""Decode and validate raw Kafka records: pure Python, run in the streaming driver on the batch's
raw rows collected as Arrow (or, with ``stream_decode = "workers"``, inside Spark's ``mapInArrow``).

Every input record leaves this module with a status: ``ok`` (a decoded, valid event) or ``dlq``
with a :class:`~clickguard.contract.DlqReason` and a human-readable detail. Nothing is dropped:
the output of :func:`decode_table` has exactly one row per input row.

The writer schema of each record is looked up by its schema id (registry, cached per worker);
the reader schema is the repo's contract, so producers on older or newer BACKWARD-compatible
schemas decode into the same shape. Registry *outages* are not a record's fault: they raise
(after bounded retries) so the batch fails and is retried, instead of sending good data to the DLQ.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.compute as pc
from fastavro.read import SchemaResolutionError

from clickguard.contract import (
    DEFAULT_MAX_STRING_BYTES,
    DlqReason,
    RegistryClient,
    WireFormatError,
    encode,
    parsed_schema,
    pg_text,
    split,
    validate,
)

TS = pa.timestamp("us", tz="UTC")
# Kafka record headers as Spark's source gives them (option includeHeaders).
HEADERS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))

# Event fields as they leave the decoder (names/types match the events table).
EVENT_FIELDS: list[tuple[str, pa.DataType]] = [
    ("event_id", pa.string()),
    ("event_ts", TS),
    ("ingest_ts", TS),
    ("source", pa.string()),
    ("session_id", pa.int64()),
    ("user_id", pa.int64()),
    ("event_type", pa.string()),
    ("item_id", pa.int64()),
    ("category", pa.string()),
    ("price", pa.float64()),
    ("quantity", pa.int32()),
    ("page", pa.string()),
    ("referrer", pa.string()),
]
# Kafka coordinates and the decode verdict.
META_FIELDS: list[tuple[str, pa.DataType]] = [
    ("kafka_partition", pa.int32()),
    ("kafka_offset", pa.int64()),
    ("kafka_ts", TS),
    ("status", pa.string()),  # "ok" | "dlq"
    ("reason", pa.string()),  # DlqReason value when status == "dlq"
    ("detail", pa.string()),
    ("raw_key", pa.binary()),  # kept only where needed downstream (DLQ and late candidates)
    ("raw_value", pa.binary()),
    ("raw_headers", HEADERS),
]
OUTPUT_SCHEMA = pa.schema(EVENT_FIELDS + META_FIELDS)
# The same schema as a Spark DDL string, for ``DataFrame.mapInArrow``.
SPARK_DDL = ", ".join(
    f"{name} {ddl}"
    for name, ddl in [
        ("event_id", "string"), ("event_ts", "timestamp"), ("ingest_ts", "timestamp"),
        ("source", "string"), ("session_id", "bigint"), ("user_id", "bigint"),
        ("event_type", "string"), ("item_id", "bigint"), ("category", "string"),
        ("price", "double"), ("quantity", "int"), ("page", "string"), ("referrer", "string"),
        ("kafka_partition", "int"), ("kafka_offset", "bigint"), ("kafka_ts", "timestamp"),
        ("status", "string"), ("reason", "string"), ("detail", "string"),
        ("raw_key", "binary"), ("raw_value", "binary"),
        ("raw_headers", "array<struct<key:string,value:binary>>"),
    ]
)

# The Kafka source columns the decoder reads (Spark's types: binary, binary, int, bigint,
# timestamp, array<struct<key:string,value:binary>>).
RAW_COLUMNS = ["key", "value", "partition", "offset", "timestamp", "headers"]
WARMUP_SCHEMA_ID = 0  # the synthetic warm-up batch's schema id (never asked of the registry)

UNKNOWN_TTL_S = 30.0  # re-ask the registry about an unknown id after this long


class RegistryUnavailable(RuntimeError):
    """The registry could not be reached: fail the batch (it is retried), do not DLQ."""


@dataclass
class SchemaCache:
    """Writer schemas by id, fetched on first use and kept for the worker's lifetime.

    ``fetch(id)`` returns the parsed schema, raises KeyError for an unknown id (registry 404) and
    anything else for an outage; outages are retried with backoff for ``retry_s`` seconds.
    """

    fetch: Callable[[int], Any]
    retry_s: float = 60.0
    known: dict[int, Any] = field(default_factory=dict)
    unknown: dict[int, float] = field(default_factory=dict)  # id -> monotonic time of the 404

    def get(self, schema_id: int) -> Any | None:
        if schema_id in self.known:
            return self.known[schema_id]
        seen = self.unknown.get(schema_id)
        if seen is not None and time.monotonic() - seen < UNKNOWN_TTL_S:
            return None
        deadline, delay = time.monotonic() + self.retry_s, 0.2
        while True:
            try:
                schema = self.fetch(schema_id)
            except KeyError:
                self.unknown[schema_id] = time.monotonic()
                return None
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise RegistryUnavailable(f"schema id {schema_id}: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.known[schema_id] = schema
            return schema


_CACHES: dict[str, SchemaCache] = {}


def registry_cache(url: str) -> SchemaCache:
    """The per-process (per Python worker) cache for the registry at ``url``."""
    if url not in _CACHES:
        client = RegistryClient(url)
        _CACHES[url] = SchemaCache(client.schema_by_id)
    return _CACHES[url]


@dataclass(frozen=True)
class Verdict:
    """Outcome for one record: the decoded event, or a DLQ reason and detail."""

    event: dict[str, Any] | None
    reason: DlqReason | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def decode_value(
    value: bytes | None,
    schemas: SchemaCache,
    now: datetime | None = None,
    max_future: timedelta = timedelta(minutes=5),
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES,
) -> Verdict:
    """Decode one record value (Confluent wire format) and validate it against the contract."""
    try:
        schema_id, body = split(value)
    except WireFormatError as exc:
        return Verdict(None, DlqReason.NOT_WIRE_FORMAT, str(exc))
    writer = schemas.get(schema_id)
    if writer is None:
        detail = f"schema id {schema_id} is not registered"
        return Verdict(None, DlqReason.UNKNOWN_SCHEMA_ID, detail)
    buf = io.BytesIO(body)
    try:
        event = fastavro.schemaless_reader(buf, writer, parsed_schema())
    except SchemaResolutionError as exc:
        return Verdict(None, DlqReason.MISSING_REQUIRED, f"schema {schema_id}: {exc}"[:500])
    except OverflowError as exc:  # a timestamp-millis beyond Python's years 1..9999
        return Verdict(
            None, DlqReason.OUT_OF_RANGE, f"timestamp outside years 1-9999: {exc}"[:500]
        )
    except Exception as exc:  # noqa: BLE001 - any failure to parse the body is corruption
        return Verdict(
            None, DlqReason.AVRO_DECODE_ERROR, f"{type(exc).__name__}: {exc}"[:500]
        )
    if buf.tell() != len(body):
        return Verdict(
            None,
            DlqReason.AVRO_DECODE_ERROR,
            f"{len(body) - buf.tell()} trailing bytes after the record",
        )
    if not isinstance(event, dict):  # the reader schema is a record: never taken
        return Verdict(None, DlqReason.AVRO_DECODE_ERROR, "not a record")
    problem = validate(event, now=now, max_future=max_future, max_string_bytes=max_string_bytes)
    if problem:
        return Verdict(event, problem[0], problem[1])
    return Verdict(event)


def decode_table(
    batch: pa.RecordBatch | pa.Table,
    schemas: SchemaCache,
    keep_raw_before: datetime | None = None,
    now: datetime | None = None,
    max_future: timedelta = timedelta(minutes=5),
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES,
) -> pa.RecordBatch:
    """Decode Kafka rows (key, value, partition, offset, timestamp[, headers]) into OUTPUT_SCHEMA.

    Raw key/value/headers are carried only for DLQ rows and for valid rows whose event time is
    before ``keep_raw_before`` (the watermark: those are routed late with their original bytes).
    """
    if isinstance(batch, pa.Table):  # the driver's collected table: one chunk per column
        batch = batch.combine_chunks()
    values = batch.column("value").to_pylist()
    now = now or datetime.now(UTC)
    event_names = [name for name, _ in EVENT_FIELDS]
    events: dict[str, list[Any]] = {name: [] for name in event_names}
    status: list[str] = []
    reason: list[str | None] = []
    detail: list[str | None] = []
    keep: list[bool] = []
    for value in values:
        v = decode_value(value, schemas, now, max_future, max_string_bytes)
        ev = v.event if v.ok else None
        for name in event_names:
            events[name].append(ev.get(name) if ev else None)
        if not v.ok and v.event is not None:  # decoded but invalid: keep its id for the DLQ row
            eid = v.event.get("event_id")  # informative only: made storable (NUL escaped)
            events["event_id"][-1] = pg_text(eid, 1000) if isinstance(eid, str) else None
        keep.append(not v.ok or (
            keep_raw_before is not None and ev is not None and ev["event_ts"] < keep_raw_before
        ))
        status.append("ok" if v.ok else "dlq")
        reason.append(None if v.ok else str(v.reason))
        detail.append(pg_text(v.detail))
    # Kafka coordinates pass through as Arrow columns, without a round trip through Python
    mask = pa.array(keep, pa.bool_())
    names = batch.schema.names
    headers = (
        batch.column("headers").cast(HEADERS) if "headers" in names
        else pa.nulls(batch.num_rows, HEADERS)
    )
    arrays = [pa.array(events[name], type=t) for name, t in EVENT_FIELDS] + [
        batch.column("partition").cast(pa.int32()),
        batch.column("offset").cast(pa.int64()),
        batch.column("timestamp").cast(TS),
        pa.array(status, pa.string()),
        pa.array(reason, pa.string()),
        pa.array(detail, pa.string()),
        pc.if_else(mask, batch.column("key").cast(pa.binary()), pa.scalar(None, pa.binary())),
        pc.if_else(mask, batch.column("value").cast(pa.binary()), pa.scalar(None, pa.binary())),
        pc.if_else(mask, headers, pa.scalar(None, HEADERS)),
    ]
    arrays = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
    return pa.RecordBatch.from_arrays(arrays, schema=OUTPUT_SCHEMA)


def arrow_decoder(
    registry_url: str,
    keep_raw_before: datetime | None,
    max_future_minutes: float,
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function handed to ``DataFrame.mapInArrow`` (pickled to the Python workers)."""

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        schemas = registry_cache(registry_url)
        max_future = timedelta(minutes=max_future_minutes)
        for b in batches:
            yield decode_table(b, schemas, keep_raw_before, None, max_future, max_string_bytes)

    return fn


def warmup_schema(schema_id: int) -> Any:
    """Writer schema lookup for :func:`warmup_batch` (the contract; KeyError for other ids)."""
    if schema_id != WARMUP_SCHEMA_ID:
        raise KeyError(schema_id)
    return parsed_schema()


def warmup_batch(now: datetime | None = None) -> pa.Table:
    """A tiny raw batch shaped like Spark's Kafka rows: one valid event, one future-dated
    (DLQ after decoding) and one record that is not in the wire format. Decoding it runs
    fastavro, validation and the Arrow kernels once, before the first real batch."""
    now = now or datetime.now(UTC)
    ms = int(now.timestamp() * 1000)
    base = {"event_id": "warm-up-1", "event_ts": ms, "ingest_ts": ms, "source": "warm-up",
            "session_id": 1, "user_id": None, "event_type": "click", "item_id": 1,
            "category": None, "price": None, "quantity": None, "page": None, "referrer": None}
    future = {**base, "event_id": "warm-up-2", "event_ts": ms + 86_400_000}
    values = [encode(base, WARMUP_SCHEMA_ID), encode(future, WARMUP_SCHEMA_ID), b"x"]
    n = len(values)
    return pa.table({
        "key": pa.array([b"k"] * n, pa.binary()),
        "value": pa.array(values, pa.binary()),
        "partition": pa.array([0] * n, pa.int32()),
        "offset": pa.array(range(n), pa.int64()),
        "timestamp": pa.array([now] * n, TS),
        "headers": pa.array([[{"key": "h", "value": b"v"}]] * n, HEADERS),
    })
