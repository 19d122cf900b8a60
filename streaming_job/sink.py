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
   counts, anomaly rules, the lease fence (:mod:`streaming_job.lease`: this driver still holds
   the stream's lease epoch, else roll back), heartbeat and the ledger row (with the driver and
   epoch that committed it); COMMIT.
6. Last line of defence against poison records: if that transaction fails with a *data* error
   (SQLSTATE class 22/23, or 54000) that validation did not foresee, the on-time rows are
   bisected in rolled-back savepoints to find the offenders; those are dead-lettered
   (``unstorable``, the database's error as detail, original bytes re-read from the batch) and
   the transaction is retried without them. Any other error fails the batch as before.

DLQ and late Kafka records are the original key, value and headers plus headers of our own
(``clickguard.error.*`` / ``clickguard.late.*``, as Kafka Connect's DLQ does).

With ``stream_decode = "executors"`` (:meth:`BatchSink._process_on_executors`), steps 2-4 and the
COPY run on the executors instead, one Spark task per Kafka partition range
(:func:`stage_partition`): each task decodes and classifies its rows, sends its DLQ and late
records to Kafka, COPYs all its rows into the UNLOGGED ``stream_stage`` table tagged with the
batch's attempt and its task attempt id, and returns one row of counts. The driver holds no
records: its one transaction (step 5) moves the staged rows of the tasks Spark counted into
``events`` (in-batch duplicates across tasks resolved by ``DISTINCT ON``), ``dlq_events`` and
``late_events``, deletes the batch's scratch rows and writes the ledger row, fenced as above.
Rows of failed or speculative task attempts are never moved. A batch with a record the
database rejects (step 6) is taken through the driver path, whose isolation finds it.

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
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from confluent_kafka import KafkaException, Producer
from psycopg.types.json import Jsonb

from clickguard import db, ledger, stream_state
from clickguard.contract import DlqReason, pg_text
from clickguard.kafka import producer_config
from clickguard.settings import Settings
from clickguard.spark import checkpoint_query_id
from streaming_job import anomalies
from streaming_job.decode import (
    RAW_COLUMNS,
    SPARK_DDL,
    SchemaCache,
    arrow_decoder,
    decode_table,
    registry_cache,
    warmup_batch,
    warmup_schema,
)
from streaming_job.lease import Lease

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
    ON CONFLICT (event_id, event_ts) DO NOTHING  -- the key of the day-partitioned table
    RETURNING event_id, event_ts, session_id, event_type, item_id, category)
INSERT INTO new_events SELECT * FROM ins
"""
INSERT_DLQ = """
INSERT INTO dlq_events (source_topic, source_partition, source_offset, reason, detail, event_id,
                        raw_value, raw_key, kafka_ts, detected_at, raw_header_keys,
                        raw_header_values)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::bytea[], %s::bytea[])
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
    late, duplicates, anomalies, duration_ms, max_event_ts, watermark, state_rows, offsets,
    driver, driver_epoch)
VALUES (%(query_id)s, %(batch_id)s, %(started_at)s, clock_timestamp(), %(input_rows)s,
    %(stored)s, %(dlq)s, %(late)s, %(duplicates)s, %(anomalies)s,
    (extract(epoch FROM clock_timestamp() - %(started_at)s) * 1000)::int, %(max_event_ts)s,
    %(watermark)s,
    coalesce((SELECT sum(events) FROM minute_counts WHERE scope = 'all'
              AND minute >= date_trunc('minute', %(watermark)s::timestamptz)), 0),
    %(offsets)s, %(driver)s, %(driver_epoch)s)
"""
# Executor-side sink (stream_decode = executors): the scratch table of migration 0011.
STAGE_TAG = ["query_id", "batch_id", "attempt", "task", "kind"]
STAGE_DLQ_COLUMNS = [
    "kafka_partition", "kafka_offset", "reason", "detail", "event_id", "raw_value", "raw_key",
    "kafka_ts", "detected_at", "raw_header_keys", "raw_header_values",
]  # = INSERT_DLQ's parameters after the source topic
STAGE_LATE_COLUMNS = [
    "kafka_partition", "kafka_offset", "event_id", "event_ts", "session_id", "event_type",
    "watermark", "lateness_ms", "payload", "detected_at",
]  # = INSERT_LATE's parameters after the source topic
STAGED = "FROM stream_stage WHERE attempt = %(attempt)s AND task = ANY(%(tasks)s) AND kind = "
MOVE_DLQ = f"""
INSERT INTO dlq_events (source_topic, source_partition, source_offset, reason, detail, event_id,
                        raw_value, raw_key, kafka_ts, detected_at, raw_header_keys,
                        raw_header_values)
