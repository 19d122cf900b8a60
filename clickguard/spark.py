"""Spark configuration shared by the streaming job and the Dagster assets (one place)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from clickguard.jars import spark_jars
from clickguard.settings import Settings


def sql_session_conf(settings: Settings) -> dict[str, str]:
    """SQL settings every session of the project shares, local JVM or Spark Connect client:
    times in UTC whatever the machine's zone, and the configured shuffle width."""
    return {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
    }


def spark_conf(settings: Settings, app_name: str, **overrides: Any) -> dict[str, str]:
    """Spark properties: master, connector jars (at exactly the pyspark version), local dirs.

    Pass the result to ``SparkSession.builder.config(map=...)`` or to dagster-pyspark's
    ``PySparkResource(spark_config=...)``.
    """
    # Python workers must run this interpreter (the venv) whatever `python3` is on PATH; local
    # mode reads the environment, a cluster the conf, so set both
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    local_dir = settings.home / "spark-local"
    conf: dict[str, Any] = {
        "spark.app.name": app_name,
        "spark.master": settings.spark_master,
        "spark.jars": ",".join(str(p) for p in spark_jars(settings)),
        **sql_session_conf(settings),
        "spark.driver.memory": "1g",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.local.dir": str(local_dir),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.adaptive.enabled": "false",
        "spark.python.worker.reuse": "true",
        "spark.pyspark.python": sys.executable,
    }
    conf.update(overrides)
    return {k: str(v) for k, v in conf.items()}


def warm_connect(settings: Settings, rounds: int = 2) -> float:
    """Run jobs shaped like the batch assets' on the Spark Connect server, so the first Dagster
    run after a server start does not pay class loading and JIT (a just-started server took
    21.8 s for daily_sessions on 1 M events, 12.1 s once it had served a run). Returns seconds.

    Per round: a JDBC read of ``events`` that returns no row (loads the PostgreSQL driver and
    the JDBC scan path), and a per-session aggregation over generated rows with the window,
    ``min_by``/``max_by`` and conditional sums the session assets use.

    Call it in a process of its own (``python -m clickguard.spark warm``): a Connect session
    switches pyspark's whole process to Connect mode, and cannot start beside a local Spark."""
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    t0 = time.monotonic()
    remote = f"sc://127.0.0.1:{settings.spark_connect_port}"
    conf: dict[str, bool | float | int | str | None] = {**sql_session_conf(settings)}
    spark = SparkSession.builder.remote(remote).config(map=conf).getOrCreate()
    url, props = settings.pg_jdbc_url, settings.pg_jdbc_properties("reader")
    try:
        for _ in range(rounds):
            spark.read.jdbc(url, "(SELECT event_id, event_ts FROM events WHERE false) AS w",
                            properties=props).count()
            ev = spark.range(300_000).selectExpr(
                "id % 20000 AS session_id", "timestamp_seconds(id) AS event_ts",
                "CAST(id AS STRING) AS event_id", "CONCAT('/p/', id % 20) AS page",
                "IF(id % 9 = 0, 'purchase', 'click') AS event_type")
            gap = F.col("event_ts").cast("long") - F.lag(F.col("event_ts").cast("long")).over(
                Window.partitionBy("session_id").orderBy("event_ts", "event_id"))
            order = F.struct("event_ts", "event_id")
            ev.withColumn("seq", F.sum(F.when(gap > 1800, 1).otherwise(0)).over(
                Window.partitionBy("session_id").orderBy("event_ts", "event_id"))
            ).groupBy("session_id", "seq").agg(
                F.min("event_ts"), F.max("event_ts"), F.count(F.lit(1)),
                F.sum(F.when(F.col("event_type") == "purchase", 1).otherwise(0)),
                F.min_by("page", order), F.max_by("page", order),
            ).count()
    finally:
        spark.stop()
    return time.monotonic() - t0


def checkpoint_query_id(checkpoint_dir: Path, timeout: float = 0.0, where: str = "") -> str:
    """The streaming query's persistent id from the checkpoint's ``metadata`` file.

    It keys ``batch_ledger`` across restarts. ``timeout`` > 0 waits for a query that is still
    starting to write it; ``where`` (e.g. a log path) is added to the timeout error.
    """
    meta = Path(checkpoint_dir) / "metadata"
    deadline = time.monotonic() + timeout
    while not meta.exists():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no checkpoint metadata at {meta} after {timeout:.0f}s{where}")
        time.sleep(0.5)
    return str(json.loads(meta.read_text().splitlines()[0])["id"])


if __name__ == "__main__":  # python -m clickguard.spark warm: the Connect server's warm-up
    from clickguard.settings import get_settings

    if sys.argv[1:] != ["warm"]:
        sys.exit("usage: python -m clickguard.spark warm")
    print(f"{warm_connect(get_settings()):.1f}")
