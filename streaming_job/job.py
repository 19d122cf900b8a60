"""The streaming job: Kafka source → micro-batches → :class:`streaming_job.sink.BatchSink`.

Spark is the Kafka source, the micro-batch engine (offsets + checkpoint) and the parallel decoder;
PostgreSQL holds every piece of state in the same transaction as the data (see ``sink``). Started
by :mod:`streaming_job.supervisor` as a child process; run directly with
``python -m streaming_job.job``. SIGTERM stops the query cleanly; SIGKILL is survivable: the next
run resumes from the checkpoint and the ledger skips batches that were already committed.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from pyspark.errors import StreamingQueryException

from clickguard import db, stream_state
from clickguard.settings import Settings, get_settings
from clickguard.spark import spark_conf
from streaming_job.sink import HEARTBEAT, BatchSink

log = logging.getLogger("streaming_job.job")
QUERY_NAME = "clickguard-stream"
IDLE_BEAT_S = 5.0
# Per-batch fixed cost in local mode: no shuffle in the batch path (1 partition if the poison
# re-read ever shuffles), no locality wait before launching a Kafka task, no empty batches.
STREAM_CONF = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "1",
    "spark.locality.wait": "0s",
    "spark.sql.streaming.noDataMicroBatches.enabled": "false",
}


def spark_session(settings: Settings) -> Any:
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    conf = spark_conf(settings, "clickguard-streaming", **STREAM_CONF)
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def start_query(spark: Any, settings: Settings, sink: BatchSink) -> Any:
    """The Kafka source (earliest on the first run, then the checkpoint) and the sink."""
    raw = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.bootstrap_servers)
        .option("subscribe", settings.topic_raw)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", settings.stream_max_offsets_per_trigger)
        .option("failOnDataLoss", "true")
        .option("kafka.fetch.max.wait.ms", 50)
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


def warm_up(spark: Any, sink: BatchSink, jvm: bool = False) -> None:
    """Before the query starts: the sink's Python paths on a synthetic batch and its
    connections, so the first real batch is not slow. ``jvm`` also runs one tiny Arrow collect
    in Spark (task launch, Arrow writer): worth it for a standby driver that warms before it
    takes over, not on a plain start, where the first batch pays the same cost anyway and the
    extra job only delays the query (minutes on a saturated machine)."""
    t0 = time.monotonic()
    if jvm:
        try:
            spark.range(4, numPartitions=2).selectExpr(
                "cast(cast(id as string) as binary) as value", "current_timestamp() as ts"
            ).toArrow()
        except Exception as exc:  # noqa: BLE001 - best effort: the query surfaces real problems
            log.warning("Spark warm-up failed: %s", exc)
    spark_s = time.monotonic() - t0
    sink_s = sink.warm_up()
    log.info("warm-up: Spark %.2fs, sink %.2fs", spark_s, sink_s)


def is_kafka_metrics_npe(message: str) -> bool:
    """The NullPointerException of SPARK-55271 in KafkaMicroBatchStream.metrics."""
    return "scala.Option.get()" in message and "IterableOps.map" in message


def beat(settings: Settings, status: str, details: dict[str, Any]) -> None:
    """Best-effort liveness row between batches (an idle stream still shows as alive)."""
    try:
        with db.connect(settings, "writer", autocommit=True) as conn:
            conn.execute(HEARTBEAT, ("streaming_driver", status, json.dumps(details, default=str)))
    except Exception as exc:  # noqa: BLE001 - a down database must not stop the stream
        log.warning("heartbeat failed: %s", exc)


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
        """``<node dir>/job-exit.json`` for the supervisor (best effort)."""
        node = os.environ.get("CLICKGUARD_NODE")
        if not node:
            return
        try:
            stream_state.write_json(Path(node) / stream_state.EXIT_FILE, {
                "exit_code": rc, "error": self.error or stream_state.short_error(error),
                "batch_id": self.batch_id, "batches_committed": self.committed,
                "at": stream_state.now_iso(),
            })
        except OSError as exc:
            log.warning("could not write the exit status: %s", exc)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = get_settings()
    stopping = False
    started = False

    def on_term(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if not started:
            # still inside Spark start-up (a py4j call that may wait for Kafka indefinitely):
            # nothing to commit or lose yet, so leave at once; the JVM exits with its parent
            log.info("signal %d during start-up: exiting", signum)
            os._exit(0)
        log.info("signal %d: stopping the query", signum)
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    t0 = time.monotonic()
    spark = spark_session(settings)
    sink = BatchSink(settings)
    warm_up(spark, sink)
    tracker = BatchTracker(sink)
    query = start_query(spark, settings, sink)
    sink.query_id = str(query.id)
    started = True
    log.info(
        "query %s (run %s) started in %.1fs: topic %s, checkpoint %s",
        query.id, query.runId, time.monotonic() - t0, settings.topic_raw, settings.checkpoint_dir,
    )
    rc = 0
    error: str | None = None
    last_beat = 0.0
    npe_restarts = 0
    try:
        while not stopping:
            try:
                ended = query.awaitTermination(1)  # True once the query ended...
            except StreamingQueryException:  # ...or raises when it failed
                ended = True
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
                beat(settings, "running", {
                    "query_id": str(query.id), "run_id": str(query.runId),
                    "batches": sink.batches, "last_batch": p.get("batchId"),
                    "input_rows_per_s": p.get("inputRowsPerSecond"),
                    "processed_rows_per_s": p.get("processedRowsPerSecond"),
                    "status": query.status.get("message"),
                })
    except Exception as exc:
        log.exception("streaming job failed: %s", exc)
        rc, error = 1, f"{type(exc).__name__}: {exc}"
    finally:
        tracker.write_exit(rc, error)
        if query.isActive:
            query.stop()
        sink.close()
        beat(settings, "stopped", {"query_id": str(query.id), "rc": rc})
        spark.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
