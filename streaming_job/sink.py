"""The micro-batch sink: one PostgreSQL transaction per Spark batch, exactly-once in effect.

``BatchSink.process_batch`` is handed to ``writeStream.foreachBatch``. Per batch:

1. Ask the ledger whether (query id, batch id) is already committed: a replay after a crash
   is skipped entirely. Otherwise read the event-time watermark the previous batch left.
2. ONE Spark action: decode with ``mapInArrow`` (workers, :mod:`streaming_job.decode`) and
   collect the batch to the driver as Arrow.
3. Classify every record exactly once (:func:`classify`): DLQ, late (event time before the
   watermark), in-batch duplicate, or on-time candidate.
4. Produce DLQ and late records to Kafka and flush — BEFORE the database commit. So those topics
   are at-least-once (a crash between flush and commit re-sends them on replay); the
   ``dlq_events``/``late_events`` tables are exactly-once through their unique
   (topic, partition, offset) keys and the ledger.
5. In one transaction: COPY on-time rows into a temp staging table, ``INSERT ... ON CONFLICT
   (event_id) DO NOTHING`` (duplicates = candidates − inserted), DLQ and late rows, per-minute
   counts, anomaly rules, heartbeat and the ledger row; COMMIT.

Invariant, per batch: input_rows = stored + dlq + late + duplicates.
Dedup state is bounded by the watermark: anything older is routed late before the unique-key
check, so that check only matters within the watermark horizon; Spark keeps no state at all.
If PostgreSQL is down the transaction is retried with backoff (``stream_db_retry_s``).
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from confluent_kafka import KafkaException, Producer
from psycopg.types.json import Jsonb

from clickguard import db
from clickguard.kafka import producer_config
from clickguard.settings import Settings
from streaming_job import anomalies
from streaming_job.decode import SPARK_DDL, arrow_decoder

log = logging.getLogger("streaming_job.sink")

STAGE_COLUMNS = [
    "event_id", "event_ts", "ingest_ts", "kafka_ts", "source", "session_id", "user_id",
    "event_type", "item_id", "category", "price", "quantity", "page", "referrer",
    "kafka_partition", "kafka_offset",
]
TEMP_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS stage_events (
    event_id text, event_ts timestamptz, ingest_ts timestamptz, kafka_ts timestamptz,
    source text, session_id bigint, user_id bigint, event_type text, item_id bigint,
    category text, price numeric(12, 2), quantity integer, page text, referrer text,
    kafka_partition integer, kafka_offset bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS new_events (
    event_id text, event_ts timestamptz, session_id bigint, event_type text, item_id bigint,
    category text
) ON COMMIT DELETE ROWS;
"""
INSERT_EVENTS = f"""
WITH ins AS (
    INSERT INTO events ({", ".join(STAGE_COLUMNS)}, batch_start_ts, commit_ts, batch_id)
    SELECT {", ".join(STAGE_COLUMNS)}, %(batch_start)s, clock_timestamp(), %(batch_id)s
    FROM stage_events
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, event_ts, session_id, event_type, item_id, category)
INSERT INTO new_events SELECT * FROM ins
"""
INSERT_DLQ = """
INSERT INTO dlq_events (source_topic, source_partition, source_offset, reason, detail, event_id,
                        raw_value, raw_key, kafka_ts, detected_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
"""
INSERT_LATE = """
INSERT INTO late_events (source_topic, source_partition, source_offset, event_id, event_ts,
                         session_id, event_type, watermark, lateness_ms, payload, detected_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
"""
INSERT_LEDGER = """
INSERT INTO batch_ledger (query_id, batch_id, started_at, committed_at, input_rows, stored, dlq,
    late, duplicates, anomalies, duration_ms, max_event_ts, watermark, state_rows, offsets)
VALUES (%(query_id)s, %(batch_id)s, %(started_at)s, clock_timestamp(), %(input_rows)s,
    %(stored)s, %(dlq)s, %(late)s, %(duplicates)s, %(anomalies)s,
    (extract(epoch FROM clock_timestamp() - %(started_at)s) * 1000)::int, %(max_event_ts)s,
    %(watermark)s,
    coalesce((SELECT sum(events) FROM minute_counts WHERE scope = 'all'
              AND minute >= date_trunc('minute', %(watermark)s::timestamptz)), 0),
    %(offsets)s)
"""
HEARTBEAT = """
INSERT INTO stream_heartbeat (component, beat_at, status, details)
VALUES (%s, clock_timestamp(), %s, %s)
ON CONFLICT (component) DO UPDATE
SET beat_at = EXCLUDED.beat_at, status = EXCLUDED.status, details = EXCLUDED.details
"""
HEARTBEAT_COMPONENT = "streaming_job"


