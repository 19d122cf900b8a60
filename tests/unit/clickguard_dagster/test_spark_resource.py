"""The batch assets' Spark resource fails at once, saying what to do, when its Connect server is
down (pyspark's Connect client retried for many minutes and the run hung without a word)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from clickguard.settings import Settings
from clickguard.spark import require_connect_server
from clickguard_dagster.resources import SparkResource, build_resources


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_down_connect_server_fails_the_session_at_once(tmp_path: Path) -> None:
    remote = f"sc://127.0.0.1:{free_port()}"
    spark = build_resources(Settings(_env_file=None, home=tmp_path, spark_remote=remote))["spark"]
    assert isinstance(spark, SparkResource)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="not reachable") as err:
        _ = spark.spark_session
    assert time.monotonic() - t0 < 30  # refused at once; the client alone retried for minutes
    assert remote in str(err.value) and "clickguard stack up spark-connect" in str(err.value)


def test_a_listening_connect_server_passes_the_probe() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        require_connect_server(f"sc://127.0.0.1:{server.getsockname()[1]}")  # no error
