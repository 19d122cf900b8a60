"""The streaming job: Kafka source → micro-batches → :class:`streaming_job.sink.BatchSink`.

Spark is the Kafka source, the micro-batch engine (offsets + checkpoint) and the parallel decoder;
PostgreSQL holds every piece of state in the same transaction as the data (see ``sink``). Started
by :mod:`streaming_job.supervisor` as a child process (``stream_drivers`` of them); run directly
with ``python -m streaming_job.job``. SIGTERM stops the query cleanly; SIGKILL is survivable: the
next run resumes from the checkpoint and the ledger skips batches that were already committed.

Warm standby: every driver starts its JVM and SparkSession, warms the sink's per-batch paths and
opens its database connection and Kafka producer (:func:`warm_up`), then waits for the stream's
lease (:mod:`streaming_job.lease`). Only the holder starts the query, from the shared checkpoint;
the others run a tiny Spark job in the background every ``WARM_EVERY_S`` (:func:`warm_spark`:
task launch and Arrow collect stay warm; with ``stream_decode = "workers"`` it also keeps Spark's
Python workers alive, which Spark ends after a minute idle); the first round also reads the raw
topic's last second on their executors (:func:`warm_kafka`). A driver that loses the lease
exits with ``FENCED_RC`` and is restarted as a standby. Each driver publishes its role in
``<node dir>/driver-<slot>.json`` (read by ``clickguard stack status``); the active one writes
its pid to ``<node dir>/job.pid`` (what ``clickguard stack kill streaming`` kills).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from pyspark.errors import StreamingQueryException

from clickguard import db, procs, stream_state
from clickguard.jars import QUIET_JVM_OPTS
from clickguard.kafka import end_offsets, spark_kafka_options
from clickguard.settings import Settings, get_settings
from clickguard.spark import spark_conf
from streaming_job.decode import RAW_COLUMNS, SPARK_DDL, arrow_decoder
from streaming_job.lease import FENCED_RC, Lease, driver_id
from streaming_job.sink import BatchSink, _cores

log = logging.getLogger("streaming_job.job")
QUERY_NAME = "clickguard-stream"
IDLE_BEAT_S = 5.0
WARM_EVERY_S = 45.0  # a standby re-runs warm_spark before Spark reaps idle Python workers
ACTIVE_PID_FILE = "job.pid"
# the columns of the Kafka source, for the warm-up job of the "workers" decode path
KAFKA_DDL = ("key binary, value binary, partition int, offset long, timestamp timestamp, "
             "headers array<struct<key: string, value: binary>>")
# Per-batch fixed cost in local mode: no shuffle in the batch path (1 partition if the poison
# re-read ever shuffles), no locality wait before launching a Kafka task, no empty batches.
STREAM_CONF = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "1",
    "spark.locality.wait": "0s",
    "spark.sql.streaming.noDataMicroBatches.enabled": "false",
    # Checkpoint writes without a subprocess: Spark's default FileContext manager renames via
    # AbstractFileSystem, which runs `readlink` per file (Hadoop has no native library here),
    # and the checksummed local FS doubles every file with a .crc (more `chmod`s). Two files
    # per batch (offsets, commits) cost ≈ 8 process spawns/s from a 1 GB JVM at 1,000 ev/s.
    # Renames stay atomic (File.renameTo); a torn write is still impossible.
    "spark.sql.streaming.checkpointFileManagerClass":
        "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager",
    "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
    # One driver JVM holds the local executor too; a batch is ≤ maxOffsetsPerTrigger rows of
    # ~100 B, so 1 GB of G1 heap mostly became RSS (1.3 GB per driver, two drivers with the
    # warm standby). Serial GC: no concurrent GC threads, no remembered sets; young pauses of a
    # 512 MB heap are a few ms.
    # C1 only (TieredStopAtLevel=1): each batch's work is Spark's fixed per-batch overhead, not
    # hot loops, and C2 kept recompiling it (its thread was 9.5 % of a core after 4 min at
    # 1,000 ev/s). Measured with `clickguard bench cpu` and `bench latency --rate 5000`:
    # streaming 49.7 -> 34.5 % of a core at 1,000 ev/s; e2e p95/p99 at 5k 949/1,234 -> 829/1,011 ms.
    # -Xms64m: the initial heap was the JVM's default, 1/64 of the machine's RAM (384 MB on 24 GB),
    # so each driver's eden alone was 103 MB and its old generation grew into a 258 MB space;
    # the heap now grows only as far as the batches need (it may still reach 512 MB).
    "spark.driver.memory": "512m",
    "spark.driver.extraJavaOptions":
        f"-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xms64m {QUIET_JVM_OPTS}",
}


def stream_spark_conf(settings: Settings) -> dict[str, str]:
    """The streaming driver's Spark properties."""
    conf = spark_conf(settings, "clickguard-streaming", **STREAM_CONF)
    if settings.spark_master.startswith("spark://") and settings.stream_cores_max:
        # standalone scheduling gives an app every free core; capped, a warm standby keeps
        # executors of its own and takes over without waiting for the dead driver's
        conf["spark.cores.max"] = str(settings.stream_cores_max)
    return conf