SELECT %(topic)s, {", ".join(STAGE_DLQ_COLUMNS)} {STAGED} 'dlq'
ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
"""
MOVE_LATE = f"""
INSERT INTO late_events (source_topic, source_partition, source_offset, event_id, event_ts,
                         session_id, event_type, watermark, lateness_ms, payload, detected_at)
SELECT %(topic)s, {", ".join(STAGE_LATE_COLUMNS)} {STAGED} 'late'
ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
"""
# in-batch duplicates across tasks: the first by (partition, offset) wins, as in classify()
MOVE_EVENTS = f"""
WITH ins AS (
    INSERT INTO events ({", ".join(STAGE_COLUMNS)}, batch_start_ts, commit_ts, batch_id)
    SELECT {", ".join(STAGE_COLUMNS)}, %(batch_start)s, clock_timestamp(), %(batch_id)s
    FROM (SELECT DISTINCT ON (event_id) * {STAGED} 'event'
          ORDER BY event_id, kafka_partition, kafka_offset) first
    ORDER BY kafka_partition, kafka_offset
    ON CONFLICT (event_id, event_ts) DO NOTHING
    RETURNING event_id, event_ts, session_id, event_type, item_id, category)
INSERT INTO new_events SELECT * FROM ins
"""
DELETE_STAGE = "DELETE FROM stream_stage WHERE query_id = %s AND batch_id <= %s"
# Header prefixes of the records we add to the DLQ and late topics (the original headers stay).
DLQ_HEADER = "clickguard.error."
LATE_HEADER = "clickguard.late."
ISOLATION_ROUNDS = 3  # a data error that survives this many isolations fails the batch


def is_data_error(exc: BaseException) -> bool:
    """A failure caused by the rows themselves (not the connection, permissions or the SQL):
    data exceptions (22), integrity violations (23), a value too large for an index (54000)."""
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in ("22", "23") or state == "54000"


def db_error_detail(exc: BaseException) -> str:
    """The database's error for a DLQ detail: SQLSTATE and first line, made storable."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return pg_text(f"PostgreSQL {getattr(exc, 'sqlstate', None)}: {first}", 500) or ""


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


@dataclass(frozen=True)
class BatchCounts:
    """What a batch's ledger row counts before the load (stored comes from the database)."""

    input_rows: int
    dlq: int
    late: int
    candidates: int  # on-time rows, in-batch duplicates included


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


def header_pairs(headers: list[dict[str, Any]] | None) -> list[tuple[str, bytes | None]]:
    """Spark's header structs as (key, value) pairs for confluent-kafka, order kept."""
    return [(h["key"], None if h["value"] is None else bytes(h["value"])) for h in headers or []]


def header_arrays(
    headers: list[dict[str, Any]] | None,
) -> tuple[list[bytes] | None, list[bytes | None] | None]:
    """(keys, values) for dlq_events' bytea[] columns; (None, None) without headers."""
    if not headers:
        return None, None
    pairs = header_pairs(headers)
    return [k.encode("utf-8", "surrogatepass") for k, _ in pairs], [v for _, v in pairs]


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
    """``batch_ledger.offsets`` of this batch (format: :mod:`clickguard.ledger`)."""
    if table.num_rows == 0:
        return {}
    g = table.group_by("kafka_partition", use_threads=False).aggregate(
        [("kafka_offset", "min"), ("kafka_offset", "max")]
    )
    return ledger.encode_offsets(
        zip(
            g["kafka_partition"].to_pylist(),
            g["kafka_offset_min"].to_pylist(),
            g["kafka_offset_max"].to_pylist(),
            strict=True,
        )
    )


def stage_csv(on_time: pa.Table) -> bytes:
    """On-time rows as CSV for COPY into stage_events."""
    return stage_csv_columns(on_time, STAGE_COLUMNS)