# ---------------------------------------------------------------------------------------------
# Pure classification (unit-tested without services)
# ---------------------------------------------------------------------------------------------
@dataclass
class Classified:
    """Every decoded row of a batch in exactly one bucket (candidates may still be duplicates
    of rows stored by earlier batches; the database's unique key decides those)."""

    input_rows: int
    dlq: pa.Table
    late: pa.Table
    on_time: pa.Table  # unique by event_id within the batch, ordered by (partition, offset)
    batch_duplicates: int  # on-time rows repeating an event_id seen earlier in this batch
    max_event_ts: datetime | None  # over every valid row (on time, late, duplicate)

    @property
    def candidates(self) -> int:
        return self.on_time.num_rows + self.batch_duplicates


def classify(table: pa.Table, watermark: datetime | None) -> Classified:
    """Split a decoded batch (decode.OUTPUT_SCHEMA) into DLQ / late / on-time / in-batch dups."""
    is_ok = pc.equal(table["status"], "ok")
    dlq = table.filter(pc.invert(is_ok))
    valid = table.filter(is_ok)
    max_ts = pc.max(valid["event_ts"]).as_py() if valid.num_rows else None
    if watermark is not None and valid.num_rows:
        wm = pa.scalar(watermark, type=valid.schema.field("event_ts").type)
        late_mask = pc.less(valid["event_ts"], wm)
        late = valid.filter(late_mask)
        on_time = valid.filter(pc.invert(late_mask))
    else:
        late, on_time = valid.slice(0, 0), valid
    on_time = on_time.sort_by([("kafka_partition", "ascending"), ("kafka_offset", "ascending")])
    on_time = on_time.append_column("_row", pa.array(range(on_time.num_rows), pa.int64()))
    firsts = on_time.group_by("event_id", use_threads=False).aggregate([("_row", "min")])
    keep = pc.is_in(on_time["_row"], value_set=firsts["_row_min"])
    unique = on_time.filter(keep).drop_columns(["_row"])
    return Classified(
        input_rows=table.num_rows,
        dlq=dlq,
        late=late,
        on_time=unique,
        batch_duplicates=on_time.num_rows - unique.num_rows,
        max_event_ts=max_ts,
    )


def next_watermark(
    prev_max: datetime | None, batch_max: datetime | None, delay: timedelta
) -> tuple[datetime | None, datetime | None]:
    """(max event time so far, watermark for the next batch = that max − delay)."""
    candidates = [t for t in (prev_max, batch_max) if t is not None]
    if not candidates:
        return None, None
    top = max(candidates)
    return top, top - delay


def offsets_json(table: pa.Table) -> dict[str, list[int]]:
    """{partition: [first offset, last offset]} of the rows in this batch."""
    if table.num_rows == 0:
        return {}
    g = table.group_by("kafka_partition", use_threads=False).aggregate(
        [("kafka_offset", "min"), ("kafka_offset", "max")]
    )
    return {
        str(p): [lo, hi]
        for p, lo, hi in zip(
            g["kafka_partition"].to_pylist(),
            g["kafka_offset_min"].to_pylist(),
            g["kafka_offset_max"].to_pylist(),
            strict=True,
        )
    }


def stage_csv(on_time: pa.Table) -> bytes:
    """On-time rows as CSV for COPY (nulls unquoted-empty, strings quoted)."""
    buf = io.BytesIO()
    pacsv.write_csv(
        on_time.select(STAGE_COLUMNS), buf, pacsv.WriteOptions(include_header=False)
    )
    return buf.getvalue()


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