def spark_session(settings: Settings) -> Any:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for k, v in stream_spark_conf(settings).items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def start_query(spark: Any, settings: Settings, sink: BatchSink) -> Any:
    """The Kafka source (earliest on the first run, then the checkpoint) and the sink."""
    raw = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap_servers)
        .options(**spark_kafka_options(settings))  # TLS/SASL of a managed cluster, if set
        .option("subscribe", settings.topic_raw)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", settings.stream_max_offsets_per_trigger)
        .option("failOnDataLoss", "true")
        .option("kafka.fetch.max.wait.ms", 50)
        # a dead or hung partition leader must cost seconds, not until it returns (settings)
        .option("kafka.request.timeout.ms", settings.stream_kafka_request_timeout_ms)
        .option("kafka.default.api.timeout.ms", 2 * settings.stream_kafka_request_timeout_ms)
        .option("fetchOffset.numRetries", 5)
        .option("fetchOffset.retryIntervalMs", 100)
        .option("includeHeaders", "true")  # DLQ/late records keep the producer's headers
        .load()
        .select("key", "value", "partition", "offset", "timestamp", "headers")
    )
    settings.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return (
        raw.writeStream.queryName(QUERY_NAME)
        .foreachBatch(sink.process_batch)
        .option("checkpointLocation", str(settings.checkpoint_dir))
        .trigger(processingTime=f"{settings.stream_trigger_ms} milliseconds")
        .start()
    )


def warm_spark(spark: Any, settings: Settings) -> float:
    """One tiny Spark job so a standby's first real batch is warm: task launch and the Arrow
    collect path; with ``stream_decode = "workers"`` the batch path itself on one local record
    (Python workers forked with pyarrow and the decoder imported, mapInArrow codegen). Returns
    the seconds it took."""
    t0 = time.monotonic()
    s = settings
    if s.stream_decode in ("workers", "executors"):
        row = (None, b"clickguard-warm-up", 0, 0, datetime.now(UTC), None)
        df = spark.createDataFrame([row], KAFKA_DDL)
        df.coalesce(max(1, _cores(s.spark_master))).mapInArrow(
            arrow_decoder(s.schema_registry_url, None, s.stream_max_future_minutes,
                          s.stream_max_string_bytes),
            SPARK_DDL,
        ).toArrow()
    else:
        spark.range(4, numPartitions=2).selectExpr(
            "cast(cast(id as string) as binary) as value", "current_timestamp() as ts"
        ).toArrow()
    return time.monotonic() - t0


def warm_kafka(spark: Any, settings: Settings) -> int:
    """A batch read of the raw topic's last second on this driver's executors, through the
    batch path's own Spark part (the Arrow collect, or the decoder on the Python workers), so
    the Kafka client's classes and fetch path are loaded and compiled before the first real
    batch: a standby's first batch after a takeover on a standalone cluster spent 9.3 s of
    11.5 s in Spark's collect on executors that had never read Kafka. Returns the rows read."""
    s = settings
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", s.bootstrap_servers)
        .options(**spark_kafka_options(s))
        .option("subscribe", s.topic_raw)
        .option("startingTimestamp", str(int(time.time() * 1000) - 1000))
        .option("startingOffsetsByTimestampStrategy", "latest")  # a quiet partition: none
        .option("endingOffsets", "latest")
        .option("includeHeaders", "true")
        .load()
        .select(*RAW_COLUMNS)
    )
    if s.stream_decode == "driver":
        return int(raw.toArrow().num_rows)
    decoder = arrow_decoder(s.schema_registry_url, None, s.stream_max_future_minutes,
                            s.stream_max_string_bytes)
    return int(raw.mapInArrow(decoder, SPARK_DDL).count())