def stage_csv_columns(table: pa.Table, columns: list[str]) -> bytes:
    """``columns`` of ``table`` as CSV for COPY (nulls unquoted-empty, strings quoted)."""
    buf = io.BytesIO()
    pacsv.write_csv(table.select(columns), buf, pacsv.WriteOptions(include_header=False))
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

    def __init__(
        self, settings: Settings, query_id: str | None = None, lease: Lease | None = None
    ) -> None:
        self.settings = settings
        self.query_id = query_id
        self.lease = lease  # when set, every commit is fenced by its epoch (see lease.py)
        setup = [TEMP_TABLES]
        if lease is not None:
            # a driver paused between the fence (a row lock) and COMMIT would block the
            # takeover for as long as it sleeps: PostgreSQL ends such a session instead
            idle = max(15.0, 3 * settings.stream_lease_ttl_s)
            setup.insert(0, f"SET idle_in_transaction_session_timeout = '{idle:.0f}s'")
        self.pg = db.KeptConnection(settings, "writer", autocommit=False, setup=setup)
        self.producer: Producer | None = None
        self.batches = 0

    # -- plumbing -------------------------------------------------------------------------------
    def _query_id(self) -> str:
        """The streaming query's persistent id, from the checkpoint's metadata file."""
        if self.query_id is None:
            self.query_id = checkpoint_query_id(self.settings.checkpoint_dir)
        return self.query_id

    def with_db_retry(self, what: str, fn: Any) -> Any:
        """Run ``fn(conn)``; on connection loss reconnect and retry with backoff (bounded).
        Both sink paths use it: the driver's transactions and :func:`stage_partition`'s COPY."""
        deadline = time.monotonic() + self.settings.stream_db_retry_s
        delay, attempt = 0.5, 0
        while True:
            try:
                return fn(self.pg.get())
            except psycopg.OperationalError as exc:
                attempt += 1
                self.pg.drop()
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
        self.pg.drop()

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

        done, prev_max, watermark = self.with_db_retry("ledger lookup", lookup)
        if done:
            log.info("batch %s of query %s already committed: replay skipped", batch_id, query_id)
            return
        if self.settings.stream_decode == "executors" and self._process_on_executors(
            df, query_id, batch_id, batch_start, prev_max, watermark
        ):
            return
        table, (collect_s, decode_s) = self._decode(df, watermark)
        c = classify(table, watermark)
        max_ts, new_wm = next_watermark(
            prev_max, c.max_event_ts, timedelta(minutes=self.settings.stream_watermark_minutes)
        )
        detected_at = datetime.now(UTC)
        dlq = c.dlq.to_pylist()
        self.route_to_kafka(dlq, c.late, watermark, detected_at)
        late_rows = self.late_rows(c, watermark, detected_at)
        offsets = offsets_json(table)
        on_time = c.on_time
        for attempt in range(1, ISOLATION_ROUNDS + 1):
            dlq_rows = self.dlq_rows(dlq, detected_at)
            counts = BatchCounts(
                input_rows=c.input_rows, dlq=len(dlq_rows), late=c.late.num_rows,
                candidates=on_time.num_rows + c.batch_duplicates,
            )
            load = driver_load(dlq_rows, late_rows, on_time, batch_start, batch_id)
            if self.settings.stream_decode == "executors":  # handed over by the executor path:
                load = clearing_stage(load, query_id, batch_id)  # its scratch rows go too
            commit = self._commit_fn(
                query_id, batch_id, batch_start, counts, load, max_ts, new_wm, offsets,
            )
            try:
                row = self.with_db_retry(f"batch {batch_id}", commit)
                break
            except psycopg.Error as exc:
                if not is_data_error(exc) or attempt == ISOLATION_ROUNDS:
                    raise
                log.warning("batch %s: data error (%s); isolating the offending records",
                            batch_id, db_error_detail(exc))
                bad = self.with_db_retry(
                    f"batch {batch_id} isolation",
                    lambda conn, rows=on_time: isolate(conn, rows, batch_start, batch_id),
                )
                if not bad:  # not reproducible by loading the rows alone: fail as before
                    raise
                poison = self._poison_records(df, on_time, bad)
                self.route_to_kafka(poison, on_time.slice(0, 0), watermark, detected_at)
                dlq += poison
                bad_rows = pa.array([i for i, _ in bad], pa.int64())
                keep = pc.invert(pc.is_in(pa.array(range(on_time.num_rows)), bad_rows))
                on_time = on_time.filter(keep)
                log.warning("batch %s: %d record(s) dead-lettered as unstorable", batch_id,
                            len(poison))
        self._committed(batch_id, row, batch_start, "collect", collect_s, decode_s)

    def _process_on_executors(
        self, df: Any, query_id: str, batch_id: int, batch_start: datetime,
        prev_max: datetime | None, watermark: datetime | None,
    ) -> bool:
        """``stream_decode = executors``: the batch's tasks decode, classify, route and stage
        their partitions (:func:`stage_partition`); the driver only gets one row of counts per
        task and commits the move of their staged rows. False when a record needs the driver
        path's poison isolation (the database rejected it): the caller then runs that path."""
        s = self.settings
        attempt, detected_at = uuid.uuid4().hex, datetime.now(UTC)
        t0 = time.monotonic()
        stats = df.select(*RAW_COLUMNS).mapInArrow(
            executor_stager(s, query_id, batch_id, attempt, watermark, detected_at), STATS_DDL
        ).toArrow()
        stage_s = time.monotonic() - t0
        rejected = [r for r in stats["unstorable"].to_pylist() if r]
        if rejected:
            log.warning("batch %s: staging rejected a record (%s); batch goes through the "
                        "driver's isolation", batch_id, rejected[0])
            return False

        def total(column: str) -> int:
            return int(pc.sum(stats[column]).as_py() or 0)

        counts = BatchCounts(
            input_rows=total("input_rows"), dlq=total("dlq"), late=total("late"),
            candidates=total("candidates"),
        )
        batch_max = pc.max(stats["max_event_ts"]).as_py() if stats.num_rows else None
        max_ts, new_wm = next_watermark(
            prev_max, batch_max, timedelta(minutes=s.stream_watermark_minutes)
        )
        params = {"attempt": attempt, "tasks": stats["task"].to_pylist(), "topic": s.topic_raw,
                  "batch_start": batch_start, "batch_id": batch_id}

        def load(cur: psycopg.Cursor) -> int:
            if counts.dlq:
                cur.execute(MOVE_DLQ, params)
            if counts.late:
                cur.execute(MOVE_LATE, params)
            if not counts.candidates:
                return 0
            cur.execute(MOVE_EVENTS, params)
            return cur.rowcount

        commit = self._commit_fn(
            query_id, batch_id, batch_start, counts, clearing_stage(load, query_id, batch_id),
            max_ts, new_wm, merge_offsets(stats["offsets"].to_pylist()),
        )
        try:
            row = self.with_db_retry(f"batch {batch_id}", commit)
        except psycopg.Error as exc:
            if not is_data_error(exc):
                raise
            log.warning("batch %s: data error (%s); batch goes through the driver's isolation",
                        batch_id, db_error_detail(exc))
            return False
        self._committed(batch_id, row, batch_start, "stage", stage_s, 0.0,
                        f"; {stats.num_rows} tasks")
        return True

    def _committed(
        self, batch_id: int, row: dict[str, Any] | None, batch_start: datetime,
        spark_part: str, spark_s: float, decode_s: float, extra: str = "",
    ) -> None:
        """Count the batch and log its line (`clickguard bench scaling` parses it)."""
        self.batches += 1
        if row is None:
            log.info("batch %s committed concurrently: skipped", batch_id)
            return
        log.info(
            "batch %s: input=%d stored=%d dlq=%d late=%d dup=%d anomalies=%d "
            "(%.0f ms, of which Spark %s %.0f ms, decode %.0f ms%s)",
            batch_id, row["input_rows"], row["stored"], row["dlq"], row["late"],
            row["duplicates"], row["anomalies"],
            (datetime.now(UTC) - batch_start).total_seconds() * 1000, spark_part,
            spark_s * 1000, decode_s * 1000, extra,
        )

    def _decode(self, df: Any, watermark: datetime | None) -> tuple[pa.Table, tuple[float, float]]:
        """Collect the batch's raw Kafka rows as Arrow (JVM only: no Python workers) and decode
        them here in the driver; returns the decoded table and (collect s, decode s).

        Decoding in Spark's Python workers cost a worker round trip per batch, and workers idle
        for a minute are killed, so the first batches after a quiet spell re-spawned them (the
        28 s warm-up). ``stream_decode = "workers"`` keeps the old path (``mapInArrow``).
        """
        s = self.settings
        t0 = time.monotonic()
        if s.stream_decode == "workers":
            table = df.coalesce(max(1, _cores(s.spark_master))).mapInArrow(
                arrow_decoder(
                    s.schema_registry_url, watermark, s.stream_max_future_minutes,
                    s.stream_max_string_bytes,
                ),
                SPARK_DDL,
            ).toArrow()
            return table, (time.monotonic() - t0, 0.0)
        raw = df.select(*RAW_COLUMNS).toArrow()
        t1 = time.monotonic()
        table = decode_table(
            raw, registry_cache(s.schema_registry_url), watermark, None,
            timedelta(minutes=s.stream_max_future_minutes), s.stream_max_string_bytes,
        )
        return pa.Table.from_batches([table]), (t1 - t0, time.monotonic() - t1)

    def warm_up(self) -> float:
        """Run the per-batch Python paths once on a tiny synthetic batch (decode, classify, CSV)
        and open the database connection and the Kafka producer, so a new or idle driver
        serves its first real batch at full speed. Nothing is written. Returns seconds spent."""
        t0 = time.monotonic()
        raw = warmup_batch()
        table = pa.Table.from_batches([decode_table(raw, SchemaCache(warmup_schema))])
        c = classify(table, None)
        stage_csv(c.on_time)
        offsets_json(table)
        self.late_rows(c, None, datetime.now(UTC))
        try:  # one attempt each, no retry loop: a down service must not delay the start
            conn = self.pg.get()
            with conn.transaction():  # ended here: an open transaction would turn the next
                conn.execute("SELECT 1")  # batch's transaction blocks into savepoints
            self._kafka().list_topics(timeout=10)
        except Exception as exc:  # noqa: BLE001 - warm-up is best effort; batches retry anyway
            log.warning("warm-up: %s", exc)
            self.pg.drop()
        return time.monotonic() - t0

    def _commit_fn(
        self, query_id: str, batch_id: int, batch_start: datetime, counts: BatchCounts,
        load: Callable[[psycopg.Cursor], int], max_ts: datetime | None,
        new_wm: datetime | None, offsets: dict[str, Any],
    ) -> Any:
        """The batch transaction: ledger check, ``load`` (writes the DLQ, late and new event rows
        and returns the events stored), anomalies, fence, ledger row, heartbeat."""
        s = self.settings

        def commit(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (query_id,))
                cur.execute(
                    "SELECT 1 FROM batch_ledger WHERE query_id = %s AND batch_id = %s",
                    (query_id, batch_id),
                )
                if cur.fetchone():
                    return None
                stored = load(cur)
                found: dict[str, int] = {}
                if counts.candidates:
                    anomalies.update_minute_counts(cur)
                    found = anomalies.detect(cur, s)
                row = {
                    "query_id": query_id, "batch_id": batch_id, "started_at": batch_start,
                    "input_rows": counts.input_rows, "stored": stored, "dlq": counts.dlq,
                    "late": counts.late, "duplicates": counts.candidates - stored,
                    "anomalies": sum(found.values()), "max_event_ts": max_ts,
                    "watermark": new_wm, "offsets": Jsonb(offsets),
                    "driver": self.lease.holder if self.lease else None,
                    "driver_epoch": self.lease.epoch if self.lease else None,
                }
                if self.lease is not None:
                    # last statement before COMMIT: a takeover waits for us, or we see it and
                    # roll back (LeaseLost) — a fenced driver commits nothing
                    self.lease.fence(cur)
                cur.execute(INSERT_LEDGER, row)
                beat = {k: v for k, v in row.items() if k not in ("offsets", "started_at")}
                beat["anomalies_by_type"] = found
                cur.execute(
                    stream_state.HEARTBEAT,
                    (stream_state.SINK_COMPONENT, "batch", Jsonb(json.loads(
                        json.dumps(beat, default=_json_default)))),
                )
                return row

        return commit

    def _poison_records(
        self, df: Any, on_time: pa.Table, bad: list[tuple[int, BaseException]]
    ) -> list[dict[str, Any]]:
        """DLQ records for the isolated rows, with their original key/value/headers re-read from
        the batch's Kafka rows (on-time rows do not carry their bytes to the driver)."""
        from pyspark.sql import functions as F

        rows = on_time.select(["kafka_partition", "kafka_offset", "event_id", "kafka_ts"])
        picked = [rows.slice(i, 1).to_pylist()[0] | {"error": err} for i, err in bad]
        wanted = [f"{r['kafka_partition']}:{r['kafka_offset']}" for r in picked]
        raw = {
            (r["partition"], r["offset"]): r
            for r in df.where(
                F.concat_ws(":", F.col("partition"), F.col("offset")).isin(wanted)
            ).select("key", "value", "partition", "offset", "headers").collect()
        }
        out = []
        for r in picked:
            src = raw[(r["kafka_partition"], r["kafka_offset"])]
            headers = [
                {"key": h["key"], "value": h["value"]} for h in (src["headers"] or [])
            ]
            out.append({
                "kafka_partition": r["kafka_partition"], "kafka_offset": r["kafka_offset"],
                "reason": DlqReason.UNSTORABLE.value, "detail": db_error_detail(r["error"]),
                "event_id": pg_text(r["event_id"], 1000), "kafka_ts": r["kafka_ts"],
                "raw_key": None if src["key"] is None else bytes(src["key"]),
                "raw_value": None if src["value"] is None else bytes(src["value"]),
                "raw_headers": headers or None,
            })
        return out

    def route_to_kafka(
        self, dlq: list[dict[str, Any]], late: pa.Table, watermark: datetime | None,
        detected_at: datetime,
    ) -> None:
        """Send DLQ and late records as they came in (key, value, headers) plus our headers;
        flush and fail on any error. Both sink paths (driver and :func:`stage_partition`)."""
        if not dlq and not late.num_rows:
            return
        s = self.settings
        errors: list[str] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        p = self._kafka()
        stamp = detected_at.isoformat()
        for r in dlq:
            self._produce(p, s.topic_dlq, r["raw_key"], r["raw_value"], [
                *header_pairs(r["raw_headers"]),
                (DLQ_HEADER + "reason", r["reason"]), (DLQ_HEADER + "detail", r["detail"] or ""),
                (DLQ_HEADER + "source.topic", s.topic_raw),
                (DLQ_HEADER + "source.partition", str(r["kafka_partition"])),
                (DLQ_HEADER + "source.offset", str(r["kafka_offset"])),
                (DLQ_HEADER + "detected_at", stamp),
            ], on_delivery)
        for r in late.select([
            "raw_key", "raw_value", "raw_headers", "event_id", "event_ts", "kafka_partition",
            "kafka_offset",
        ]).to_pylist():
            assert watermark is not None  # late rows exist only once a watermark exists
            lateness = int((watermark - r["event_ts"]) / timedelta(milliseconds=1))
            self._produce(p, s.topic_late, r["raw_key"], r["raw_value"], [
                *header_pairs(r["raw_headers"]),
                (LATE_HEADER + "event_id", r["event_id"]),
                (LATE_HEADER + "watermark", watermark.isoformat()),
                (LATE_HEADER + "lateness_ms", str(lateness)),
                (LATE_HEADER + "source.topic", s.topic_raw),
                (LATE_HEADER + "source.partition", str(r["kafka_partition"])),
                (LATE_HEADER + "source.offset", str(r["kafka_offset"])),
                (LATE_HEADER + "detected_at", stamp),
            ], on_delivery)
        remaining = p.flush(120)
        if remaining or errors:
            raise KafkaException(
                f"DLQ/late delivery failed: {remaining} undelivered, errors: {errors[:3]}"
            )

    @staticmethod
    def _produce(
        p: Producer, topic: str, key: bytes | None, value: bytes | None,
        headers: list[tuple[str, Any]], cb: Any,
    ) -> None:
        while True:
            try:
                p.produce(topic, value=value, key=key, headers=headers, on_delivery=cb)
                return
            except BufferError:  # local queue full: let deliveries drain
                p.poll(0.1)

    def dlq_rows(
        self, dlq: list[dict[str, Any]], detected_at: datetime
    ) -> list[tuple[Any, ...]]:
        """``INSERT_DLQ``'s parameter rows for DLQ records (the source topic first)."""
        topic = self.settings.topic_raw
        return [
            (topic, r["kafka_partition"], r["kafka_offset"], r["reason"], r["detail"],
             r["event_id"], r["raw_value"], r["raw_key"], r["kafka_ts"], detected_at,
             *header_arrays(r["raw_headers"]))
            for r in dlq
        ]

    def late_rows(
        self, c: Classified, watermark: datetime | None, detected_at: datetime
    ) -> list[tuple[Any, ...]]:
        """``INSERT_LATE``'s parameter rows for a batch's late rows (the source topic first)."""
        topic = self.settings.topic_raw
        rows = []
        drop = ["status", "reason", "detail", "raw_key", "raw_value", "raw_headers"]
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


