"""The ``spark-connect`` node's driver program: a Spark application whose only job is to host
the Spark Connect service, with one code-generation cache for every client session.

``spark-submit`` runs this file (pyspark's PythonRunner: the JVM is the parent, this process
its child, talking over the py4j gateway it was given). It creates the application's classic
SparkSession, then starts the Connect gRPC service in that driver, as Spark's own main class
does: in this order, the port opens (the node's health check) only once a session exists to
serve clients (Spark's Connect plugin opens it while the context starts, and a client that
came in between got "No active or default Spark session found"). Then it waits for its
standard input to end: the JVM holds the other end of that pipe, so this process ends with the
JVM however the JVM ends (stopped or killed), and leaves no orphan.

Why not Spark's own ``SparkConnectServer`` main class: it forces per-session artifact isolation
(``spark.sql.artifact.isolation.enabled`` and ``...alwaysApplyClassloader``, set in its session
builder, over any ``--conf``), so each client session gets its own class loader, and Spark keys
its code-generation cache by class loader (SPARK-44795): every new session, e.g. each
``dagster asset materialize`` run, compiled all its generated code again and ran it in the JVM's
interpreter until the JIT caught up, ≈ 1 s more for ``daily_sessions``' first job on 1 M events
(docs/results/dagster-connect/2026-12-05-shared-codegen/). Without isolation the sessions share
the application's class loader: artifacts a client adds (jars, files) are visible to every
session, which suits this single-user server bound to 127.0.0.1.

Only py4j is imported (not pyspark.sql, which pulls pandas and pyarrow into a process that
idles): this process holds ≈ 23 MB of RSS.
"""

from __future__ import annotations

import os
import sys

from py4j.java_gateway import GatewayParameters, JavaGateway


def main() -> None:
    gateway = JavaGateway(gateway_parameters=GatewayParameters(
        port=int(os.environ["PYSPARK_GATEWAY_PORT"]),
        auth_token=os.environ["PYSPARK_GATEWAY_SECRET"]))
    jvm = gateway.jvm
    session = getattr(jvm, "org.apache.spark.sql.classic.SparkSession").builder().getOrCreate()
    service = getattr(getattr(jvm, "org.apache.spark.sql.connect.service.SparkConnectService$"),
                      "MODULE$")
    service.start(session.sparkContext())
    print("clickguard: Spark Connect service started in this driver", flush=True)
    sys.stdin.buffer.read()  # returns when the JVM, which holds the pipe's other end, is gone


if __name__ == "__main__":
    main()
