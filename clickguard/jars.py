"""JVM jars: where each Maven profile's jars live and which of them Spark loads; the JVM options
every long-running JVM of ours shares.

The installer (``clickguard_stack.setup``) fills these folders from ``infra/pom.xml``; the Spark
configuration (``clickguard.spark``) and the stack's nodes read them. One place for the layout.
"""

from __future__ import annotations

import re
from pathlib import Path

from clickguard.settings import REPO_ROOT, Settings

POM = REPO_ROOT / "infra" / "pom.xml"  # versions of every jar (Kafka, Spark connectors, registry)
PROFILES = ("kafka", "spark", "registry")

# HotSpot's WatcherThread samples its perf counters (hsperfdata, what jps and jstat read) every
# 50 ms: 0.07 % of a core per idle JVM, measured on a JVM that only sleeps (0.00 % once a second),
# and the stack runs six of them (three brokers, the registry, two stream drivers)
QUIET_JVM_OPTS = "-XX:PerfDataSamplingInterval=1000"


def jar_dir(settings: Settings, profile: str) -> Path:
    """The folder holding one Maven profile's jars (``kafka``, ``spark`` or ``registry``)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown jar profile {profile!r}; one of {PROFILES}")
    return settings.jars_dir / profile


def spark_jars(settings: Settings) -> list[Path]:
    """Connector jars for Spark, minus the libraries pyspark already ships (no duplicates)."""
    import pyspark

    shipped = {artifact(p.name) for p in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    jars = sorted(jar_dir(settings, "spark").glob("*.jar"))
    if not jars:
        raise RuntimeError(f"Spark connector jars missing in {settings.jars_dir}/spark: make setup")
    return [j for j in jars if artifact(j.name) not in shipped]


def artifact(filename: str) -> str:
    """'kafka-clients-3.9.1.jar' -> 'kafka-clients' (cut at the first '-<n>.<n>' version)."""
    return re.split(r"-\d+\.\d+", filename.removesuffix(".jar"), maxsplit=1)[0]