def driver_load(
    dlq_rows: list[tuple[Any, ...]], late_rows: list[tuple[Any, ...]], on_time: pa.Table,
    batch_start: datetime, batch_id: int,
) -> Callable[[psycopg.Cursor], int]:
    """The driver path's load step for :meth:`BatchSink._commit_fn` (rows held by the driver)."""
    csv = stage_csv(on_time)

    def load(cur: psycopg.Cursor) -> int:
        if dlq_rows:
            cur.executemany(INSERT_DLQ, dlq_rows)
        if late_rows:
            cur.executemany(INSERT_LATE, late_rows)
        if not on_time.num_rows:
            return 0
        load_on_time(cur, csv, batch_start, batch_id)
        return cur.rowcount

    return load


def clearing_stage(
    load: Callable[[psycopg.Cursor], int], query_id: str, batch_id: int,
) -> Callable[[psycopg.Cursor], int]:
    """``load``, then delete the executor path's scratch rows in ``stream_stage`` of this batch
    (every attempt's) and any an earlier batch left — in the batch's transaction, so they go
    exactly when it commits. Returns what ``load`` returns (the events stored)."""

    def load_and_clear(cur: psycopg.Cursor) -> int:
        stored = load(cur)
        cur.execute(DELETE_STAGE, (query_id, batch_id))
        return stored

    return load_and_clear