def warm_up(spark: Any, sink: BatchSink, jvm: bool = False) -> float:
    """Before the query starts: the sink's Python paths on a synthetic batch and its
    connections, so the first real batch is not slow. ``jvm`` also runs :func:`warm_spark`:
    worth it for a standby (it runs in the background there) and on the supervisor's first
    start (no backlog waits yet), not on the way to a query start after a crash, where the
    first batch pays the same cost anyway and the extra job only delays the query (minutes on
    a saturated machine). Returns the seconds it took."""
    t0 = time.monotonic()
    if jvm:
        try:
            warm_spark(spark, sink.settings)
        except Exception as exc:  # noqa: BLE001 - best effort: the query surfaces real problems
            log.warning("Spark warm-up failed: %s", exc)
    spark_s = time.monotonic() - t0
    sink_s = sink.warm_up()
    log.info("warm-up: Spark %.2fs, sink %.2fs", spark_s, sink_s)
    return time.monotonic() - t0


def wait_for_kafka(settings: Settings, timeout: float | None = None) -> bool:
    """Wait until the raw topic answers with its partitions' end offsets, at most ``timeout``
    (default: ``settings.stream_kafka_wait_s``).

    `stack up` starts the stream while the brokers are still starting (after a crash they
    recover their logs first), so that Spark's start overlaps theirs; a query started before
    they answer fails, and the supervisor would count a failed run. On the supervisor's first
    start only. Returns whether Kafka answered (if not, the query start reports why)."""
    limit = settings.stream_kafka_wait_s if timeout is None else timeout
    t0 = time.monotonic()
    said = False
    while True:
        try:
            if end_offsets(settings, settings.topic_raw, timeout=2.0):
                if said:
                    log.info("Kafka answers after %.1fs", time.monotonic() - t0)
                return True
            why = f"topic {settings.topic_raw} has no partitions yet"
        except Exception as exc:  # noqa: BLE001 - brokers still starting: ask again
            why = stream_state.short_error(str(exc)) or type(exc).__name__
        if time.monotonic() - t0 >= limit:
            log.warning("Kafka did not answer in %.0fs (%s): starting anyway", limit, why)
            return False
        if not said:
            log.info("waiting for Kafka (%s)", why)
            said = True
        time.sleep(0.5)


def fresh_start_warm_up(spark: Any, settings: Settings) -> None:
    """A Kafka read on this driver's executors before it waits for the lease, on the
    supervisor's first start only. A fresh stack's first real batch otherwise loaded the Kafka
    client and compiled the batch path itself: events of the first 10 s waited p95 5.4-11.0 s
    (docs/results/cold-start-2026-12-03). `stack up` waits for the query, so this runs before
    traffic; a restart after a crash skips it (a backlog may be waiting, and the first batch
    pays the same cost). Called only once `wait_for_kafka` saw the raw topic answer."""
    t0 = time.monotonic()
    try:
        rows = warm_kafka(spark, settings)
    except Exception as exc:  # noqa: BLE001 - a cold first batch is slower, not wrong
        log.warning("fresh-start Kafka warm-up failed: %s", stream_state.short_error(str(exc)))
        return
    log.info("fresh start: Kafka warm-up read %d rows in %.1fs", rows, time.monotonic() - t0)


class DriverFile:
    """``<node dir>/driver-<slot>.json``: this driver's role for `stack status` and chaos."""

    def __init__(self, slot: str | None, holder: str) -> None:
        node = os.environ.get("CLICKGUARD_NODE")
        self.folder = Path(node) if node else None
        self.slot = slot
        self.info: dict[str, Any] = {
            "slot": slot, "pid": os.getpid(), "holder": holder, "role": "starting",
            "epoch": None, "warm": False, "since": stream_state.now_iso(),
        }

    def publish(self, role: str | None = None, **extra: Any) -> None:
        if role is not None and role != self.info["role"]:
            self.info["role"], self.info["since"] = role, stream_state.now_iso()
        self.info.update(extra, updated_at=stream_state.now_iso())
        if self.folder is None:
            return
        try:
            stream_state.write_json(
                self.folder / stream_state.driver_file(self.slot), self.info
            )
            if role == "active":
                tmp = self.folder / f".{ACTIVE_PID_FILE}.{os.getpid()}"
                tmp.write_text(str(os.getpid()))
                tmp.replace(self.folder / ACTIVE_PID_FILE)
        except OSError as exc:
            log.warning("could not publish the driver state: %s", exc)


def is_kafka_metrics_npe(message: str) -> bool:
    """The NullPointerException of SPARK-55271 in KafkaMicroBatchStream.metrics."""
    return "scala.Option.get()" in message and "IterableOps.map" in message


