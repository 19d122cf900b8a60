"""Spark configuration shared by the streaming job and the Dagster assets (one place)."""

from __future__ import annotations

import json
import os
import socket
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


def require_connect_server(remote: str, timeout: float = 5.0) -> None:
    """Raise a clear error when the Spark Connect server of ``remote`` (``sc://host:port``)
    accepts no TCP connection: pyspark's Connect client would retry for many minutes and the
    Dagster run would hang without a word (seen 2026-12-05: 20 minutes with the server down)."""
    from urllib.parse import urlsplit

    url = urlsplit(remote)
    host, port = url.hostname or "127.0.0.1", url.port or 15002
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise RuntimeError(
            f"the Spark Connect server {remote} is not reachable ({exc}): start it with "
            "`clickguard stack up spark-connect`, or unset CLICKGUARD_SPARK_REMOTE to run "
            "each batch run on a local Spark"
        ) from exc


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
