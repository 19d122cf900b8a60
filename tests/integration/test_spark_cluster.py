"""The optional Spark nodes (issue 11): a standalone master and worker from pyspark's own jars,
and a Spark Connect server whose driver runs on that cluster. A Connect client computes on the
worker's executor and reads PostgreSQL through the server's JDBC connector jar.

The client runs in a subprocess: creating a Connect session sets SPARK_CONNECT_MODE_ENABLED in
the process environment, which would turn every later local SparkSession of this test session
into a Connect one.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from clickguard import procs
from clickguard.settings import REPO_ROOT, Settings
from clickguard_stack.manager import Stack

NODES = ["spark-master", "spark-worker-1", "spark-connect"]

CLIENT = """
import json, sys
from pyspark.sql import SparkSession
url, jdbc, user, password = sys.argv[1:5]
spark = SparkSession.builder.remote(url).getOrCreate()
out = {"connect": type(spark).__module__,
       "sum": spark.range(100_000).selectExpr("sum(id) AS s").first()["s"]}
df = spark.read.jdbc(jdbc, "(SELECT count(*) AS n FROM schema_migrations) AS t",
                     properties={"user": user, "password": password,
                                 "driver": "org.postgresql.Driver"})
out["migrations"] = df.first()["n"]
spark.stop()
print(json.dumps(out))
"""

# one aggregation whose generated code depends on MODULUS (a literal in the code)
AGGREGATE = """
import sys
from pyspark.sql import SparkSession, functions as F
url, modulus = sys.argv[1], int(sys.argv[2])
spark = SparkSession.builder.remote(url).getOrCreate()
df = spark.range(200_000).withColumn("k", F.col("id") % modulus)
print(df.groupBy("k").agg(F.sum("id").alias("s"), F.max("id").alias("m")).count())
spark.stop()
"""


@pytest.fixture(scope="module")
def cluster(stack: Stack, settings: Settings) -> Iterator[Stack]:
    on_cluster = settings.model_copy(
        update={"spark_connect_master": f"spark://127.0.0.1:{settings.spark_master_port}"}
    )
    from pyspark.sql import SparkSession

    said: list[str] = []
    s = Stack(on_cluster, echo=said.append)
    # a local Spark in this process, as in a full test session: the warm-up must not care
    local = None if SparkSession.getActiveSession() else (
        SparkSession.builder.master("local[1]").appName("beside-the-warm-up").getOrCreate())
    try:
        s.up(NODES, timeout=180)
        # the Connect server ran its warm-up (daily_sessions' plans, clickguard_dagster.warm)
        assert any(line.startswith("  warmed spark-connect: ran") for line in said), said
        if local is not None:
            local.stop()
            local = None
        yield s
    finally:
        if local is not None:
            local.stop()
        for name in reversed(NODES):
            s.node(name).stop()


def test_spark_nodes_are_optional_and_listed(settings: Settings) -> None:
    s = Stack(settings, echo=lambda _m: None)
    assert not set(NODES) & set(s.resolve(None))  # not part of the default `up` (make run)
    on = Stack(settings.model_copy(update={"spark_cluster_up": True}), echo=lambda _m: None)
    assert set(NODES) <= set(on.resolve(None))
    assert set(NODES) <= {r.name for r in s.status()}


def test_connect_server_runs_jobs_on_the_standalone_cluster(
    cluster: Stack, settings: Settings
) -> None:
    rows = {r.name: r for r in cluster.status()}
    assert [rows[n].state for n in NODES] == ["healthy"] * 3, [rows[n] for n in NODES]
    assert rows["spark-master"].detail.startswith("1 worker(s) alive")
    # the Connect server is an application of the cluster, holding the worker's core
    apps = cluster.node("spark-master").master_state()["activeapps"]  # type: ignore[attr-defined]
    assert [a["name"] for a in apps] == ["clickguard-connect"]
    assert apps[0]["cores"] == settings.spark_worker_cores
    # the UIs the README lists answer
    for port in (settings.spark_master_ui_port, settings.spark_worker_ui_port_base,
                 settings.spark_connect_ui_port):
        assert httpx.get(f"http://127.0.0.1:{port}", follow_redirects=True,
                         timeout=10).status_code == 200, port

    jdbc = f"jdbc:postgresql://{settings.pg_host}:{settings.pg_port}/{settings.pg_db}"
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, f"sc://127.0.0.1:{settings.spark_connect_port}", jdbc,
         settings.pg_writer_user, settings.pg_writer_password],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["connect"].startswith("pyspark.sql.connect")
    assert out["sum"] == 4_999_950_000
    assert out["migrations"] > 0


def test_batch_assets_on_spark_connect_match_pandas(cluster: Stack, settings: Settings) -> None:
    """Dagster on Spark Connect: every batch asset, computed on the Connect server (its jobs on
    the standalone worker), equals the independent pandas computation, with every asset check
    passing. The asset test itself runs in a child pytest with CLICKGUARD_SPARK_REMOTE set (its
    resources then hold a Connect session; see the module docstring for why a child)."""
    test = "tests/integration/clickguard_dagster/test_assets.py::test_every_asset_matches_pandas"
    env = {**os.environ, "CLICKGUARD_SPARK_REMOTE": f"sc://127.0.0.1:{settings.spark_connect_port}",
           "CLICKGUARD_KEEP_STACK": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "1 passed" in proc.stdout
    # the work ran on the cluster: the Connect application's executor on the worker ran tasks
    ui = f"http://127.0.0.1:{settings.spark_connect_ui_port}/api/v1/applications"
    (app,) = httpx.get(ui, timeout=10).json()
    executors = httpx.get(f"{ui}/{app['id']}/executors", timeout=10).json()
    on_worker = [e for e in executors if e["id"] != "driver"]
    assert on_worker and sum(e["totalTasks"] for e in on_worker) > 0, executors
    # every run ended its Connect session on the server (dagster-pyspark alone left each one
    # open until the server's idle timeout); the server's UI learns it from its event bus
    deadline, online = time.monotonic() + 15, ""
    while time.monotonic() < deadline:
        page = httpx.get(f"http://127.0.0.1:{settings.spark_connect_ui_port}/connect/",
                         timeout=10).text
        text = " ".join(re.sub(r"<[^>]+>", " ", page).split())  # sentence split by tags, lines
        online = " ".join(re.findall(r"\d+ session\(s\) are online", text))
        if online == "0 session(s) are online":
            break
        time.sleep(0.5)
    assert online == "0 session(s) are online", online


def compilations(settings: Settings) -> int:
    """Classes the Connect server's driver has compiled so far (Spark's CodeGenerator metrics)."""
    metrics = httpx.get(f"http://127.0.0.1:{settings.spark_connect_ui_port}/metrics/json/",
                        timeout=10).json()
    (count,) = [h["count"] for name, h in metrics["histograms"].items()
                if name.endswith(".driver.CodeGenerator.compilationTime")]
    return int(count)


def test_client_sessions_share_the_servers_generated_code(
    cluster: Stack, settings: Settings
) -> None:
    """Each `dagster asset materialize` is a new Connect session. A session that runs a query
    another session ran compiles nothing again (Spark's own SparkConnectServer isolated every
    session's class loader, and its code cache is per class loader)."""
    modulus = random.randrange(1_000, 1_000_000)  # code no earlier test compiled
    url = f"sc://127.0.0.1:{settings.spark_connect_port}"
    counts = [compilations(settings)]
    for _session in range(2):
        proc = subprocess.run([sys.executable, "-c", AGGREGATE, url, str(modulus)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip().splitlines()[-1] == str(min(modulus, 200_000))
        counts.append(compilations(settings))
    assert counts[1] > counts[0], counts  # the first session compiled the query's code
    assert counts[2] == counts[1], counts  # the second one reused it


def test_the_driver_program_ends_with_a_killed_server(cluster: Stack) -> None:
    """The Connect node's JVM runs clickguard_stack/connect_server.py as its child: SIGKILL the
    JVM (no shutdown hook runs) and the child must end by itself, not linger as an orphan.
    Runs last in this module: the server stays down (the fixture's teardown stops the rest)."""
    node = cluster.node("spark-connect")
    jvm = node.pid()
    assert jvm is not None
    children = procs.descendants(jvm)
    assert children, "the Connect server's driver program is not running"
    os.kill(jvm, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while any(procs.is_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [c for c in children if procs.is_alive(c)], "orphaned after the JVM died"