class Beats:
    """The driver's liveness row between batches (an idle stream still shows as alive).

    Written on one kept connection (:class:`clickguard.db.KeptConnection`); a down database
    only logs a warning, it must not stop the stream.
    """

    def __init__(self, settings: Settings) -> None:
        self.pg = db.KeptConnection(settings, "writer")

    def beat(self, status: str, details: dict[str, Any]) -> None:
        args = (stream_state.DRIVER_COMPONENT, status, json.dumps(details, default=str))
        try:
            self.pg.execute(stream_state.HEARTBEAT, args)
        except Exception as exc:  # noqa: BLE001 - a down database must not stop the stream
            self.pg.drop()
            log.warning("heartbeat failed: %s", exc)

    def close(self) -> None:
        self.pg.drop()


class BatchTracker:
    """Remembers the batch in progress and the exception that failed it, for the supervisor.

    Spark wraps a foreachBatch failure in many lines of Java and Python stack; the original
    exception, caught here, is the one line worth showing in `stack status` and alerts.
    """

    def __init__(self, sink: BatchSink) -> None:
        self.batch_id: int | None = None
        self.error: str | None = None
        self.committed = 0  # batches this run completed (the ledger may be unreachable)
        inner = sink.process_batch

        def process_batch(df: Any, batch_id: int) -> None:
            self.batch_id = batch_id
            try:
                inner(df, batch_id)
            except Exception as exc:
                self.error = stream_state.short_error(f"{type(exc).__name__}: {exc}")
                raise
            self.committed += 1

        sink.process_batch = process_batch  # type: ignore[method-assign]

    def write_exit(self, rc: int, error: str | None) -> None:
        """``<node dir>/job-exit[-<slot>].json`` for the supervisor (best effort)."""
        node = os.environ.get("CLICKGUARD_NODE")
        if not node:
            return
        name = os.environ.get("CLICKGUARD_JOB_EXIT_FILE") or stream_state.EXIT_FILE
        try:
            stream_state.write_json(Path(node) / name, {
                "exit_code": rc, "error": self.error or stream_state.short_error(error),
                "batch_id": self.batch_id, "batches_committed": self.committed,
                "at": stream_state.now_iso(),
            })
        except OSError as exc:
            log.warning("could not write the exit status: %s", exc)