def load_on_time(cur: psycopg.Cursor, csv: bytes, batch_start: datetime, batch_id: int) -> None:
    """COPY the on-time rows into stage_events and insert the new ones into events."""
    with cur.copy(f"COPY stage_events ({', '.join(STAGE_COLUMNS)}) FROM STDIN (FORMAT csv)") as cp:
        cp.write(csv)
    cur.execute(INSERT_EVENTS, {"batch_start": batch_start, "batch_id": batch_id})


def isolate(
    conn: psycopg.Connection, on_time: pa.Table, batch_start: datetime, batch_id: int
) -> list[tuple[int, BaseException]]:
    """Row indexes of ``on_time`` that the database rejects on their own, with its error.

    Bisects in savepoints of one transaction that is always rolled back (nothing is written):
    k offenders among n rows cost O(k log n) loads. Rows that fail only in combination are not
    found (the caller then fails the batch as before). Non-data errors propagate.
    """
    def probe(lo: int, hi: int) -> BaseException | None:
        try:
            with conn.transaction(force_rollback=True), conn.cursor() as cur:
                load_on_time(cur, stage_csv(on_time.slice(lo, hi - lo)), batch_start, batch_id)
                anomalies.update_minute_counts(cur)
        except psycopg.Error as exc:
            if not is_data_error(exc):
                raise
            return exc
        return None

    def find(lo: int, hi: int, err: BaseException) -> list[tuple[int, BaseException]]:
        if hi - lo == 1:
            return [(lo, err)]
        mid = (lo + hi) // 2
        out: list[tuple[int, BaseException]] = []
        for a, b in ((lo, mid), (mid, hi)):
            e = probe(a, b)
            if e is not None:
                out += find(a, b, e)
        return out

    with conn.transaction(force_rollback=True):
        first = probe(0, on_time.num_rows) if on_time.num_rows else None
        return find(0, on_time.num_rows, first) if first is not None else []


