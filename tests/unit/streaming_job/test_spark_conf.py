"""The streaming driver's Spark properties: the core cap applies on a standalone master only."""

from __future__ import annotations

from pathlib import Path

from clickguard.settings import Settings
from streaming_job.job import stream_spark_conf


def test_cores_max_caps_each_driver_on_a_standalone_master_only(tmp_path: Path) -> None:
    cluster = Settings(home=tmp_path, spark_master="spark://127.0.0.1:17077")
    assert "spark.cores.max" not in stream_spark_conf(cluster)  # unset: Spark's default
    capped = cluster.model_copy(update={"stream_cores_max": 2})
    assert stream_spark_conf(capped)["spark.cores.max"] == "2"
    local = capped.model_copy(update={"spark_master": "local[2]"})
    assert "spark.cores.max" not in stream_spark_conf(local)  # local mode has no such thing