# ---------------------------------------------------------------------------------------------
# The sink
# ---------------------------------------------------------------------------------------------
class BatchSink:
    """State kept by the driver across batches: a DB connection and a Kafka producer."""

    def __init__(self, settings: Settings, query_id: str | None = None) -> None:
        self.settings = settings
        self.query_id = query_id
        self.conn: psycopg.Connection | None = None
        self.producer: Producer | None = None
        self.batches = 0

    # -- plumbing -------------------------------------------------------------------------------
    def _query_id(self) -> str:
        """The streaming query's persistent id, from the checkpoint's metadata file."""
        if self.query_id is None:
            meta = Path(self.settings.checkpoint_dir) / "metadata"
            self.query_id = json.loads(meta.read_text().splitlines()[0])["id"]
        return self.query_id

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            self.conn = db.connect(self.settings, "writer")
            self.conn.execute(TEMP_TABLES)
            self.conn.commit()
        return self.conn

    def _drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close; drop it
                pass
        self.conn = None

    def _with_db_retry(self, what: str, fn: Any) -> Any:
        """Run ``fn(conn)``; on connection loss reconnect and retry with backoff (bounded)."""
        deadline = time.monotonic() + self.settings.stream_db_retry_s
        delay, attempt = 0.5, 0
        while True:
            try:
                return fn(self._connection())
            except psycopg.OperationalError as exc:
                attempt += 1
                self._drop_connection()
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("%s: database unavailable (attempt %d): %s; retry in %.1fs",
                            what, attempt, str(exc).strip().splitlines()[0], delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _kafka(self) -> Producer:
        if self.producer is None:
            self.producer = Producer(producer_config(self.settings, **{"linger.ms": 5}))
        return self.producer

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(30)
        self._drop_connection()

    # -- per batch ------------------------------------------------------------------------------
    def process_batch(self, df: Any, batch_id: int) -> None:
        """foreachBatch callback: decode, classify, route, commit — exactly once in effect."""
        batch_start = datetime.now(UTC)
        query_id = self._query_id()

        def lookup(conn: psycopg.Connection) -> tuple[bool, datetime | None, datetime | None]:
            with conn.transaction():
                done = conn.execute(
                    "SELECT 1 FROM batch_ledger WHERE query_id = %s AND batch_id = %s",
                    (query_id, batch_id),
                ).fetchone()
                prev = conn.execute(
                    "SELECT max_event_ts, watermark FROM batch_ledger WHERE query_id = %s "
                    "AND batch_id < %s ORDER BY batch_id DESC LIMIT 1",
                    (query_id, batch_id),
                ).fetchone()
            return bool(done), *(prev or (None, None))

        done, prev_max, watermark = self._with_db_retry("ledger lookup", lookup)
        if done:
            log.info("batch %s of query %s already committed: replay skipped", batch_id, query_id)
            return
        s = self.settings
        decoded = df.coalesce(max(1, _cores(s.spark_master))).mapInArrow(
            arrow_decoder(s.schema_registry_url, watermark, s.stream_max_future_minutes),
            SPARK_DDL,
        )
        table = decoded.toArrow()
        spark_s = (datetime.now(UTC) - batch_start).total_seconds()
        c = classify(table, watermark)
        max_ts, new_wm = next_watermark(
            prev_max, c.max_event_ts, timedelta(minutes=s.stream_watermark_minutes)
        )
        detected_at = datetime.now(UTC)
        self._route_to_kafka(c, watermark, detected_at)
        dlq_rows = self._dlq_rows(c, detected_at)
        late_rows = self._late_rows(c, watermark, detected_at)
        csv = stage_csv(c.on_time)
        offsets = offsets_json(table)

        def commit(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (query_id,))
                cur.execute(
                    "SELECT 1 FROM batch_ledger WHERE query_id = %s AND batch_id = %s",
                    (query_id, batch_id),
                )
                if cur.fetchone():
                    return None
                if dlq_rows:
                    cur.executemany(INSERT_DLQ, dlq_rows)
                if late_rows:
                    cur.executemany(INSERT_LATE, late_rows)
                stored = 0
                found: dict[str, int] = {}
                if c.on_time.num_rows:
                    with cur.copy(
                        f"COPY stage_events ({', '.join(STAGE_COLUMNS)}) FROM STDIN (FORMAT csv)"
                    ) as cp:
                        cp.write(csv)
                    cur.execute(INSERT_EVENTS, {"batch_start": batch_start, "batch_id": batch_id})
                    stored = cur.rowcount
                    anomalies.update_minute_counts(cur)
                    found = anomalies.detect(cur, s)
                row = {
                    "query_id": query_id, "batch_id": batch_id, "started_at": batch_start,
                    "input_rows": c.input_rows, "stored": stored, "dlq": c.dlq.num_rows,
                    "late": c.late.num_rows, "duplicates": c.candidates - stored,
                    "anomalies": sum(found.values()), "max_event_ts": max_ts,
                    "watermark": new_wm, "offsets": Jsonb(offsets),
                }
                cur.execute(INSERT_LEDGER, row)
                beat = {k: v for k, v in row.items() if k not in ("offsets", "started_at")}
                beat["anomalies_by_type"] = found
                cur.execute(
                    HEARTBEAT,
                    (HEARTBEAT_COMPONENT, "batch", Jsonb(json.loads(
                        json.dumps(beat, default=_json_default)))),
                )
                return row

        row = self._with_db_retry(f"batch {batch_id}", commit)
        self.batches += 1
        if row is None:
            log.info("batch %s committed concurrently: skipped", batch_id)
            return
        log.info(
            "batch %s: input=%d stored=%d dlq=%d late=%d dup=%d anomalies=%d "
            "(%.0f ms, of which Spark decode+collect %.0f ms)",
            batch_id, row["input_rows"], row["stored"], row["dlq"], row["late"],
            row["duplicates"], row["anomalies"],
            (datetime.now(UTC) - batch_start).total_seconds() * 1000, spark_s * 1000,
        )

    def _route_to_kafka(
        self, c: Classified, watermark: datetime | None, detected_at: datetime
    ) -> None:
        """Send DLQ and late records with their original bytes; flush and fail on any error."""
        if not c.dlq.num_rows and not c.late.num_rows:
            return
        s = self.settings
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        p = self._kafka()
        stamp = detected_at.isoformat()
        for r in c.dlq.select(
            ["raw_key", "raw_value", "reason", "detail", "kafka_partition", "kafka_offset"]
        ).to_pylist():
            self._produce(p, s.topic_dlq, r["raw_key"], r["raw_value"], [
                ("reason", r["reason"]), ("detail", r["detail"] or ""),
                ("source_topic", s.topic_raw), ("source_partition", str(r["kafka_partition"])),
                ("source_offset", str(r["kafka_offset"])), ("detected_at", stamp),
            ], on_delivery)
        for r in c.late.select(
            ["raw_key", "raw_value", "event_id", "event_ts", "kafka_partition", "kafka_offset"]
        ).to_pylist():
            lateness = int((watermark - r["event_ts"]) / timedelta(milliseconds=1))
            self._produce(p, s.topic_late, r["raw_key"], r["raw_value"], [
                ("event_id", r["event_id"]), ("watermark", watermark.isoformat()),
                ("lateness_ms", str(lateness)), ("source_topic", s.topic_raw),
                ("source_partition", str(r["kafka_partition"])),
                ("source_offset", str(r["kafka_offset"])), ("detected_at", stamp),
            ], on_delivery)
        remaining = p.flush(120)
        if remaining or errors:
            raise KafkaException(
                f"DLQ/late delivery failed: {remaining} undelivered, errors: {errors[:3]}"
            )

    @staticmethod
    def _produce(
        p: Producer, topic: str, key: bytes | None, value: bytes | None,
        headers: list[tuple[str, str]], cb: Any,
    ) -> None:
        while True:
            try:
                p.produce(topic, value=value, key=key, headers=headers, on_delivery=cb)
                return
            except BufferError:  # local queue full: let deliveries drain
                p.poll(0.1)

    def _dlq_rows(self, c: Classified, detected_at: datetime) -> list[tuple[Any, ...]]:
        topic = self.settings.topic_raw
        return [
            (topic, r["kafka_partition"], r["kafka_offset"], r["reason"], r["detail"],
             r["event_id"], r["raw_value"], r["raw_key"], r["kafka_ts"], detected_at)
            for r in c.dlq.select([
                "kafka_partition", "kafka_offset", "reason", "detail", "event_id", "raw_value",
                "raw_key", "kafka_ts",
            ]).to_pylist()
        ]

    def _late_rows(
        self, c: Classified, watermark: datetime | None, detected_at: datetime
    ) -> list[tuple[Any, ...]]:
        topic = self.settings.topic_raw
        rows = []
        drop = ["status", "reason", "detail", "raw_key", "raw_value"]
        for r in c.late.drop_columns(drop).to_pylist():
            assert watermark is not None  # late rows exist only once a watermark exists
            lateness = int((watermark - r["event_ts"]) / timedelta(milliseconds=1))
            payload = json.loads(json.dumps(r, default=_json_default))
            rows.append((
                topic, r["kafka_partition"], r["kafka_offset"], r["event_id"], r["event_ts"],
                r["session_id"], r["event_type"], watermark, lateness, Jsonb(payload),
                detected_at,
            ))
        return rows


def _cores(master: str) -> int:
    """Parallelism of a ``local[N]`` master (2 otherwise): the decode partitions per batch."""
    if master.startswith("local[") and master[6:-1].isdigit():
        return int(master[6:-1])
    return 2