# ---------------------------------------------------------------------------------------------
# Executor side (stream_decode = executors)
# ---------------------------------------------------------------------------------------------
# One row per task back to the driver: what the ledger needs, never the records.
STATS_SCHEMA = pa.schema([
    ("task", pa.int64()), ("input_rows", pa.int64()), ("dlq", pa.int64()), ("late", pa.int64()),
    ("candidates", pa.int64()), ("max_event_ts", pa.timestamp("us", tz="UTC")),
    ("offsets", pa.string()), ("unstorable", pa.string()),
])
STATS_DDL = ("task bigint, input_rows bigint, dlq bigint, late bigint, candidates bigint, "
             "max_event_ts timestamp, offsets string, unstorable string")
_WORKER_SINKS: dict[str, BatchSink] = {}  # per Python worker: its connection and producer


def _worker_sink(settings: Settings, key: str) -> BatchSink:
    """This Python worker's sink (connection, Kafka producer), kept across tasks and batches:
    Spark reuses its Python workers, so a batch opens no new connections. ``key`` identifies
    ``settings`` (its JSON, computed once on the driver by :func:`executor_stager`): each task
    gets an unpickled copy of the settings, so their identity would never match."""
    sink = _WORKER_SINKS.get(key)
    if sink is None:
        sink = _WORKER_SINKS[key] = BatchSink(settings, query_id="executor")
    return sink