def main() -> int:
    slot = os.environ.get("CLICKGUARD_DRIVER_SLOT")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout,
        format=f"%(asctime)s %(levelname)s %(name)s[d{slot or '-'}]: %(message)s",
    )
    settings = get_settings()
    stopping = False
    started = False
    holder = driver_id(slot)
    driver = DriverFile(slot, holder)

    def on_term(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not started:
            # still inside Spark start-up (a py4j call that may wait for Kafka indefinitely)
            # or a standby: nothing to commit or lose, so leave at once; the JVM exits with
            # its parent
            log.info("signal %d before the query started: exiting", signum)
            driver.publish("stopped")
            os._exit(0)
        log.info("signal %d: stopping the query", signum)
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    # a SIGKILLed supervisor must not leave this driver running unmanaged (and the lease
    # held): SIGTERM then, the clean stop above
    procs.die_with_parent_from_env()
    t0 = time.monotonic()
    driver.publish("starting")
    spark = spark_session(settings)
    lease = Lease(settings, holder)
    sink = BatchSink(settings, lease=lease)
    tracker = BatchTracker(sink)
    spark_s = time.monotonic() - t0
    # sink paths, DB connection and temp tables, Kafka producer; on the supervisor's first start
    # also Spark's batch path and a Kafka read (see fresh_start_warm_up)
    fresh = os.environ.get("CLICKGUARD_DRIVER_FRESH") == "1"
    # started with the brokers by `stack up`: what follows touches Kafka
    kafka_ok = fresh and wait_for_kafka(settings)
    warm_s = warm_up(spark, sink, jvm=fresh)
    if kafka_ok:  # unreachable brokers would hold this driver here, before the lease
        fresh_start_warm_up(spark, settings)
    log.info("driver %s warm: Spark %.1fs, warm-up %.1fs; waiting for the lease",
             holder, spark_s, warm_s)
    driver.publish("standby", warm=True, spark_start_s=round(spark_s, 1),
                   warm_up_s=round(warm_s, 1))
    active = threading.Event()

    def keep_warm() -> None:
        """Warm Spark in the background while standing by: never delays the lease polling (on
        a loaded machine one warm-up can take longer than a takeover should). The first run
        waits a little: a driver that gets the lease at once (the first start) skips it."""
        wait, kafka_warm = 2.0, False
        while not active.wait(wait):
            wait = WARM_EVERY_S
            try:
                warm_spark(spark, settings)
                if not kafka_warm:  # once: what it loads and compiles stays; every 45 s it
                    # read up to ~14,000 rows at 5,000 ev/s (0.4-4 s of a core per round)
                    t_read = time.monotonic()
                    rows = warm_kafka(spark, settings)
                    kafka_warm = True
                    log.info("Kafka warm-up: read %d rows on the executors in %.1fs", rows,
                             time.monotonic() - t_read)
                # `stack up` waits for the first round: its CPU is spent before traffic comes
                driver.publish(rewarms=int(driver.info.get("rewarms", 0)) + 1)
            except Exception as exc:  # noqa: BLE001 - a cold worker is slower, not wrong
                log.warning("re-warm failed: %s", stream_state.short_error(str(exc)))

    threading.Thread(target=keep_warm, name="keep-warm", daemon=True).start()
    acquired = lease.wait_acquire(lambda: stopping, lambda: None)
    active.set()
    if not acquired:
        return 0
    t_lease = time.monotonic()

    def fenced() -> None:
        """Another driver holds the lease: every commit of ours is fenced anyway; leave at
        once (no query.stop(): it would wait for a batch that cannot commit) so that this
        JVM stops touching the shared checkpoint too."""
        log.error("driver %s was fenced (epoch %s taken over): exiting to become a standby",
                  holder, lease.epoch)
        driver.publish("fenced")
        tracker.write_exit(FENCED_RC, "lease lost: fenced")
        os._exit(FENCED_RC)

    lease.start_renewing(on_lost=fenced)  # from the renewal thread, within a second of waking
    driver.publish("active", epoch=lease.epoch)
    log.info("driver %s holds the lease (epoch %s): starting the query", holder, lease.epoch)
    query = start_query(spark, settings, sink)
    sink.query_id = str(query.id)
    started = True
    driver.publish(query=str(query.id))  # the node is healthy from here (clickguard_stack)
    log.info(
        "query %s (run %s) started in %.1fs after taking the lease (%.1fs since launch): "
        "topic %s, checkpoint %s", query.id, query.runId, time.monotonic() - t_lease,
        time.monotonic() - t0, settings.topic_raw, settings.checkpoint_dir,
    )
    rc = 0
    error: str | None = None
    last_beat = 0.0
    beats = Beats(settings)
    npe_restarts = 0
    try:
        while not stopping:
            try:
                ended = query.awaitTermination(1)  # True once the query ended...
            except StreamingQueryException:  # ...or raises when it failed
                ended = True
            if lease.lost.is_set():  # a commit found the lease taken (LeaseLost)
                fenced()
            if ended:
                exc = query.exception()
                if exc is not None and is_kafka_metrics_npe(str(exc)) and npe_restarts < 5:
                    # Spark 4.1.1 bug (SPARK-55271): the first batch of a run that re-executes
                    # a planned-but-uncommitted batch (after a crash) fails in progress
                    # reporting AFTER the batch and its commit log entry are done. Restarting
                    # the query in this JVM resumes cleanly at the next batch.
                    npe_restarts += 1
                    log.warning("query hit SPARK-55271 after a replayed batch; restarting it")
                    query = start_query(spark, settings, sink)
                    continue
                log.error("query terminated: %s", exc)
                rc, error = 1, str(exc)
                break
            if time.monotonic() - last_beat >= IDLE_BEAT_S:
                last_beat = time.monotonic()
                p = query.lastProgress or {}
                beats.beat("running", {
                    "query_id": str(query.id), "run_id": str(query.runId),
                    "batches": sink.batches, "last_batch": p.get("batchId"),
                    "input_rows_per_s": p.get("inputRowsPerSecond"),
                    "processed_rows_per_s": p.get("processedRowsPerSecond"),
                    "status": query.status.get("message"), "driver": holder,
                    "epoch": lease.epoch,
                })
    except Exception as exc:
        log.exception("streaming job failed: %s", exc)
        rc, error = 1, f"{type(exc).__name__}: {exc}"
    finally:
        tracker.write_exit(rc, error)
        if query.isActive:
            query.stop()
        lease.release()  # after the query stopped: a standby takes over at once
        lease.close()
        sink.close()
        beats.beat("stopped", {"query_id": str(query.id), "rc": rc, "driver": holder})
        beats.close()
        driver.publish("stopped")
        spark.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