def executor_stager(
    settings: Settings, query_id: str, batch_id: int, attempt: str,
    watermark: datetime | None, detected_at: datetime,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function handed to ``mapInArrow`` (pickled to the executors' Python workers)."""
    sink_key = settings.model_dump_json()  # once per batch, on the driver

    def fn(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        task = ctx.taskAttemptId() if ctx is not None else 0
        yield stage_partition(
            _worker_sink(settings, sink_key), list(batches), (query_id, batch_id, attempt, task),
            watermark, detected_at,
        )

    return fn


def stage_partition(
    sink: BatchSink, raw: list[pa.RecordBatch], tag: tuple[str, int, str, int],
    watermark: datetime | None, detected_at: datetime,
) -> pa.RecordBatch:
    """One task's share of a batch, on an executor: decode and classify its Kafka rows, send
    its DLQ and late records to Kafka (flushed), COPY every row into ``stream_stage`` tagged
    ``tag`` = (query id, batch id, attempt, task attempt id) and commit; the task's counts.

    A row the staging table rejects (a data error) stages nothing and is reported in
    ``unstorable``: the driver then takes the batch through its poison isolation."""
    s = sink.settings
    task = tag[3]
    stats: dict[str, Any] = {"task": task, "input_rows": 0, "dlq": 0, "late": 0,
                             "candidates": 0, "max_event_ts": None, "offsets": "[]",
                             "unstorable": None}
    rows = pa.Table.from_batches(raw) if raw else None
    if rows is None or rows.num_rows == 0:
        return pa.RecordBatch.from_pylist([stats], schema=STATS_SCHEMA)
    table = pa.Table.from_batches([decode_table(
        rows, registry_cache(s.schema_registry_url), watermark, None,
        timedelta(minutes=s.stream_max_future_minutes), s.stream_max_string_bytes,
    )])
    c = classify(table, watermark)
    dlq = c.dlq.to_pylist()
    sink.route_to_kafka(dlq, c.late, watermark, detected_at)
    dlq_rows = sink.dlq_rows(dlq, detected_at)
    late_rows = sink.late_rows(c, watermark, detected_at)
    n = c.on_time.num_rows
    events = c.on_time.select(STAGE_COLUMNS)
    for name, value, typ in zip(STAGE_TAG, (*tag, "event"), (
            pa.string(), pa.int64(), pa.string(), pa.int64(), pa.string()), strict=True):
        events = events.append_column(name, pa.array([value] * n, typ))
    csv = stage_csv_columns(events, [*STAGE_COLUMNS, *STAGE_TAG])

    def write(conn: psycopg.Connection) -> None:
        with conn.transaction(), conn.cursor() as cur:
            if n:
                with cur.copy(f"COPY stream_stage ({', '.join([*STAGE_COLUMNS, *STAGE_TAG])}) "
                              "FROM STDIN (FORMAT csv)") as cp:
                    cp.write(csv)
            for kind, columns, found in (("dlq", STAGE_DLQ_COLUMNS, dlq_rows),
                                         ("late", STAGE_LATE_COLUMNS, late_rows)):
                if found:
                    with cur.copy(f"COPY stream_stage ({', '.join([*STAGE_TAG, *columns])}) "
                                  "FROM STDIN") as cp:
                        for r in found:
                            cp.write_row((*tag, kind, *r[1:]))  # r[0]: the source topic

    try:
        sink.with_db_retry(f"batch {tag[1]} task {task} staging", write)
    except psycopg.Error as exc:
        if not is_data_error(exc):
            raise
        stats["unstorable"] = db_error_detail(exc)
    offsets = offsets_json(table)
    stats.update(
        input_rows=c.input_rows, dlq=len(dlq_rows), late=c.late.num_rows,
        candidates=c.candidates, max_event_ts=c.max_event_ts,
        offsets=json.dumps([[int(p), lo, hi] for p, (lo, hi) in offsets.items()]),
    )
    return pa.RecordBatch.from_pylist([stats], schema=STATS_SCHEMA)


def merge_offsets(per_task: list[str | None]) -> dict[str, list[int]]:
    """The batch's ``batch_ledger.offsets`` from each task's [[partition, first, last], ...]
    (a Kafka partition may be split over several tasks)."""
    ranges: dict[int, tuple[int, int]] = {}
    for text in per_task:
        for p, lo, hi in json.loads(text or "[]"):
            old = ranges.get(p)
            ranges[p] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return ledger.encode_offsets((p, lo, hi) for p, (lo, hi) in sorted(ranges.items()))


def _cores(master: str) -> int:
    """Parallelism of a ``local[N]`` master (2 otherwise): the decode partitions per batch."""
    if master.startswith("local[") and master[6:-1].isdigit():
        return int(master[6:-1])
    return 2
